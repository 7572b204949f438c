"""CPU speed of the parallel forms of ``mamba`` and ``mlstm`` against their step loops.

For each cell, forward+backward (loss y[-1].sum(), as the speed table) at B=8, I=H=256,
T=4096, float32, one thread: the registered sequence module (Mamba's chunked scan, the
mLSTM's chunkwise-parallel form) and ``Unrolled(unroll(module))``, its step form over the same
parameters. Prints one line per target, ``NAME value=X target=Y PASS|FAIL``:

1. mamba_scan_vs_step: chunked scan / step loop. Target <= 0.5 (issue 12).
2. mlstm_parallel_vs_step: chunkwise parallel / step loop. Target <= 0.5 (the same bar).

Each form is timed once per round after one warm-up call, rounds interleaved (a different
first form each round), and the value is the median of the per-round ratios. Peak memory
of one forward+backward call of each form is printed too (harness.speed.peak_memory: rise of
peak RSS). The step loops take seconds per call at T=4096; ``--seq-len`` and ``--rounds``
shorten a run.

Run: python benchmarks/xlstm_mamba_ratios.py [--seq-len 4096] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("RNNBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")

import torch  # noqa: E402

from cpu_ratios import bare_loop_s  # noqa: E402  (benchmarks/cpu_ratios.py, beside this script)
from harness import env  # noqa: E402
from harness.cells import Unrolled  # noqa: E402
from harness.plugins import load_plugins  # noqa: E402
from harness.speed import peak_memory  # noqa: E402
from targets import report  # noqa: E402

BATCH, HIDDEN = 8, 256
TARGETS = (("mamba_scan_vs_step", "mamba", 0.5), ("mlstm_parallel_vs_step", "mlstm", 0.5))


def forms(registry, name: str):
    """The registered (fast) module and its step form over the same parameters."""
    torch.manual_seed(0)
    spec = registry.cell(name)
    fast = spec.factory(HIDDEN, HIDDEN)
    step = Unrolled(spec.unroll(fast))
    step.hidden_size = HIDDEN  # bare_loop_s sizes the output gradient from it
    return {"parallel": fast, "step": step}


def forward_backward(module, x):
    def run():
        y, _ = module(x)
        torch.autograd.grad(y[-1].sum(), list(module.parameters()))
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    threads = env.set_threads(1)
    print(f"# {env.cpu_model()}, torch {torch.__version__}, threads {threads}, B={BATCH}, I=H={HIDDEN}, "
          f"T={args.seq_len}, float32; measured on a shared machine: noisy")
    registry = load_plugins()
    x = torch.randn(args.seq_len, BATCH, HIDDEN, generator=torch.Generator().manual_seed(0))
    for target, name, limit in TARGETS:
        modules = forms(registry, name)
        for form, module in modules.items():
            peak_bytes, method = peak_memory(forward_backward(module, x), "cpu")
            shown = "unavailable" if peak_bytes is None else f"{peak_bytes / 2**20:.0f} MiB"
            print(f"# {name} {form}: peak memory of one forward+backward {shown} ({method})")
        rounds = []
        order = list(modules)
        for index in range(args.rounds):
            shift = index % len(order)
            rounds.append({form: bare_loop_s(modules[form], x, 1) for form in order[shift:] + order[:shift]})
        ratios = [r["parallel"] / r["step"] for r in rounds]
        print(f"# {name} per round (s): " + " ".join(f"{r['parallel']:.2f}/{r['step']:.2f}" for r in rounds))
        ratio = statistics.median(ratios)
        report(target, ratio, f"<={limit}", ratio <= limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
