"""How a sweep's items are scheduled: which item starts first (longest expected first between
timing barriers, estimated from an earlier run's durations or from training compute), worker
processes that start up early, and plugin files imported once when items run in the driver.

Only the order of execution is asserted (a one-worker pool yields results in the order it ran
them), never a clock.
"""

from __future__ import annotations

import faulthandler
import hashlib

import pytest

from harness.execution import EXCLUSIVE, WorkItem, WorkSpec, dispatch_order
from harness.executor_choice import ExecutionRequest, early_pool, make_executor
from harness.executors import InProcessExecutor, LocalPoolExecutor
from harness.item_cost import TOKEN_FLOPS, expected_seconds, training_compute
from harness.plugins import load_plugins
from harness.runner import plan
from harness.settings import build_config
from harness.store import ResultStore

W = "executor_work"  # tests/executor_work.py, on the workers' sys.path


@pytest.fixture(autouse=True)
def bounded():
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def item(key: str, expected_s=None, kind: str = "shared") -> WorkItem:
    return WorkItem(key, 0.0, kind=kind, expected_s=expected_s)


# -- the order rule ---------------------------------------------------------------------------
def test_longest_expected_shared_item_starts_first_and_timing_items_stay_barriers():
    items = [item("a", 1.0), item("b", 5.0), item("c"), item("t1", kind=EXCLUSIVE), item("d", 2.0), item("e", 9.0),
             item("f", 2.0), item("t2", 0.5, kind=EXCLUSIVE), item("g", 3.0)]
    # Unknown first (it may be the longest), then longest first; ties keep plan order.
    assert [i.key for i in dispatch_order(items)] == ["c", "b", "a", "t1", "e", "d", "f", "t2", "g"]
    assert dispatch_order([]) == []


def test_expected_seconds_must_be_a_number_of_seconds():
    with pytest.raises(ValueError, match="expected_s"):
        item("x", float("nan"))
    with pytest.raises(ValueError, match="expected_s"):
        item("x", -1.0)


def test_a_pool_starts_the_longest_expected_item_first():
    items = [item("short", 1.0), item("unknown"), item("long", 30.0), item("middle", 4.0)]
    with LocalPoolExecutor(workers=1) as pool:  # one worker: results come back in the order they ran
        ran = [r.key for r in pool.run(items, WorkSpec(f"{W}:nap"))]
    assert ran == ["unknown", "long", "middle", "short"]
    # In this process, one item after another: plan order (the order cannot shorten the sweep).
    assert [r.key for r in InProcessExecutor().run(items, WorkSpec(f"{W}:nap"))] == [i.key for i in items]


# -- estimates --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def registry():
    return load_plugins(autoload=False)


def sweep_config(registry, steps: int = 40):
    return build_config(registry, cells=("torch-rnn", "lstm"), tasks=("adding",), devices=("cpu",),
                        measures=("accuracy",), profile_name="smoke", seq_len=(50,), hidden_size=(64,),
                        batch_size=(16,), steps=steps)


def test_training_compute_is_six_times_parameters_times_tokens(registry):
    config = sweep_config(registry)
    rnn = next(i for i in plan(config, registry) if i.cell.name == "torch-rnn")
    # nn.RNN(2 -> 64): W_ih 64x2, W_hh 64x64, two biases of 64; readout 64 -> 1 with a bias.
    parameters = 64 * 2 + 64 * 64 + 64 + 64 + 64 + 1
    assert parameters == 4417
    assert training_compute(rnn, config) == TOKEN_FLOPS * parameters * 40 * 16 * 50


def store_durations(store: ResultStore, config, seconds: dict[str, float]) -> int:
    run_id = store.start_run(["rnnbench", "run"], config, {})
    for position, (key, duration_s) in enumerate(seconds.items()):
        store.add_rows(run_id, [], execution=dict(item=key, position=position, status="ok", attempt=1,
                                                  started_at=1000.0, ended_at=1000.0 + duration_s, host="h", pid=1,
                                                  worker="w", isolation="shared"))
    store.finish_run(run_id, "complete")
    return run_id


def test_an_earlier_runs_durations_come_first_and_scale_the_compute_of_the_others(registry, tmp_path):
    config = sweep_config(registry)
    rnn, lstm = sorted(plan(config, registry), key=lambda i: i.cell.name != "torch-rnn")
    compute = {i.key: training_compute(i, config) for i in (rnn, lstm)}
    assert compute[lstm.key] > compute[rnn.key]  # by compute alone, lstm goes first
    with ResultStore(tmp_path / "r.sqlite") as store:
        assert expected_seconds([rnn, lstm], config, store) == compute  # nothing stored yet: units of compute
        store_durations(store, sweep_config(registry, steps=400), {rnn.key: 99.0, lstm.key: 1.0})  # another recipe
        store_durations(store, config, {rnn.key: 12.0})
        estimates = expected_seconds([rnn, lstm], config, store)
    assert estimates[rnn.key] == 12.0
    assert estimates[lstm.key] == pytest.approx(compute[lstm.key] * 12.0 / compute[rnn.key])


def test_timing_items_get_no_estimate(registry):
    config = build_config(registry, cells=("torch-rnn",), tasks=None, devices=("cpu",), measures=("speed",),
                          profile_name="smoke")
    items = plan(config, registry)
    assert items and expected_seconds(items, config) == {}


# -- workers that start up early ----------------------------------------------------------------
def test_workers_run_their_start_up_work_before_their_first_item():
    with LocalPoolExecutor(workers=1, warm=f"{W}:warm") as pool:
        [result] = pool.run([item("first")], WorkSpec(f"{W}:warmed"))
    assert result.ok and result.rows == (("warmed", True),)


def test_a_pool_started_early_is_trimmed_to_the_planned_items_or_replaced():
    request = ExecutionRequest(workers=None)
    early = early_pool(request, threads=1, devices=("cpu",), resuming=False)
    try:
        assert early is not None and early.threads == 1 and len(early._pool) == early.workers >= 1
        adopted = make_executor(request, devices=("cpu",), threads=1, side_by_side=1, started=early)
        assert adopted is early and adopted.workers == 1 and len(adopted._pool) == 1
        replaced = make_executor(request, devices=("cpu",), threads=2, side_by_side=1, started=early)
        assert replaced is not early and early._pool == []  # other thread counts: a new pool
        replaced.close()
    finally:
        early.close()
    assert early_pool(ExecutionRequest(workers=1), threads=1, devices=("cpu",), resuming=False) is None
    assert early_pool(ExecutionRequest(cluster="tcp://127.0.0.1:1"), threads=1, devices=("cpu",), resuming=False) is None
    assert early_pool(request, threads=1, devices=("cpu",), resuming=True) is None


class _FakeWorker:
    """Stands in for a worker process, so that pools of many workers are sized without starting any."""

    ready = True

    def kill(self):
        pass

    stop = kill


@pytest.fixture
def two_cpus(monkeypatch):
    """A 2-core machine with 24 GB available, whose pools start no process: returns the list of workers started."""
    import harness.executor_choice as choice
    import harness.preflight as preflight

    started = []

    def new_worker(pool, slot):
        started.append(slot)
        return _FakeWorker()

    monkeypatch.setattr(choice, "usable_cpus", lambda: 2)
    monkeypatch.setattr(preflight, "available_memory_bytes", lambda: 24 * 10**9)
    monkeypatch.setattr(LocalPoolExecutor, "_new_worker", new_worker)
    return started


def test_an_early_pool_starts_no_more_workers_than_cores_or_items(two_cpus):
    """``--workers 1024`` started 1024 processes before planning (out of memory); now at most one per usable core,
    and no more than the training items that may run side by side (timing items run alone: one worker)."""
    pool = early_pool(ExecutionRequest(workers=1024), threads=1, devices=("cpu",), resuming=False)
    assert pool.workers == 2 and len(two_cpus) == 2
    for side_by_side, expected in ((0, 1), (1, 1), (5, 2)):
        two_cpus.clear()
        pool = early_pool(ExecutionRequest(workers=5), threads=1, devices=("cpu",), resuming=False,
                          side_by_side=side_by_side)
        assert pool.workers == expected and len(two_cpus) == expected


def test_typed_workers_are_trimmed_to_the_items_and_grow_the_early_pool_only_for_them(two_cpus):
    speed_only = make_executor(ExecutionRequest(workers=5), devices=("cpu",), threads=1, side_by_side=0)
    assert speed_only.workers == 1  # two timing items run one at a time: a second worker would sit idle
    early = early_pool(ExecutionRequest(workers=6), threads=1, devices=("cpu",), resuming=False, side_by_side=6)
    assert early.workers == 2
    grown = make_executor(ExecutionRequest(workers=6), devices=("cpu",), threads=1, side_by_side=6, started=early)
    assert grown is early and grown.workers == 6 and len(two_cpus) == 2  # the other 4 start when the run does
    grown._ensure_pool(1)
    assert len(two_cpus) == 6


def test_more_workers_than_cores_is_said_and_more_than_memory_refused(two_cpus, monkeypatch):
    from harness.errors import UsageError
    from harness.executor_choice import worker_warnings
    import harness.preflight as preflight

    assert worker_warnings(ExecutionRequest(workers=6)) == [
        "--workers 6 is more than the 2 usable CPU cores here: no more start than the run has training items to run "
        "side by side, and those will compete for cores"]
    assert worker_warnings(ExecutionRequest(workers=2)) == worker_warnings(ExecutionRequest()) == []
    monkeypatch.setattr(preflight, "available_memory_bytes", lambda: 10**9)  # room for 10 workers of 100 MB
    assert make_executor(ExecutionRequest(workers=10), devices=("cpu",), threads=1, side_by_side=10).workers == 10
    with pytest.raises(UsageError, match=r"--workers 11: 11 worker processes need at least 1.1 GB to start \(about "
                                         r"0.1 GB each\), more than the 1 GB of memory available here; give "
                                         r"--workers 10 or fewer, or 'auto'"):
        make_executor(ExecutionRequest(workers=11), devices=("cpu",), threads=1, side_by_side=11)
    assert two_cpus == []


# -- items in the driver use the driver's plugins -----------------------------------------------
COUNTED = """
from harness import hookimpl
from plugins.torch_rnn import build

with open({imports!r}, "a") as imports:  # one line per import of this file
    imports.write("imported\\n")


@hookimpl
def register_cells(register):
    register("counted", build, summary="torch.nn.RNN under another name")
"""


def test_with_one_worker_a_plugin_file_is_imported_once(rnnbench, write_plugin, tmp_path):
    imports = tmp_path / "imports.txt"
    plugin = write_plugin("counted", COUNTED.format(imports=str(imports)))
    db = tmp_path / "r.sqlite"
    result = rnnbench("run", "--profile", "smoke", "--device", "cpu", "--measure", "accuracy", "--tasks", "adding",
                      "--cells", "counted", "--plugin", plugin, "--workers", "1", "--db", db, "--out", tmp_path / "out")
    assert result.code == 0, result.err
    assert imports.read_text().splitlines() == ["imported"]
    with ResultStore(db) as store:
        rows = store.rows(1)
    sha256 = hashlib.sha256(plugin.read_bytes()).hexdigest()
    assert rows and {(r["plugin"], r["plugin_version"], r["status"]) for r in rows} == {
        ("file:counted.py", f"sha256:{sha256}", "ok")}
