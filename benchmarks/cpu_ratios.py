"""CPU speed targets, measured as ratios inside one process (this machine is shared and noisy).

Prints one line per target, ``NAME value=X target=Y PASS|FAIL``, then exits 0.

1. numpy_vs_torch_rnn: numpy-rnn forward+backward median / torch-rnn fused, at
   B=32, I=8, H=128, T=1000, float32, one thread. Target <= 0.6.
2. numpy_vs_matmul_floor: numpy-rnn's NumPy forward+backward (the cell's own code, called
   directly with the output gradient of a last-step loss) / the time of 3*T products of
   (B x H)(H x H) in NumPy (the work a tanh RNN cannot avoid). Target <= 1.2. Also reported:
   the same through the harness (torch autograd adds its materialised (T, B, H) output
   gradient, about 2 ms here).
3. harness_overhead_lstm: the harness's median for lstm fused forward+backward at B=32,
   I=8, H=128, T=100 / a bare perf_counter loop over the same module. Target within 5%
   (ratio <= 1.05).

Run: python benchmarks/cpu_ratios.py
"""

from __future__ import annotations

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
from harness.speed import TimingConfig, measure_speed  # noqa: E402
from targets import report  # noqa: E402  (benchmarks/targets.py, beside this script)

TIMING = TimingConfig(warmup=3, min_repeats=15, max_repeats=200, min_time_s=1.5)


def matmul_floor_s(batch: int, hidden: int, products: int, repeats: int = 7) -> float:
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


def numpy_bptt_s(batch: int, inputs: int, hidden: int, seq_len: int, repeats: int = 15) -> float:
    """The NumPy cell's own forward and hand-written backward (loss on the last step), no torch."""
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

    for _ in range(3):
        forward_backward()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        forward_backward()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def bare_loop_s(module, x, repeats: int) -> float:
    params = list(module.parameters())
    for _ in range(3):
        y, _ = module(x)
        torch.autograd.grad(y[-1].sum(), params)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        y, _ = module(x)
        torch.autograd.grad(y[-1].sum(), params)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> int:
    threads = env.set_threads(1)
    print(f"# {env.cpu_model()}, torch {torch.__version__}, NumPy {np.__version__} ({env.blas_info()}), threads {threads}")
    registry = load_plugins()
    batch, inputs, hidden, seq_len = 32, 8, 128, 1000
    speeds = {}
    for name in ("numpy-rnn", "torch-rnn"):
        torch.manual_seed(0)
        cell = build_cell(registry.cell(name), inputs, hidden)
        speeds[name] = measure_speed(cell, batch, seq_len, inputs, "cpu", TIMING).forward_backward.median
    floor = matmul_floor_s(batch, hidden, 3 * seq_len)
    direct = numpy_bptt_s(batch, inputs, hidden, seq_len)
    print(f"# T={seq_len}: numpy-rnn {speeds['numpy-rnn'] * 1e3:.1f} ms through the harness "
          f"({direct * 1e3:.1f} ms for its NumPy forward+backward alone), torch-rnn {speeds['torch-rnn'] * 1e3:.1f} ms, "
          f"3T-product floor {floor * 1e3:.1f} ms")
    ratio = speeds["numpy-rnn"] / speeds["torch-rnn"]
    report("numpy_vs_torch_rnn", ratio, "<=0.6", ratio <= 0.6)
    ratio = direct / floor
    report("numpy_vs_matmul_floor", ratio, "<=1.2", ratio <= 1.2)
    # The same through torch autograd: adds torch's materialised (T, B, H) output gradient.
    ratio = speeds["numpy-rnn"] / floor
    report("numpy_harness_vs_matmul_floor", ratio, "<=1.2(reported)", ratio <= 1.2)

    torch.manual_seed(0)
    lstm = build_cell(registry.cell("lstm"), inputs, hidden)
    x = torch.randn(100, batch, inputs)
    # Interleave harness and bare measurements so drift on a shared machine hits both alike.
    harness_s, bare_s = [], []
    for _ in range(5):
        harness_s.append(measure_speed(lstm, batch, 100, inputs, "cpu", TimingConfig(warmup=3, min_repeats=20, max_repeats=40, min_time_s=0.3)).forward_backward.median)
        bare_s.append(bare_loop_s(lstm, x, 20))
    ratio = statistics.median(harness_s) / statistics.median(bare_s)
    print(f"# lstm T=100: harness {statistics.median(harness_s) * 1e3:.2f} ms, bare loop {statistics.median(bare_s) * 1e3:.2f} ms")
    report("harness_overhead_lstm", ratio, "<=1.05", ratio <= 1.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
