"""Test helper: run two implementations of one cell on the same input and state and report how
far apart their outputs, final states and parameter gradients are (relative to the reference)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.cells import Unrolled


def state_parts(state) -> list[torch.Tensor]:
    return [state] if isinstance(state, torch.Tensor) else [t for s in state for t in state_parts(s)]


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: the error relative to the reference's scale."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


@dataclass(frozen=True)
class Gaps:
    outputs: float
    states: tuple[float, ...]
    grads: dict[str, float]

    @property
    def worst(self) -> float:
        return max(self.outputs, *self.states, *self.grads.values())


def _run(module, x, state, weights):
    y, final = module(x, state)
    parts = state_parts(final)
    loss = (y * weights[0]).sum() + sum((p * w).sum() for p, w in zip(parts, weights[1:]))
    names, params = zip(*module.named_parameters())
    grads = torch.autograd.grad(loss, params)
    return y.detach(), [p.detach() for p in parts], dict(zip(names, grads))


def gaps(fast, step, x, state, seed: int = 5) -> Gaps:
    """Compare ``fast`` (a sequence module) with ``Unrolled(step)``; ``step`` must share ``fast``'s
    parameters. The loss weighs every output and every final-state entry by a random number, so
    every gradient path is exercised."""
    reference = Unrolled(step)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        y_probe, final_probe = fast(x[:1], state)
    shapes = [y_probe.shape[1:]] + [p.shape for p in state_parts(final_probe)]
    weights = [torch.randn(x.shape[0], *shapes[0], generator=gen, dtype=x.dtype)]
    weights += [torch.randn(*s, generator=gen, dtype=x.dtype) for s in shapes[1:]]
    y_fast, s_fast, g_fast = _run(fast, x, state, weights)
    y_ref, s_ref, g_ref = _run(reference, x, state, weights)
    g_ref = {name.split(".", 2)[-1]: g for name, g in g_ref.items()}  # "step.<attr>.<param>" -> "<param>"
    assert g_fast.keys() == g_ref.keys(), (g_fast.keys(), g_ref.keys())
    return Gaps(_relative(y_fast, y_ref), tuple(_relative(a, b) for a, b in zip(s_fast, s_ref)),
                {name: _relative(g_fast[name], g_ref[name]) for name in g_ref})


def random_state(module, batch: int, input_size: int, dtype, seed: int = 3):
    """A non-zero state of the module's own structure (from a short run on random input)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        _, state = module(torch.randn(5, batch, input_size, generator=gen, dtype=dtype), None)
    return tuple(s.clone() for s in state)
