"""The driver of a run: hands the planned items to an executor and stores each item's rows
as its result arrives, in whatever order, in one committed transaction per item. Only the
driver writes the results store; workers only return rows.

Ctrl-C (or SIGTERM) cancels what is pending, keeps what finished and marks the run
``interrupted``; ``--resume`` measures what is missing. Any other way out of a run (an
error in the driver, ``SystemExit`` from plugin code, workers that cannot start) marks it
``failed`` with the reason, never leaves it ``running``.

``--resume`` skips every item already stored, failed ones included, so a cell that hangs
until its time limit is not run again and again; ``retry_failed`` measures failed items
again (e.g. with a longer ``--item-timeout``).
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass, field, replace
from typing import Callable

from harness import env
from harness.config import RunConfig
from harness.errors import RnnbenchError
from harness.execution import ItemResult, PluginSource, WorkSpec, describe_escape
from harness.executors import Executor, InProcessExecutor
from harness.item_cost import expected_seconds
from harness.item_work import (WORK_FUNCTION, driver_plugin_labels, loaded_registry, relabel, setup_function,
                               work_item)
from harness.names import SPEED
from harness.plugins import AUTOLOAD_ENV, Registry
from harness.results import ResultRow
from harness.runner import failed_rows, plan, strict_float32
from harness.speed import SPEED_METHOD
from harness.store import ResultStore
from harness.task_options import task_records

ProgressCallback = Callable[[int, int, object, str, float], None]


@dataclass
class RunOutcome:
    run_id: int
    status: str = "running"
    counts: dict = field(default_factory=lambda: {"ok": 0, "failed": 0, "skipped": 0})
    reason: str | None = None


class RunInterrupted(Exception):
    """Ctrl-C or SIGTERM during a run; ``outcome`` says what was kept."""

    def __init__(self, outcome: RunOutcome):
        super().__init__(f"run {outcome.run_id} interrupted")
        self.outcome = outcome


class Terminated(KeyboardInterrupt):
    """SIGTERM (a job scheduler's stop, ``timeout``), handled like Ctrl-C."""


class RunStopped(RnnbenchError):
    """The run could not go on (stored as ``failed`` with this message as its reason)."""


@dataclass(frozen=True)
class _Session:
    """What one call of :func:`execute` works with."""

    config: RunConfig
    store: ResultStore
    run_id: int
    threads: int
    labels: dict
    on_item: ProgressCallback | None


def execute(config: RunConfig, registry: Registry, store: ResultStore, argv: list[str], *,
            on_item: ProgressCallback | None = None, resume_run: int | None = None, plugin_files: tuple[str, ...] = (),
            out_dir: str | None = None, executor: Executor | None = None, item_timeout_s: float | None = None,
            retry_failed: bool = False) -> RunOutcome:
    """Run every planned item on ``executor`` (default: in this process) and store its rows.

    ``plugin_files`` are shipped to workers by content and stored with a new run, as is
    ``out_dir``, for ``--resume``. ``item_timeout_s`` limits each item's wall time where the
    executor can end an item (worker processes). ``on_item(done, total, item, status, seconds)``
    is called once per item, stored earlier or finished now.
    """
    items = plan(config, registry)
    threads = env.set_threads(config.threads)
    for device in config.devices:
        strict_float32(device)
    executor = executor or InProcessExecutor()
    sources = tuple(PluginSource.read(p) for p in plugin_files)
    execution = {**executor.describe(), "item_timeout_s": item_timeout_s}
    if resume_run is None:
        environment = {**env.fingerprint(), **threads, "devices": list(config.devices), "speed_method": SPEED_METHOD,
                       "execution": execution, "tasks": task_records(config, registry)}
        run_id = store.start_run(argv, config, environment, plugin_files=plugin_files, out_dir=out_dir)
        done: set[str] = set()
    else:
        run_id = resume_run
        store.reopen_run(run_id)
        store.set_execution(run_id, execution)
        done = store.completed_items(run_id) if retry_failed else store.stored_items(run_id)
        store.delete_items(run_id, {i.key for i in items} - done)
    session = _Session(config, store, run_id, threads["torch_threads"], driver_plugin_labels(plugin_files, sources),
                       on_item)
    outcome = RunOutcome(run_id)
    try:
        autoload = not os.environ.get(AUTOLOAD_ENV)
        spec = WorkSpec(WORK_FUNCTION, config.threads, sources, setup=setup_function(autoload))
        if isinstance(executor, InProcessExecutor):  # items run here: plugin files are already imported
            executor.share(loaded_registry(registry, spec.plugin_sha256, autoload), plugin_files, spec.plugin_sha256)
        _run_items(session, items, done, executor, spec, item_timeout_s, autoload, outcome)
    except KeyboardInterrupt as exc:
        reason = "stopped by SIGTERM" if isinstance(exc, Terminated) else "interrupted by Ctrl-C"
        _finish(session, outcome, execution, "interrupted", reason)
        raise RunInterrupted(outcome) from None
    except BaseException as exc:  # noqa: BLE001 -- whatever ends the run, the run is not left 'running'
        reason = str(exc) if isinstance(exc, RnnbenchError) else describe_escape(exc)
        _finish(session, outcome, execution, "failed", reason)
        if isinstance(exc, RnnbenchError):
            raise
        raise RunStopped(f"run {run_id} stopped: {reason}") from exc
    # The whole run's status: a resumed run keeps the failed items it skipped.
    failed = len(store.stored_items(run_id) - store.completed_items(run_id))
    _finish(session, outcome, execution, "failed" if failed else "complete",
            f"{failed} item(s) failed" if failed else None)
    return outcome


def _run_items(session: _Session, items: list, done: set[str], executor: Executor, spec: WorkSpec,
               item_timeout_s: float | None, autoload: bool, outcome: RunOutcome) -> None:
    total, finished = len(items), 0
    for item in items:
        if item.key in done:
            finished += 1
            if session.on_item:
                session.on_item(finished, total, item, "already stored", 0.0)
    todo = {item.key: item for item in items if item.key not in done}
    positions = {item.key: position for position, item in enumerate(items)}
    expected = (expected_seconds(list(todo.values()), session.config, session.store, exclude_run=session.run_id)
                if executor.starts_longest_first else {})
    work = [work_item(item, session.config, autoload=autoload, timeout_s=item_timeout_s,
                      expected_s=expected.get(item.key)) for item in todo.values()]
    for result in executor.run(work, spec):
        item = todo[result.key]
        rows = _rows_of(session, item, result)
        session.store.add_rows(session.run_id, rows, execution=_record(result, rows, positions[result.key]))
        status = _status(rows)
        outcome.counts[status] += 1
        finished += 1
        if session.on_item:
            error = next((r.error for r in rows if r.status != "ok"), None)
            session.on_item(finished, total, item, status if error is None else f"{status}: {error}",
                            result.duration_s)


def _rows_of(session: _Session, item, result: ItemResult) -> list[ResultRow]:
    """The rows to store: the worker's (speed rows say how they were isolated), or one failed
    row per measurement when the item brought none back."""
    if result.ok and result.rows:
        return [replace(r, stats={**(r.stats or {}), "isolation": result.isolation}) if r.measurement == SPEED else r
                for r in result.rows]
    error = result.error or "the item returned no rows"
    return relabel(failed_rows(item, session.config, session.threads, error), session.labels)


def _status(rows: list[ResultRow]) -> str:
    if any(r.status == "failed" for r in rows):
        return "failed"
    return "skipped" if all(r.status == "skipped" for r in rows) else "ok"


def _record(result: ItemResult, rows: list[ResultRow], position: int) -> dict:
    """The item's line in the ``items`` table."""
    error = next((r.error for r in rows if r.status == "failed"), None)
    return dict(item=result.key, position=position, status=_status(rows), error=error, attempt=result.attempt,
                started_at=result.started_at, ended_at=result.ended_at, host=result.host, pid=result.pid,
                worker=result.worker, isolation=result.isolation, gpu=result.gpu or None,
                plugin_sha256=list(result.plugin_sha256))


def execution_summary(described: dict, records: list[dict]) -> dict:
    """How the run was executed: the executor's description plus the hosts, GPUs and worker
    processes its stored items actually ran on."""
    return {**described,
            "hosts": sorted({r["host"] for r in records if r["host"]}),
            "gpus": sorted({f"{r['host']}:{r['gpu']}" for r in records if r["gpu"]}),
            "processes": len({(r["host"], r["pid"]) for r in records})}


def _finish(session: _Session, outcome: RunOutcome, execution: dict, status: str, reason: str | None) -> None:
    outcome.status, outcome.reason = status, reason
    try:
        session.store.set_execution(session.run_id, execution_summary(execution, session.store.items(session.run_id)))
    finally:
        session.store.finish_run(session.run_id, status, reason)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Treat SIGTERM (a job scheduler's stop, ``timeout``) like Ctrl-C, so the run is marked
    interrupted and can be resumed."""
    def interrupt(signum, frame):
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
