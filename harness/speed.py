"""Speed: forward and forward+backward seconds per batch, with noise statistics and peak memory.

Method: warm-up calls (not timed), then calibrated repeats: the number of repeats is
chosen so that the timed calls last at least ``min_time_s`` in total (and at least
``min_repeats``, at most ``max_repeats``). Each call is timed alone with
``time.perf_counter``; on CUDA the device is synchronised before the clock starts and
before it stops, so a time never stands for work that was not run. Seconds on every
device. On Linux, glibc malloc's mmap and trim thresholds are fixed first
(:func:`steady_allocator`), so that a timing does not depend on what ran earlier in the process.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Callable

import torch

from harness.config import TimingConfig
from harness.errors import CellContractError
from harness.graphs import capture
from harness.stats import Summary


# Bumped whenever what a speed row means changes, so that runs measured differently are not
# compared as if the cells had changed. 2: the loss's output gradient is made once outside
# the timed calls, and buffers a cell keeps between calls count in its peak memory.
# 3: timed in rounds (TimingConfig.rounds), each round's median stored beside the pooled samples.
# 4: each round's minimum stored too; verdicts between runs compare round minima by ranks
#    (harness.speed_verdict), and the profiles time in 5 rounds, the fewest a 99% rank interval needs,
#    spread over passes (TimingConfig.spread).
# 5: glibc malloc's thresholds fixed while timing (steady_allocator) and held at glibc's initial policy
#    while peak memory is measured (peak_memory).
SPEED_METHOD = 5


@dataclass(frozen=True)
class SpeedResult:
    """``forward``/``forward_backward``: every timed call pooled over the rounds;
    ``*_round_medians`` and ``*_round_minima``: one median and one minimum per round (seconds); a
    verdict between runs compares the minima (:mod:`harness.speed_verdict`)."""

    forward: Summary
    forward_backward: Summary
    peak_memory_bytes: float | None
    memory_method: str
    tokens: int  # B * T: sequence steps processed per call
    forward_round_medians: tuple[float, ...] = ()
    forward_backward_round_medians: tuple[float, ...] = ()
    forward_round_minima: tuple[float, ...] = ()
    forward_backward_round_minima: tuple[float, ...] = ()

    @property
    def steps_per_s(self) -> float:
        """Throughput of forward+backward in sequence steps (batch x time) per second."""
        return self.tokens / self.forward_backward.median


def synchronizer(device: torch.device) -> Callable[[], None]:
    if torch.device(device).type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def time_calls(fn: Callable[[], object], config: TimingConfig, sync: Callable[[], None] = lambda: None) -> Summary:
    """Time ``fn`` as the module docstring describes; returns per-call seconds."""
    for _ in range(config.warmup):
        fn()
    sync()
    samples: list[float] = []
    spent = 0.0
    while len(samples) < config.max_repeats and (len(samples) < config.min_repeats or spent < config.min_time_s):
        sync()
        started = time.perf_counter()
        fn()
        sync()
        elapsed = time.perf_counter() - started
        samples.append(elapsed)
        spent += elapsed
    return Summary(tuple(samples))


# --- peak memory -------------------------------------------------------------------------

def _read_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM (Linux >= 4.0: writing 5 to clear_refs); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# glibc's malloc serves a request of at least M_MMAP_THRESHOLD bytes with a fresh mmap, whose pages
# fault in on first touch, and raises that threshold, by default, to the size of the largest such
# chunk freed so far (up to 32 MiB). Timings then depend on what ran earlier in the process: mamba's
# forward at B=32, T=100, H=128 took 36-40 ms in a process whose threshold had risen and 160 ms with
# it held at 128 KiB, and the same condition measured 100 ms in one worker and 40 ms in the next
# run. Fixed thresholds make every item start from the same allocator policy.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's ceiling for it on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD_BYTES = 2**30  # keep freed heap for reuse; peak_memory() trims explicitly before it measures


# While peak memory is measured, glibc's initial policy, held fixed: every new block of 128 KiB or
# more is its own mmap and goes back to the OS when freed, so the peak RSS is the peak of what the
# call holds, not of heap the timing policy keeps for reuse (mamba's fast form at B=8, H=256,
# T=4096: 1,669 MiB with the timing policy, 1,409 MiB with glibc's self-raising default). Free
# chunks the heap already holds are still served first and stay resident once touched, so after
# many calls the figure can exceed what one call holds: an upper bound, never below it.
FRESH_THRESHOLD_BYTES = 128 * 1024


@functools.lru_cache(maxsize=1)
def _glibc():
    """glibc, loaded once per process, or None where there is none (then the allocator is left as it is)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def _malloc_thresholds(mmap_bytes: int, trim_bytes: int) -> bool:
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_bytes)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, trim_bytes))


def steady_allocator() -> bool:
    """Fix glibc malloc's mmap and trim thresholds for this process (idempotent); False where there is
    no glibc (then allocations behave as the platform's allocator does)."""
    return _malloc_thresholds(MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES)


def _release_free_heap() -> bool:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``), so that the next call's
    peak RSS counts the memory it really touches rather than pages kept from earlier calls."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def peak_memory(fn: Callable[[], object], device: torch.device) -> tuple[float | None, str]:
    """Peak memory that one call of ``fn`` adds, in bytes, and the method used.

    CUDA: ``torch.cuda.max_memory_allocated`` after a reset, minus what was allocated
    before (the caching allocator's view: every tensor, no fragmentation).
    CPU: the rise of the process's peak resident set size (VmHWM, reset through
    /proc/self/clear_refs) over its resident size before the call, after free heap pages
    were returned to the OS (malloc_trim), with glibc's initial allocation policy held for
    the call (:data:`FRESH_THRESHOLD_BYTES`): it sees NumPy and torch allocations alike, at
    page granularity. :func:`measure_speed` first lets cells drop the buffers they keep
    between calls (:func:`release_buffers`), so that those are counted too.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - before), "cuda max_memory_allocated"
    fresh = _malloc_thresholds(FRESH_THRESHOLD_BYTES, FRESH_THRESHOLD_BYTES)
    try:
        trimmed = _release_free_heap()
        if not _reset_peak_rss():
            return None, "unavailable (no /proc/self/clear_refs)"
        before = _read_status_kib("VmRSS")
        fn()
        peak = _read_status_kib("VmHWM")
    finally:
        if fresh:
            steady_allocator()
    if before is None or peak is None:
        return None, "unavailable (no /proc/self/status)"
    return float(max(peak - before, 0) * 1024), ("cpu peak RSS rise (VmHWM" + (", after malloc_trim" if trimmed else "")
                                                 + (", blocks of 128 KiB and up mapped one by one)" if fresh else ")"))


def release_buffers(cell: torch.nn.Module) -> None:
    """Call ``release_buffers()`` on the cell and its submodules that define it: buffers a
    cell keeps between calls for speed (numpy-rnn keeps its (T + 1, B, H) hidden states)
    are then allocated again by the call whose peak memory is measured, and counted."""
    for module in cell.modules():
        release = getattr(module, "release_buffers", None)
        if callable(release):
            release()


def last_step_output_gradient(y: torch.Tensor) -> torch.Tensor:
    """d(y[-1].sum())/dy: ones at the last step, zeros at every other, shaped like ``y``."""
    grad = torch.zeros(y.shape, dtype=y.dtype, device=y.device)
    grad[-1] = 1.0
    return grad


def check_output_gradient_intact(grad_y: torch.Tensor) -> None:
    """Raise :class:`CellContractError` if a cell's backward wrote into the output gradient
    it was handed: the calls after the first would then have timed other work."""
    if not torch.equal(grad_y, last_step_output_gradient(grad_y)):
        raise CellContractError("the cell's backward modified the gradient of its output in place; "
                                "it must treat incoming gradients as read-only")


def measure_speed(cell: torch.nn.Module, batch_size: int, seq_len: int, input_size: int, device, config: TimingConfig,
                  dtype=torch.float32, seed: int = 0, graphed: bool = False, measure_memory: bool = True) -> SpeedResult:
    """Time one cell (a sequence-form module already on ``device``) at one size.

    Forward: ``cell(x, None)`` under ``torch.no_grad``. Forward+backward: the same call
    with autograd and backward through the whole sequence into every parameter, for a
    loss on the last step's output, ``y[-1].sum()``. Its gradient with respect to ``y``
    (:func:`last_step_output_gradient`) is made once, like ``x``, and handed to
    ``torch.autograd.grad``: the timed call is the cell's forward and backward, not the
    allocation and zero-fill of a (T, B, H) gradient for the loss (16 MB at T=1000, B=32,
    H=128, which on the CPU page-faults in some calls and not others). PyTorch's
    ``benchmarks/fastrnns`` times backward the same way. ``graphed``: both captured once in
    CUDA graphs (:mod:`harness.graphs`) and replayed.
    """
    device = torch.device(device)
    steady_allocator()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(seq_len, batch_size, input_size, generator=gen, dtype=dtype).to(device)
    sync = synchronizer(device)
    with torch.no_grad():
        grad_y = last_step_output_gradient(cell(x, None)[0])
    if graphed:
        run = capture(cell, x, grad_y)
        forward_rounds, fb_rounds = time_rounds(run.forward.replay, run.forward_backward.replay, config, sync)
        check_output_gradient_intact(run.grad_y)
        return _result(forward_rounds, fb_rounds, float(run.memory_bytes),
                       "cuda graph pool (memory_allocated after capture)", batch_size * seq_len)
    params = [p for p in cell.parameters() if p.requires_grad]

    def forward():
        with torch.no_grad():
            cell(x, None)

    def forward_backward():
        y, _ = cell(x, None)
        return torch.autograd.grad(y, params, grad_outputs=grad_y, allow_unused=True)

    forward_rounds, fb_rounds = time_rounds(forward, forward_backward, config, sync)
    peak, method = None, "not measured (measure_memory=False)"
    if measure_memory:
        release_buffers(cell)
        peak, method = peak_memory(forward_backward, device)
    check_output_gradient_intact(grad_y)
    return _result(forward_rounds, fb_rounds, peak, method, batch_size * seq_len)


def time_rounds(forward, forward_backward, config: TimingConfig, sync) -> tuple[list[Summary], list[Summary]]:
    """``config.rounds`` rounds, each timing ``forward`` and then ``forward_backward`` on the per-round budget
    (:meth:`TimingConfig.per_round`); both are warmed up once, before the first round."""
    for _ in range(config.warmup if config.rounds > 1 else 0):
        forward()
        forward_backward()
    per_round = config.per_round()
    forward_rounds, fb_rounds = [], []
    for _ in range(max(1, config.rounds)):
        forward_rounds.append(time_calls(forward, per_round, sync))
        fb_rounds.append(time_calls(forward_backward, per_round, sync))
    return forward_rounds, fb_rounds


def _result(forward_rounds, fb_rounds, peak, method, tokens) -> SpeedResult:
    def pooled(rounds):
        return Summary(tuple(sample for summary in rounds for sample in summary.samples))

    return SpeedResult(pooled(forward_rounds), pooled(fb_rounds), peak, method, tokens,
                       tuple(s.median for s in forward_rounds), tuple(s.median for s in fb_rounds),
                       tuple(min(s.samples) for s in forward_rounds), tuple(min(s.samples) for s in fb_rounds))
