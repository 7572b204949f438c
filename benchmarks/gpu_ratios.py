"""GPU speed targets (one H100 or H200), measured as ratios inside one process.

Prints one line per target, ``NAME value=X target=Y PASS|FAIL``, then exits 0 (or says
why it cannot run). Designed to finish in well under 4 minutes.

1. <cell>_graphed_vs_fused_large: graphed / fused forward+backward median at B=128, I=64,
   H=512, T=1000. Target <= 1.3 for lstm (reported for gru and torch-rnn too).
2. <cell>_unrolled_vs_graphed_small: unrolled eager / graphed at B=32, I=8, H=128,
   T=1000 (how many times faster the graph is). Target >= 4 for lstm (reported for all).
3. <cell>_fast_vs_step (issue 12): each modern cell's fast form / its step loop at B=8, I=8,
   H=256, T=4096, the CPU target's sizes and method (``benchmarks/scan_forms.py``; here timed
   in synchronised wall time). Target <= 0.05 for every one, with peak memory of both forms.
4. <cell>_fastest_vs_cudnn_lstm: the faster of the cell's two forms / cuDNN LSTM (lstm, fused)
   at the same B, I, H, T (reported, no target).

Run: python benchmarks/gpu_ratios.py [--only lstm|scan]
Without a CUDA device it prints one line saying so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("RNNBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")

import torch  # noqa: E402

from harness.cells import build_impl  # noqa: E402
from harness.plugins import load_plugins  # noqa: E402
from harness.speed import TimingConfig, measure_speed  # noqa: E402
import scan_forms  # noqa: E402  (benchmarks/scan_forms.py, beside this script)
from targets import report  # noqa: E402  (benchmarks/targets.py, beside this script)

TIMING = TimingConfig(warmup=2, min_repeats=7, max_repeats=100, min_time_s=0.5)
CELLS = ("lstm", "gru", "torch-rnn")


def fb_median(registry, cell: str, impl: str, batch: int, inputs: int, hidden: int, seq_len: int) -> float:
    torch.manual_seed(0)
    module = build_impl(registry.cell(cell), impl, inputs, hidden).to("cuda")
    result = measure_speed(module, batch, seq_len, inputs, "cuda", TIMING, graphed=impl == "graphed")
    return result.forward_backward.median


def scan_targets(registry, device: str, rounds: int = 3) -> None:
    """Targets 3 and 4: every modern cell's fast form against its step loop and against cuDNN LSTM."""
    lstm = {"fast": build_impl(registry.cell("lstm"), "fused", scan_forms.INPUTS, scan_forms.HIDDEN).to(device)}
    x = torch.randn(scan_forms.SEQ_LEN, scan_forms.BATCH, scan_forms.INPUTS).to(device)
    lstm_s = min(r["fast"] for r in scan_forms.paired_rounds(
        {"fast": scan_forms.forward_backward(lstm["fast"], x)}, rounds, scan_forms.clock_for(device)))
    print(f"# cuDNN lstm B={scan_forms.BATCH} I={scan_forms.INPUTS} H={scan_forms.HIDDEN} T={scan_forms.SEQ_LEN}: "
          f"{lstm_s * 1e3:.2f} ms", flush=True)
    for name in scan_forms.CPU_TARGETS:
        result = scan_forms.measure_forms(scan_forms.build_forms(registry, name, device), scan_forms.SEQ_LEN, rounds, device)
        for line in scan_forms.describe(name, result):
            print(line)
        report(f"{name}_fast_vs_step", result.ratio, f"<={scan_forms.GPU_TARGET}", result.ratio <= scan_forms.GPU_TARGET)
        fastest_s = min(min(result.fast_s), min(result.step_s))
        report(f"{name}_fastest_vs_cudnn_lstm", fastest_s / lstm_s, "(reported)", True)
        torch.cuda.empty_cache()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("lstm", "scan"), help="run only targets 1-2 (lstm) or 3-4 (scan)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing measured")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    props = torch.cuda.get_device_properties(0)
    print(f"# {props.name}, torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, float32, TF32 off")
    registry = load_plugins()
    if args.only != "lstm":
        scan_targets(registry, "cuda")
    if args.only == "scan":
        return 0
    for cell in CELLS:
        reported = "" if cell == "lstm" else "(reported)"  # the targets name lstm; the others are shown beside it
        fused = fb_median(registry, cell, "fused", 128, 64, 512, 1000)
        graphed = fb_median(registry, cell, "graphed", 128, 64, 512, 1000)
        print(f"# {cell} B=128 I=64 H=512 T=1000: fused {fused * 1e3:.2f} ms, graphed {graphed * 1e3:.2f} ms", flush=True)
        report(f"{cell}_graphed_vs_fused_large", graphed / fused, "<=1.3" + reported, graphed / fused <= 1.3)
        unrolled = fb_median(registry, cell, "unrolled", 32, 8, 128, 1000)
        graphed_small = fb_median(registry, cell, "graphed", 32, 8, 128, 1000)
        print(f"# {cell} B=32 I=8 H=128 T=1000: unrolled {unrolled * 1e3:.2f} ms, graphed {graphed_small * 1e3:.2f} ms", flush=True)
        report(f"{cell}_unrolled_vs_graphed_small", unrolled / graphed_small, ">=4" + reported, unrolled / graphed_small >= 4)
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
