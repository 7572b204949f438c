"""Expected durations of a sweep's items, so that worker pools start the longest first.

Executors that run items side by side start them longest expected first
(:func:`harness.execution.dispatch_order`); only the order of execution depends on these
figures, never a stored row. A training item's estimate, best first:

1. its wall time (``items.ended_at - items.started_at``) in the latest earlier run of this
   database that measured it successfully with the same recipe, task options, layers and
   thread count: items of one cell can differ by a factor of three at equal compute (on CPU,
   ``torch.nn.GRU`` takes longer than ``torch.nn.LSTM``), and a task solved early stops early;
2. otherwise its training compute ``C = 6 N D`` (Kaplan et al. 2020, "Scaling laws for neural
   language models", section 2.1): ``N`` the parameter count (cell and readout), ``D = steps x
   batch x sequence length`` the tokens trained on. It is converted to seconds by the median
   seconds per unit of compute of this sweep's items that have both; when none has, it stays
   in units of compute (the order is all that matters).

Speed items get no estimate: they run alone, one after another, so their order does not change
the sweep's wall time. No cell code runs here beyond building each cell once for its
parameter count, as planning and the rows' ``param_count`` already do.
"""

from __future__ import annotations

import statistics
from typing import Iterable

from harness.config import RunConfig
from harness.errors import StoreError
from harness.sizing import param_count
from harness.task_options import build_task

RECENT_RUNS = 20  # earlier runs searched for an item's duration, newest first
TOKEN_FLOPS = 6  # forward (2 N) and backward (4 N) multiply-adds per parameter and token


def training_compute(item, config: RunConfig, _sizes: dict | None = None) -> float | None:
    """``6 N D`` of a training item (see the module docstring); None for a speed item or a cell
    that cannot be built (its item fails fast)."""
    from harness.runner import TrainItem

    if not isinstance(item, TrainItem):
        return None
    sizes = {} if _sizes is None else _sizes
    key = (item.cell.name, item.task.name, item.seq_len, item.hidden_size)
    if key not in sizes:
        try:
            task = build_task(item.task, item.seq_len, config.options_for(item.task.name))
            parameters = param_count(item.cell, task.input_size, item.hidden_size, task.output_size, config.layers)
            sizes[key] = (parameters, task.length)
        except Exception:  # the item itself reports what is wrong
            sizes[key] = None
    if sizes[key] is None:
        return None
    parameters, length = sizes[key]
    recipe = config.recipe_for(item.task.name)
    return float(TOKEN_FLOPS * parameters * recipe.steps * recipe.batch_size * length)


def _same_training(earlier: RunConfig, config: RunConfig, task: str) -> bool:
    return (earlier.recipe_for(task) == config.recipe_for(task) and earlier.options_for(task) == config.options_for(task)
            and earlier.layers == config.layers and earlier.threads == config.threads)


def previous_durations(store, config: RunConfig, items: Iterable, *, exclude_run: int | None = None) -> dict[str, float]:
    """Seconds each item took in the latest earlier run (of the last :data:`RECENT_RUNS`) that
    trained it the same way, for the items that have one."""
    wanted = {item.key: item.task.name for item in items if hasattr(item, "task")}
    found: dict[str, float] = {}
    try:
        runs = [run for run in store.runs() if run.run_id != exclude_run][-RECENT_RUNS:]
        for run in reversed(runs):
            records = [r for r in store.items(run.run_id) if r["item"] in wanted and r["item"] not in found
                       and r["status"] == "ok" and r["started_at"] is not None and r["ended_at"] is not None]
            for record in records:
                if _same_training(run.config, config, wanted[record["item"]]):
                    found[record["item"]] = max(0.0, record["ended_at"] - record["started_at"])
            if len(found) == len(wanted):
                break
    except StoreError:  # a damaged earlier record: estimate from compute instead
        return found
    return found


def expected_seconds(items: list, config: RunConfig, store=None, *, exclude_run: int | None = None) -> dict[str, float]:
    """``{item key: expected duration}`` for the items that have an estimate (module docstring)."""
    sizes: dict = {}
    compute = {item.key: training_compute(item, config, sizes) for item in items}
    known = previous_durations(store, config, items, exclude_run=exclude_run) if store is not None else {}
    ratios = [known[k] / c for k, c in compute.items() if k in known and c]
    seconds_per_unit = statistics.median(ratios) if ratios else 1.0
    estimates = {k: c * seconds_per_unit for k, c in compute.items() if c is not None}
    estimates.update({k: s for k, s in known.items() if k in compute})
    return estimates
