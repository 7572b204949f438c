"""Step-by-step versions of ``torch.nn.RNN``, ``LSTM`` and ``GRU`` that share the fused module's weights.

Each ``*Step`` module computes one time step with the same equations and parameters as the
fused kernel, so ``harness.cells.Unrolled(LSTMStep(lstm))`` returns the same outputs and
gradients as ``lstm`` itself (within floating-point tolerance): that is the ``unrolled``
implementation in the speed table, and the one a CUDA graph captures (``graphed``).
States keep the fused layout, ``(num_layers=1, B, H)``, so the two are interchangeable.

Like cuDNN, they hoist the input projection out of the time loop: ``precompute(x)`` gives
``x W_ih^T + b`` for every step in one matrix product, and ``recur`` adds the recurrent
product with one matrix product per step. ``forward(x_t, state)`` does both for a single
step. On CUDA, LSTM and GRU gates go through the fused element-wise kernels that
``nn.LSTMCell``/``nn.GRUCell`` use there (``aten::_thnn_fused_lstm_cell`` and
``_thnn_fused_gru_cell``, same equations, one kernel instead of about ten); elsewhere the
equations below run as written. Only one-layer, unidirectional modules are supported.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.functional import linear


def _check(module: nn.RNNBase) -> None:
    if module.num_layers != 1 or module.bidirectional or module.batch_first or module.proj_size:
        raise ValueError("step versions exist for one-layer, unidirectional, time-major modules without projections")


class _Step(nn.Module):
    def __init__(self, fused: nn.RNNBase):
        super().__init__()
        _check(fused)
        self.fused = fused

    def _zeros(self, pre_t: torch.Tensor) -> torch.Tensor:
        return pre_t.new_zeros(1, pre_t.shape[0], self.fused.hidden_size)

    def forward(self, x_t, state=None):
        return self.recur(self.precompute(x_t.unsqueeze(0))[0], state)


class RNNStep(_Step):
    """h' = tanh(x W_ih^T + b_ih + b_hh + h W_hh^T)"""

    def precompute(self, x):
        m = self.fused
        return linear(x, m.weight_ih_l0, m.bias_ih_l0 + m.bias_hh_l0)

    def recur(self, pre_t, state=None):
        h = self._zeros(pre_t) if state is None else state
        pre = torch.addmm(pre_t, h[0], self.fused.weight_hh_l0.t())
        h_next = torch.tanh(pre) if self.fused.nonlinearity == "tanh" else torch.relu(pre)
        return h_next, h_next.unsqueeze(0)


class LSTMStep(_Step):
    """i, f, g, o = chunks of (x W_ih^T + b_ih + b_hh + h W_hh^T); c' = σ(f) c + σ(i) tanh(g); h' = σ(o) tanh(c')"""

    def precompute(self, x):
        m = self.fused
        return linear(x, m.weight_ih_l0, m.bias_ih_l0 + m.bias_hh_l0)

    def recur(self, pre_t, state=None):
        if state is None:
            h = c = self._zeros(pre_t)
        else:
            h, c = state
        if pre_t.is_cuda:
            hidden_gates = torch.mm(h[0], self.fused.weight_hh_l0.t())
            h_next, c_next, _ = torch.ops.aten._thnn_fused_lstm_cell(pre_t, hidden_gates, c[0])
            return h_next, (h_next.unsqueeze(0), c_next.unsqueeze(0))
        gates = torch.addmm(pre_t, h[0], self.fused.weight_hh_l0.t())
        in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, 1)
        in_gate = torch.sigmoid(in_gate)
        forget_gate = torch.sigmoid(forget_gate)
        cell_gate = torch.tanh(cell_gate)
        out_gate = torch.sigmoid(out_gate)
        c_next = forget_gate * c[0] + in_gate * cell_gate
        h_next = out_gate * torch.tanh(c_next)
        return h_next, (h_next.unsqueeze(0), c_next.unsqueeze(0))


class GRUStep(_Step):
    """r = σ(x W_ir + b_ir + h W_hr + b_hr); z = σ(x W_iz + b_iz + h W_hz + b_hz);
    n = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn)); h' = (1 - z) ⊙ n + z ⊙ h"""

    def precompute(self, x):
        m = self.fused
        return linear(x, m.weight_ih_l0, m.bias_ih_l0)

    def recur(self, pre_t, state=None):
        m = self.fused
        h = self._zeros(pre_t) if state is None else state
        gh = torch.addmm(m.bias_hh_l0, h[0], m.weight_hh_l0.t())
        if pre_t.is_cuda:
            h_next, _ = torch.ops.aten._thnn_fused_gru_cell(pre_t, gh, h[0])
            return h_next, h_next.unsqueeze(0)
        i_r, i_z, i_n = pre_t.chunk(3, 1)
        h_r, h_z, h_n = gh.chunk(3, 1)
        reset_gate = torch.sigmoid(i_r + h_r)
        update_gate = torch.sigmoid(i_z + h_z)
        new_gate = torch.tanh(i_n + reset_gate * h_n)
        h_next = new_gate + update_gate * (h[0] - new_gate)  # (1 - z) n + z h, one kernel fewer
        return h_next, h_next.unsqueeze(0)


def fused_cell(name: str, module_class: type[nn.RNNBase], step_class: type[_Step], summary: str, **options):
    """The factory and the ``register_cells`` hook of a built-in cell that is one of torch's own
    recurrent modules: ``module_class(input_size, hidden_size, **options)``, one layer,
    time-major, registered as the ``fused`` implementation with ``step_class`` as its step form.

    Returns ``(build, register_cells)``; a plugin module binds both at module level.
    """
    from harness import hookimpl
    from harness.names import FUSED, TORCH, UNROLLED

    def build(input_size: int, hidden_size: int) -> nn.Module:
        return module_class(input_size, hidden_size, **options)

    @hookimpl
    def register_cells(register):
        register(name, build, backend=TORCH, summary=summary, impl=FUSED, alternatives={UNROLLED: step_class})

    return build, register_cells
