"""Do speed verdicts survive an A/A test? And do they still catch a real 10% slowdown?

Three sides are timed with the default profile's speed sizes, every registered cell plus one
extra cell, ``planted`` (a fused GRU loaded from a plugin file this script writes), which
busy-waits for a fraction of its own forward and backward time when
``RNNBENCH_PLANTED_SLOWDOWN`` says so:

    A1, A2   the same code twice                       -> the A/A pair (A1 vs A2)
    B        the planted cell 10% slower               -> the A/B pair (A1 vs B)

Each side is timed in ``--runs`` fresh processes, in the order A1, A2, B, A1, A2, B, ...;
each process times every speed item as ``rnnbench run --measure speed`` does (the default
profile's 5 rounds, spread over passes) and stores its rows as one run of a results database. A side is then
compared as runs pooled, one value per run (the median of its round minima), exactly as
``rnnbench compare 1,4,7,... 2,5,8,...`` does; the spread between runs includes what differs
from one process and one minute to the next (memory layout, frequency, neighbours, the host's
slow spells), and the machine's drift falls on every side alike instead of on one whole run. The verdict is
``rnnbench compare``'s own (:func:`harness.compare.compare_rows` on rows that carry these
per-process round minima, hence :func:`harness.speed_verdict.rounds_verdict`: Hodges-Lehmann
estimate of B/A, its 99% rank interval, 5% floor) — the same as ``rnnbench compare`` on runs
pooled per side, one value per run.

PASS when the A/A pair calls at most 1 timing in 24 (scaled to the table's size, rounded up)
and the A/B pair calls both timings of the planted cell "slower" while calling no more of
the others than A/A allows. The planted wait is a busy-wait on ``time.perf_counter``
(``time.sleep`` overshoots by tens of microseconds, a large share of a millisecond call).

Usage: python benchmarks/aa_ab.py [--runs 10] [--cells all] [--keep DIR]
(3 x runs processes of ~10-20 s each on an idle 2-core machine; a shared, busy machine
makes every process slower and the figures noisier: say so when quoting them).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLANTED_PLUGIN = '''
"""A fused GRU that, when RNNBENCH_PLANTED_SLOWDOWN=f, spends f times its own forward time and
f times its own backward time busy-waiting: a planted slowdown of about f for benchmarks/aa_ab.py."""
import os
import time

import torch
from torch import nn

from harness import hookimpl

SLOWDOWN = float(os.environ.get("RNNBENCH_PLANTED_SLOWDOWN", "0"))


def busy_wait(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class MarkOutput(torch.autograd.Function):
    """Identity; its backward runs first in the backward pass and notes the time."""

    @staticmethod
    def forward(ctx, y, clock):
        ctx.clock = clock
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad):
        ctx.clock["backward_started"] = time.perf_counter()
        return grad, None


class DelayAtStart(torch.autograd.Function):
    """Identity on the initial state; its backward runs last and waits SLOWDOWN x the backward so far."""

    @staticmethod
    def forward(ctx, h0, clock):
        ctx.clock = clock
        return h0.view_as(h0)

    @staticmethod
    def backward(ctx, grad):
        busy_wait(SLOWDOWN * (time.perf_counter() - ctx.clock["backward_started"]))
        return grad, None


class PlantedGRU(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size)
        # a learnable initial state, so that the backward pass reaches DelayAtStart after the GRU's own
        self.h0 = nn.Parameter(torch.zeros(1, 1, hidden_size))

    def forward(self, x, state=None):
        started = time.perf_counter()
        clock = {}
        h0 = state if state is not None else self.h0.expand(1, x.shape[1], -1).contiguous()
        y, h = self.gru(x, DelayAtStart.apply(h0, clock))
        y = MarkOutput.apply(y, clock)
        busy_wait(SLOWDOWN * (time.perf_counter() - started))
        return y, h


@hookimpl
def register_cells(register):
    register("planted", PlantedGRU, backend="torch", summary="GRU with a planted slowdown (benchmarks/aa_ab.py)")
'''

AA_ALLOWED_PER_24 = 1
SIDES = (("A1", 0.0), ("A2", 0.0), ("B", None))  # None: the planted slowdown


def measure_once(cells: str, plugin: Path, db: Path, side: str) -> None:
    """In a child process: time every speed item as ``rnnbench run --measure speed`` does (the profile's rounds)
    and store the rows as one run of ``db``."""
    import torch

    from harness.names import SPEED
    from harness.plugins import load_plugins
    from harness.runner import SpeedItem, measure_item, plan
    from harness.settings import build_config
    from harness.store import ResultStore

    torch.set_num_threads(1)
    registry = load_plugins([str(plugin)])
    config = build_config(registry, cells=tuple(cells.split(",")), tasks=("all",), devices=("cpu",), measures=(SPEED,))
    with ResultStore(db) as store:
        run_id = store.start_run(["aa_ab.py", "side", side], config, {"hostname": "aa_ab"}, plugin_files=[plugin])
        for item in plan(config, registry):
            if isinstance(item, SpeedItem):
                store.add_rows(run_id, measure_item(item, config, 1))
        store.finish_run(run_id, "complete")


def child(side: str, slowdown: float, cells: str, plugin: Path, db: Path) -> None:
    environment = {**os.environ, "RNNBENCH_PLANTED_SLOWDOWN": str(slowdown), "OMP_NUM_THREADS": "1",
                   "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, __file__, "--child", side, "--cells", cells, "--plugin-file", str(plugin), "--db", str(db)]
    done = subprocess.run(command, env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"aa_ab: side {side} failed ({done.returncode}):\n{done.stderr[-2000:]}")


def called(comparison, cell: str | None = None, exclude: str | None = None) -> list:
    return [s for s in comparison.speed if s.significant and (cell is None or s.cell == cell)
            and (exclude is None or s.cell != exclude)]


def report(aa, ab, slowdown: float) -> bool:
    timings = len(aa.compared())
    allowed = math.ceil(AA_ALLOWED_PER_24 * timings / 24)
    aa_called, planted_called = called(aa), called(ab, cell="planted")
    ab_others = called(ab, exclude="planted")
    planted = [s for s in ab.speed if s.cell == "planted" and s.ratio is not None]
    ratios = [s.ratio for s in aa.compared()]
    print(f"\nA/A: {len(aa_called)} of {timings} timings called (allowed: {allowed}); B/A from {min(ratios):.3f} to "
          f"{max(ratios):.3f}")
    for s in aa_called:
        print(f"  called: {s.cell} {s.impl} {s.timing}: {s.verdict} [{s.low:.3f}, {s.high:.3f}]")
    print(f"A/B, planted {slowdown:.0%} slower: "
          + "; ".join(f"{s.timing} B/A {s.ratio:.3f} [{s.low:.3f}, {s.high:.3f}] -> {s.verdict}" for s in planted))
    print(f"  other timings called: {len(ab_others)} of {len(ab.compared()) - len(planted)}")
    for s in ab_others:
        print(f"  called: {s.cell} {s.impl} {s.timing}: {s.verdict}")
    aa_pass = len(aa_called) <= allowed
    ab_pass = len(planted) == 2 and all(s.slower for s in planted_called) and len(planted_called) == 2 \
        and len(ab_others) <= allowed
    print(f"\nA/A: {'PASS' if aa_pass else 'FAIL'}   A/B: {'PASS' if ab_pass else 'FAIL'}")
    return aa_pass and ab_pass


def print_single_runs(store, runs: dict[str, list[int]]) -> None:
    """What one run a side would have said: each A1 run against the A2 and the B run of its round."""
    from harness.compare import compare_runs

    aa_calls = aa_total = ab_called = ab_total = 0
    for a1, a2, b in zip(runs["A1"], runs["A2"], runs["B"]):
        aa = compare_runs(store, a1, a2).compared()
        aa_calls += sum(s.significant for s in aa)
        aa_total += len(aa)
        planted = [s for s in compare_runs(store, a1, b).compared() if s.cell == "planted"]
        ab_called += sum(s.slower for s in planted)
        ab_total += len(planted)
    print(f"One run a side (each round's A1 against its A2 and its B): A/A {aa_calls} of {aa_total} timings called; "
          f"planted slowdown called in {ab_called} of {ab_total}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs (processes) per side (at least 5; 20 on a noisy machine)")
    parser.add_argument("--cells", default="all", help="cells to time (the planted cell is always added)")
    parser.add_argument("--slowdown", type=float, default=0.10, help="planted slowdown of side B (0.10: 10%%)")
    parser.add_argument("--keep", type=Path, help="keep the plugin file and each process's rows in this folder")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--plugin-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cells = args.cells if args.cells == "all" else f"{args.cells},planted"
    if args.child:
        measure_once(cells, args.plugin_file, args.db, args.child)
        return 0
    if args.runs < 5:
        parser.error("--runs must be at least 5: a 99% rank interval needs 5 runs a side")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="rnnbench-aa-ab-"))
    folder.mkdir(parents=True, exist_ok=True)
    plugin = folder / "planted.py"
    plugin.write_text(PLANTED_PLUGIN)
    db = folder / "results.sqlite"
    print(f"A/A and A/B speed verdicts: {args.runs} runs a side, one process each, sides alternating; in {db}")
    started = time.perf_counter()
    for index in range(args.runs):
        for side, slowdown in SIDES:
            child(side, args.slowdown if slowdown is None else slowdown, cells, plugin, db)
        print(f"  runs {index + 1}/{args.runs} done at {time.perf_counter() - started:.0f} s", flush=True)
    from harness.compare import compare_runs
    from harness.store import ResultStore

    with ResultStore(db) as store:
        first = store.latest_run_id() - len(SIDES) * args.runs + 1  # this session's runs are the newest 3 x runs
        runs = {side: [first + index * len(SIDES) + k for index in range(args.runs)] for k, (side, _) in enumerate(SIDES)}
        aa, ab = compare_runs(store, runs["A1"], runs["A2"]), compare_runs(store, runs["A1"], runs["B"])
        for name, other in (("A/A", "A2"), ("A/B", "B")):
            print(f"{name}: rnnbench compare --db {db} {','.join(map(str, runs['A1']))} {','.join(map(str, runs[other]))}")
        ok = report(aa, ab, args.slowdown)
        print_single_runs(store, runs)
    print(f"({time.perf_counter() - started:.0f} s in all)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
