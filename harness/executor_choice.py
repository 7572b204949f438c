"""Which executor runs a sweep, from ``--workers``, ``--cluster`` and ``--item-timeout``.

- ``--cluster ADDRESS``: a Dask distributed cluster (:class:`harness.dask_executor.DaskExecutor`).
- ``--workers 1`` without ``--item-timeout``: every item in the rnnbench process itself, one
  after another (rnnbench's behaviour before worker processes; no time limit can be enforced
  there, since there is no process to end).
- otherwise a pool of worker processes on this machine
  (:class:`harness.executors.LocalPoolExecutor`). ``--workers auto`` (the default) starts one
  per usable core divided by ``--threads`` (at least one, at most one per item that can run
  side by side), and at least one per GPU when cuda is among the devices; GPU workers are
  pinned with ``CUDA_VISIBLE_DEVICES`` and are the only ones given cuda items. ``--workers N``
  starts N, but never more than the items that can run side by side (or the GPUs), and says in
  one line when N is more than the usable cores; N that cannot fit in memory is refused.

Timing items never share the machine: they run one at a time with nothing else running
(see :mod:`harness.executors`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from harness.errors import UsageError
from harness.executors import Executor, InProcessExecutor, LocalPoolExecutor
from harness.names import whole_number
from harness.preflight import MAX_THREADS, check_worker_memory

AUTO = "auto"
WORKERS_ENV = "RNNBENCH_WORKERS"  # the default of --workers, e.g. 1 in the test suite
NO_LIMIT = "none"
MAX_WORKERS = MAX_THREADS  # as --threads: past the cores of any one machine
WARM_UP = "harness.item_work:warm_up"  # what every local worker does as it starts
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")  # NVIDIA, ROCm, WSL: a GPU torch may use


@dataclass(frozen=True)
class ExecutionRequest:
    """What the command line asked for. ``workers`` is None for auto; ``item_timeout_s`` None
    for no limit; ``timeout_given`` says whether the limit was typed (not the profile's default)."""

    workers: int | None = None
    cluster: str | None = None
    item_timeout_s: float | None = None
    timeout_given: bool = False


def parse_workers(text: str) -> int | None:
    """``auto`` -> None, else a whole number from 1 to :data:`MAX_WORKERS` (one clear line otherwise)."""
    value = str(text).strip().lower()
    if value == AUTO:
        return None
    workers = whole_number(value) or 0
    if not 1 <= workers <= MAX_WORKERS:  # each worker is a process that imports torch
        raise UsageError(f"--workers {text!r}: give a whole number of worker processes from 1 to {MAX_WORKERS}, "
                         "or 'auto'")
    return workers


def parse_timeout(text: str) -> float | None:
    """Seconds > 0, or ``none`` for no limit (0 is refused: read as no limit, it contradicted the
    message, which asks for a number above 0)."""
    value = str(text).strip().lower()
    if value == NO_LIMIT:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= 1e9):
        raise UsageError(f"--item-timeout {text!r}: give seconds (a number above 0, e.g. 600) or 'none' for no limit")
    return seconds


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def visible_gpus() -> tuple[str, ...]:
    """``CUDA_VISIBLE_DEVICES`` values for every GPU this process may use."""
    import torch

    if not torch.cuda.is_available():
        return ()
    listed = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return tuple(listed or (str(i) for i in range(torch.cuda.device_count())))[: torch.cuda.device_count()]


def auto_workers(threads: int, side_by_side: int, gpus: int = 0, cpus: int | None = None) -> int:
    """One worker per ``threads`` usable cores, no more than ``side_by_side`` items can use,
    and at least one per GPU."""
    per_cpu = max(1, (cpus or usable_cpus()) // max(1, threads))
    return max(1, min(per_cpu, max(1, side_by_side)), gpus)


def worker_warnings(request: ExecutionRequest) -> list[str]:
    """One line when ``--workers N`` asks for more processes than there are usable cores."""
    cpus = usable_cpus()
    if request.cluster or request.workers is None or request.workers <= cpus:
        return []
    return [f"--workers {request.workers} is more than the {cpus} usable CPU cores here: no more start than the run "
            "has training items to run side by side, and those will compete for cores"]


def early_pool(request: ExecutionRequest, *, threads: int, devices, resuming: bool,
               side_by_side: int | None = None) -> LocalPoolExecutor | None:
    """A local pool started once the run's names and sizes are validated, before the driver
    plans, so that its workers' start-up (importing torch: seconds) overlaps the planning and
    a usage error never waits on it; None where its make-up is not known yet. Known: local workers, not a resumed run (whose thread count is stored), and no
    GPU to pin (a GPU worker's ``CUDA_VISIBLE_DEVICES`` is fixed at start, and only torch can
    say whether a GPU is usable). ``auto`` starts one per usable core / ``threads``, ``--workers N``
    at most one per usable core (each imports torch: a thousand at once exhaust any machine's memory),
    and neither more than ``side_by_side``, the most training items the run may plan (timing items
    run alone, so one worker is enough for them); :func:`make_executor` trims
    the pool to the planned items, or grows or replaces it."""
    if request.cluster or resuming or (request.workers == 1 and not request.timeout_given):
        return None
    if any(d != "cpu" for d in devices) and any(os.path.exists(f) for f in GPU_DEVICE_FILES):
        return None
    cpus = usable_cpus()
    workers = min(request.workers, cpus) if request.workers else auto_workers(threads, side_by_side=cpus, cpus=cpus)
    if side_by_side is not None:
        workers = max(1, min(workers, side_by_side))
    if request.workers is not None:
        check_worker_memory(workers)
    return LocalPoolExecutor(workers, warm=WARM_UP).start(threads)


def _adopt(started: LocalPoolExecutor | None, workers: int, gpus, threads: int) -> LocalPoolExecutor:
    """``started`` trimmed or grown to ``workers`` when it fits (no GPUs, same threads), else a new pool."""
    if started is not None and not gpus and started.threads == threads:
        started.resize(workers)
        return started
    if started is not None:
        started.close()
    return LocalPoolExecutor(workers, gpus=gpus, warm=WARM_UP)


def make_executor(request: ExecutionRequest, *, devices, threads: int, side_by_side: int,
                  started: LocalPoolExecutor | None = None) -> Executor:
    """The executor for this run. ``side_by_side``: items that may run at the same time
    (training items); timing items run alone whatever the pool's size. ``started``: the pool
    :func:`early_pool` started, used when it fits and closed when not."""
    if request.cluster:
        if request.workers is not None:
            raise UsageError("--workers and --cluster cannot be combined: on a cluster the Dask workers' "
                             "--nthreads sets how many items run at once")
        from harness.dask_executor import DaskExecutor

        return DaskExecutor(request.cluster)
    if request.workers == 1 and not request.timeout_given:
        return InProcessExecutor()
    gpus = visible_gpus() if "cuda" in devices else ()
    if request.workers is None:
        workers = auto_workers(threads, side_by_side, len(gpus))
    else:  # as typed, but no more than the items that can run at once: the others would sit idle
        gpus = gpus[: request.workers]
        workers = max(min(request.workers, max(1, side_by_side)), len(gpus))
        check_worker_memory(workers)
    return _adopt(started, workers, gpus, threads)


def execution_request(workers, cluster, item_timeout) -> "ExecutionRequest":
    """The request as typed: ``--workers``, ``--cluster`` and ``--item-timeout`` (None: not given)."""
    return ExecutionRequest(workers=parse_workers(workers), cluster=cluster or None,
                            item_timeout_s=None if item_timeout is None else parse_timeout(item_timeout),
                            timeout_given=item_timeout is not None)


def executor_for(request: "ExecutionRequest", config, registry, started: LocalPoolExecutor | None = None) -> Executor:
    """The executor for a run's planned items (a pool no larger than its training items);
    ``started``: see :func:`make_executor`."""
    from harness.runner import SpeedItem, plan

    side_by_side = sum(not isinstance(item, SpeedItem) for item in plan(config, registry))
    return make_executor(request, devices=config.devices, threads=config.threads, side_by_side=side_by_side,
                         started=started)


def item_timeout_in_force(request: "ExecutionRequest", config, executor: Executor) -> float | None:
    """The per-item limit in force: the one typed, else the profile's; none where items run in this process."""
    from harness.profiles import PROFILES

    limit = request.item_timeout_s if request.timeout_given else PROFILES.get(config.profile, PROFILES["default"]).item_timeout_s
    return limit if executor.enforces_time_limits else None
