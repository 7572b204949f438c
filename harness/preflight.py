"""Checks of a run's settings made before anything is measured or stored.

A run that cannot finish should fail in its first second with one line, not after an hour of
measuring or on its first allocation: sizes whose memory cannot fit the machine, more items than
a run can hold, a report folder that cannot be created, more threads than cores.

The memory figure is a *lower bound* for any recurrent cell with at least one ``H x (I + H)``
weight matrix, in float32 (4 bytes), so a refusal is never a false alarm (real cells need more:
an LSTM has four such matrices):

- speed item: weights and their gradients ``2 P`` plus the input, the outputs and their gradient
  ``B T (I + 2 H)``, where ``P = H (I + H + 1)``;
- training item: weights, gradients and Adam's two moments ``4 P``, the training batch
  ``B L (I + 2 H)`` and the held-out set evaluated at once ``E L (I + H)`` (``L`` the steps the
  cell sees, ``E`` the held-out size).

Stacked ``N`` layers deep (``--layers N``, :mod:`harness.stacking`), each of the ``N - 1`` layers
after the first is a cell at ``(H, H)`` with a layer norm, so ``P`` grows by
``(N - 1) (H (2 H + 1) + 2 H)``, and each keeps its input, the normed ``(T, B, H)`` output of the
layer below, for the gradient of its input weights: ``B T (N - 1) H`` more in both items. The
held-out pass runs without gradients, so a layer's activations are freed once the next has read
them, and that term is unchanged.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UsageError
from harness.names import CUDA, SPEED, TRAIN_MEASUREMENTS

FLOAT32_BYTES = 4
MAX_ITEMS = 100_000
MAX_SEEDS = 100_000
MAX_THREADS = 1024
ALLOW_LARGE_FLAG = "--ignore-memory-estimate"


@dataclass(frozen=True)
class MemoryNeed:
    """The largest item of a run: what it is and its lower-bound memory in bytes."""

    what: str
    device: str
    need_bytes: int


def cell_params(input_size: int, hidden_size: int, layers: int = 1) -> int:
    """``P = H (I + H + 1)``: the fewest parameters a recurrent cell of these sizes has; stacked
    ``layers`` deep, plus ``H (2 H + 1)`` and a layer norm's ``2 H`` for every layer after the first."""
    first = hidden_size * (input_size + hidden_size + 1)
    return first + (layers - 1) * (hidden_size * (2 * hidden_size + 1) + 2 * hidden_size)


def _kept_activations(input_size: int, hidden_size: int, layers: int) -> int:
    """Values per sequence step a forward+backward keeps: the input, the output and its gradient
    ``I + 2 H``, and every inner layer's ``H``-wide input."""
    return input_size + 2 * hidden_size + (layers - 1) * hidden_size


def speed_item_bytes(batch_size: int, seq_len: int, input_size: int, hidden_size: int, params: int | None = None,
                     layers: int = 1) -> int:
    params = cell_params(input_size, hidden_size, layers) if params is None else params
    return FLOAT32_BYTES * (2 * params + batch_size * seq_len * _kept_activations(input_size, hidden_size, layers))


def _held_out_values(eval_size: int, length: int, input_size: int, hidden_size: int) -> int:
    """Values of a held-out set evaluated without gradients: its inputs and outputs, ``E L (I + H)``."""
    return eval_size * length * (input_size + hidden_size)


def train_item_bytes(batch_size: int, eval_size: int, length: int, input_size: int, hidden_size: int,
                     params: int | None = None, layers: int = 1) -> int:
    params = cell_params(input_size, hidden_size, layers) if params is None else params
    return FLOAT32_BYTES * (4 * params + batch_size * length * _kept_activations(input_size, hidden_size, layers)
                            + _held_out_values(eval_size, length, input_size, hidden_size))


def _cgroup_limit_bytes() -> int | None:
    """A container's memory limit (cgroup v2, then v1), when one is set."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    return None


def machine_memory_bytes(device: str) -> int | None:
    """Total memory an item on ``device`` can use: the GPU's, or the host's RAM (within a
    container's limit). None when it cannot be read."""
    if device == CUDA:
        import torch

        return int(torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    limit = _cgroup_limit_bytes()
    return min(total, limit) if limit else total


def eval_bytes(eval_size: int, length: int, input_size: int, hidden_size: int, params: int | None = None,
               layers: int = 1) -> int:
    """A trained model evaluated at another length (``--eval-lengths``), without gradients: its
    weights ``P`` and the held-out set with its outputs, ``E L (I + H)``."""
    params = cell_params(input_size, hidden_size, layers) if params is None else params
    return FLOAT32_BYTES * (params + _held_out_values(eval_size, length, input_size, hidden_size))


def largest_items(config, task_shapes: dict[tuple[str, int], tuple[int, int]],
                  eval_shapes: dict[tuple[str, int], tuple[int, int, int]] | None = None) -> list[MemoryNeed]:
    """The largest speed and training item per device; ``task_shapes[(task, T)] = (L, I)``;
    ``eval_shapes[(task, T)] = (L, I, E)`` for the lengths trained models are evaluated at."""
    # With a parameter budget the hidden size is chosen per cell: count the budget's parameters
    # and the smallest hidden state (H = 1), still a lower bound.
    budget, layers = config.param_budget, config.layers
    stacked = f", {layers} layers" if layers != 1 else ""
    needs = []
    for device in config.devices:
        if SPEED in config.measures:
            hidden = 1 if budget else max(config.speed_hidden_sizes)
            sizes = (max(config.speed_batch_sizes), max(config.speed_seq_lens), config.speed_input_size, hidden)
            shown = (f"a parameter budget of {budget}" if budget else f"H={hidden}") + stacked
            needs.append(MemoryNeed(f"a speed item with B={sizes[0]}, T={sizes[1]}, I={sizes[2]}, {shown}",
                                    device, speed_item_bytes(*sizes, params=budget, layers=layers)))
        if any(m in TRAIN_MEASUREMENTS for m in config.measures):
            recipe = config.recipe
            hidden = 1 if budget else max(config.hidden_sizes)
            shown = (f"a parameter budget of {budget}" if budget else f"H={hidden}") + stacked
            for (task, seq_len), (length, input_size) in task_shapes.items():
                needs.append(MemoryNeed(
                    f"a training item of task {task!r} with T={seq_len} (L={length}), B={recipe.batch_size}, {shown}, "
                    f"{recipe.eval_size} held-out sequences", device,
                    train_item_bytes(recipe.batch_size, recipe.eval_size, length, input_size, hidden, params=budget,
                                     layers=layers)))
            for (task, seq_len), (length, input_size, eval_size) in (eval_shapes or {}).items():
                needs.append(MemoryNeed(
                    f"evaluating task {task!r} at T={seq_len} (L={length}, --eval-lengths), {shown}, {eval_size} "
                    "held-out sequences", device,
                    eval_bytes(eval_size, length, input_size, hidden, params=budget, layers=layers)))
    return needs


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.3g} GB"


def check_memory(config, task_shapes, *, allow_large: bool, eval_shapes=None) -> None:
    """Refuse a run whose largest item cannot fit the machine's memory (unless ``allow_large``)."""
    if allow_large:
        return
    for need in largest_items(config, task_shapes, eval_shapes):
        available = machine_memory_bytes(need.device)
        if available is not None and need.need_bytes > available:
            raise UsageError(f"{need.what} needs at least {_gb(need.need_bytes)} (lower-bound estimate), more than the "
                             f"{_gb(available)} of memory on {need.device}; choose smaller sizes, or pass "
                             f"{ALLOW_LARGE_FLAG} to try anyway")


def count_items(config) -> int:
    """How many items the run plans, at most (speed: every implementation a cell may have, and every pass
    when its rounds are spread)."""
    devices, cells = len(config.devices), len(config.cells)
    total = 0
    if SPEED in config.measures:
        impls = len(config.impls) if config.impls else 4
        total += (devices * cells * impls * len(config.speed_batch_sizes) * len(config.speed_seq_lens)
                  * len(config.speed_hidden_sizes) * config.timing.passes)
    return total + count_side_by_side(config)


def count_side_by_side(config) -> int:
    """How many training items the run plans, at most: the items that may run at the same time
    (timing items run alone)."""
    if not any(m in TRAIN_MEASUREMENTS for m in config.measures):
        return 0
    lengths = sum(len(v) for v in config.task_seq_lens.values())
    return (len(config.devices) * len(config.cells) * lengths * len(config.hidden_sizes) * len(config.seeds)
            * len(config.learning_rates))


def check_item_count(config) -> None:
    count = count_items(config)
    if count > MAX_ITEMS:
        raise UsageError(f"this run would plan up to {count} items, more than the {MAX_ITEMS} one run holds; "
                         "select fewer cells, sizes or seeds, or split it into several runs")


# What a worker process holds once it has imported torch and the harness, a lower bound (about
# 220 MB resident measured with torch 2.13 on Linux, part of it shared libraries), so that a refusal
# is never a false alarm.
WORKER_START_BYTES = 100 * 10**6


def available_memory_bytes() -> int | None:
    """Memory free for new processes: the kernel's ``MemAvailable``, within a container's limit
    less what the container uses. None when it cannot be read."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
        available = next(int(line.split()[1]) * 1024 for line in lines if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    limit = _cgroup_limit_bytes()
    try:
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        used = None
    if limit and used is not None:
        available = min(available, max(0, limit - used))
    return available


def check_worker_memory(workers: int, available_bytes: int | None = None) -> None:
    """Refuse to start ``workers`` worker processes when even their start-up (importing torch)
    cannot fit the memory available now: started anyway, they are ended by the out-of-memory
    killer, and other processes of the machine with them."""
    available = available_memory_bytes() if available_bytes is None else available_bytes
    need = workers * WORKER_START_BYTES
    if available is not None and need > available:
        fit = max(1, available // WORKER_START_BYTES)
        raise UsageError(f"--workers {workers}: {workers} worker processes need at least {_gb(need)} to start "
                         f"(about {_gb(WORKER_START_BYTES)} each), more than the {_gb(available)} of memory available "
                         f"here; give --workers {fit} or fewer, or 'auto'")


def thread_warnings(threads: int) -> list[str]:
    cores = os.cpu_count() or 1
    if threads > cores:
        return [f"--threads {threads} is more than the {cores} CPU cores here: threads will compete for cores "
                "and timings will be slower than with at most one thread per core"]
    return []


def check_out_dir(out_dir: str | os.PathLike | None, option: str = "--out", purpose: str = "the report") -> None:
    """A folder for ``purpose`` (a run's report, ``new-cell``'s package) must be creatable and
    writable. Tried for real, not judged from permission bits (``os.access`` says yes to root
    under /proc, where nothing can be created): the missing folders are made, a file is written
    in the last, and everything made is removed again."""
    if out_dir is None:
        return
    path = Path(out_dir)
    # ".." resolved as the OS will (after the symlink before it: abspath would collapse "link/.." to "."),
    # so the folder tried is the one the report goes to, and only folders made here are removed
    resolved = Path(os.path.realpath(path))
    missing, existing = [], resolved
    while not existing.exists() and existing != existing.parent:
        missing.append(existing)
        existing = existing.parent
    if not missing and not existing.is_dir():
        raise UsageError(f"{option} {str(path)!r} is a file, not a folder; give a folder for {purpose}")
    if not existing.is_dir():
        raise UsageError(f"{option} {str(path)!r} cannot be created: {str(existing)!r} is a file, not a folder")
    made: list[Path] = []
    try:
        for folder in reversed(missing):
            folder.mkdir()
            made.append(folder)
        with tempfile.TemporaryFile(dir=resolved):
            pass
    except OSError as exc:
        raise UsageError(f"{option} {str(path)!r} cannot be created or written to ({exc.strerror or exc}); "
                         "give a folder you can write to") from None
    finally:
        for folder in reversed(made):
            with contextlib.suppress(OSError):  # left behind, empty, rather than a traceback
                folder.rmdir()
