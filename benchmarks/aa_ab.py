"""Do speed verdicts survive an A/A test? And do they still catch a real 10% slowdown?

Three sides are timed with the default profile's speed sizes, every registered cell plus one
extra cell, ``planted`` (a fused GRU loaded from a plugin file this script writes), which
busy-waits for a fraction of its own forward and backward time when
``RNNBENCH_PLANTED_SLOWDOWN`` says so:

    A1, A2   the same code twice                       -> the A/A pair (A1 vs A2)
    B        the planted cell 10% slower               -> the A/B pair (A1 vs B)

Each round is one fresh process per side, in the order A1, A2, B, A1, A2, B, ...: a round's
median is taken in its own process (so the spread between rounds includes what differs from
one process to the next: memory layout, frequency, neighbours), and the machine's drift over
minutes falls on every side alike instead of on one whole run. The verdict is
``rnnbench compare``'s own (:func:`harness.compare.compare_rows` on rows that carry these
per-process round medians, hence :func:`harness.speed_verdict.rounds_verdict`: ratio of
geometric means, Welch 99% interval on logs, 5% floor).

PASS when the A/A pair calls at most 1 timing in 24 (scaled to the table's size, rounded up)
and the A/B pair calls both timings of the planted cell "slower" while calling no more of
the others than A/A allows. The planted wait is a busy-wait on ``time.perf_counter``
(``time.sleep`` overshoots by tens of microseconds, a large share of a millisecond call).

Usage: python benchmarks/aa_ab.py [--rounds 5] [--cells all] [--keep DIR]
(3 x rounds processes of ~10-20 s each on an idle 2-core machine; a shared, busy machine
makes every process slower and the figures noisier: say so when quoting them).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
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


def measure_once(cells: str, plugin: Path, out: Path) -> None:
    """In a child process: time every speed item once (one round) and write its rows as JSON."""
    import torch

    from harness.names import SPEED
    from harness.plugins import load_plugins
    from harness.runner import SpeedItem, measure_item, plan
    from harness.settings import build_config

    torch.set_num_threads(1)
    registry = load_plugins([str(plugin)])
    config = build_config(registry, cells=tuple(cells.split(",")), tasks=("all",), devices=("cpu",), measures=(SPEED,))
    # One round per process: the round's share of the profile's timing budget.
    config = replace(config, timing=replace(config.timing.per_round(), warmup=config.timing.warmup))
    rows = []
    for item in plan(config, registry):
        if isinstance(item, SpeedItem):
            rows += [row.__dict__ for row in measure_item(item, config, 1)]
    out.write_text(json.dumps(rows, default=str))


def child(side: str, slowdown: float, cells: str, plugin: Path, out: Path) -> None:
    environment = {**os.environ, "RNNBENCH_PLANTED_SLOWDOWN": str(slowdown), "OMP_NUM_THREADS": "1",
                   "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, __file__, "--child", "--cells", cells, "--plugin-file", str(plugin), "--out", str(out)]
    done = subprocess.run(command, env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"aa_ab: side {side} failed ({done.returncode}):\n{done.stderr[-2000:]}")


def as_run(rounds: list[list[dict]]) -> list[dict]:
    """One side's rounds as the rows of one run: pooled samples, and each round's median as a round median."""
    from harness.stats import Summary

    merged = {}
    for rows in rounds:
        for row in rows:
            if row["metric"] not in ("forward_s", "forward_backward_s") or row["status"] != "ok":
                continue
            key = (row["item"], row["metric"])
            entry = merged.setdefault(key, {**row, "stats": {"samples": [], "round_medians": []}})
            entry["stats"]["samples"] += row["stats"]["samples"]
            entry["stats"]["round_medians"].append(row["value"])
    for entry in merged.values():
        entry["stats"].update({k: v for k, v in Summary(tuple(entry["stats"]["samples"])).as_dict().items()
                               if k != "samples"})
        entry["value"] = entry["stats"]["median"]
    return list(merged.values())


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="processes per side (at least 3)")
    parser.add_argument("--cells", default="all", help="cells to time (the planted cell is always added)")
    parser.add_argument("--slowdown", type=float, default=0.10, help="planted slowdown of side B (0.10: 10%%)")
    parser.add_argument("--keep", type=Path, help="keep the plugin file and each process's rows in this folder")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--plugin-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cells = args.cells if args.cells == "all" else f"{args.cells},planted"
    if args.child:
        measure_once(cells, args.plugin_file, args.out)
        return 0
    if args.rounds < 3:
        parser.error("--rounds must be at least 3: rounds_verdict needs 3 rounds a side")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="rnnbench-aa-ab-"))
    folder.mkdir(parents=True, exist_ok=True)
    plugin = folder / "planted.py"
    plugin.write_text(PLANTED_PLUGIN)
    print(f"A/A and A/B speed verdicts: {args.rounds} rounds a side, one process each, sides alternating; in {folder}")
    started = time.perf_counter()
    rounds = {side: [] for side, _ in SIDES}
    for index in range(args.rounds):
        for side, slowdown in SIDES:
            out = folder / f"{side}-round{index}.json"
            child(side, args.slowdown if slowdown is None else slowdown, cells, plugin, out)
            rounds[side].append(json.loads(out.read_text()))
        print(f"  round {index + 1}/{args.rounds} done at {time.perf_counter() - started:.0f} s", flush=True)
    from harness.compare import compare_rows

    runs = {side: as_run(found) for side, found in rounds.items()}
    ok = report(compare_rows(runs["A1"], runs["A2"]), compare_rows(runs["A1"], runs["B"]), args.slowdown)
    print(f"({time.perf_counter() - started:.0f} s in all)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
