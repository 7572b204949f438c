"""CPU targets for the scan forms of mingru, minlstm and lru: scan ÷ step loop of the same cell.

Prints one line per target, ``NAME value=X target=Y PASS|FAIL`` (as ``cpu_ratios.py``), and
``#`` lines with what was measured, then exits 0.

1. ``<cell>_scan_vs_step``: forward+backward median of the cell's scan module (``module`` in
   the speed table) ÷ that of its step form unrolled by the harness (``unrolled``), the same
   parameters, at B=8, H=256, T=4096, I=8 (the speed table's default input size), float32,
   one thread, through :func:`harness.speed.measure_speed` (backward of a last-step loss into
   every parameter). Target <= 0.2. Measured in interleaved rounds (scan and step once per
   round, the first of the two alternating) and the value is the median of the per-round
   ratios, which are printed too. The ``#`` line also gives the peak memory of each form, as
   the speed table measures it (rise of peak RSS during one forward+backward call).
2. Crossover (``#`` lines, no target): forward+backward of scan and step at T = 16, 64, …,
   16384 (3 calls each, median); the crossover is the shortest T from which the scan is
   faster at every longer T measured. The sweep stops once the scan has won at two lengths
   in a row (the step loop only grows linearly from there), unless ``--full-sweep``.

Run: python benchmarks/scan_ratios.py [--rounds 3] [--cells mingru,minlstm,lru] [--full-sweep]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("RNNBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")

import torch  # noqa: E402

from harness import env  # noqa: E402
from harness.cells import build_impl  # noqa: E402
from harness.plugins import load_plugins  # noqa: E402
from harness.speed import TimingConfig, measure_speed  # noqa: E402
from targets import report  # noqa: E402  (benchmarks/targets.py, beside this script)

CELLS = ("mingru", "minlstm", "lru")
BATCH, INPUTS, HIDDEN, SEQ_LEN = 8, 8, 256, 4096
TARGET = 0.2
ROUND_TIMING = TimingConfig(warmup=1, min_repeats=3, max_repeats=5, min_time_s=0.0)  # the step loop takes seconds a call
SWEEP_LENGTHS = (16, 64, 256, 1024, 4096, 16384)


def both_forms(registry, name: str, inputs: int, hidden: int) -> dict[str, torch.nn.Module]:
    """The scan module ("module") and its step form, the reference ("unrolled"), built under one
    seed (same parameters)."""
    spec = registry.cell(name)
    forms = {}
    for label, impl in (("module", spec.primary_impl), ("unrolled", spec.reference_impl)):
        torch.manual_seed(0)
        forms[label] = build_impl(spec, impl, inputs, hidden)
    return forms


def scan_vs_step(forms: dict, rounds: int) -> tuple[list[float], dict[str, float], dict[str, float | None]]:
    """Per-round ratios scan/step, median seconds and peak memory bytes of each form."""
    seconds = {impl: [] for impl in forms}
    peaks: dict[str, float | None] = {}
    order = list(forms)
    for index in range(rounds):
        for impl in order[index % 2:] + order[:index % 2]:  # alternate which form goes first
            result = measure_speed(forms[impl], BATCH, SEQ_LEN, INPUTS, "cpu", ROUND_TIMING)
            seconds[impl].append(result.forward_backward.median)
            peaks[impl] = result.peak_memory_bytes
    ratios = [s / u for s, u in zip(seconds["module"], seconds["unrolled"])]
    return ratios, {impl: statistics.median(v) for impl, v in seconds.items()}, peaks


def forward_backward_s(module, seq_len: int, repeats: int = 3) -> float:
    """Median seconds of forward + backward of a last-step loss into every parameter."""
    x = torch.randn(seq_len, BATCH, INPUTS, generator=torch.Generator().manual_seed(0))
    params = list(module.parameters())
    samples = []
    for _ in range(repeats + 1):  # the first call warms up
        started = time.perf_counter()
        y, _ = module(x, None)
        torch.autograd.grad(y[-1].sum(), params)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples[1:])


def crossover(forms: dict, lengths, full: bool) -> tuple[list[tuple[int, float, float]], int | None]:
    """``(T, scan_s, step_s)`` per measured length, and the crossover T (None: the scan never won)."""
    rows, wins_in_a_row = [], 0
    for seq_len in lengths:
        scan_s, step_s = forward_backward_s(forms["module"], seq_len), forward_backward_s(forms["unrolled"], seq_len)
        rows.append((seq_len, scan_s, step_s))
        wins_in_a_row = wins_in_a_row + 1 if scan_s < step_s else 0
        if wins_in_a_row == 2 and not full:
            break
    first_win = None
    for seq_len, scan_s, step_s in reversed(rows):
        if scan_s >= step_s:
            break
        first_win = seq_len
    return rows, first_win


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f} MiB"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cells", default=",".join(CELLS))
    parser.add_argument("--full-sweep", action="store_true")
    parser.add_argument("--no-sweep", action="store_true")
    args = parser.parse_args(argv)
    threads = env.set_threads(1)
    print(f"# {env.cpu_model()}, torch {torch.__version__}, threads {threads}; B={BATCH}, I={INPUTS}, H={HIDDEN}, "
          f"T={SEQ_LEN}, float32, forward+backward")
    registry = load_plugins()
    for name in [c.strip() for c in args.cells.split(",") if c.strip()]:
        forms = both_forms(registry, name, INPUTS, HIDDEN)
        ratios, medians, peaks = scan_vs_step(forms, args.rounds)
        print(f"# {name}: scan {medians['module'] * 1e3:.0f} ms, step loop {medians['unrolled'] * 1e3:.0f} ms "
              f"(medians of {args.rounds} rounds); peak memory scan {_mib(peaks['module'])}, step loop {_mib(peaks['unrolled'])}")
        print(f"# {name}_scan_vs_step per round: " + " ".join(f"{r:.3f}" for r in ratios))
        ratio = statistics.median(ratios)
        report(f"{name}_scan_vs_step", ratio, f"<={TARGET}", ratio <= TARGET)
        if not args.no_sweep:
            rows, first_win = crossover(forms, SWEEP_LENGTHS, args.full_sweep)
            cells = ", ".join(f"T={t}: {s * 1e3:.1f}/{u * 1e3:.1f} ms" for t, s, u in rows)
            print(f"# {name} scan/step sweep: {cells}; scan faster from T={first_win}" if first_win
                  else f"# {name} scan/step sweep: {cells}; the scan did not win at the lengths measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
