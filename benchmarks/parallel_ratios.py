"""Parallel execution targets, printed as ``NAME value=X target=Y PASS|FAIL`` lines.

1. dask_overhead_per_item_s: slot-seconds one no-op item costs on a localhost Dask
   cluster (2 process workers, 1 thread each, 127.0.0.1, free ports):
   wall time of N no-op items x slots / N, after a warm-up that starts the workers'
   item processes. Target <= 0.2 s.
   local_pool_overhead_per_item_s: the same through LocalPoolExecutor(workers=2) (reported;
   target <= 0.2 s as well).
2. training_workers_2_vs_1: wall time of a training-only sweep of 8 default-profile items
   (4 cells x copy, adding; accuracy and gradients; cpu) with ``--workers 2`` / with
   ``--workers 1`` (in-process), both through the command line as a user types it, each
   in a fresh database (so the pool orders items by training compute, not by earlier
   durations). Target <= 0.6. Each sweep's timeline is printed: when its first item
   started, when its last ended, how long each worker idled at the end, the start order.

Run: python benchmarks/parallel_ratios.py [--items N] [--skip-training] [--repeat]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("RNNBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")

from harness.execution import WorkItem, WorkSpec  # noqa: E402
from harness.executors import LocalPoolExecutor  # noqa: E402
from targets import report  # noqa: E402  (benchmarks/targets.py, beside this script)

SLOTS = 2
OVERHEAD_LIMIT_S = 0.2
TRAINING_CELLS = "lstm,gru,mingru,torch-rnn"  # x copy, adding = 8 items at one seed
TRAINING_LIMIT = 0.6


def noop(payload, context):
    """The work function of an item that does nothing (workers import it as parallel_ratios:noop)."""
    return []


NOOP = WorkSpec("parallel_ratios:noop")


def per_item_overhead_s(executor, count: int) -> tuple[float, float]:
    """(slot-seconds per no-op item over a batch, median seconds of a one-item run)."""
    list(executor.run([WorkItem(f"warm{i}", None) for i in range(2 * SLOTS)], NOOP))
    started = time.perf_counter()
    results = list(executor.run([WorkItem(f"noop{i}", None) for i in range(count)], NOOP))
    wall_s = time.perf_counter() - started
    assert len(results) == count and all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    single_s = []
    for i in range(10):
        started = time.perf_counter()
        list(executor.run([WorkItem(f"single{i}", None)], NOOP))
        single_s.append(time.perf_counter() - started)
    return wall_s * SLOTS / count, statistics.median(single_s)


def dask_overhead(count: int) -> None:
    try:
        from distributed import LocalCluster
    except ImportError:
        print("# dask_overhead_per_item_s SKIP: pip install 'rnnbench[cluster]'")
        return
    from harness.dask_executor import DaskExecutor

    with LocalCluster(n_workers=SLOTS, threads_per_worker=1, processes=True, host="127.0.0.1", scheduler_port=0,
                      dashboard_address=None, resources={"machine": 1}, silence_logs=logging.ERROR) as cluster:
        with DaskExecutor(cluster.scheduler_address) as executor:
            batch_s, single_s = per_item_overhead_s(executor, count)
    print(f"# dask: {count} no-op items on {SLOTS} workers; one-item run {single_s * 1e3:.1f} ms (median of 10)")
    report("dask_overhead_per_item_s", batch_s, f"<={OVERHEAD_LIMIT_S}", batch_s <= OVERHEAD_LIMIT_S)


def local_overhead(count: int) -> None:
    with LocalPoolExecutor(workers=SLOTS) as executor:
        batch_s, single_s = per_item_overhead_s(executor, count)
    print(f"# local pool: {count} no-op items on {SLOTS} workers; one-item run {single_s * 1e3:.1f} ms (median of 10)")
    report("local_pool_overhead_per_item_s", batch_s, f"<={OVERHEAD_LIMIT_S}", batch_s <= OVERHEAD_LIMIT_S)


def _rnnbench(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True, text=True)


def training_sweep_s(workers: int, db: str) -> float:
    launched_at, started = time.time(), time.perf_counter()
    done = _rnnbench("run", "--profile", "default", "--cells", TRAINING_CELLS, "--tasks", "copy,adding",
                     "--measure", "accuracy,gradients", "--device", "cpu", "--threads", "1",
                     "--workers", str(workers), "--db", db, "--out", os.path.join(os.path.dirname(db), f"w{workers}"))
    wall_s = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"rnnbench run --workers {workers} failed: {done.stderr.strip().splitlines()[-1:]}")
    print_timeline(workers, db, launched_at, launched_at + wall_s)
    return wall_s


def print_timeline(workers: int, db: str, launched_at: float, exited_at: float) -> None:
    """Where the sweep's wall time went, from the items' recorded start and end times."""
    from harness.store import ResultStore

    with ResultStore(db, create=False) as store:
        records = store.items(store.latest_run_id())
    first_s = min(r["started_at"] for r in records) - launched_at
    last_s = max(r["ended_at"] for r in records) - launched_at
    by_worker: dict[str, list] = {}
    for record in records:
        by_worker.setdefault(record["worker"], []).append(record)
    idle = ", ".join(f"{name} {last_s - (max(r['ended_at'] for r in rs) - launched_at):.1f} s"
                     for name, rs in sorted(by_worker.items()))
    order = " ".join(r["item"].split("|")[1] + "/" + r["item"].split("|")[2]
                     for r in sorted(records, key=lambda r: r["started_at"]))
    print(f"# --workers {workers}: first item started at {first_s:.1f} s, last ended at {last_s:.1f} s, "
          f"exit at {exited_at - launched_at:.1f} s; idle at the end: {idle}; started in order: {order}")


def training_ratio(repeat: bool) -> None:
    if "--workers" not in _rnnbench("run", "--help").stdout:
        print("# training_workers_2_vs_1 SKIP: rnnbench run has no --workers yet (runner wiring pending)")
        return
    with tempfile.TemporaryDirectory() as folder:
        serial_s = training_sweep_s(1, os.path.join(folder, "a.sqlite"))
        # A fresh database: the pool orders items by their training compute alone (harness.item_cost).
        parallel_s = training_sweep_s(2, os.path.join(folder, "b.sqlite"))
        # Again in that database: the first run's durations order the items (reported, no target).
        repeat_s = training_sweep_s(2, os.path.join(folder, "b.sqlite")) if repeat else None
    print(f"# training sweep of 8 items: --workers 1 {serial_s:.1f} s, --workers 2 {parallel_s:.1f} s"
          + (f"; --workers 2 again in the same database {repeat_s:.1f} s (ratio {repeat_s / serial_s:.3f})"
             if repeat_s is not None else ""))
    ratio = parallel_s / serial_s
    report("training_workers_2_vs_1", ratio, f"<={TRAINING_LIMIT}", ratio <= TRAINING_LIMIT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100, help="no-op items per overhead measurement")
    parser.add_argument("--skip-training", action="store_true", help="leave out the training sweep (minutes)")
    parser.add_argument("--repeat", action="store_true",
                        help="also run the --workers 2 sweep again in its database, ordered by the first run's durations")
    args = parser.parse_args()
    print(f"# {os.cpu_count()} CPUs; items run in worker processes started with python -m harness.worker")
    dask_overhead(args.items)
    local_overhead(args.items)
    if not args.skip_training:
        training_ratio(args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
