"""The plugin manager: built-in cells, tasks and reporters load exactly like third-party ones.

Order of loading: the built-in modules, then the ``rnnbench`` entry-point group, then the
files named with ``--plugin path.py``. Hooks are called one plugin at a time so that every
registered object records the plugin (distribution and version) it came from, and so that a
plugin which crashes takes only itself down.

Set ``RNNBENCH_DISABLE_PLUGIN_AUTOLOAD=1`` to skip the entry-point group (the test suite does,
so that whatever happens to be installed cannot change its results).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pluggy

from harness import hookspecs, plugin_messages
from harness.errors import PluginError, UnknownCellError, UnknownNameError, UnknownTaskError, UsageError
from harness.impls import ImplTable, impl_table
from harness.names import ALL, BACKENDS, FORMS, NAME_PATTERN, NAME_RULE, split_list

ENTRY_POINT_GROUP = "rnnbench"
AUTOLOAD_ENV = "RNNBENCH_DISABLE_PLUGIN_AUTOLOAD"
HOOK_NAMES = ("register_cells", "register_tasks", "register_reporters")

BUILTIN_MODULES = (
    "plugins.numpy_rnn",
    "plugins.torch_rnn",
    "plugins.lstm",
    "plugins.gru",
    "plugins.numpy_lstm",
    "plugins.numpy_gru",
    "plugins.indrnn",
    "plugins.exprnn",
    "plugins.mingru",
    "plugins.mamba",
    "plugins.mlstm",
    "plugins.slstm",
    "plugins.minlstm",
    "plugins.lru",
    "tasks.copy",
    "tasks.adding",
    "tasks.selective_copy",
    "tasks.associative_recall",
    "tasks.temporal_order",
    "tasks.parity",
    "tasks.digits",
    "tasks.text",
    "reports.markdown",
    "reports.html",
    "reports.tidy",
)


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin came from: ``source`` is "builtin", "entry-point" or "file"."""

    name: str
    source: str
    distribution: str
    version: str


@dataclass(frozen=True)
class CellSpec:
    """A registered cell: how to build it and its implementations (:mod:`harness.impls`)."""

    name: str
    factory: Callable[[int, int], Any]
    backend: str
    form: str
    summary: str
    plugin: PluginInfo
    impls: ImplTable | None = None  # None: the primary implementation alone, labelled by backend and form

    def __post_init__(self):
        if self.impls is None:
            object.__setattr__(self, "impls", impl_table(backend=self.backend, form=self.form))

    @property
    def primary_impl(self) -> str:
        """What ``factory`` builds, as the speed and training rows label it (``fused``, ``scan``,
        ``numpy``, ``unrolled``, ...); nothing is built."""
        return self.impls.primary

    @property
    def reference_impl(self) -> str:
        """The implementation every other one is verified against: the plain recurrence."""
        return self.impls.reference

    def default_impl(self, device: str) -> str:
        """The implementation training uses on ``device`` unless ``--train-impl`` names another."""
        return self.impls.default_for(device)

    @property
    def unroll(self) -> Callable[[Any], Any] | None:
        """``derive(module)`` of the looped (step-form) alternative, as the older ``unroll=`` gave it."""
        looped = self.impls.looped
        alternative = self.impls.alternative(looped) if looped else None
        return alternative.derive if alternative is not None else None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    factory: Callable[[int], Any]
    summary: str
    plugin: PluginInfo


@dataclass(frozen=True)
class ReporterSpec:
    name: str
    render: Callable[..., Path]
    suffix: str
    summary: str
    plugin: PluginInfo


@dataclass
class Registry:
    """Everything the loaded plugins registered, plus the errors met while loading."""

    cells: dict[str, CellSpec] = field(default_factory=dict)
    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    reporters: dict[str, ReporterSpec] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duplicates: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (kind, name) -> plugins

    def cell(self, name: str) -> CellSpec:
        try:
            return self.cells[name]
        except KeyError:
            raise UnknownCellError(name, list(self.cells)) from None

    def task(self, name: str) -> TaskSpec:
        try:
            return self.tasks[name]
        except KeyError:
            raise UnknownTaskError(name, list(self.tasks)) from None

    def reporter(self, name: str) -> ReporterSpec:
        try:
            return self.reporters[name]
        except KeyError:
            raise UnknownNameError("report format", name, list(self.reporters)) from None

    def select_cells(self, names: str | list[str]) -> list[CellSpec]:
        """``"all"`` means every registered cell, third-party ones included. A name that two
        plugins registered is an error when asked for by name (with ``all``, the first
        registration is used and the load warning says so)."""
        self._refuse_duplicates("cell", names)
        return [self.cell(n) for n in _expand(names, self.cells)]

    def select_tasks(self, names: str | list[str]) -> list[TaskSpec]:
        self._refuse_duplicates("task", names)
        return [self.task(n) for n in _expand(names, self.tasks)]

    def select_checked(self, names: list[str]):
        """The cells and tasks ``rnnbench check`` was asked for: a name is a cell if a cell has it, else a task."""
        if ALL in names:
            return self.select_cells([ALL]), self.select_tasks([ALL])
        unknown = [n for n in names if n not in self.cells and n not in self.tasks]
        if unknown:
            message = (f"unknown cell or task {unknown[0]!r}; cells: {', '.join(sorted(self.cells))}; "
                       f"tasks: {', '.join(sorted(self.tasks))}")
            if self.errors:
                message += f"; errors while loading plugins: {'; '.join(self.errors)}"
            raise UsageError(message)
        cells = [n for n in names if n in self.cells]
        tasks = [n for n in names if n in self.tasks and n not in self.cells]
        return (self.select_cells(cells) if cells else []), (self.select_tasks(tasks) if tasks else [])

    def _refuse_duplicates(self, kind: str, names: str | list[str]) -> None:
        for name in split_list(names):
            owners = self.duplicates.get((kind, name))
            if owners:
                raise PluginError(f"{kind} {name!r} is registered by more than one plugin: {' and '.join(owners)}; "
                                  f"rename one of them or leave one plugin out")


def _expand(names: str | list[str], registered: dict) -> list[str]:
    names = split_list(names)
    if not names:
        raise UsageError(f"no names given; use '{ALL}' or a comma-separated list")
    if ALL in names:
        return list(registered)
    return list(names)


def _rnnbench_version() -> str:
    try:
        return importlib.metadata.version("rnnbench")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


# What a plugin's code may raise without ending rnnbench: errors, and sys.exit() (SystemExit).
# KeyboardInterrupt is left to propagate: while plugins load it is almost always a real Ctrl-C.
PLUGIN_ESCAPES = (Exception, SystemExit)


def _escape(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit: the plugin called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def _load_plugin_file(path: str | os.PathLike) -> Any:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"plugin file not found: {str(path)!r} (expected a Python file, e.g. mycell.py)")
    module_name = f"rnnbench_plugin_{file.stem}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load plugin file {str(path)!r}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered in sys.modules so that pickling and dataclasses in the plugin work.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _candidate_plugins(plugin_files, autoload: bool) -> tuple[list[tuple[Any, PluginInfo]], list[str]]:
    """Import every plugin module; return (module, info) pairs and one error line per failure."""
    found: list[tuple[Any, PluginInfo]] = []
    errors: list[str] = []
    version = _rnnbench_version()
    for module_name in BUILTIN_MODULES:
        try:
            module = importlib.import_module(module_name)
        except PLUGIN_ESCAPES as exc:  # a broken built-in must not hide the others
            errors.append(f"built-in plugin {module_name!r} failed to import: {_escape(exc)}")
            continue
        found.append((module, PluginInfo(module_name.split(".")[-1].replace("_", "-"), "builtin", "rnnbench", version)))
    if autoload:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else ep.value
            dist_version = ep.dist.version if ep.dist is not None else "unknown"
            try:
                module = ep.load()
            except PLUGIN_ESCAPES as exc:
                errors.append(f"plugin {ep.name!r} ({dist} {dist_version}) failed to import: {_escape(exc)}")
                continue
            found.append((module, PluginInfo(ep.name, "entry-point", dist, dist_version)))
    for path in plugin_files:
        try:
            module = _load_plugin_file(path)
        except UsageError:
            raise
        except PLUGIN_ESCAPES as exc:
            errors.append(f"plugin file {str(path)!r} failed to import: {_escape(exc)}")
            continue
        found.append((module, PluginInfo(Path(path).stem, "file", f"file:{Path(path).resolve()}", "local")))
    return found, errors


def load_plugins(plugin_files=(), *, autoload: bool | None = None) -> Registry:
    """Load built-in, installed and file plugins into a fresh :class:`Registry`.

    :param plugin_files: paths of Python files to load as plugins (``--plugin``).
    :param autoload: load the ``rnnbench`` entry-point group; default: yes, unless the
        environment variable ``RNNBENCH_DISABLE_PLUGIN_AUTOLOAD`` is set to a non-empty value.
    """
    if autoload is None:
        autoload = not os.environ.get(AUTOLOAD_ENV)
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    candidates, registry.errors = _candidate_plugins(plugin_files, autoload)

    registered: list[tuple[Any, PluginInfo]] = []
    for module, info in candidates:
        if pm.is_registered(module):
            continue
        try:
            pm.register(module, name=f"{info.source}:{info.name}:{len(registered)}")
        except pluggy.PluginValidationError as exc:  # a hookimpl whose arguments the spec does not have
            registry.errors.append(plugin_messages.bad_hook_arguments(module, info, HOOK_NAMES, exc))
            continue
        except Exception as exc:  # noqa: BLE001 -- a plugin's own error, one line
            registry.errors.append(f"plugin {info.name!r}: {_escape(exc)}")
            continue
        try:
            # A hook implementation without a matching spec is almost always a typo
            # ("register_cell"); pluggy would otherwise ignore it silently.
            pm.check_pending()
        except pluggy.PluginValidationError:
            registry.errors.append(plugin_messages.unknown_hooks(module, info, pm, HOOK_NAMES))
            pm.unregister(module)
            continue
        for hook_name in HOOK_NAMES:  # a hook function without @hookimpl would be ignored silently
            if callable(getattr(module, hook_name, None)) and pm.parse_hookimpl_opts(module, hook_name) is None:
                registry.errors.append(f"plugin {info.name!r}: {hook_name} is not marked with @hookimpl "
                                       "(from harness import hookimpl), so it is never called")
        registered.append((module, info))
        registry.plugins.append(info)

    modules = [m for m, _ in registered]
    for module, info in registered:
        others = [m for m in modules if m is not module]
        for hook_name in HOOK_NAMES:
            caller = pm.subset_hook_caller(hook_name, remove_plugins=others)
            try:
                caller(register=_registrar(registry, hook_name, info))
            except PLUGIN_ESCAPES as exc:
                registry.errors.append(f"plugin {info.name!r} failed in {hook_name}: {_escape(exc)}")
    return registry


def describe(info: PluginInfo) -> str:
    if info.source == "builtin":
        return f"{info.name} (rnnbench {info.version})"
    if info.source == "file":
        return f"{info.name} ({info.distribution})"
    return f"{info.name} ({info.distribution} {info.version})"


def _registrar(registry: Registry, hook_name: str, info: PluginInfo) -> Callable[..., None]:
    def _check_new(table: dict, kind: str, name: str) -> bool:
        if not isinstance(name, str) or not name or name == ALL or "," in name:
            registry.errors.append(f"plugin {info.name!r} registered an invalid {kind} name {name!r}")
            return False
        if name in table:
            registry.errors.append(
                f"duplicate {kind} name {name!r}: registered by {describe(table[name].plugin)} "
                f"and by {describe(info)}; the second is ignored"
            )
            owners = registry.duplicates.setdefault((kind, name), [describe(table[name].plugin)])
            owners.append(describe(info))
            return False
        if not NAME_PATTERN.fullmatch(name):
            registry.errors.append(f"plugin {info.name!r} registered the {kind} name {name!r}; {NAME_RULE}")
            return False
        return True

    def register_cell(name, factory, *, backend="torch", form="sequence", summary="", impl=None, alternatives=None,
                      reference=None, defaults=None, unroll=None):
        if backend not in BACKENDS:
            registry.errors.append(f"plugin {info.name!r}: cell {name!r} has backend {backend!r}; allowed: {', '.join(BACKENDS)}")
            return
        if form not in FORMS:
            registry.errors.append(f"plugin {info.name!r}: cell {name!r} has form {form!r}; allowed: {', '.join(FORMS)}")
            return
        if not callable(factory) or (unroll is not None and not callable(unroll)):
            registry.errors.append(f"plugin {info.name!r}: cell {name!r} factory or unroll is not callable")
            return
        try:
            impls = impl_table(backend=backend, form=form, impl=impl, alternatives=alternatives, unroll=unroll,
                               reference=reference, defaults=defaults)
        except ValueError as exc:
            registry.errors.append(f"plugin {info.name!r}: cell {name!r} {exc}")
            return
        if _check_new(registry.cells, "cell", name):
            registry.cells[name] = CellSpec(name, factory, backend, form, summary, info, impls)

    def register_task(name, factory, *, summary=""):
        if not callable(factory):
            registry.errors.append(f"plugin {info.name!r}: task {name!r} factory is not callable")
            return
        if _check_new(registry.tasks, "task", name):
            registry.tasks[name] = TaskSpec(name, factory, summary, info)

    def register_reporter(name, render, *, suffix, summary=""):
        if _check_new(registry.reporters, "reporter", name):
            registry.reporters[name] = ReporterSpec(name, render, suffix, summary, info)

    register = {
        "register_cells": register_cell,
        "register_tasks": register_task,
        "register_reporters": register_reporter,
    }[hook_name]
    return plugin_messages.checked_register(info, hook_name, register, registry.errors)
