"""CPU speed targets, measured as ratios inside one process (this machine is shared and noisy).

Prints one line per target, ``NAME value=X target=Y PASS|FAIL``, then exits 0.

1. numpy_vs_torch_rnn: numpy-rnn forward+backward median / torch-rnn fused, at
   B=32, I=8, H=128, T=1000, float32, one thread. Target <= 0.6.
2. numpy_vs_matmul_floor: numpy-rnn's NumPy forward+backward (the cell's own code, called
   directly with the output gradient of a last-step loss) / the time of 3*T products of
   (B x H)(H x H) in NumPy (the work a tanh RNN cannot avoid). Target <= 1.2.
   numpy_harness_vs_matmul_floor: the same through the harness, i.e. the speed table's
   number, with torch autograd and the adapter between torch and NumPy. Target <= 1.2.
3. harness_overhead_lstm: the harness's median for lstm fused forward+backward at B=32,
   I=8, H=128, T=100 / a bare perf_counter loop over the same module. Target within 5%
   (ratio <= 1.05).
4. <cell>_fast_vs_step (issue 12): the cell's registered fast form (chunked or fused scan,
   chunkwise-parallel mLSTM) / its step loop, forward+backward at B=8, I=8, H=256, T=4096,
   float32, one thread, timed in process CPU time in interleaved rounds
   (``benchmarks/scan_forms.py`` says how). Targets <= 0.2 for mingru, minlstm, lru; <= 0.5 for
   mamba and mlstm. ``#`` lines give the peak memory of both forms and the crossover T from a
   coarse sweep (T = 64 … 4096; ``--full``: 64 … 16384 in powers of two).

Targets 1 and 2 are measured in 5 interleaved rounds (each quantity once per round) and
each value is the median of the 5 per-round ratios, which are printed too; target 3 is
measured the same way. Target 4 uses 5 rounds too (``--rounds``): on this project's shared 2-core
VMs one round in three or four can land in a slow spell of the host, and a median of three
then moves with it (mingru's per-round ratios 0.143, 0.189, 0.180 in one quiet run).

Run: python benchmarks/cpu_ratios.py [--only numpy|scan] [--cells mingru,...] [--rounds 5] [--full]
(a few minutes; ``--full`` adds the step loops at T = 16384, minutes more)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("RNNBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from harness import env  # noqa: E402
from harness.cells import build_cell  # noqa: E402
from harness.plugins import load_plugins  # noqa: E402
from harness.speed import TimingConfig, measure_speed, steady_allocator  # noqa: E402
import scan_forms  # noqa: E402  (benchmarks/scan_forms.py, beside this script)
from targets import report  # noqa: E402  (benchmarks/targets.py, beside this script)

ROUNDS = 5  # each target's inputs are measured once per round, interleaved, and paired by round
ROUND_TIMING = TimingConfig(warmup=2, min_repeats=10, max_repeats=100, min_time_s=0.5)


def matmul_floor_s(batch: int, hidden: int, products: int, repeats: int = 5) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((batch, hidden), dtype=np.float32)
    u = rng.standard_normal((hidden, hidden), dtype=np.float32)
    out = np.empty((batch, hidden), dtype=np.float32)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(products):
            np.matmul(a, u, out=out)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def layout_report(batch: int, hidden: int, repeats: int = 2000) -> str:
    """What numpy-rnn's per-step products multiply, and what the other layout would cost here.

    The forward multiplies ``h_{t-1}`` by a contiguous copy of ``U^T`` (BLAS "NN"); a transposed
    view ("NT") runs a different OpenBLAS kernel, about twice as slow for these shapes on some
    CPUs. The backward's per-step product ``da_t U`` is NN as well; its blocked weight
    gradients ``da^T h`` contract over B * 32 rows, where the transposed operand is packed anyway.
    """
    rng = np.random.default_rng(0)
    h = rng.standard_normal((batch, hidden), dtype=np.float32)
    u = rng.standard_normal((hidden, hidden), dtype=np.float32)
    out = np.empty((batch, hidden), dtype=np.float32)
    layouts = {"NN (used)": np.ascontiguousarray(u.T), "NT (view)": u.T}
    times_us = {}
    for _ in range(3):  # interleaved rounds, median of each
        for name, operand in layouts.items():
            started = time.perf_counter()
            for _ in range(repeats):
                np.dot(h, operand, out)
            times_us.setdefault(name, []).append((time.perf_counter() - started) / repeats * 1e6)
    shown = ", ".join(f"{name} {statistics.median(values):.1f} us" for name, values in times_us.items())
    return f"# operand layouts, per-step (B={batch} x H={hidden})(H x H) product: {shown}"


def numpy_bptt(batch: int, inputs: int, hidden: int, seq_len: int):
    """A function timing the NumPy cell's own forward and hand-written backward (loss on the
    last step, no torch): median seconds over ``repeats`` calls."""
    from plugins.numpy_rnn import NumpyTanhRNN

    torch.manual_seed(0)
    cell = NumpyTanhRNN(inputs, hidden)
    cell.needs_input_grad = False  # as in the harness's speed measurement: x needs no gradient
    x = np.random.default_rng(0).standard_normal((seq_len, batch, inputs), dtype=np.float32)
    dy = np.zeros((seq_len, batch, hidden), dtype=np.float32)
    dy[-1] = 1.0  # d(y[-1].sum())/dy

    def forward_backward():
        _, _, cache = cell.forward(x, None)
        cell.backward(cache, dy, None)

    def median_s(repeats: int = 11) -> float:
        for _ in range(2):
            forward_backward()
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            forward_backward()
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    return median_s


def bare_loop_s(module, x, repeats: int) -> float:
    """A hand-written loop doing what the harness times: forward, then backward of y[-1].sum()
    with its output gradient made once outside the timed calls."""
    params = list(module.parameters())
    grad_y = torch.zeros(x.shape[0], x.shape[1], module.hidden_size)
    grad_y[-1] = 1.0
    for _ in range(3):
        y, _ = module(x)
        torch.autograd.grad(y, params, grad_outputs=grad_y)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        y, _ = module(x)
        torch.autograd.grad(y, params, grad_outputs=grad_y)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def scan_targets(registry, cells: list[str], rounds: int, full: bool) -> None:
    """Target 4: each modern cell's fast form against its step loop, peak memory, crossover."""
    for name in cells:
        forms = scan_forms.build_forms(registry, name, "cpu")
        result = scan_forms.measure_forms(forms, scan_forms.SEQ_LEN, rounds, "cpu")
        for line in scan_forms.describe(name, result):
            print(line)
        limit = scan_forms.CPU_TARGETS[name]
        report(f"{name}_fast_vs_step", result.ratio, f"<={limit}", result.ratio <= limit)
        lengths = scan_forms.FULL_LENGTHS if full else scan_forms.COARSE_LENGTHS
        print(scan_forms.describe_sweep(name, scan_forms.sweep(forms, lengths, "cpu", {scan_forms.SEQ_LEN: result})), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("numpy", "scan"), help="run only targets 1-3 (numpy) or 4 (scan)")
    parser.add_argument("--cells", default=",".join(scan_forms.CPU_TARGETS), help="cells for target 4")
    parser.add_argument("--rounds", type=int, default=5, help="rounds for target 4")
    parser.add_argument("--full", action="store_true", help="target 4's crossover sweep up to T=16384")
    args = parser.parse_args(argv)
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    unknown = [c for c in cells if c not in scan_forms.CPU_TARGETS]
    if unknown:
        parser.error(f"no scan target for {', '.join(unknown)}; known: {', '.join(scan_forms.CPU_TARGETS)}")
    threads = env.set_threads(1)
    steady = steady_allocator()  # the harness times with fixed malloc thresholds; so do these targets
    print(f"# {env.cpu_model()}, torch {torch.__version__}, NumPy {np.__version__} ({env.blas_info()}), threads {threads}"
          f"{', malloc thresholds fixed' if steady else ''}")
    registry = load_plugins()
    if args.only != "scan":
        numpy_targets(registry)
    if args.only != "numpy":
        scan_targets(registry, cells, args.rounds, args.full)
    return 0


def numpy_targets(registry) -> None:
    """Targets 1-3."""
    batch, inputs, hidden, seq_len = 32, 8, 128, 1000
    print(layout_report(batch, hidden))
    cells = {}
    for name in ("numpy-rnn", "torch-rnn"):
        torch.manual_seed(0)
        cells[name] = build_cell(registry.cell(name), inputs, hidden)
    direct_s = numpy_bptt(batch, inputs, hidden, seq_len)
    # Every quantity once per round, rounds interleaved: drift on a shared machine then moves
    # numerator and denominator together, and the value is the median of the paired ratios.
    rounds = []
    measurements = {
        **{name: (lambda cell=cell: measure_speed(cell, batch, seq_len, inputs, "cpu", ROUND_TIMING).forward_backward.median)
           for name, cell in cells.items()},
        "floor": lambda: matmul_floor_s(batch, hidden, 3 * seq_len),
        "direct": direct_s,
    }
    order = list(measurements)
    for index in range(ROUNDS):
        shift = index % len(order)  # a different first measurement each round: no fixed position effects
        rounds.append({name: measurements[name]() for name in order[shift:] + order[:shift]})
    typical = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print(f"# T={seq_len}, medians of {ROUNDS} rounds: numpy-rnn {typical['numpy-rnn'] * 1e3:.1f} ms through the harness "
          f"({typical['direct'] * 1e3:.1f} ms for its NumPy forward+backward alone), torch-rnn {typical['torch-rnn'] * 1e3:.1f} ms, "
          f"3T-product floor {typical['floor'] * 1e3:.1f} ms")
    targets = [
        ("numpy_vs_torch_rnn", "numpy-rnn", "torch-rnn", "<=0.6", 0.6),
        ("numpy_vs_matmul_floor", "direct", "floor", "<=1.2", 1.2),
        # The same through the harness: torch autograd and the adapter between torch and NumPy.
        ("numpy_harness_vs_matmul_floor", "numpy-rnn", "floor", "<=1.2", 1.2),
    ]
    for name, numerator, denominator, target, limit in targets:
        ratios = [r[numerator] / r[denominator] for r in rounds]
        print(f"# {name} per round: " + " ".join(f"{value:.3f}" for value in ratios))
        ratio = statistics.median(ratios)
        report(name, ratio, target, ratio <= limit)

    torch.manual_seed(0)
    lstm = build_cell(registry.cell("lstm"), inputs, hidden)
    x = torch.randn(100, batch, inputs)
    # Interleave harness and bare measurements so drift on a shared machine hits both alike.
    harness_s, bare_s = [], []
    for _ in range(ROUNDS):
        harness_s.append(measure_speed(lstm, batch, 100, inputs, "cpu", TimingConfig(warmup=3, min_repeats=20, max_repeats=40, min_time_s=0.3)).forward_backward.median)
        bare_s.append(bare_loop_s(lstm, x, 20))
    print(f"# lstm T=100, medians of {ROUNDS} rounds: harness {statistics.median(harness_s) * 1e3:.2f} ms, "
          f"bare loop {statistics.median(bare_s) * 1e3:.2f} ms")
    ratios = [h / b for h, b in zip(harness_s, bare_s)]
    print("# harness_overhead_lstm per round: " + " ".join(f"{value:.3f}" for value in ratios))
    ratio = statistics.median(ratios)
    report("harness_overhead_lstm", ratio, "<=1.05", ratio <= 1.05)


if __name__ == "__main__":
    sys.exit(main())
