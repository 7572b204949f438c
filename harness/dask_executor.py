"""Run a sweep's items on a Dask distributed cluster (``rnnbench run --cluster ADDRESS``).

Each item is one Dask task. Inside the task, the item runs in a child worker process
(:class:`harness.worker.WorkerProcess`, one per Dask thread and one per GPU, reused
between items), so a hung item is killed at its deadline without taking the Dask worker
down, and thread counts and ``CUDA_VISIBLE_DEVICES`` are set before torch starts.

How workers must be started (one Dask worker process per machine, K item slots)::

    dask scheduler --host 0.0.0.0 --port 8786
    dask worker tcp://SCHEDULER:8786 --nworkers 1 --nthreads K --resources "machine=1"
    dask worker tcp://SCHEDULER:8786 --nworkers 1 --nthreads K --resources "machine=1,gpu=G"  # G GPUs

Timing (exclusive) items need the resource ``machine=1`` and the run treats them as a
barrier: no shared item is in flight while exclusive items run, and ``machine=1`` lets at
most one exclusive item run per Dask worker, i.e. per machine when each machine runs one
Dask worker. cuda items need ``gpu=1``; the task pins its child process to one of the
worker's GPUs. An item whose child process dies is retried once on another Dask worker,
then recorded as failed. When a whole Dask worker dies, the scheduler itself reschedules
its tasks up to ``distributed.scheduler.allowed-failures`` times (start the scheduler with
``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=1`` for "retry once"), then the item is
recorded as failed.
"""

from __future__ import annotations

import atexit
import os
import queue
import socket
import sys
import threading
import time
from typing import Iterator, Sequence
from urllib.parse import urlsplit

from harness.execution import (ALONE, EXCLUSIVE, SHARED_HOST, ClusterUnreachableError, ExecutorError, ItemResult,
                               WorkItem, WorkSpec, dispatch_order)
from harness.executors import MAX_ATTEMPTS, Executor, check_unique_keys
from harness.worker import WorkerProcess, done_result, failed_result, timeout_reason

MACHINE_RESOURCE = "machine"
GPU_RESOURCE = "gpu"
INSTALL_HINT = "--cluster needs Dask: pip install 'rnnbench[cluster]' (dask and distributed)"


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ExecutorError(INSTALL_HINT) from None
    return distributed


def _probe_tcp(address: str, timeout_s: float) -> None:
    """Fail fast, and without Dask's noisy clean-up, when nothing listens at a tcp:// address."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme != "tcp":
        return
    try:
        port = parts.port or 8786
        host = parts.hostname or "127.0.0.1"
    except ValueError as exc:
        raise ClusterUnreachableError(address, f"not a valid address ({exc})") from None
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterUnreachableError(address, exc.strerror or type(exc).__name__) from None


class DaskExecutor(Executor):
    """Items on the Dask cluster whose scheduler listens at ``address``.

    Connects when constructed, so an unreachable scheduler is a
    :class:`ClusterUnreachableError` before anything is stored.

    :param connect_timeout_s: how long to try to reach the scheduler.
    :param worker_wait_s: how long ``run`` waits for at least one worker to join.
    """

    name = "dask"

    def __init__(self, address: str, *, connect_timeout_s: float = 10.0, worker_wait_s: float = 30.0):
        distributed = _import_distributed()
        self.address = address
        self.worker_wait_s = worker_wait_s
        _probe_tcp(address, connect_timeout_s)
        try:
            self._client = distributed.Client(address, timeout=connect_timeout_s, set_as_default=False)
        except (OSError, ValueError, TimeoutError) as exc:
            raise ClusterUnreachableError(address, str(exc)) from None
        self._hosts: set[str] = set()

    def describe(self) -> dict:
        info = self._client.scheduler_info()
        workers = info.get("workers", {})
        return {"executor": self.name, "cluster": self.address, "dask_workers": len(workers),
                "threads": sum(w.get("nthreads", 0) for w in workers.values()),
                "hosts": sorted({w.get("host", "?") for w in workers.values()}),
                "resources": {a: w.get("resources", {}) for a, w in workers.items()}}

    def close(self) -> None:
        client, self._client = getattr(self, "_client", None), None
        if client is not None:
            client.close()

    def _workers(self) -> dict:
        try:
            self._client.wait_for_workers(1, timeout=self.worker_wait_s)
        except (TimeoutError, OSError):
            raise ExecutorError(f"the Dask scheduler at {self.address!r} has no workers "
                                f"(waited {self.worker_wait_s:g} s); start some with 'dask worker {self.address}'") from None
        return self._client.scheduler_info(n_workers=-1)["workers"]

    def _check_resources(self, items: Sequence[WorkItem], workers: dict) -> None:
        offered = [w.get("resources", {}) for w in workers.values()]
        if any(i.kind == EXCLUSIVE for i in items) and not any(r.get(MACHINE_RESOURCE) for r in offered):
            raise ExecutorError(f"timing items need Dask workers started with --resources \"{MACHINE_RESOURCE}=1\" "
                                f"(one worker per machine); none of the {len(workers)} workers offers it")
        if any(i.device == "cuda" for i in items) and not any(r.get(GPU_RESOURCE) for r in offered):
            raise ExecutorError(f"cuda items need Dask workers started with --resources \"{GPU_RESOURCE}=N\"; "
                                f"none of the {len(workers)} workers offers it")

    def run(self, items: Sequence[WorkItem], spec: WorkSpec) -> Iterator[ItemResult]:
        check_unique_keys(items)
        workers = self._workers()
        self._check_resources(items, workers)
        if any(i.kind == EXCLUSIVE for i in items):
            for line in shared_timing_hosts(workers):
                sys.stderr.write(f"rnnbench: warning: {line}\n")
        for segment in _segments(dispatch_order(items)):
            yield from self._run_segment(segment, spec, list(workers))

    def _submit(self, item: WorkItem, spec: WorkSpec, attempt: int, avoid: str | None, workers: list[str],
                priority: int):
        resources = {}
        if item.kind == EXCLUSIVE:
            resources[MACHINE_RESOURCE] = 1
        if item.device == "cuda":
            resources[GPU_RESOURCE] = 1
        others = [w for w in workers if w != avoid] if avoid else None
        isolation = ALONE if item.kind == EXCLUSIVE else SHARED_HOST
        return self._client.submit(run_in_dask_worker, spec, item, attempt, isolation, pure=False,
                                   key=f"rnnbench-{item.key}-{attempt}-{time.monotonic_ns()}",
                                   resources=resources or None, workers=others or None,
                                   allow_other_workers=bool(others),  # prefer others; never wait forever
                                   priority=priority)  # higher first: the scheduler keeps dispatch_order

    def _run_segment(self, segment: list[WorkItem], spec: WorkSpec, workers: list[str]) -> Iterator[ItemResult]:
        distributed = _import_distributed()
        live = {}  # future key -> (future, item, attempt)
        priorities = {item.key: len(segment) - index for index, item in enumerate(segment)}
        for item in segment:
            future = self._submit(item, spec, 1, None, workers, priorities[item.key])
            live[future.key] = (future, item, 1)
        completed = distributed.as_completed([f for f, _, _ in live.values()], loop=self._client.loop)
        try:
            for future in completed:
                _, item, attempt = live.pop(future.key)
                outcome = self._outcome(future, item, attempt, spec)
                if outcome[0] == "retry":
                    retry = self._submit(item, spec, attempt + 1, outcome[1], workers, priorities[item.key])
                    live[retry.key] = (retry, item, attempt + 1)
                    completed.add(retry)
                    continue
                yield outcome[1]
        finally:
            if live:  # left early (Ctrl-C, an error): cancel what has not finished
                self._client.cancel([f for f, _, _ in live.values()], force=True)

    def _outcome(self, future, item: WorkItem, attempt: int, spec: WorkSpec) -> tuple:
        isolation = ALONE if item.kind == EXCLUSIVE else SHARED_HOST
        try:
            status, result = future.result()
        except Exception as exc:  # KilledWorker (the Dask worker died, again and again) and friends
            reason = f"the Dask task failed: {type(exc).__name__}: {exc}"
            return "result", ItemResult(item.key, "failed", (), reason, time.time(), time.time(), "?", 0, "?",
                                        attempt, isolation, None, spec.plugin_sha256)
        if status == "died" and attempt < MAX_ATTEMPTS:
            return "retry", result.worker.split("#")[0]
        return "result", result


def shared_timing_hosts(workers: dict) -> list[str]:
    """One line per host on which several Dask workers offer ``machine=1``: timing items may then run
    side by side on one machine, each slowing the other (start one worker per machine, as the module says)."""
    by_host: dict[str, list[str]] = {}
    for address, info in workers.items():
        if info.get("resources", {}).get(MACHINE_RESOURCE):
            by_host.setdefault(info.get("host") or urlsplit(address).hostname or "?", []).append(address)
    return [f"{len(addresses)} Dask workers on host {host} offer {MACHINE_RESOURCE}=1 ({', '.join(sorted(addresses))}): "
            f"timing items may run side by side there and slow each other; start one worker per machine"
            for host, addresses in sorted(by_host.items()) if len(addresses) > 1]


def _segments(items: Sequence[WorkItem]) -> list[list[WorkItem]]:
    """Consecutive runs of items of one kind: each exclusive run is a barrier."""
    segments: list[list[WorkItem]] = []
    for item in items:
        if segments and segments[-1][0].kind == item.kind:
            segments[-1].append(item)
        else:
            segments.append([item])
    return segments


# -- inside a Dask worker process ----------------------------------------------------------
_children_lock = threading.Lock()
_children: dict[str, WorkerProcess] = {}  # slot -> child process, reused between items
_free_gpus: queue.Queue | None = None


def _gpu_ids(dask_worker) -> list[str]:
    count = int(dask_worker.state.total_resources.get(GPU_RESOURCE, 0))
    visible = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return (visible or [str(i) for i in range(count)])[:count]


def _take_gpu(dask_worker) -> str:
    global _free_gpus
    with _children_lock:
        if _free_gpus is None:
            _free_gpus = queue.Queue()
            for gpu in _gpu_ids(dask_worker):
                _free_gpus.put(gpu)
    return _free_gpus.get(timeout=60)  # the scheduler's gpu resource keeps this from waiting


def _child(slot: str, address: str, threads: int, gpu: str | None) -> WorkerProcess:
    with _children_lock:
        child = _children.get(slot)
        if child is None or child.threads != threads or not child.alive:
            if child is not None:
                child.kill()
            child = WorkerProcess(f"{address}#{slot}", threads, gpu)
            _children[slot] = child
            if len(_children) == 1:
                atexit.register(_end_children)
        return child


def _end_children() -> None:
    with _children_lock:
        for child in _children.values():
            child.kill()
        _children.clear()


def run_in_dask_worker(spec: WorkSpec, item: WorkItem, attempt: int, isolation: str) -> tuple[str, ItemResult]:
    """The Dask task: run ``item`` in this Dask worker's child process for the slot.

    Returns ``(status, result)`` where status is "done", "timeout" or "died"; the driver
    retries "died" once elsewhere."""
    distributed = _import_distributed()
    dask_worker = distributed.get_worker()
    gpu = _take_gpu(dask_worker) if item.device == "cuda" else None
    slot = f"gpu{gpu}" if gpu is not None else threading.current_thread().name
    try:
        child = _child(slot, dask_worker.address, spec.threads, gpu)
        started_at = time.time()
        status, detail = child.run_item(spec, item)
        if status == "done":
            return status, done_result(detail, worker=child, attempt=attempt, isolation=isolation, spec=spec)
        reason = timeout_reason(detail) if status == "timeout" else detail
        if status == "died" and attempt >= MAX_ATTEMPTS:
            reason = f"{reason}; the item was tried {attempt} times"
        return status, failed_result(item, reason, started_at, worker=child, attempt=attempt, isolation=isolation,
                                     spec=spec)
    finally:
        if gpu is not None and _free_gpus is not None:
            _free_gpus.put(gpu)
