"""Runs on worker processes and on a Dask cluster, through the command line: same numbers as a
serial run, timing items alone, faults (a worker killed mid-item, a hung item, an unreachable
scheduler, sys.exit in plugin code) stored as failed items with their reason, never a run left
``running``.

Every test is bounded in time, binds only to 127.0.0.1 on free ports and ends the processes
it starts. The suite runs with ``RNNBENCH_WORKERS=1`` (tests/conftest.py); these tests ask for
workers explicitly.
"""

from __future__ import annotations

import faulthandler
import hashlib
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.store import ResultStore

TEST_LIMIT_S = 300
SMOKE = ("--profile", "smoke", "--device", "cpu", "--threads", "1")
TRAIN = ("--measure", "accuracy,gradients", "--tasks", "copy,adding")
# Metrics that are wall-clock times: they differ between any two runs.
TIMES = {"train_time_s", "time_to_solve_s"}
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def bounded():
    faulthandler.dump_traceback_later(TEST_LIMIT_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def stored(db: Path, run_id: int = 1) -> tuple[list[dict], list[dict], object]:
    with ResultStore(db) as store:
        return store.rows(run_id), store.items(run_id), store.run(run_id)


def values(rows: list[dict]) -> dict:
    """Every measured value by what it measures, wall-clock times left out."""
    return {(r["item"], r["measurement"], r["phase"], r["step"], r["metric"]): r["value"]
            for r in rows if r["metric"] not in TIMES}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def overlaps(a: dict, b: dict) -> bool:
    return a["started_at"] < b["ended_at"] and b["started_at"] < a["ended_at"]


# -- same numbers as serial ------------------------------------------------------------------
@pytest.fixture(scope="module")
def serial_sweep(tmp_path_factory):
    """A training sweep run in this process (--workers 1): the reference."""
    from harness.cli import main

    folder = tmp_path_factory.mktemp("serial")
    db = folder / "r.sqlite"
    assert main(["run", *SMOKE, *TRAIN, "--cells", "lstm,numpy-rnn", "--seeds", "2", "--workers", "1",
                 "--db", str(db), "--out", str(folder / "out")]) == 0
    return stored(db)


def test_a_local_pool_sweep_equals_the_serial_sweep_value_for_value(rnnbench, serial_sweep, tmp_path):
    db = tmp_path / "r.sqlite"
    result = rnnbench("run", *SMOKE, *TRAIN, "--cells", "lstm,numpy-rnn", "--seeds", "2", "--workers", "2",
                      "--db", db, "--out", tmp_path / "out")
    assert result.code == 0, result.err
    rows, items, run = stored(db)
    serial_rows, serial_items, serial_run = serial_sweep
    assert values(rows) == values(serial_rows) and len(values(rows)) > 100
    # read back in plan order, whatever order the workers finished in
    assert [r["item"] for r in rows] == [r["item"] for r in serial_rows]
    # worker processes, not the driver; usually both, but a worker still starting up under load can
    # leave every smoke-sized item to the other (items start on whichever worker is ready)
    pids = {i["pid"] for i in items}
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids and {i["isolation"] for i in items} == {"shared"}
    assert {i["isolation"] for i in serial_items} == {"in-process"} and serial_run.execution["workers"] == 1
    assert run.execution["executor"] == "local" and run.execution["workers"] == 2
    assert run.execution["hosts"] == [socket.gethostname()] and run.execution["item_timeout_s"] == 600
    listing = rnnbench("runs", "--db", db).out.splitlines()
    assert "executed" in listing[0].split() and "2 workers" in listing[2]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "- executed: in 2 worker processes on one machine" in report and "time limit per item 600 s" in report


# -- a Dask cluster on localhost ---------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("distributed")
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", scheduler_port=0,
                             dashboard_address=None, resources={"machine": 1}, silence_logs=logging.ERROR)
    yield local
    local.close()


SHIPPED = '''
    from harness import hookimpl
    from plugins.torch_rnn import build

    @hookimpl
    def register_cells(register):
        register("shipped", build, summary="torch.nn.RNN, from a file shipped to the workers by content")
'''


def test_a_dask_sweep_with_a_plugin_file_equals_the_serial_sweep(rnnbench, serial_sweep, cluster, write_plugin,
                                                                 tmp_path):
    plugin = write_plugin("shipped", SHIPPED)
    sha256 = hashlib.sha256(plugin.read_bytes()).hexdigest()
    db = tmp_path / "r.sqlite"
    result = rnnbench("run", *SMOKE, *TRAIN, "--cells", "lstm,numpy-rnn,shipped", "--seeds", "2", "--plugin", plugin,
                      "--cluster", cluster.scheduler_address, "--db", db, "--out", tmp_path / "out")
    assert result.code == 0, result.err
    rows, items, run = stored(db)
    ours = {k: v for k, v in values(rows).items() if "|shipped|" not in k[0]}
    assert ours == values(serial_sweep[0])
    assert all(i["worker"].startswith("tcp://127.0.0.1:") for i in items)
    shipped = [r for r in rows if r["cell"] == "shipped"]
    assert shipped and {(r["plugin"], r["plugin_version"]) for r in shipped} == {("file:shipped.py", f"sha256:{sha256}")}
    assert {tuple(i["plugin_sha256"]) for i in items} == {(sha256,)}
    assert run.execution["executor"] == "dask" and run.execution["cluster"] == cluster.scheduler_address
    assert f"dask {cluster.scheduler_address}" in rnnbench("runs", "--db", db).out


def test_an_unreachable_cluster_is_one_line_and_nothing_is_stored(rnnbench, tmp_path):
    pytest.importorskip("distributed")
    db = tmp_path / "r.sqlite"
    started = time.monotonic()
    result = rnnbench("run", *SMOKE, "--cells", "lstm", "--cluster", f"tcp://127.0.0.1:{free_port()}", "--db", db)
    assert result.code == 2 and time.monotonic() - started < 30
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnbench: error: cannot reach a Dask scheduler at 'tcp://127.0.0.1:")
    assert not db.exists()


# -- timing items run alone ---------------------------------------------------------------------
def test_speed_items_never_overlap_another_item(rnnbench, tmp_path):
    db = tmp_path / "r.sqlite"
    result = rnnbench("run", *SMOKE, "--cells", "lstm,gru", "--measure", "speed,accuracy", "--workers", "2",
                      "--db", db, "--out", tmp_path / "out")
    assert result.code == 0, result.err
    rows, items, _ = stored(db)
    timing = [i for i in items if i["item"].startswith("speed|")]
    assert len(timing) == 4 and len(items) == 8
    for item in timing:
        assert item["isolation"] == "alone"
        assert [o["item"] for o in items if o is not item and overlaps(item, o)] == [], item["item"]
    speed_rows = [r for r in rows if r["measurement"] == "speed"]
    assert speed_rows and {r["stats"]["isolation"] for r in speed_rows} == {"alone"}


# -- faults ---------------------------------------------------------------------------------------
KILLERS = '''
    import os
    import signal
    from pathlib import Path

    from harness import hookimpl
    from plugins.torch_rnn import build

    MARKER = Path({marker!r})


    def dies_once(input_size, hidden_size):
        cell = build(input_size, hidden_size)
        forward = cell.forward

        def first_call_kills_the_process(x, state=None):
            if not MARKER.exists():
                MARKER.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return forward(x, state)

        cell.forward = first_call_kills_the_process
        return cell


    def always_dies(input_size, hidden_size):
        cell = build(input_size, hidden_size)
        cell.forward = lambda x, state=None: os.kill(os.getpid(), signal.SIGKILL)
        return cell


    @hookimpl
    def register_cells(register):
        register("dies-once", dies_once)
        register("always-dies", always_dies)
'''


def test_a_worker_killed_mid_item_is_retried_once_then_the_item_fails(rnnbench, write_plugin, tmp_path):
    marker = tmp_path / "killed-pid"
    plugin = write_plugin("killers", KILLERS.format(marker=str(marker)))
    db = tmp_path / "r.sqlite"
    result = rnnbench("run", *SMOKE, "--tasks", "adding", "--measure", "accuracy", "--cells", "dies-once,always-dies,lstm",
                      "--plugin", plugin, "--workers", "2", "--db", db, "--out", tmp_path / "out")
    assert result.code == 1, result.err
    rows, items, run = stored(db)
    by_cell = {i["item"].split("|")[1]: i for i in items}
    assert (by_cell["dies-once"]["status"], by_cell["dies-once"]["attempt"]) == ("ok", 2)
    assert by_cell["dies-once"]["pid"] != int(marker.read_text())  # a new worker finished it
    dead = by_cell["always-dies"]
    assert (dead["status"], dead["attempt"]) == ("failed", 2)
    assert dead["error"].startswith("worker process killed by SIGKILL") and "the item was tried 2 times" in dead["error"]
    assert [r["error"] for r in rows if r["cell"] == "always-dies"] == [dead["error"]]
    assert by_cell["lstm"]["status"] == "ok"
    assert (run.status, run.reason) == ("failed", "1 item(s) failed")
    assert "Traceback" not in result.err


HANGS = '''
    import time

    from harness import hookimpl
    from plugins.torch_rnn import build


    def hangs(input_size, hidden_size):
        cell = build(input_size, hidden_size)
        cell.forward = lambda x, state=None: time.sleep(3600)
        return cell


    @hookimpl
    def register_cells(register):
        register("hangs", hangs)
'''


def test_a_hanging_item_times_out_and_resume_does_not_run_it_again(rnnbench, write_plugin, tmp_path):
    plugin = write_plugin("hangs", HANGS)
    db = tmp_path / "r.sqlite"
    common = ("--db", db, "--out", tmp_path / "out")
    started = time.monotonic()
    result = rnnbench("run", *SMOKE, "--tasks", "adding", "--measure", "accuracy", "--cells", "hangs,lstm",
                      "--plugin", plugin, "--workers", "2", "--item-timeout", "10", *common)
    assert result.code == 1 and time.monotonic() - started < 120, result.err
    rows, items, run = stored(db)
    assert [r["error"] for r in rows if r["cell"] == "hangs"] == ["timed out after 10 s"]
    assert {i["item"].split("|")[1]: i["status"] for i in items} == {"hangs": "failed", "lstm": "ok"}
    assert run.execution["item_timeout_s"] == 10
    # --resume keeps the failed item (no endless loop on a hang) ...
    resumed = rnnbench("run", "--resume", "1", *common)
    assert resumed.code == 1 and "already stored" in resumed.err and "timed out" not in resumed.err
    assert "(run failed: 1 item(s) failed)" in resumed.err
    # ... unless asked to retry failures, here with another limit
    retried = rnnbench("run", "--resume", "1", "--retry-failed", "--item-timeout", "4", *common)
    assert retried.code == 1 and "hangs adding T=10 cpu seed=0 lr=0.01: failed: timed out after 4 s" in retried.err
    assert stored(db)[0] and stored(db)[2].status == "failed"


EXITS = '''
    import sys

    from harness import hookimpl
    from plugins.torch_rnn import build


    def exits(input_size, hidden_size):
        cell = build(input_size, hidden_size)
        def forward(x, state=None):
            sys.exit(3)
        cell.forward = forward
        return cell


    @hookimpl
    def register_cells(register):
        register("exits", exits)
'''


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sys_exit_in_a_cell_fails_its_item_with_a_message(rnnbench, write_plugin, tmp_path, workers):
    plugin = write_plugin("exits", EXITS)
    db = tmp_path / "r.sqlite"
    result = rnnbench("run", *SMOKE, "--tasks", "adding", "--measure", "speed,accuracy", "--cells", "exits,lstm",
                      "--plugin", plugin, "--workers", workers, "--db", db, "--out", tmp_path / "out")
    assert result.code == 1, result.err
    rows, _, run = stored(db)
    errors = {r["error"] for r in rows if r["cell"] == "exits"}
    assert errors and all("sys.exit(3)" in e for e in errors), errors
    assert {r["status"] for r in rows if r["cell"] == "lstm"} == {"ok"} and run.status == "failed"


def test_sys_exit_at_plugin_import_is_a_failed_plugin(rnnbench, write_plugin, tmp_path):
    plugin = write_plugin("exits_at_import", "import sys\nsys.exit(4)\n")
    result = rnnbench("run", *SMOKE, "--measure", "speed", "--cells", "lstm", "--plugin", plugin,
                      "--db", tmp_path / "r.sqlite", "--out", tmp_path / "out")
    assert result.code == 0, result.err
    assert "failed to import: SystemExit: the plugin called sys.exit(4)" in result.err


def test_an_error_in_the_driver_marks_the_run_failed_with_the_reason(rnnbench, tmp_path, monkeypatch):
    import harness.driver as driver

    def broken(*args):
        raise RuntimeError("the driver broke")

    monkeypatch.setattr(driver, "_rows_of", broken)
    db = tmp_path / "r.sqlite"
    result = rnnbench("run", *SMOKE, "--measure", "speed", "--cells", "lstm", "--db", db)
    assert result.code == 1
    assert result.err.strip().splitlines()[-1] == "rnnbench: error: run 1 stopped: RuntimeError: the driver broke"
    run = stored(db)[2]
    assert (run.status, run.reason) == ("failed", "RuntimeError: the driver broke")


# -- Ctrl-C ---------------------------------------------------------------------------------------
def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the worker processes")
def test_ctrl_c_keeps_finished_items_and_ends_the_workers(tmp_path):
    db = tmp_path / "r.sqlite"
    env = {**os.environ, "RNNBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", *SMOKE, "--cells", "lstm,gru", "--tasks", "parity",
                             "--seq-len", "64", "--measure", "speed,accuracy", "--steps", "1000000", "--workers", "2", "--db", str(db),
                             "--out", str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=REPO, start_new_session=True)
    deadline, workers = time.time() + 120, []
    while time.time() < deadline:
        time.sleep(0.3)
        try:
            with sqlite3.connect(db) as conn:
                if conn.execute("SELECT COUNT(DISTINCT item) FROM results").fetchone()[0] >= 4:  # the speed items
                    break
        except sqlite3.Error:
            pass
    time.sleep(1.0)  # training items under way
    workers = children_of(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: run 1 keeps every item finished so far" in err and "Traceback" not in err
    rows, items, run = stored(db)
    assert (run.status, run.reason) == ("interrupted", "interrupted by Ctrl-C")
    # Training cannot end before the signal: parity with one target at T=64 is not solved within
    # seconds (a plateau), and the budget is 10^6 steps. (Smoke-sized adding was solved in 1 s
    # on a quiet machine, so the run had ended before Ctrl-C.)
    assert {i["item"].split("|")[0] for i in items} == {"speed"} and len(items) == 4
    ended_by = time.time() + 10
    while time.time() < ended_by and [p for p in workers if alive(p)]:
        time.sleep(0.1)
    assert len(workers) == 2 and not [p for p in workers if alive(p)]
    assert json.loads(json.dumps(run.execution))["workers"] == 2


# -- docs/scale-out.md ----------------------------------------------------------------------------
SCALE_OUT = (REPO / "docs" / "scale-out.md").read_text()


def _fenced(language: str = "") -> list[str]:
    """The doc's fenced blocks opened with ```LANGUAGE (``""``: plain blocks)."""
    blocks, current = [], None
    for line in SCALE_OUT.splitlines():
        if line.startswith("```"):
            if current is None:
                current = [] if line[3:].strip() == language else False
            else:
                if current is not False:
                    blocks.append("\n".join(current) + "\n")
                current = None
        elif isinstance(current, list):
            current.append(line)
    return blocks


def _doc_commands(program: str) -> list[list[str]]:
    import shlex

    commands = []
    for block in _fenced():
        for line in block.splitlines():
            words = shlex.split(line.split(" #")[0].rstrip(" &"))
            while words and "=" in words[0]:  # VARIABLE=value prefixes
                words.pop(0)
            if words[:len(program.split())] == program.split():
                commands.append(words[len(program.split()):])
    return commands


@pytest.mark.parametrize("argv", _doc_commands("rnnbench"), ids=lambda argv: " ".join(argv)[:60])
def test_every_rnnbench_command_in_scale_out_parses(argv):
    from harness.cli import cli

    name, *args = argv
    cli.get_command(None, name).make_context(name, list(args))


def test_scale_out_workers_declare_the_resources_rnnbench_asks_for():
    from harness.dask_executor import GPU_RESOURCE, MACHINE_RESOURCE

    workers = _doc_commands("dask worker")
    assert workers and all(args[args.index("--resources") + 1].startswith(f"{MACHINE_RESOURCE}=1") for args in workers)
    assert any(f"{GPU_RESOURCE}=" in args[args.index("--resources") + 1] for args in workers)
    [slurm] = _fenced("python")
    compile(slurm, "slurm_cluster.py", "exec")
    assert f'"{MACHINE_RESOURCE}=1,{GPU_RESOURCE}=4"' in slurm
    yaml = pytest.importorskip("yaml")
    [resource] = [yaml.safe_load(block) for block in _fenced("yaml")]
    assert resource["kind"] == "DaskCluster"
    [container] = resource["spec"]["worker"]["spec"]["containers"]
    args = [str(a) for a in container["args"]]
    assert args[args.index("--resources") + 1] == f"{MACHINE_RESOURCE}=1,{GPU_RESOURCE}=1"


def test_how_a_run_was_executed_counts_one_in_the_singular():
    """'in 1 worker processes' was the reports' sentence for --workers 1 with a time limit."""
    from reports.text import execution_brief, execution_text

    local = {"executor": "local", "workers": 1, "item_timeout_s": 600.0}
    assert execution_text(local) == "in 1 worker process on one machine; timing items alone; time limit per item 600 s"
    assert execution_text({**local, "workers": 2}).startswith("in 2 worker processes on one machine;")
    assert execution_brief({**local, "gpus": ["0"]}) == "1 worker, 1 GPU"
    assert execution_brief({**local, "workers": 3, "gpus": ["0", "1"]}) == "3 workers, 2 GPUs"
    dask = {"executor": "dask", "cluster": "tcp://h:8786", "dask_workers": 1, "threads": 1, "hosts": ["h"]}
    assert execution_text(dask).startswith("on the Dask cluster at tcp://h:8786: 1 Dask worker, 1 item slot; ")
    assert execution_brief(dask) == "dask tcp://h:8786 (1 host)"
