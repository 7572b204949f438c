"""Do speed verdicts survive an A/A test? And do they still catch a real 10% slowdown?

Four ``rnnbench run --cells all --measure speed`` processes on this machine, with one extra
cell, ``planted`` (a fused GRU, loaded from a plugin file this script writes), that busy-waits
for a fraction of its own forward and backward time when ``RNNBENCH_PLANTED_SLOWDOWN`` says so:

    A1, A2   the same code twice                          -> A/A pair (compare A1 A2)
    A3, B    B with the planted cell 10% slower           -> A/B pair (compare A3 B)

The processes alternate between the pairs' sides (A, A, A, B in time), so slow drift of the
machine falls on both sides of each pair alike (harness.speed_verdict recommends this).
Verdicts come from ``rnnbench compare``'s library (:func:`harness.compare.compare_runs`):
the per-round medians of each timing, a Welch 99% interval on logs and a 5% floor.

PASS when the A/A pair calls at most 1 timing in 24 (scaled to the table's size, rounded
up) and the A/B pair calls both of the planted cell's timings "slower" and at most as many
others as A/A allows. The sleep is a busy-wait on ``time.perf_counter`` (``time.sleep``
overshoots by tens of microseconds, a large share of a millisecond-long call).

Usage: python benchmarks/aa_ab.py [--profile default] [--keep DIR]
(about 4 x the speed part of a default run: ~3-4 minutes on 2 cores, more under load).
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


def run_speed(db: Path, plugin: Path, profile: str, slowdown: float, label: str) -> int:
    """One ``rnnbench run`` process measuring speed; returns its run id."""
    environment = {**os.environ, "RNNBENCH_PLANTED_SLOWDOWN": str(slowdown), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "harness.cli", "run", "--cells", "all", "--measure", "speed", "--device", "cpu",
               "--profile", profile, "--plugin", str(plugin), "--db", str(db), "--out", str(db.parent / label),
               "--workers", "1"]
    started = time.perf_counter()
    done = subprocess.run(command, env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"aa_ab: {label} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    print(f"  {label}: measured in {time.perf_counter() - started:.0f} s", flush=True)
    from harness.store import ResultStore

    with ResultStore(db, create=False) as store:
        return store.latest_run_id()


def called(comparison, cell: str | None = None, exclude: str | None = None) -> list:
    return [s for s in comparison.speed if s.significant and (cell is None or s.cell == cell)
            and (exclude is None or s.cell != exclude)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default", help="rnnbench profile whose speed settings are used")
    parser.add_argument("--keep", type=Path, help="keep the database and reports in this folder")
    parser.add_argument("--slowdown", type=float, default=0.10, help="planted slowdown of run B (0.10: 10%%)")
    args = parser.parse_args()
    from harness.compare import compare_runs
    from harness.store import ResultStore

    folder = args.keep or Path(tempfile.mkdtemp(prefix="rnnbench-aa-ab-"))
    folder.mkdir(parents=True, exist_ok=True)
    plugin = folder / "planted.py"
    plugin.write_text(PLANTED_PLUGIN)
    db = folder / "results.sqlite"
    print(f"A/A and A/B speed verdicts, profile {args.profile}, database {db}")
    a1 = run_speed(db, plugin, args.profile, 0.0, "A1")
    a2 = run_speed(db, plugin, args.profile, 0.0, "A2")
    a3 = run_speed(db, plugin, args.profile, 0.0, "A3")
    b = run_speed(db, plugin, args.profile, args.slowdown, "B")
    with ResultStore(db, create=False) as store:
        aa, ab = compare_runs(store, a1, a2), compare_runs(store, a3, b)
    timings = len(aa.compared())
    allowed = math.ceil(AA_ALLOWED_PER_24 * timings / 24)
    aa_called = called(aa)
    planted_called = called(ab, cell="planted")
    ab_others = called(ab, exclude="planted")
    planted = [s for s in ab.speed if s.cell == "planted" and s.ratio is not None]
    print(f"\nA/A (runs {a1}, {a2}): {len(aa_called)} of {timings} timings called (allowed: {allowed}); "
          f"B/A ranged {min(s.ratio for s in aa.compared()):.3f}-{max(s.ratio for s in aa.compared()):.3f}")
    for s in aa_called:
        print(f"  called: {s.cell} {s.impl} {s.timing}: {s.verdict} [{s.low:.3f}, {s.high:.3f}]")
    print(f"A/B (runs {a3}, {b}, planted {args.slowdown:.0%} slower): planted cell "
          + "; ".join(f"{s.timing} B/A {s.ratio:.3f} [{s.low:.3f}, {s.high:.3f}] -> {s.verdict}" for s in planted))
    print(f"  other timings called: {len(ab_others)} of {len(ab.compared()) - len(planted)}")
    for s in ab_others:
        print(f"  called: {s.cell} {s.impl} {s.timing}: {s.verdict}")
    aa_pass = len(aa_called) <= allowed
    ab_pass = len(planted_called) == len(planted) == 2 and all(s.slower for s in planted_called) and len(ab_others) <= allowed
    print(f"\nA/A: {'PASS' if aa_pass else 'FAIL'}   A/B: {'PASS' if ab_pass else 'FAIL'}")
    return 0 if aa_pass and ab_pass else 1


if __name__ == "__main__":
    sys.exit(main())
