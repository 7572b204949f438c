"""Records shared by every executor: an item of work, the run-wide work spec, plugin files
shipped by content, and the result that comes back.

An *item* is one independent unit of a sweep (e.g. one cell x task x seed). A *work
function*, named by import path (``"package.module:function"``), turns an item's payload
into result rows: ``function(payload, context) -> list[row]``. Rows are plain picklable
records; executors never look inside them. Only the driver writes the results store.

This module imports neither torch nor dask: worker processes import it before they set
their thread counts.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.errors import RnnbenchError, UsageError

SHARED = "shared"  # may run beside other items (training, gradients)
EXCLUSIVE = "exclusive"  # runs alone on its machine (timing)
KINDS = (SHARED, EXCLUSIVE)
DEVICES = ("cpu", "cuda")

# How an item was isolated while it ran (stored with its rows):
IN_PROCESS = "in-process"  # in the driver process, one item at a time
ALONE = "alone"  # in a worker process; no other item of the run ran on its machine meanwhile
SHARED_HOST = "shared"  # in a worker process, possibly beside other items on its machine


class ExecutorError(UsageError):
    """The executor cannot run this sweep as configured (exit 2, one line)."""


class ClusterUnreachableError(ExecutorError):
    """No Dask scheduler answered at the address given with ``--cluster``."""

    def __init__(self, address: str, reason: str):
        self.address = address
        super().__init__(f"cannot reach a Dask scheduler at {address!r}: {reason}; "
                         "start one with 'dask scheduler' and give its tcp://HOST:PORT address")


class WorkerStartError(RnnbenchError):
    """Worker processes die before they can take work (a broken environment, not an item)."""


@dataclass(frozen=True)
class WorkItem:
    """One independent unit of work.

    :param key: unique within a run; results carry it back.
    :param payload: any picklable value the work function understands.
    :param kind: ``"shared"`` or ``"exclusive"`` (never overlaps another item on its machine).
    :param device: ``"cpu"`` or ``"cuda"``; cuda items go only to workers that own a GPU.
    :param timeout_s: wall-clock limit in seconds; past it the item's process is killed
        and the item is recorded as failed. ``None``: no limit.
    :param expected_s: how long the item is expected to take, in seconds or any unit shared
        by the run's items (:mod:`harness.item_cost`); executors that run items side by side
        start the longest first (:func:`dispatch_order`). ``None``: unknown.
    """

    key: str
    payload: Any
    kind: str = SHARED
    device: str = "cpu"
    timeout_s: float | None = None
    label: str = ""
    expected_s: float | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"item kind {self.kind!r}; allowed: {', '.join(KINDS)}")
        if self.device not in DEVICES:
            raise ValueError(f"item device {self.device!r}; allowed: {', '.join(DEVICES)}")
        if self.timeout_s is not None and not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"item timeout_s must be a positive number of seconds, got {self.timeout_s!r}")
        if self.expected_s is not None and not (math.isfinite(self.expected_s) and self.expected_s >= 0):
            raise ValueError(f"item expected_s must be a number of seconds >= 0, got {self.expected_s!r}")


def dispatch_order(items) -> list[WorkItem]:
    """The order in which items that run side by side are started: longest expected first.

    Longest-processing-time first (Graham 1969, "Bounds on multiprocessing timing
    anomalies") keeps a sweep's last minutes from running on one worker while the others
    idle: with m workers its makespan is at most 4/3 - 1/(3m) times the best possible.
    Exclusive items stay where the plan put them, as barriers; only the shared items between
    two barriers are reordered. Items without an estimate come first, in plan order (one of
    them may be the longest); ties keep plan order. Only the order of execution changes:
    results carry their keys, and the driver stores them in plan order.
    """
    ordered: list[WorkItem] = []
    segment: list[WorkItem] = []

    def flush():
        ordered.extend(sorted(segment, key=lambda i: (i.expected_s is not None, -(i.expected_s or 0.0))))
        segment.clear()

    for item in items:
        if item.kind == EXCLUSIVE:
            flush()
            ordered.append(item)
        else:
            segment.append(item)
    flush()
    return ordered


def _plugin_cache_root() -> Path:
    return Path(tempfile.gettempdir()) / f"rnnbench-plugins-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


@dataclass(frozen=True)
class PluginSource:
    """A ``--plugin`` file shipped by content, so that a worker on another machine runs
    exactly the code the driver read (paths mean nothing there)."""

    name: str  # the file name, e.g. "mycell.py"; its stem names the plugin
    text: str
    sha256: str

    @classmethod
    def read(cls, path: str | os.PathLike) -> "PluginSource":
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read plugin file {str(path)!r}: {exc}") from None
        return cls(file.name, text, hashlib.sha256(text.encode("utf-8")).hexdigest())

    def materialize(self, root: Path | None = None) -> Path:
        """Write the text to ``root/<sha256[:16]>/<name>`` (once; content-addressed, so
        processes that share a machine share the copy) and return that path."""
        if hashlib.sha256(self.text.encode("utf-8")).hexdigest() != self.sha256:
            raise ValueError(f"plugin {self.name!r}: text does not match its sha256")
        target = (root or _plugin_cache_root()) / self.sha256[:16] / self.name
        if target.is_file() and target.read_text(encoding="utf-8") == self.text:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{self.name}.{os.getpid()}.partial")
        partial.write_text(self.text, encoding="utf-8")
        os.replace(partial, target)  # atomic: a concurrent reader sees the old or the whole file
        return target


@dataclass(frozen=True)
class WorkSpec:
    """What every item of a run shares; sent to each worker with each item.

    :param function: ``"module:function"``, importable in workers; called as
        ``function(payload, context)`` and returns a list of picklable rows.
    :param threads: torch intra-op and BLAS threads per worker process, set in the
        environment before the worker imports torch.
    :param plugins: ``--plugin`` files, by content.
    :param setup: ``"module:function"`` called as ``setup(context)`` once per worker process
        (and set of plugins) before its first item's time limit starts: importing torch and
        loading plugins is the worker's set-up, not the item's work.
    """

    function: str
    threads: int = 1
    plugins: tuple[PluginSource, ...] = ()
    setup: str | None = None

    def __post_init__(self):
        for name in (self.function, self.setup or ":"):
            if ":" not in name:
                raise ValueError(f"work function {name!r} must be written 'module:function'")
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")

    @property
    def plugin_sha256(self) -> tuple[str, ...]:
        return tuple(p.sha256 for p in self.plugins)


@dataclass
class WorkContext:
    """Handed to the work function with each payload. ``memo`` keeps values (e.g. a loaded
    plugin registry) for the life of the worker process, across items."""

    worker: str
    device: str
    threads: int
    plugin_paths: tuple[Path, ...]
    plugin_sha256: tuple[str, ...]
    _memo: dict = field(default_factory=dict, repr=False)

    def memo(self, key, make: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]


@dataclass(frozen=True)
class ItemResult:
    """One finished item. ``status`` is "ok" (``rows`` holds what the work function
    returned) or "failed" (``error`` says why; ``rows`` is empty). Times are wall-clock
    seconds since the epoch on the host that ran the item (hosts' clocks may differ)."""

    key: str
    status: str
    rows: tuple
    error: str | None
    started_at: float
    ended_at: float
    host: str
    pid: int
    worker: str
    attempt: int  # 1, or 2 when the first worker died mid-item
    isolation: str  # IN_PROCESS, ALONE or SHARED_HOST
    gpu: str | None  # CUDA_VISIBLE_DEVICES of the process that ran it (None: not pinned)
    plugin_sha256: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def duration_s(self) -> float:
        return self.ended_at - self.started_at


def resolve_function(path: str) -> Callable:
    module_name, _, qualname = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"work function {path!r} is not callable")
    return target


def describe_escape(exc: BaseException) -> str:
    """One line for an exception that escaped a work function."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: the item's code called sys.exit({exc.code!r})"
    if isinstance(exc, KeyboardInterrupt):
        return f"{type(exc).__name__} raised by the item's code (not a Ctrl-C)"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def call_setup(spec: WorkSpec, context: WorkContext) -> None:
    """Run ``spec.setup`` once per process and set of plugins. A failure is left for the item
    itself to meet (and report) when it runs."""
    if spec.setup is None:
        return
    key = ("setup", spec.setup, spec.plugin_sha256)
    if key in context._memo:
        return
    context._memo[key] = True
    try:
        resolve_function(spec.setup)(context)
    except BaseException:  # noqa: BLE001 -- the guard, as in call_work
        pass


def call_work(spec: WorkSpec, item: WorkItem, context: WorkContext) -> tuple[str, tuple, str | None]:
    """Run one item under a guard: every escape, ``SystemExit`` and ``KeyboardInterrupt``
    included, becomes ("failed", (), reason). The caller decides whether a
    KeyboardInterrupt was a real Ctrl-C (in the driver) and re-raises it then."""
    try:
        rows = resolve_function(spec.function)(item.payload, context)
        return "ok", tuple(rows if rows is not None else ()), None
    except BaseException as exc:  # noqa: BLE001 -- the guard: plugin code must not end the worker
        return "failed", (), describe_escape(exc)
