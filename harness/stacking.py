"""``--layers N``: N layers of one cell, pre-norm and residual, the same wrapper for every cell.

Block-style cells (Mamba, xLSTM, LRU) are compared stacked in their papers. With ``x`` the
input (T, B, I), ``cell_1`` built at (I, H) and ``cell_2 … cell_N`` at (H, H)::

    y_1 = cell_1(x)
    y_l = y_{l-1} + cell_l(LayerNorm_l(y_{l-1}))      l = 2 … N      (pre-norm, residual)
    y   = y_N                                          (T, B, H)

The first layer is the cell alone, exactly the one-layer model: it changes the width from I to
H, so it has no residual, and it sees the task's raw input (a layer norm over, say, the adding
task's two channels would erase what they hold). Pre-norm residual blocks as in the
Transformer of Xiong et al. 2020 ("On Layer Normalization in the Transformer Architecture")
and the Mamba and xLSTM stacks. ``N = 1`` is the cell itself, unwrapped.

State: the tuple of the layers' states ``(s_1, …, s_N)``, each as its cell returns it; ``None``
means zeros for every layer. So a sequence run in pieces with the stacked state carried equals
the whole, and the gradient probe measures ``‖∂L/∂(s_1, …, s_N)_t‖``, the whole model's state.
"""

from __future__ import annotations

from torch import nn

from harness.errors import CellContractError, UsageError

MAX_LAYERS = 64


def check_layers(layers: int) -> int:
    """``layers`` if it is a whole number in [1, MAX_LAYERS]; else a :class:`UsageError` saying so."""
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= MAX_LAYERS:
        raise UsageError(f"--layers {layers}: a whole number of layers from 1 to {MAX_LAYERS}")
    return layers


class Stacked(nn.Module):
    """``forward(x: (T, B, I), state: tuple of N layer states | None) -> (y: (T, B, H), tuple of N states)``."""

    def __init__(self, layers: list[nn.Module], hidden_size: int):
        super().__init__()
        if len(layers) < 2:
            raise ValueError(f"a stack needs at least 2 layers, got {len(layers)}; one layer is the cell itself")
        self.layers = nn.ModuleList(layers)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_size) for _ in layers[1:])

    def forward(self, x, state=None):
        states = (None,) * len(self.layers) if state is None else state
        if not isinstance(states, (tuple, list)) or len(states) != len(self.layers):
            raise CellContractError(f"a {len(self.layers)}-layer stack takes a tuple of {len(self.layers)} layer states, "
                                    f"got {type(state).__name__}")
        y, first = self.layers[0](x, states[0])
        new_states = [first]
        for norm, layer, layer_state in zip(self.norms, self.layers[1:], states[1:]):
            out, layer_state = layer(norm(y), layer_state)
            y = y + out
            new_states.append(layer_state)
        return y, tuple(new_states)


def stack(build, input_size: int, hidden_size: int, layers: int = 1) -> nn.Module:
    """``build(input_size, hidden_size)`` once (``layers == 1``) or as the N layers of a :class:`Stacked`."""
    first = build(input_size, hidden_size)
    if layers == 1:
        return first
    return Stacked([first] + [build(hidden_size, hidden_size) for _ in range(layers - 1)], hidden_size)


def stacked_param_count(first_layer: int, inner_layer: int, hidden_size: int, layers: int) -> int:
    """Parameters of an N-layer stack: the first layer, N - 1 inner layers and their layer norms (2H each)."""
    return first_layer + (layers - 1) * (inner_layer + 2 * hidden_size)
