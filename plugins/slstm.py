"""Built-in cell ``slstm``: the xLSTM scalar-memory cell with exponential gating, written as one step.

Beck, Pöppel, Spanring, Auer, Prudnikova, Kopp, Klambauer, Brandstetter & Hochreiter,
"xLSTM: Extended Long Short-Term Memory", NeurIPS 2024 (arXiv 2405.04517), sec. 2.2 and
appendix A.2. With R block-diagonal (one d × d block per head and gate, d = H / heads):

    z̃, ĩ, f̃, õ = W x_t + R h_{t-1} + b      (four pre-activations, H each)
    m_t  = max(log σ(f̃) + m_{t-1}, ĩ)         stabiliser
    i'_t = exp(ĩ - m_t),  f'_t = exp(log σ(f̃) + m_{t-1} - m_t)
    c_t  = f'_t c_{t-1} + i'_t tanh(z̃)        cell state
    n_t  = f'_t n_{t-1} + i'_t                normaliser
    h_t  = σ(õ) ⊙ c_t / n_t

This is the stabilised form of c_t = f_t c_{t-1} + i_t z_t, n_t = f_t n_{t-1} + i_t with
i_t = exp(ĩ), f_t = σ(f̃): c and n are both scaled by e^{-m_t}, which cancels in c/n. The
recurrence goes through h_{t-1} non-linearly, so unlike the mLSTM it has no parallel form;
the harness unrolls this step (W x_t + b for all steps is hoisted out of the loop).

State ``(h, c, n, m)``, each (B, H); ``None`` means zeros (n_1 = i'_1 > 0, so h_1 is defined).
Heads: 4 when H is divisible by 4, else 2, else 1. Initialisation as in the reference code
(NX-AI/xlstm ``slstm/cell.py``, defaults ``recurrent_weight_init="zeros"``,
``bias_init="powerlaw_blockdependent"`` for one block): R = 0; forget-gate bias of unit j
in each head 5 - 12 (j / (d-1))^0.3 (from 5, long memory, down to -7); other biases zero;
W N(0, 2/(5 I)) ("small init").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from harness import hookimpl
from harness.names import STEP_IMPL
from plugins.mlstm import default_heads

GATES = 4  # z, i, f, o


def powerlaw_forget_bias(head_size: int) -> torch.Tensor:
    """5 - 12 (j / (d-1))^0.3 for j = 0..d-1: a spread of time scales within each head."""
    ratio = torch.arange(head_size, dtype=torch.float32) / max(head_size - 1, 1)
    return 5.0 - 12.0 * ratio ** 0.3


class SLSTMStep(nn.Module):
    """One sLSTM step; ``precompute(x: (T, B, I))`` -> W x + b, ``recur(pre_t, (h, c, n, m))`` -> ``(h_t, state)``.

    :param input_size: I.  :param hidden_size: H.  :param heads: blocks of R (divides H).
    """

    def __init__(self, input_size: int, hidden_size: int, *, heads: int | None = None):
        super().__init__()
        heads = default_heads(hidden_size) if heads is None else heads
        if input_size <= 0 or hidden_size <= 0 or heads <= 0 or hidden_size % heads:
            raise ValueError(f"need positive sizes and heads dividing hidden_size, got input_size={input_size}, "
                             f"hidden_size={hidden_size}, heads={heads}")
        self.hidden_size, self.heads, self.head_size = hidden_size, heads, hidden_size // heads
        d = self.head_size
        self.input = nn.Linear(input_size, GATES * hidden_size)  # rows: z, i, f, o; each H in head order
        self.recurrent = nn.Parameter(torch.zeros(heads, d, GATES * d))  # per head: h_head (d) -> z, i, f, o (d each)
        with torch.no_grad():
            self.input.weight.normal_(0.0, math.sqrt(2.0 / (5.0 * input_size)))
            self.input.bias.zero_()
            self.input.bias[2 * hidden_size: 3 * hidden_size].copy_(powerlaw_forget_bias(d).repeat(heads))

        self._dense: torch.Tensor | None = None  # R as one (H, 4H) matrix, made by precompute per sequence

    def dense_recurrent(self) -> torch.Tensor:
        """R as a dense (H, 4H) matrix, zero off the head blocks, columns in the rows' order of
        ``input`` (gate, head, unit): ``R h`` becomes one matrix product per step instead of a
        batched product over heads and a permuted copy (a third of this cell's training step at
        B=64, H=64, T=100 went to those per-step reshapes). Differentiable; made once per sequence."""
        heads, d = self.heads, self.head_size
        blocks = self.recurrent.view(heads, d, GATES, d)
        eye = torch.eye(heads, dtype=blocks.dtype, device=blocks.device)
        return torch.einsum("kigj,kl->kiglj", blocks, eye).reshape(heads * d, GATES * heads * d)

    def precompute(self, x: torch.Tensor) -> torch.Tensor:
        self._dense = self.dense_recurrent()
        return self.input(x)

    def __getstate__(self):
        # copies and pickles leave the last sequence's R behind: it is part of that call's graph
        return {**self.__dict__, "_dense": None}

    def recur(self, pre_t: torch.Tensor, state=None):
        batch, H = pre_t.shape[0], self.hidden_size
        if state is None:
            h = c = n = m = pre_t.new_zeros(batch, H)
        else:
            h, c, n, m = state
        dense = self._dense if self._dense is not None else self.dense_recurrent()
        z_pre, i_pre, f_pre, o_pre = torch.addmm(pre_t, h, dense).chunk(GATES, dim=-1)  # W x + b + R h
        log_f = F.logsigmoid(f_pre)
        m_next = torch.maximum(log_f + m, i_pre)
        i_gate = torch.exp(i_pre - m_next)
        f_gate = torch.exp(log_f + m - m_next)
        c = f_gate * c + i_gate * torch.tanh(z_pre)
        n = f_gate * n + i_gate
        h = torch.sigmoid(o_pre) * c / n
        return h, (h, c, n, m_next)

    def forward(self, x_t: torch.Tensor, state=None):
        return self.recur(self.precompute(x_t.unsqueeze(0))[0], state)


@hookimpl
def register_cells(register):
    register("slstm", SLSTMStep, form="step", impl=STEP_IMPL,
             summary="xLSTM scalar memory, exponential gates, normaliser, block-diagonal R (Beck et al. 2024); step form")
