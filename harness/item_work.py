"""A sweep's items as executors carry them: names and sizes out, result rows back.

The driver plans items against its registry (:func:`harness.runner.plan`), but a registry
cannot travel: cells from ``--plugin`` files are classes of modules that exist only where
the file was imported, so they do not pickle. Each item therefore leaves the driver as an
:class:`ItemPayload` (the item's fields with cells and tasks replaced by their names, the
run configuration and the plugin autoload setting), and :func:`run_item`, the work function
every executor calls, rebuilds it against a registry loaded where it runs: once per worker
process, from the plugin files shipped by content (:class:`harness.execution.PluginSource`).

Rows of cells from plugin files name the file and its content hash
(``plugin = "file:mycell.py"``, ``plugin_version = "sha256:<hex>"``), the same on every
executor, never the path of the copy a worker imported.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from harness.config import RunConfig
from harness.errors import RnnbenchError, UnknownNameError
from harness.execution import EXCLUSIVE, SHARED, PluginSource, WorkContext, WorkItem

WORK_FUNCTION = "harness.item_work:run_item"


def setup_function(autoload: bool) -> str:
    """The worker set-up that loads the registry the items will ask for (see :func:`prepare`)."""
    return "harness.item_work:prepare" if autoload else "harness.item_work:prepare_without_autoload"
NAMED_FIELDS = ("cell", "task")  # registry entries, sent by name


@dataclass(frozen=True)
class ItemPayload:
    """One item as names and sizes.

    :param item_type: ``"speed"`` or ``"train"`` (:data:`harness.runner.ITEM_TYPES`).
    :param values: the item's fields in order; ``cell`` and ``task`` hold names.
    :param config: the run's configuration (recipe, timing, probes).
    :param autoload: whether the worker loads installed (entry-point) plugins, as the driver
        did: remote workers do not inherit the driver's environment.
    """

    item_type: str
    values: tuple[tuple[str, Any], ...]
    config: RunConfig
    autoload: bool


def item_type(item) -> str:
    from harness.runner import ITEM_TYPES

    return next(name for name, cls in ITEM_TYPES.items() if isinstance(item, cls))


def payload_of(item, config: RunConfig, autoload: bool) -> ItemPayload:
    values = tuple((f.name, getattr(item, f.name).name if f.name in NAMED_FIELDS else getattr(item, f.name))
                   for f in fields(item))
    return ItemPayload(item_type(item), values, config, autoload)


def item_of(payload: ItemPayload, registry):
    """The item again, its cell and task looked up in ``registry`` (an unknown name raises
    :class:`harness.errors.UnknownNameError`: the plugin did not load where the item ran)."""
    from harness.runner import ITEM_TYPES

    lookup = {"cell": registry.cell, "task": registry.task}
    values = {name: lookup[name](value) if name in lookup else value for name, value in payload.values}
    return ITEM_TYPES[payload.item_type](**values)


def work_item(item, config: RunConfig, *, autoload: bool, timeout_s: float | None,
              expected_s: float | None = None) -> WorkItem:
    """Speed items are exclusive: nothing else of the run may share their cores or GPU.
    ``expected_s`` (:mod:`harness.item_cost`) only orders items that run side by side."""
    from harness.runner import SpeedItem

    kind = EXCLUSIVE if isinstance(item, SpeedItem) else SHARED
    return WorkItem(item.key, payload_of(item, config, autoload), kind=kind, device=item.device, timeout_s=timeout_s,
                    label=item.label(), expected_s=expected_s)


# -- plugin files in rows ---------------------------------------------------------------------
def file_plugin_labels(paths, sources_sha256) -> dict[str, tuple[str, str]]:
    """``{"file:<resolved path>": ("file:<name>", "sha256:<hex>")}`` for plugin files loaded from ``paths``."""
    return {f"file:{Path(p).resolve()}": (f"file:{Path(p).name}", f"sha256:{sha}")
            for p, sha in zip(paths, sources_sha256)}


def driver_plugin_labels(plugin_files, sources: tuple[PluginSource, ...]) -> dict[str, tuple[str, str]]:
    return file_plugin_labels(plugin_files, [s.sha256 for s in sources])


def relabel(rows: list, labels: dict[str, tuple[str, str]]) -> list:
    """Rows of file plugins name the file and its hash instead of where it was imported from."""
    if not labels:
        return rows
    out = []
    for row in rows:
        label = labels.get(row.plugin or "")
        out.append(row if label is None else replace(row, plugin=label[0], plugin_version=label[1]))
    return out


# -- the work function ------------------------------------------------------------------------
def _registry_key(plugin_sha256: tuple[str, ...], autoload: bool) -> tuple:
    return ("registry", tuple(plugin_sha256), autoload)


def loaded_registry(registry, plugin_sha256: tuple[str, ...], autoload: bool) -> dict:
    """A memo entry (:meth:`harness.executors.InProcessExecutor.share`) that gives items run in
    the driver the registry it already loaded, so plugin files are not imported twice."""
    return {_registry_key(plugin_sha256, autoload): registry}


def _registry(context: WorkContext, autoload: bool):
    from harness.plugins import load_plugins

    return context.memo(_registry_key(context.plugin_sha256, autoload),
                        lambda: load_plugins(context.plugin_paths, autoload=autoload))


def warm_up() -> None:
    """What every worker process of a run needs, done as it starts, while the driver plans
    (:class:`harness.worker.WorkerProcess` ``warm``): torch and the measurement code imported,
    and ``torch._dynamo``, which torch imports the first time an optimizer is built (about
    1.5 s on a 2-core machine, otherwise counted in the worker's first item)."""
    import torch

    import harness.runner  # noqa: F401

    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])


def prepare(context: WorkContext, autoload: bool = True) -> None:
    """A worker's set-up before its first item's time limit starts: torch and the measurement
    code imported, the plugins loaded, as :func:`run_item` will want them."""
    import harness.runner  # noqa: F401 -- imports torch

    _registry(context, autoload)


def prepare_without_autoload(context: WorkContext) -> None:
    prepare(context, autoload=False)


def run_item(payload: ItemPayload, context: WorkContext) -> list:
    """Measure one item where it runs and return its :class:`harness.results.ResultRow` list."""
    from harness import env
    from harness.runner import measure_item, strict_float32

    registry = _registry(context, payload.autoload)
    try:
        item = item_of(payload, registry)
    except UnknownNameError as exc:  # the plugin loaded in the driver but not here
        where = f"; plugin errors on {context.worker}: {'; '.join(registry.errors)}" if registry.errors else ""
        raise RnnbenchError(f"{exc}{where}") from None
    threads = env.set_threads(context.threads)["torch_threads"]
    strict_float32(item.device)
    rows = measure_item(item, payload.config, threads)
    return relabel(rows, file_plugin_labels(context.plugin_paths, context.plugin_sha256))
