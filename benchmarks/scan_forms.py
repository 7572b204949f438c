"""Fast form ÷ step loop of the modern cells, shared by ``cpu_ratios.py`` and ``gpu_ratios.py``.

For each cell, its registered (primary) implementation — the chunked or fused scan, or the
chunkwise-parallel mLSTM — against its reference, the plain recurrence one step at a time, on
the same parameters (built under one seed), forward + backward of a last-step loss
``y[-1].sum()`` into every parameter, its output gradient made once outside the timed call
(as :func:`harness.speed.measure_speed`). Issue 12's sizes: B = 8, I = 8 (the speed table's input
size), H = 256, T = 4096, float32.

Timing, because the machine may be shared: both forms once per round, rounds interleaved with
the first form alternating. Within a round the faster form is called several times in a row
(as many as fit in one call of the slower, judged from the warm-up) and its sample is the
mean of those calls, so that the two samples of a round span about the same time and a slow
spell of the host weighs on both alike. The value is the ratio of the two forms' fastest
rounds (the harness's verdicts compare round minima for the same reason: on these shared
VMs the noise only ever adds time, Chen & Revels 2016); the per-round ratios are printed
beside it. On the CPU
each call is timed in process CPU time (``time.process_time``: the time this process ran, so
other processes' load does not count, though their use of caches and memory bandwidth does;
one thread); on CUDA in wall time between synchronisations. Peak memory of one call of each
form: :func:`harness.speed.peak_memory` (CPU: rise of peak RSS; CUDA: max_memory_allocated).
The crossover is the shortest T of a sweep from which the fast form wins at every longer T.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from harness.cells import build_impl
from harness.speed import last_step_output_gradient, peak_memory

BATCH, INPUTS, HIDDEN, SEQ_LEN = 8, 8, 256, 4096
CPU_TARGETS = {"mingru": 0.2, "minlstm": 0.2, "lru": 0.2, "mamba": 0.5, "mlstm": 0.5}  # issue 12
GPU_TARGET = 0.05  # issue 12: every ratio on a GPU
COARSE_LENGTHS = (64, 256, 1024, 4096)
FULL_LENGTHS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


@dataclass(frozen=True)
class FormsResult:
    """One cell at one size: per-round seconds of one call of each form (a round's mean), peak
    memory of one call of each, and how many calls of each form made a round's sample."""

    fast_s: tuple[float, ...]
    step_s: tuple[float, ...]
    fast_peak_bytes: float | None
    step_peak_bytes: float | None
    repeats: tuple[int, int] = (1, 1)  # (fast, step) calls per round

    @property
    def ratios(self) -> list[float]:
        return [fast / step for fast, step in zip(self.fast_s, self.step_s)]

    @property
    def ratio(self) -> float:
        """Fastest round of the fast form over fastest round of the step loop."""
        return min(self.fast_s) / min(self.step_s)


def build_forms(registry, name: str, device: str, inputs: int = INPUTS, hidden: int = HIDDEN) -> dict[str, torch.nn.Module]:
    """``{"fast": primary implementation, "step": reference}`` of one cell, same parameters."""
    spec = registry.cell(name)
    forms = {}
    for label, impl in (("fast", spec.primary_impl), ("step", spec.reference_impl)):
        torch.manual_seed(0)
        forms[label] = build_impl(spec, impl, inputs, hidden).to(device)
    return forms


def forward_backward(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """One call: forward, then backward of ``y[-1].sum()`` into every parameter (output gradient made once)."""
    params = [p for p in module.parameters() if p.requires_grad]
    with torch.no_grad():
        grad_y = last_step_output_gradient(module(x, None)[0])

    def call():
        y, _ = module(x, None)
        return torch.autograd.grad(y, params, grad_outputs=grad_y, allow_unused=True)
    return call


def clock_for(device: str) -> Callable[[Callable[[], object]], float]:
    """Seconds of one call: process CPU time on the CPU, synchronised wall time on CUDA."""
    if torch.device(device).type == "cuda":
        def cuda_seconds(fn):
            torch.cuda.synchronize()
            started = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            return time.perf_counter() - started
        return cuda_seconds

    def cpu_seconds(fn):
        started = time.process_time()
        fn()
        return time.process_time() - started
    return cpu_seconds


def balanced_repeats(calls: dict[str, Callable[[], object]], clock) -> dict[str, int]:
    """Calls of each per round so that every form's sample spans about one call of the slowest,
    judged from timed warm-up calls (the faster of two for a form quicker than half a second, a
    first call often being slow; at most 50 calls a round)."""
    warm = {}
    for name, fn in calls.items():
        first = clock(fn)
        warm[name] = max(min(first, clock(fn)) if first < 0.5 else first, 1e-9)
    slowest = max(warm.values())
    return {name: max(1, min(50, round(slowest / seconds))) for name, seconds in warm.items()}


def paired_rounds(calls: dict[str, Callable[[], object]], rounds: int, clock,
                  repeats: dict[str, int] | None = None) -> list[dict[str, float]]:
    """Seconds of one call of each form per round (the mean of ``repeats[name]`` calls in a row;
    by default :func:`balanced_repeats`, whose timed warm-ups come first), the first form
    alternating between rounds."""
    if repeats is None:
        repeats = balanced_repeats(calls, clock)
    order, results = list(calls), []
    for index in range(rounds):
        shift = index % len(order)
        results.append({name: sum(clock(calls[name]) for _ in range(repeats[name])) / repeats[name]
                        for name in order[shift:] + order[:shift]})
    return results


def measure_forms(forms: dict[str, torch.nn.Module], seq_len: int, rounds: int, device: str,
                  batch: int = BATCH, inputs: int = INPUTS) -> FormsResult:
    """Paired rounds of both forms at one size, and the peak memory of one call of each."""
    x = torch.randn(seq_len, batch, inputs, generator=torch.Generator().manual_seed(0)).to(device)
    calls = {label: forward_backward(module, x) for label, module in forms.items()}
    clock = clock_for(device)
    repeats = balanced_repeats(calls, clock)
    rounds_s = paired_rounds(calls, rounds, clock, repeats)
    peaks = {label: peak_memory(fn, torch.device(device))[0] for label, fn in calls.items()}
    return FormsResult(tuple(r["fast"] for r in rounds_s), tuple(r["step"] for r in rounds_s),
                       peaks["fast"], peaks["step"], (repeats["fast"], repeats["step"]))


def crossover(rows: list[tuple[int, float, float]]) -> int | None:
    """The shortest T from which the fast form is faster at every longer T measured
    (``rows``: ``(T, fast_s, step_s)`` in increasing T); ``None`` if it is slower at the longest."""
    first_win = None
    for seq_len, fast_s, step_s in reversed(rows):
        if fast_s >= step_s:
            break
        first_win = seq_len
    return first_win


def sweep(forms: dict[str, torch.nn.Module], lengths, device: str, known: dict[int, FormsResult]) -> list[tuple[int, float, float]]:
    """``(T, fast_s, step_s)`` per length: one paired round each (the fastest rounds of ``known`` results where given)."""
    rows = []
    for seq_len in lengths:
        if seq_len in known:
            result = known[seq_len]
            rows.append((seq_len, min(result.fast_s), min(result.step_s)))
            continue
        x = torch.randn(seq_len, BATCH, INPUTS, generator=torch.Generator().manual_seed(0)).to(device)
        calls = {label: forward_backward(module, x) for label, module in forms.items()}
        (times,) = paired_rounds(calls, 1, clock_for(device))
        rows.append((seq_len, times["fast"], times["step"]))
    return rows


def lru_parts_s(repeats: int = 3) -> dict[str, float]:
    """Seconds that parts of the LRU's fused form take at the target's sizes, each alone and in
    cache, the way ``plugins.lru_scan`` runs them (one block of ``B·L`` rows at a time):

    ``products``: the three large products, the readout ``[Re h, Im h] W_out^T``, its weight
    gradient and the gradient into the states — the step loop does the same arithmetic, so
    ``products / step loop`` bounds the ratio from below; ``inputs``: the four products with the
    input's I columns (the drive ``W_in x``, the skip ``D x`` and their weights' gradients);
    ``recurrences``: the recurrence and its adjoint, one complex multiply-add on a (B, N) slice a
    step each way. Their sum is the ratio the form can reach here, before ``∂L/∂λ``, the
    interpreter's cost and the traffic of the states to and from memory."""
    from plugins.gated_scan import default_block_len

    x = torch.zeros(SEQ_LEN, BATCH, INPUTS)
    block = default_block_len(x, BATCH * HIDDEN)
    rows, width = block * BATCH, 2 * HIDDEN
    generator = torch.Generator().manual_seed(0)
    states, grad_y = torch.randn(rows, width, generator=generator), torch.randn(rows, HIDDEN, generator=generator)
    weight = torch.randn(HIDDEN, width, generator=generator)
    y, grad_states, grad_weight_t = torch.empty(rows, HIDDEN), torch.empty(rows, width), torch.zeros(width, HIDDEN)
    x_rows = torch.randn(rows, INPUTS, generator=generator)
    input_weight, skip_weight = torch.randn(width, INPUTS, generator=generator), torch.randn(HIDDEN, INPUTS, generator=generator)
    drive, grad_input_t, grad_skip_t = torch.empty(rows, width), torch.zeros(INPUTS, width), torch.zeros(INPUTS, HIDDEN)
    decay = torch.polar(torch.full((HIDDEN,), 0.95), torch.rand(HIDDEN, generator=generator))
    steps = torch.randn(block, BATCH, HIDDEN, dtype=torch.complex64, generator=generator).unbind(0)
    state = torch.zeros(BATCH, HIDDEN, dtype=torch.complex64)

    def products():
        for _ in range(SEQ_LEN // block):
            torch.mm(states, weight.t(), out=y)
            grad_weight_t.addmm_(states.t(), grad_y)
            torch.mm(grad_y, weight, out=grad_states)

    def inputs():
        for _ in range(SEQ_LEN // block):
            torch.mm(x_rows, input_weight.t(), out=drive)
            y.addmm_(x_rows, skip_weight.t())
            grad_skip_t.addmm_(x_rows.t(), grad_y)
            grad_input_t.addmm_(x_rows.t(), grad_states)

    def recurrences():
        for _ in range(2 * SEQ_LEN // block):
            for step in steps:
                torch.addcmul(step, decay, state, out=state)

    clock = clock_for("cpu")  # process CPU time, as the step loop it is divided by
    parts = {"products": products, "inputs": inputs, "recurrences": recurrences}
    for part in parts.values():
        part()
    return {name: min(clock(part) for _ in range(repeats)) for name, part in parts.items()}


def describe_lru_parts(parts_s: dict[str, float], step_s: float) -> str:
    """The ``#`` line of :func:`lru_parts_s` against the step loop's ``step_s`` seconds."""
    total_s = sum(parts_s.values())
    return (f"# lru: its large products alone take {parts_s['products'] * 1e3:.0f} ms, {parts_s['products'] / step_s:.3f} "
            f"of the step loop (a lower bound of the ratio); with the input's products ({parts_s['inputs'] * 1e3:.0f} ms) "
            f"and the two recurrences ({parts_s['recurrences'] * 1e3:.0f} ms), {total_s * 1e3:.0f} ms = {total_s / step_s:.3f} "
            "of the step loop, before ∂L/∂λ, the interpreter and the states' memory traffic")


# Cells whose fast form is bound from below by work the step loop shares: what measures it, what prints it.
PART_BOUNDS = {"lru": (lru_parts_s, describe_lru_parts)}


def mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f} MiB"


def describe(name: str, result: FormsResult, seq_len: int = SEQ_LEN) -> list[str]:
    """The ``#`` lines of one cell: fastest rounds, peak memory, per-round ratios."""
    fast_calls, step_calls = result.repeats
    return [f"# {name} B={BATCH} I={INPUTS} H={HIDDEN} T={seq_len}: fast {min(result.fast_s) * 1e3:.0f} ms, "
            f"step loop {min(result.step_s) * 1e3:.0f} ms (fastest of {len(result.fast_s)} rounds of "
            f"{fast_calls} and {step_calls} calls); "
            f"peak memory fast {mib(result.fast_peak_bytes)}, step loop {mib(result.step_peak_bytes)}",
            f"# {name}_fast_vs_step per round: " + " ".join(f"{r:.3f}" for r in result.ratios)
            + f" (median {statistics.median(result.ratios):.3f})"]


def describe_sweep(name: str, rows) -> str:
    cells = ", ".join(f"T={t}: {f * 1e3:.1f}/{s * 1e3:.1f} ms" for t, f, s in rows)
    first_win = crossover(rows)
    tail = f"fast form wins from T={first_win}" if first_win else "the fast form did not win at the lengths measured"
    return f"# {name} fast/step sweep: {cells}; {tail}"
