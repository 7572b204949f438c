"""Step-by-step versions of ``torch.nn.RNN``, ``LSTM`` and ``GRU`` that share the fused module's weights.

Each ``*Step`` module computes one time step with the same equations and parameters as the
fused kernel, so ``harness.cells.Unrolled(LSTMStep(lstm))`` returns the same outputs and
gradients as ``lstm`` itself (within floating-point tolerance): that is the ``unrolled``
implementation in the speed table, and the one a CUDA graph captures (``graphed``).
States keep the fused layout, ``(num_layers=1, B, H)``, so the two are interchangeable.
Only one-layer, unidirectional modules are supported.
"""

from __future__ import annotations

import torch
from torch import nn


def _check(module: nn.RNNBase) -> None:
    if module.num_layers != 1 or module.bidirectional or module.batch_first or module.proj_size:
        raise ValueError("step versions exist for one-layer, unidirectional, time-major modules without projections")


def _zeros(x_t: torch.Tensor, hidden_size: int) -> torch.Tensor:
    return x_t.new_zeros(1, x_t.shape[0], hidden_size)


class RNNStep(nn.Module):
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)"""

    def __init__(self, fused: nn.RNN):
        super().__init__()
        _check(fused)
        self.fused = fused

    def forward(self, x_t, state=None):
        m = self.fused
        h = _zeros(x_t, m.hidden_size) if state is None else state
        pre = nn.functional.linear(x_t, m.weight_ih_l0, m.bias_ih_l0) + nn.functional.linear(h[0], m.weight_hh_l0, m.bias_hh_l0)
        h_next = torch.tanh(pre) if m.nonlinearity == "tanh" else torch.relu(pre)
        return h_next, h_next.unsqueeze(0)


class LSTMStep(nn.Module):
    """i, f, g, o = chunks of (x W_ih^T + b_ih + h W_hh^T + b_hh); c' = f c + i g; h' = o tanh(c')"""

    def __init__(self, fused: nn.LSTM):
        super().__init__()
        _check(fused)
        self.fused = fused

    def forward(self, x_t, state=None):
        m = self.fused
        if state is None:
            h = c = _zeros(x_t, m.hidden_size)
        else:
            h, c = state
        gates = nn.functional.linear(x_t, m.weight_ih_l0, m.bias_ih_l0) + nn.functional.linear(h[0], m.weight_hh_l0, m.bias_hh_l0)
        in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, 1)
        in_gate = torch.sigmoid(in_gate)
        forget_gate = torch.sigmoid(forget_gate)
        cell_gate = torch.tanh(cell_gate)
        out_gate = torch.sigmoid(out_gate)
        c_next = forget_gate * c[0] + in_gate * cell_gate
        h_next = out_gate * torch.tanh(c_next)
        return h_next, (h_next.unsqueeze(0), c_next.unsqueeze(0))


class GRUStep(nn.Module):
    """r = σ(x W_ir + b_ir + h W_hr + b_hr); z = σ(... z ...); n = tanh(x W_in + b_in + r (h W_hn + b_hn)); h' = (1 - z) n + z h"""

    def __init__(self, fused: nn.GRU):
        super().__init__()
        _check(fused)
        self.fused = fused

    def forward(self, x_t, state=None):
        m = self.fused
        h = _zeros(x_t, m.hidden_size) if state is None else state
        gi = nn.functional.linear(x_t, m.weight_ih_l0, m.bias_ih_l0)
        gh = nn.functional.linear(h[0], m.weight_hh_l0, m.bias_hh_l0)
        i_r, i_z, i_n = gi.chunk(3, 1)
        h_r, h_z, h_n = gh.chunk(3, 1)
        reset_gate = torch.sigmoid(i_r + h_r)
        update_gate = torch.sigmoid(i_z + h_z)
        new_gate = torch.tanh(i_n + reset_gate * h_n)
        h_next = (1 - update_gate) * new_gate + update_gate * h[0]
        return h_next, h_next.unsqueeze(0)
