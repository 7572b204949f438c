"""Executors: run a sweep's items and yield each :class:`ItemResult` as it finishes.

- :class:`InProcessExecutor`: one item after another in the driver (``--workers 1``).
- :class:`LocalPoolExecutor`: N long-lived worker processes on this machine.
- :class:`harness.dask_executor.DaskExecutor`: a Dask distributed cluster (``--cluster``).

Every executor is used the same way; results come back in any order, and only the caller
(the driver) writes them to the store::

    with LocalPoolExecutor(workers=2) as executor:
        for result in executor.run(items, WorkSpec("harness.runner:run_item", threads=1)):
            store(result)

Rules every executor keeps: an exclusive item never overlaps another item on its
machine; an item whose worker dies is retried once on another worker and then recorded
as failed; an item past its ``timeout_s`` has its process killed and is recorded as
"timed out after N s"; anything the work function raises, ``SystemExit`` and
``KeyboardInterrupt`` included, becomes a failed item. Leaving ``run`` early (Ctrl-C, or
the caller stops iterating) cancels what is pending and ends the worker processes;
results already yielded are the caller's to keep.
"""

from __future__ import annotations

import abc
import os
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Iterator, Sequence

from harness.execution import (ALONE, EXCLUSIVE, IN_PROCESS, SHARED_HOST, ExecutorError, ItemResult, WorkContext,
                               WorkerStartError, WorkItem, WorkSpec, call_work, dispatch_order)
from harness.worker import WorkerDied, WorkerProcess, done_result, failed_result, timeout_reason

MAX_ATTEMPTS = 2  # a worker dying mid-item earns the item one more try elsewhere
MAX_START_FAILURES = 3  # workers dying before they are ready: the environment is broken
POLL_S = 1.0


class Executor(abc.ABC):
    """Runs items; subclasses say where. Use as a context manager so workers are ended."""

    name = "executor"
    enforces_time_limits = True  # can end an item past its timeout_s
    starts_longest_first = True  # runs items side by side, longest expected first (WorkItem.expected_s)

    @abc.abstractmethod
    def run(self, items: Sequence[WorkItem], spec: WorkSpec) -> Iterator[ItemResult]:
        """Yield one result per item, in any order."""

    def describe(self) -> dict:
        """How runs on this executor are executed, for the runs table."""
        return {"executor": self.name}

    def close(self) -> None:
        """End worker processes and connections; the executor cannot run items after."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def check_unique_keys(items: Sequence[WorkItem]) -> None:
    seen: set[str] = set()
    for item in items:
        if item.key in seen:
            raise ValueError(f"two items share the key {item.key!r}")
        seen.add(item.key)


class InProcessExecutor(Executor):
    """Today's behaviour: items run one after another in the driver process.

    ``timeout_s`` cannot be enforced here (there is no process to end); use
    ``LocalPoolExecutor(workers=1)`` when a time limit matters. A ``KeyboardInterrupt`` is
    a Ctrl-C only if SIGINT really arrived; one raised by the item's code fails the item.
    """

    name = "in-process"
    enforces_time_limits = False
    starts_longest_first = False  # one at a time: the order cannot shorten the sweep

    def __init__(self):
        self._memo: dict = {}
        self._signalled: BaseException | None = None
        self._plugin_paths: dict[tuple[str, ...], tuple[Path, ...]] = {}

    def describe(self) -> dict:
        return {"executor": self.name, "workers": 1}

    def share(self, memo: dict, plugin_paths: Sequence[str | os.PathLike], plugin_sha256: Sequence[str]) -> None:
        """Values this process already holds (the driver's plugin registry) for the items' work
        function, and the plugin files it read them from: items of a spec with these plugins
        use them instead of importing a copy of each file a second time."""
        self._memo.update(memo)
        self._plugin_paths[tuple(plugin_sha256)] = tuple(Path(p) for p in plugin_paths)

    def run(self, items: Sequence[WorkItem], spec: WorkSpec) -> Iterator[ItemResult]:
        check_unique_keys(items)
        paths = self._plugin_paths.get(spec.plugin_sha256) or tuple(p.materialize() for p in spec.plugins)
        previous = self._watch_signals()
        try:
            for item in items:
                context = WorkContext("in-process", item.device, spec.threads, paths, spec.plugin_sha256, self._memo)
                started_at = time.time()
                status, rows, error = call_work(spec, item, context)
                if self._signalled is not None:
                    raise self._signalled
                yield ItemResult(item.key, status, rows, error, started_at, time.time(), socket.gethostname(),
                                 os.getpid(), "in-process", 1, IN_PROCESS, os.environ.get("CUDA_VISIBLE_DEVICES"),
                                 spec.plugin_sha256)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _watch_signals(self) -> dict:
        """Note what a real SIGINT (or a SIGTERM the caller turns into an exception) raised, then
        behave as the handler that was installed does; return the handlers to put back."""
        self._signalled = None
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(signum)
            if not callable(handler):  # SIG_DFL / SIG_IGN: nothing raises in Python
                continue

            def watch(number, frame, handler=handler):
                try:
                    handler(number, frame)
                except BaseException as exc:
                    self._signalled = exc
                    raise

            previous[signum] = signal.signal(signum, watch)
        return previous


@dataclass
class _Running:
    item: WorkItem
    attempt: int
    started_at: float  # wall clock, for failure records
    deadline_mono: float | None


class LocalPoolExecutor(Executor):
    """N worker processes on this machine, reused between items and replaced when one dies.

    :param workers: number of worker processes (>= 1).
    :param gpus: ``CUDA_VISIBLE_DEVICES`` values, one per GPU to use; the first
        ``len(gpus)`` workers are each pinned to one of them and are the only ones given
        cuda items (cpu items go to GPU workers only when no other worker is idle).
        The other workers see no GPU.
    :param startup_timeout_s: how long a worker may take to start (import harness, and run ``warm``).
    :param warm: ``"module:function"`` each worker calls as it starts, before it is given items
        (:class:`harness.worker.WorkerProcess`).

    Scheduling: shared items start longest expected first (:func:`harness.execution.dispatch_order`),
    and an exclusive item is a barrier: it starts when nothing runs and every worker has
    finished starting up (an interpreter importing torch takes a core), and nothing starts
    while it runs. Call :meth:`start` early to let workers start up while the driver plans.
    """

    name = "local"

    def __init__(self, workers: int, *, gpus: Sequence[str] = (), startup_timeout_s: float = 120.0,
                 warm: str | None = None):
        if workers < 1:
            raise ExecutorError(f"--workers must be at least 1, got {workers}")
        if len(gpus) > workers:
            raise ExecutorError(f"{len(gpus)} GPUs need at least {len(gpus)} workers (one per GPU); got --workers {workers}")
        self.workers = workers
        self.gpus = tuple(gpus)
        self.startup_timeout_s = startup_timeout_s
        self.warm = warm
        self._threads: int | None = None
        self._pool: list[WorkerProcess] = []
        self._spawned = 0
        self._start_failures = 0

    def describe(self) -> dict:
        return {"executor": self.name, "workers": self.workers, "gpus": list(self.gpus)}

    @property
    def threads(self) -> int | None:
        """The thread count the worker processes were started with (None: not started)."""
        return self._threads

    def close(self) -> None:
        for worker in self._pool:
            if worker.ready:
                worker.stop()
            else:  # still starting up (e.g. a pool started early, then a usage error): nothing to finish
                worker.kill()
        self._pool = []

    def _kill_all(self) -> None:
        for worker in self._pool:
            worker.kill()
        self._pool = []

    # -- workers --------------------------------------------------------------------------
    def _new_worker(self, slot: int) -> WorkerProcess:
        gpu = self.gpus[slot] if slot < len(self.gpus) else None
        self._spawned += 1
        return WorkerProcess(f"local-{self._spawned - 1}", self._threads or 1, gpu, self.warm).start()

    def start(self, threads: int) -> "LocalPoolExecutor":
        """Start the worker processes now (each imports torch, a second or more), so that they
        start up while the driver plans; :meth:`run` with the same thread count uses them."""
        self._ensure_pool(threads)
        return self

    def resize(self, workers: int) -> None:
        """Keep ``workers`` processes (>= the GPU workers): extra ones already started are stopped,
        missing ones start with the next :meth:`start` or :meth:`run`."""
        if not len(self.gpus) <= workers:
            raise ExecutorError(f"cannot resize a pool of {self.workers} workers ({len(self.gpus)} GPUs) to {workers}")
        for worker in self._pool[workers:]:
            worker.kill()  # idle and possibly still importing: nothing to finish
        self._pool, self.workers = self._pool[:workers], workers

    def _ensure_pool(self, threads: int) -> None:
        if self._threads != threads:  # thread counts are fixed at process start
            self.close()
            self._threads = threads
        while len(self._pool) < self.workers:
            self._pool.append(self._new_worker(len(self._pool)))

    def _replace(self, worker: WorkerProcess) -> None:
        slot = self._pool.index(worker)
        worker.kill()
        self._pool[slot] = self._new_worker(slot)

    def _is_gpu_worker(self, worker: WorkerProcess) -> bool:
        return worker.gpu is not None

    # -- scheduling -------------------------------------------------------------------------
    def _isolation(self, item: WorkItem) -> str:
        return ALONE if item.kind == EXCLUSIVE or self.workers == 1 else SHARED_HOST

    def _pick_worker(self, item: WorkItem, idle: list[WorkerProcess]) -> WorkerProcess | None:
        if item.device == "cuda":
            return next((w for w in idle if self._is_gpu_worker(w)), None)
        return next((w for w in idle if not self._is_gpu_worker(w)), None) or next(iter(idle), None)

    def _dispatch(self, pending: deque, running: dict, spec: WorkSpec) -> None:
        """Start what may start now (see the class docstring for the order rules)."""
        if any(r.item.kind == EXCLUSIVE for r in running.values()):
            return
        idle = [w for w in self._pool if w.ready and w not in running]
        index = 0
        while idle and index < len(pending):
            item, attempt = pending[index]
            if item.kind == EXCLUSIVE and (running or index > 0 or len(idle) < len(self._pool)):
                return  # a barrier: everything before it must finish, and every worker be ready
            worker = self._pick_worker(item, idle)
            if worker is None:
                index += 1
                continue
            del pending[index]
            idle.remove(worker)
            # Until the worker reports "started", its set-up (loading plugins) may take startup_timeout_s too.
            deadline = None if item.timeout_s is None else time.monotonic() + self.startup_timeout_s + item.timeout_s
            running[worker] = _Running(item, attempt, time.time(), deadline)
            try:
                worker.send(spec, item)
            except WorkerDied:
                pass  # noticed (and retried) when its connection reports the death
            if item.kind == EXCLUSIVE:
                return

    def run(self, items: Sequence[WorkItem], spec: WorkSpec) -> Iterator[ItemResult]:
        check_unique_keys(items)
        if any(i.device == "cuda" for i in items) and not self.gpus:
            raise ExecutorError("cuda items need a GPU worker, but this pool was given no GPUs")
        finished = False
        try:
            self._ensure_pool(spec.threads)
            pending: deque = deque((item, 1) for item in dispatch_order(items))
            running: dict[WorkerProcess, _Running] = {}
            while pending or running:
                self._dispatch(pending, running, spec)
                yield from self._collect(pending, running, spec)
            finished = True
        finally:
            if not finished:  # Ctrl-C, an error, or the caller stopped iterating
                self._kill_all()

    def _collect(self, pending: deque, running: dict, spec: WorkSpec) -> Iterator[ItemResult]:
        """Wait for messages, deaths or a deadline, and handle each."""
        deadlines = [r.deadline_mono for r in running.values() if r.deadline_mono is not None]
        timeout = POLL_S if not deadlines else max(0.0, min(min(deadlines) - time.monotonic(), POLL_S))
        by_connection = {w.connection: w for w in self._pool}
        for connection in wait(list(by_connection), timeout=timeout):
            worker = by_connection[connection]
            try:
                message = worker.receive()
            except WorkerDied as exc:
                yield from self._on_death(worker, str(exc), pending, running, spec)
                continue
            if message[0] == "ready":
                self._start_failures = 0
            elif message[0] == "started" and worker in running:
                task = running[worker]
                if task.item.timeout_s is not None:
                    task.deadline_mono = time.monotonic() + task.item.timeout_s
            elif message[0] == "done" and worker in running:
                task = running.pop(worker)
                yield done_result(message, worker=worker, attempt=task.attempt,
                                  isolation=self._isolation(task.item), spec=spec)
        yield from self._enforce_limits(running, spec)

    def _on_death(self, worker: WorkerProcess, reason: str, pending: deque, running: dict,
                  spec: WorkSpec) -> Iterator[ItemResult]:
        task = running.pop(worker, None)
        if not worker.ready:
            self._start_failures += 1
            if self._start_failures >= MAX_START_FAILURES:
                raise WorkerStartError(f"worker processes die before they start: {reason}")
        self._replace(worker)
        if task is None:
            return
        if task.attempt < MAX_ATTEMPTS:
            pending.appendleft((task.item, task.attempt + 1))
        else:
            yield failed_result(task.item, f"{reason}; the item was tried {task.attempt} times",
                                task.started_at, worker=worker, attempt=task.attempt,
                                isolation=self._isolation(task.item), spec=spec)

    def _enforce_limits(self, running: dict, spec: WorkSpec) -> Iterator[ItemResult]:
        now = time.monotonic()
        for worker, task in list(running.items()):
            if task.deadline_mono is not None and now >= task.deadline_mono:
                del running[worker]
                result = failed_result(task.item, timeout_reason(task.item.timeout_s), task.started_at, worker=worker,
                                       attempt=task.attempt, isolation=self._isolation(task.item), spec=spec)
                self._replace(worker)
                yield result
        for worker in list(self._pool):
            if not worker.ready and now - worker.started_mono > self.startup_timeout_s:
                self._start_failures += 1
                if self._start_failures >= MAX_START_FAILURES:
                    raise WorkerStartError(f"worker processes do not start within {self.startup_timeout_s:g} s")
                self._replace(worker)
