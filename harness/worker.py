"""A worker process that runs items one at a time, and the driver's handle on it.

The worker is started as ``python -m harness.worker --fd N --worker ID`` with its thread
counts and ``CUDA_VISIBLE_DEVICES`` already in its environment, so they are in place
before anything imports torch (a fresh interpreter, not a fork or a multiprocessing spawn,
which would re-import the driver's ``__main__`` and torch with it). It talks to the driver
over a private socket pair with framed pickles (``multiprocessing.connection``).

Messages, driver -> worker: ``("run", spec, item)``, ``("stop",)``.
Worker -> driver: ``("ready", pid, host)`` (after its ``--warm`` start-up work), then per item ``("started", key)`` once the
worker's set-up is done (the item's time limit counts from here) and
``("done", key, status, rows, error, started_at, ended_at)``.

The worker ignores SIGINT: Ctrl-C in a terminal reaches the whole process group, and it is
the driver that decides what to cancel. A thread ends the worker when its parent dies, so
a driver killed with -9 leaves no worker behind.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection, wait

from harness.execution import ItemResult, WorkContext, WorkItem, WorkSpec, call_setup, call_work, resolve_function

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")
PARENT_POLL_S = 0.5
STDERR_TAIL_BYTES = 2000


class WorkerDied(Exception):
    """The worker process ended (``reason`` says how) while the driver expected a message."""


def child_environment(threads: int, gpu: str | None) -> dict[str, str]:
    """The worker's environment: thread counts, GPU pinning ("" hides every GPU), and the
    driver's ``sys.path`` so the worker imports the same modules the driver can."""
    environ = dict(os.environ)
    for name in THREAD_VARIABLES:
        environ[name] = str(threads)
    environ["CUDA_VISIBLE_DEVICES"] = "" if gpu is None else gpu
    paths = [p for p in sys.path if p] + [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return environ


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


class WorkerProcess:
    """The driver's handle on one worker process.

    :param worker_id: a name for the worker, recorded with each result.
    :param threads: thread count put into the worker's environment.
    :param gpu: the ``CUDA_VISIBLE_DEVICES`` value for this worker; ``None`` hides GPUs.
    :param warm: ``"module:function"`` the process calls once as it starts, before it says it
        is ready (e.g. importing torch), so that start-up work overlaps the driver's planning
        and never a timing item; a failure is left for the items to meet.
    """

    def __init__(self, worker_id: str, threads: int, gpu: str | None = None, warm: str | None = None):
        self.worker_id = worker_id
        self.threads = threads
        self.gpu = gpu
        self.warm = warm
        self.pid: int | None = None
        self.host = socket.gethostname()
        self.ready = False
        self.started_mono = 0.0
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._stderr = None

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> "WorkerProcess":
        ours, theirs = socket.socketpair()
        self._stderr = tempfile.TemporaryFile()
        warm = ["--warm", self.warm] if self.warm else []
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "harness.worker", "--fd", str(theirs.fileno()), "--worker", self.worker_id, *warm],
                env=child_environment(self.threads, self.gpu), pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr, close_fds=True,
            )
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self.pid = self._process.pid  # the interpreter itself: no shell in between
        self.started_mono = time.monotonic()
        return self

    @property
    def connection(self) -> Connection:
        assert self._conn is not None, "worker not started"
        return self._conn

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def send(self, spec: WorkSpec, item: WorkItem) -> None:
        try:
            self.connection.send(("run", spec, item))
        except (OSError, EOFError):
            raise WorkerDied(self.death_reason()) from None

    def receive(self) -> tuple:
        """The next message; :class:`WorkerDied` if the process ended instead."""
        try:
            message = self.connection.recv()
        except (OSError, EOFError):
            raise WorkerDied(self.death_reason()) from None
        if message[0] == "ready":
            self.ready, self.pid, self.host = True, message[1], message[2]
        return message

    def death_reason(self) -> str:
        process = self._process
        if process is None:
            return "worker process was never started"
        try:
            returncode = process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "worker process stopped answering"
        how = f"killed by {_signal_name(returncode)}" if returncode < 0 else f"exited with code {returncode}"
        tail = self._stderr_tail()
        return f"worker process {how}" + (f" (stderr: {tail})" if tail else "")

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - STDERR_TAIL_BYTES))
            lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return lines[-1].strip() if lines else ""

    def kill(self) -> None:
        """End the process now (SIGKILL) and release its pipe and files."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        self._close()

    def stop(self, grace_s: float = 2.0) -> None:
        """Ask the worker to exit after its current item; kill it if it does not."""
        if self._process is not None and self._process.poll() is None:
            try:
                self.connection.send(("stop",))
                self._process.wait(timeout=grace_s)
            except (OSError, EOFError, subprocess.TimeoutExpired):
                self._process.kill()
        self._close()

    def _close(self) -> None:
        if self._process is not None:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for resource in (self._conn, self._stderr):
            if resource is not None:
                try:
                    resource.close()
                except OSError:
                    pass
        self._conn = self._stderr = None
        self.ready = False

    # -- one item, blocking (used inside Dask tasks) -------------------------------------
    def run_item(self, spec: WorkSpec, item: WorkItem, startup_timeout_s: float = 120.0) -> tuple[str, tuple]:
        """Run one item to its end. Returns ``("done", message)``, ``("timeout", seconds)``
        or ``("died", reason)``; after a timeout or a death the process is gone."""
        if self._process is None:
            self.start()
        while not self.ready:
            if not wait([self.connection], timeout=max(0.0, self.started_mono + startup_timeout_s - time.monotonic())):
                self.kill()
                return "died", f"worker process did not start within {startup_timeout_s:g} s"
            try:
                self.receive()
            except WorkerDied as exc:
                self._close()
                return "died", str(exc)
        limit = item.timeout_s
        # Until the worker says the item started, its set-up (loading plugins) may take startup_timeout_s too.
        deadline = None if limit is None else time.monotonic() + startup_timeout_s + limit
        try:
            self.send(spec, item)
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if wait([self.connection], timeout=left):
                    message = self.receive()
                    if message[0] == "done":
                        return "done", message
                    if message[0] == "started" and limit is not None:
                        deadline = time.monotonic() + limit
                elif deadline is not None:
                    self.kill()
                    return "timeout", limit
        except WorkerDied as exc:
            self._close()
            return "died", str(exc)


def timeout_reason(limit_s: float) -> str:
    return f"timed out after {limit_s:g} s"


def failed_result(item: WorkItem, reason: str, started_at: float, *, worker: WorkerProcess, attempt: int,
                  isolation: str, spec: WorkSpec) -> ItemResult:
    return ItemResult(item.key, "failed", (), reason, started_at, time.time(), worker.host, worker.pid or 0,
                      worker.worker_id, attempt, isolation, worker.gpu, spec.plugin_sha256)


def done_result(message: tuple, *, worker: WorkerProcess, attempt: int, isolation: str, spec: WorkSpec) -> ItemResult:
    _, key, status, rows, error, started_at, ended_at = message
    return ItemResult(key, status, rows, error, started_at, ended_at, worker.host, worker.pid or 0,
                      worker.worker_id, attempt, isolation, worker.gpu, spec.plugin_sha256)


# -- the worker process itself ------------------------------------------------------------
def _exit_when_orphaned(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent_pid:
            os._exit(1)  # the driver is gone; nobody will read what this process makes


def _context(worker_id: str, spec: WorkSpec, item: WorkItem, memo: dict) -> WorkContext:
    paths = tuple(p.materialize() for p in spec.plugins)
    return WorkContext(worker_id, item.device, spec.threads, paths, spec.plugin_sha256, memo)


def serve(conn: Connection, worker_id: str) -> None:
    memo: dict = {}  # lives as long as the process: loaded registries, built data
    conn.send(("ready", os.getpid(), socket.gethostname()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        _, spec, item = message
        try:
            context = _context(worker_id, spec, item, memo)
            call_setup(spec, context)
            conn.send(("started", item.key))  # the item's time limit starts now
            started_at = time.time()
            status, rows, error = call_work(spec, item, context)
        except (EOFError, OSError):
            return
        except BaseException as exc:  # noqa: BLE001 -- e.g. a damaged plugin text
            started_at = time.time()
            status, rows, error = "failed", (), f"{type(exc).__name__}: {exc}"
        ended_at = time.time()
        try:
            conn.send(("done", item.key, status, rows, error, started_at, ended_at))
        except (EOFError, OSError):
            return
        except Exception as exc:  # rows that cannot be pickled
            conn.send(("done", item.key, "failed", (), f"the item's rows cannot be sent back: {type(exc).__name__}: {exc}",
                       started_at, ended_at))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--worker", required=True)
    parser.add_argument("--warm", help="module:function to call once before saying ready")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    conn = Connection(args.fd)
    if args.warm:
        try:
            resolve_function(args.warm)()
        except BaseException:  # noqa: BLE001 -- the items' own set-up meets (and reports) the same failure
            pass
    serve(conn, args.worker)
    # Skip interpreter teardown: plugin threads or CUDA contexts must not keep us alive.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
