"""Gradient decay: ``||dL/ds_t||`` of the loss at the last step with respect to the full state.

The sequence is split at the probe steps and the pieces are chained with the carried
state, so a fused cuDNN/oneDNN module is measured exactly like a step-by-step one: the
state between two pieces is an ordinary tensor in the autograd graph, and
``torch.autograd.grad`` of the last-step loss with respect to it is the total derivative.

Indexing: ``s_t`` is the state after the cell has consumed t inputs (``s_0`` the initial
zero state); the loss L is computed from the output at the last step L_len, so the
distance of ``s_t`` from the loss is ``d = L_len - t``, from 1 (the state entering the
last step) to L_len (the initial state).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from harness.cells import flatten_state, map_state
from harness.config import DEFAULT_MAX_PROBES
from harness.errors import DivergedError
from harness.stats import log_slope

HORIZON_FRACTION = 1e-3


@dataclass(frozen=True)
class GradientProfile:
    """Per-probe gradient norms and their summary.

    ``distances``: steps between the probed state and the loss (ascending, from 1).
    ``norms``: ``||dL/ds||`` at those distances.
    """

    distances: tuple[int, ...]
    norms: tuple[float, ...]

    @property
    def decay_rate(self) -> float:
        """Slope of ln ||dL/ds|| against distance, per step (negative: gradients vanish)."""
        return log_slope(np.array(self.distances), np.array(self.norms))

    @property
    def first_last_ratio(self) -> float:
        """||dL/ds_0|| / ||dL/ds_{L-1}||: the first step's norm over the last step's."""
        last = self.norms[0]
        return self.norms[-1] / last if last > 0 else float("nan")

    @property
    def horizon(self) -> int | None:
        """Smallest probed distance whose norm is below 1e-3 of the last step's; None if none is."""
        reference = self.norms[0]
        for distance, norm in zip(self.distances, self.norms):
            if norm < HORIZON_FRACTION * reference:
                return distance
        return None


def probe_steps(length: int, max_probes: int = DEFAULT_MAX_PROBES) -> list[int]:
    """State indices t in [0, length - 1] to probe: every step when they fit, else log-spaced
    distances (dense near the loss, where norms change fastest), always including t = 0 and
    t = length - 1."""
    if length <= max_probes:
        return list(range(length))
    distances = np.unique(np.round(np.geomspace(1, length, max_probes)).astype(int))
    return sorted({length - int(d) for d in distances} | {0, length - 1})


def initial_state_like(cell, x: torch.Tensor):
    """A zero state with the structure the cell returns (None means zeros by contract)."""
    with torch.no_grad():
        _, state = cell(x[:1], None)
    return map_state(torch.zeros_like, state)


def gradient_profile(model, task, x: torch.Tensor, target: torch.Tensor, probes: list[int]) -> GradientProfile:
    """Run ``model`` in pieces split at ``probes`` and return ``||dL/ds_t||`` for each probe t.

    :param model: a :class:`harness.cells.SequenceModel`.
    :param x: inputs (L, B, I); ``target`` as the task's batch target.
    """
    length = x.shape[0]
    probes = sorted(set(probes))
    if not probes or probes[0] < 0 or probes[-1] > length - 1:
        raise ValueError(f"probe steps must lie in [0, {length - 1}], got {probes[:3]}...{probes[-3:]}")
    state = map_state(lambda t: t.requires_grad_(), initial_state_like(model.cell, x))
    probed = {}
    boundaries = probes + [length]
    if probes[0] != 0:
        _, state = model.cell(x[: probes[0]], state)
    for start, stop in zip(boundaries[:-1], boundaries[1:]):
        # A view makes the carried state its own node: its gradient is then ∂L/∂s_t through the
        # steps after t only. Without it, a state tensor that is also the previous piece's last
        # output (h_t of an RNN) would collect that output's other uses too — in a stack
        # (harness.stacking), the next layer reading it at step t, whose effect s_t already holds.
        state = map_state(lambda tensor: tensor.view_as(tensor), state)
        probed[start] = state
        y, state = model.cell(x[start:stop], state)
    loss = task.last_step_loss(model.readout(y[-1]), target)
    inputs = [t for s in probed.values() for t in flatten_state(s)]
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    norms_by_step = {}
    i = 0
    for step, s in probed.items():
        n_parts = len(flatten_state(s))
        parts = grads[i : i + n_parts]
        i += n_parts
        total = sum(float((g.detach().double() ** 2).sum()) for g in parts if g is not None)
        norms_by_step[step] = total**0.5
    ordered = sorted(norms_by_step.items(), key=lambda kv: -kv[0])  # ascending distance
    for step, norm in ordered:
        if not math.isfinite(norm):
            raise DivergedError(f"gradient norm is {norm} at distance {length - step} from the loss")
    return GradientProfile(
        distances=tuple(length - step for step, _ in ordered),
        norms=tuple(norm for _, norm in ordered),
    )


def measure_profile(model, task, x: torch.Tensor, target: torch.Tensor, probes: list[int]) -> tuple[GradientProfile, str]:
    """:func:`gradient_profile` on a float64 copy of ``model``; returns the profile and the dtype used.

    Over hundreds of steps a vanishing gradient falls below float32's smallest numbers
    (about 1e-45) and flattens or zeroes the curve, which would bend the fitted decay rate;
    float64 reaches about 1e-308. A cell that cannot run in float64 is probed in float32,
    and the dtype is stored with the rows.
    """
    try:
        model64 = copy.deepcopy(model).double()
        floating = target.is_floating_point()
        return gradient_profile(model64, task, x.double(), target.double() if floating else target, probes), "float64"
    except DivergedError:
        raise
    except Exception:
        return gradient_profile(model, task, x, target, probes), str(x.dtype).replace("torch.", "")
