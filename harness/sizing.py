"""Parameter counts, and the hidden size that matches a parameter budget (``--param-budget N``).

What is counted
---------------
- **Training** (accuracy and gradient rows): the whole trained model, the cell built at the
  task's input size *and* the harness's linear readout, ``H·O + O`` parameters for a task
  with O outputs. Papers quote whole-model counts, and leaving the readout out would let a
  cell with a cheap recurrence buy an uncounted larger readout (see
  :func:`harness.selection.hidden_size_for_budget`).
- **Speed**: the cell alone at the speed input size (a speed row times no readout).

Counts are the number of scalars in ``module.parameters()`` (a complex parameter counts its
elements once, as torch reports them), for the module the harness actually builds.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from harness.cells import build_cell
from harness.selection import hidden_size_for_budget
from harness.stacking import stacked_param_count


def readout_params(hidden_size: int, output_size: int) -> int:
    """The linear readout's weight (O x H) and bias (O)."""
    return hidden_size * output_size + output_size


@lru_cache(maxsize=4096)  # a budget search asks for the same (cell, I, H) from several items
def _cell_params(spec, input_size: int, hidden_size: int) -> int:
    # Building a cell draws from torch's generator; keep the caller's random state as it was.
    with torch.random.fork_rng(devices=[]):
        cell = build_cell(spec, input_size, hidden_size)
    return sum(parameter.numel() for parameter in cell.parameters())


def param_count(spec, input_size: int, hidden_size: int, output_size: int | None = None, layers: int = 1) -> int:
    """Parameters of ``spec``'s cell at (I, H) — stacked ``layers`` deep (:mod:`harness.stacking`) —
    plus the readout when ``output_size`` is given."""
    count = _cell_params(spec, int(input_size), int(hidden_size))
    if layers > 1:
        count = stacked_param_count(count, _cell_params(spec, int(hidden_size), int(hidden_size)), int(hidden_size), layers)
    return count + (readout_params(hidden_size, output_size) if output_size is not None else 0)


def hidden_size_for(spec, budget: int, input_size: int, output_size: int | None = None, layers: int = 1) -> int:
    """The hidden size whose :func:`param_count` is closest to ``budget`` (ties: the smaller H)."""
    return hidden_size_for_budget(lambda hidden: param_count(spec, input_size, hidden, output_size, layers), budget)
