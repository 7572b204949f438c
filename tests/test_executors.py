"""Executors: items in worker processes and on a local Dask cluster, with faults injected.

Every test is bounded in time (a hung test ends the session after TEST_LIMIT_S), ends
every process it starts, and binds only to 127.0.0.1 on free ports.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from harness.execution import (ALONE, EXCLUSIVE, IN_PROCESS, SHARED_HOST, ClusterUnreachableError, ExecutorError,
                               PluginSource, WorkItem, WorkSpec)
from harness.executors import InProcessExecutor, LocalPoolExecutor

TEST_LIMIT_S = 240
W = "executor_work"  # tests/executor_work.py, on the workers' sys.path


@pytest.fixture(autouse=True)
def bounded():
    faulthandler.dump_traceback_later(TEST_LIMIT_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def spec(function: str, **kwargs) -> WorkSpec:
    return WorkSpec(f"{W}:{function}", **kwargs)


def by_key(results) -> dict:
    return {r.key: r for r in results}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie counts as ended
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def wait_until_gone(pids, within_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        left = [p for p in pids if pid_alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return left


def overlaps(a, b) -> bool:
    return a.started_at < b.ended_at and b.started_at < a.ended_at


def kill_when_marked(marker: Path, within_s: float = 60.0) -> threading.Thread:
    """SIGKILL the pid the item writes into ``marker`` (its worker process), mid-item."""

    def watch():
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if marker.exists() and marker.read_text().strip():
                os.kill(int(marker.read_text()), signal.SIGKILL)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def pool():
    executor = LocalPoolExecutor(workers=2)
    yield executor
    pids = [w.pid for w in executor._pool if w.pid]
    executor.close()
    assert wait_until_gone(pids) == []


# -- local pool ---------------------------------------------------------------------------
def test_pool_runs_items_in_parallel_on_reused_workers(pool):
    results = list(pool.run([WorkItem(f"nap{i}", 0.6) for i in range(4)], spec("nap")))
    assert sorted(r.key for r in results) == [f"nap{i}" for i in range(4)]
    assert all(r.ok and r.isolation == SHARED_HOST and r.attempt == 1 for r in results)
    # Two workers, reused: two pids, and some pair of items ran at the same time.
    assert len({r.pid for r in results}) == 2 and {r.rows[0][2] for r in results} == {r.pid for r in results}
    assert any(overlaps(a, b) for a in results for b in results if a is not b)


def test_pool_rows_equal_serial_rows(pool):
    items = [WorkItem(f"seed{s}", s) for s in range(6)]
    serial = by_key(InProcessExecutor().run(items, spec("deterministic")))
    parallel = by_key(pool.run(items, spec("deterministic")))
    assert {k: r.rows for k, r in parallel.items()} == {k: r.rows for k, r in serial.items()}
    assert all(len(r.rows) == 20 for r in serial.values())
    assert {r.isolation for r in serial.values()} == {IN_PROCESS}


def test_worker_killed_mid_item_is_retried_on_a_new_worker(pool, tmp_path):
    marker = tmp_path / "pid"
    killer = kill_when_marked(marker)
    items = [WorkItem("victim", str(marker)), *(WorkItem(f"echo{i}", i) for i in range(3))]
    results = by_key(pool.run(items, WorkSpec(f"{W}:die_first_time")))
    killer.join()
    victim = results.pop("victim")
    assert victim.ok and victim.attempt == 2 and victim.rows == (("survived", marker.read_text()),)
    assert victim.pid != int(marker.read_text())  # a replacement worker finished it
    assert not pid_alive(int(marker.read_text()))


def test_item_that_keeps_killing_its_worker_fails_after_one_retry(pool):
    items = [WorkItem("killer", None), WorkItem("after", 1)]
    results = by_key(pool.run(items, spec("kill_self")))
    killer = results["killer"]
    assert killer.status == "failed" and killer.attempt == 2
    assert "killed by SIGKILL" in killer.error and "tried 2 times" in killer.error
    # the pool replaced both dead workers and still runs items
    assert all(r.ok for r in pool.run([WorkItem("later", 1)], spec("echo")))


def test_hanging_item_times_out_and_the_run_goes_on(pool):
    started = time.monotonic()
    hung = list(pool.run([WorkItem("hung", None, timeout_s=1.0)], spec("hang")))
    rest = list(pool.run([WorkItem(f"e{i}", i, timeout_s=30) for i in range(3)], spec("echo")))
    assert time.monotonic() - started < 30
    assert [(r.status, r.error, r.attempt) for r in hung] == [("failed", "timed out after 1 s", 1)]
    assert hung[0].duration_s >= 1.0
    assert sorted(r.rows[0][1] for r in rest if r.ok) == [0, 1, 2]


def test_the_time_limit_starts_after_the_workers_set_up(pool):
    items = [WorkItem(f"quick{i}", 0.1, timeout_s=1.0) for i in range(3)]
    results = list(pool.run(items, spec("nap", setup=f"{W}:slow_setup")))
    assert sorted((r.key, r.status) for r in results) == [(f"quick{i}", "ok") for i in range(3)]


@pytest.mark.parametrize("make", [InProcessExecutor, lambda: LocalPoolExecutor(workers=1)], ids=["in-process", "pool"])
@pytest.mark.parametrize("function, payload, reason", [
    ("call_exit", 3, "SystemExit: the item's code called sys.exit(3)"),
    ("raise_interrupt", None, "KeyboardInterrupt raised by the item's code (not a Ctrl-C)"),
    ("raise_error", 7, "ValueError: bad value 7"),
])
def test_escapes_from_the_item_become_failed_items(make, function, payload, reason):
    with make() as executor:
        results = list(executor.run([WorkItem("bad", payload), WorkItem("good", 2)], spec(function)))
        good = list(executor.run([WorkItem("good", 2)], spec("echo")))
    assert [(r.key, r.status, r.error) for r in results if r.key == "bad"] == [("bad", "failed", reason)]
    assert good[0].ok


def test_a_real_ctrl_c_in_process_still_interrupts():
    def interrupt_soon():
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_soon, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        list(InProcessExecutor().run([WorkItem("nap", 2.0)], spec("nap")))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_leaving_early_cancels_pending_and_ends_workers(pool):
    results = pool.run([WorkItem("quick", 0.0), *(WorkItem(f"slow{i}", 30.0) for i in range(4))], spec("nap"))
    first = next(results)
    pids = [w.pid for w in pool._pool]
    results.close()  # what Ctrl-C in the driver's loop does to the generator
    assert first.key == "quick" and wait_until_gone(pids, within_s=5) == []


def test_ctrl_c_in_the_driver_keeps_finished_results_and_ends_workers(pool):
    kept = []
    items = [WorkItem("quick", 0.0), *(WorkItem(f"slow{i}", 30.0) for i in range(3))]
    with pytest.raises(KeyboardInterrupt):
        for result in pool.run(items, spec("nap")):
            kept.append(result)
            pids = [w.pid for w in pool._pool]
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    assert [r.key for r in kept] == ["quick"] and wait_until_gone(pids, within_s=5) == []


def test_workers_that_cannot_start_are_a_typed_error(monkeypatch):
    import sys

    from harness.execution import WorkerStartError

    monkeypatch.setattr(sys, "executable", "/bin/false")
    with LocalPoolExecutor(workers=1) as executor, pytest.raises(WorkerStartError, match="exited with code 1"):
        list(executor.run([WorkItem("x", None)], spec("echo")))


def test_exclusive_items_never_overlap_any_other_item(pool):
    kinds = ["shared", "shared", "exclusive", "shared", "exclusive", "exclusive", "shared", "shared"]
    items = [WorkItem(f"{kind}{i}", 0.3, kind=kind) for i, kind in enumerate(kinds)]
    results = list(pool.run(items, spec("nap")))
    assert all(r.ok for r in results) and len(results) == len(items)
    exclusive = [r for r in results if r.key.startswith(EXCLUSIVE)]
    assert {r.isolation for r in exclusive} == {ALONE}
    for timing in exclusive:
        assert not [r.key for r in results if r is not timing and overlaps(r, timing)], timing.key
    shared = [r for r in results if r.key.startswith("shared")]
    assert any(overlaps(a, b) for a in shared for b in shared if a is not b)  # shared items did run side by side


def test_workers_set_threads_before_torch_and_hide_gpus():
    with LocalPoolExecutor(workers=1) as executor:
        [result] = executor.run([WorkItem("env", None)], spec("environment", threads=2))
    assert result.ok and result.rows == (("env", "2", "", 2, 2),) and result.gpu is None


def test_cuda_items_need_a_gpu_worker():
    with LocalPoolExecutor(workers=1) as executor, pytest.raises(ExecutorError, match="GPU worker"):
        list(executor.run([WorkItem("gpu", None, device="cuda")], spec("echo")))
    with pytest.raises(ExecutorError, match="one per GPU"):
        LocalPoolExecutor(workers=1, gpus=("0", "1"))


PLUGIN = '''
    from harness import hookimpl
    from plugins.torch_rnn import build

    @hookimpl
    def register_cells(register):
        register("shipped-cell", build, summary="a cell from a file shipped by content")
'''


def shipped_plugin(write_plugin) -> PluginSource:
    path = write_plugin("shipped", PLUGIN)
    source = PluginSource.read(path)
    path.write_text("raise RuntimeError('the worker must not read this path')\n")
    return source


def test_a_plugin_file_reaches_pool_workers_by_content(write_plugin):
    source = shipped_plugin(write_plugin)
    with LocalPoolExecutor(workers=1) as executor:
        [result] = executor.run([WorkItem("p", None)], spec("plugin_cells", plugins=(source,)))
    _, cells, paths, errors = result.rows[0]
    assert result.ok and "shipped-cell" in cells and "lstm" in cells and errors == []
    assert paths[0].endswith(f"{source.sha256[:16]}/shipped.py") and result.plugin_sha256 == (source.sha256,)


def test_plugin_text_must_match_its_hash(tmp_path):
    good = PluginSource("x.py", "A = 1\n", __import__("hashlib").sha256(b"A = 1\n").hexdigest())
    assert good.materialize(tmp_path).read_text() == "A = 1\n"
    with pytest.raises(ValueError, match="sha256"):
        PluginSource("x.py", "A = 2\n", good.sha256).materialize(tmp_path)


# -- Dask ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("distributed")
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                             scheduler_port=0, dashboard_address=None, resources={"machine": 1},
                             silence_logs=logging.ERROR)
    yield local
    local.close()


@pytest.fixture
def dask_executor(cluster):
    from harness.dask_executor import DaskExecutor

    with DaskExecutor(cluster.scheduler_address, connect_timeout_s=10) as executor:
        yield executor


def test_dask_rows_equal_serial_rows(dask_executor):
    items = [WorkItem(f"seed{s}", s) for s in range(6)]
    serial = by_key(InProcessExecutor().run(items, spec("deterministic")))
    results = by_key(dask_executor.run(items, spec("deterministic")))
    assert {k: r.rows for k, r in results.items()} == {k: r.rows for k, r in serial.items()}
    assert len({r.worker.split("#")[0] for r in results.values()}) >= 1
    assert all(r.worker.startswith("tcp://127.0.0.1:") and r.host == socket.gethostname() for r in results.values())
    assert dask_executor.describe()["dask_workers"] == 2


def test_dask_timeout_retry_and_escapes(dask_executor, tmp_path):
    marker = tmp_path / "pid"
    killer = kill_when_marked(marker)
    timed = list(dask_executor.run([WorkItem("hung", None, timeout_s=1.0)], spec("hang")))
    retried = list(dask_executor.run([WorkItem("victim", str(marker))], spec("die_first_time")))
    exited = list(dask_executor.run([WorkItem("exit", 3)], spec("call_exit")))
    killer.join()
    assert [(r.status, r.error) for r in timed] == [("failed", "timed out after 1 s")]
    assert [(r.status, r.attempt) for r in retried] == [("ok", 2)]
    assert [r.error for r in exited] == ["SystemExit: the item's code called sys.exit(3)"]


def test_dask_exclusive_items_never_overlap_other_items(dask_executor, capsys):
    kinds = ["shared", "shared", "exclusive", "exclusive", "shared", "shared"]
    items = [WorkItem(f"{kind}{i}", 0.3, kind=kind) for i, kind in enumerate(kinds)]
    results = list(dask_executor.run(items, spec("nap")))
    # both test workers run on 127.0.0.1 and offer machine=1: the run says that timings may meet there
    assert "rnnbench: warning: 2 Dask workers on host 127.0.0.1 offer machine=1" in capsys.readouterr().err
    assert all(r.ok for r in results) and len(results) == len(items)
    for timing in (r for r in results if r.key.startswith(EXCLUSIVE)):
        assert timing.isolation == ALONE
        # no shared item alongside; another exclusive item only on another Dask worker ("machine")
        clashes = [r.key for r in results if r is not timing and overlaps(r, timing)
                   and (r.key.startswith("shared") or r.worker.split("#")[0] == timing.worker.split("#")[0])]
        assert clashes == [], timing.key


def test_a_plugin_file_reaches_dask_workers_by_content(dask_executor, write_plugin):
    source = shipped_plugin(write_plugin)
    [result] = dask_executor.run([WorkItem("p", None)], spec("plugin_cells", plugins=(source,)))
    assert result.ok and "shipped-cell" in result.rows[0][1] and result.plugin_sha256 == (source.sha256,)


def test_a_dask_worker_killed_mid_item_is_retried_and_its_child_ends(dask_executor, tmp_path):
    marker = tmp_path / "pids"
    killed: list[int] = []

    def kill_dask_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            if marker.exists() and len(marker.read_text().split()) == 2:
                killed.extend(int(p) for p in marker.read_text().split())
                os.kill(killed[0], signal.SIGKILL)  # the Dask worker process, not the item's child
            time.sleep(0.05)

    killer = threading.Thread(target=kill_dask_worker, daemon=True)
    killer.start()
    done_before = tmp_path / "done"
    done_before.write_text("")
    results = list(dask_executor.run([WorkItem("victim", str(marker)), WorkItem("other", str(done_before))],
                                     spec("kill_my_dask_worker_first_time")))
    killer.join()
    assert sorted((r.key, r.status) for r in results) == [("other", "ok"), ("victim", "ok")]
    assert [r.rows for r in results if r.key == "victim"] == [(("survived",),)]
    assert wait_until_gone([killed[1]]) == []  # the orphaned child noticed and ended


def test_dask_workers_without_resources_are_refused_for_timing_items(cluster):
    pytest.importorskip("distributed")
    from harness.dask_executor import DaskExecutor

    with DaskExecutor(cluster.scheduler_address) as executor, pytest.raises(ExecutorError, match="gpu=N"):
        list(executor.run([WorkItem("gpu", None, device="cuda")], spec("echo")))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:{port}", "127.0.0.1:{port}", "tcp://127.0.0.1:notaport"])
def test_unreachable_scheduler_is_a_typed_error_quickly(address):
    pytest.importorskip("distributed")
    from harness.dask_executor import DaskExecutor

    started = time.monotonic()
    with pytest.raises(ClusterUnreachableError, match="cannot reach a Dask scheduler") as raised:
        DaskExecutor(address.format(port=free_port()), connect_timeout_s=2)
    assert time.monotonic() - started < 5 and raised.value.exit_code == 2
    assert "\n" not in str(raised.value)


def test_hosts_with_several_timing_workers_are_named():
    from harness.dask_executor import shared_timing_hosts

    workers = {"tcp://10.0.0.1:1": {"host": "10.0.0.1", "resources": {"machine": 1}},
               "tcp://10.0.0.2:1": {"host": "10.0.0.2", "resources": {"machine": 1}},
               "tcp://10.0.0.2:2": {"host": "10.0.0.2", "resources": {"machine": 1, "gpu": 1}},
               "tcp://10.0.0.2:3": {"host": "10.0.0.2", "resources": {}}}  # offers no machine: never times
    assert shared_timing_hosts(workers) == [
        "2 Dask workers on host 10.0.0.2 offer machine=1 (tcp://10.0.0.2:1, tcp://10.0.0.2:2): timing items may run "
        "side by side there and slow each other; start one worker per machine"]
    assert shared_timing_hosts({k: v for k, v in workers.items() if k != "tcp://10.0.0.2:2"}) == []
