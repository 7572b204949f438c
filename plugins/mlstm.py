"""Built-in cell ``mlstm``: the xLSTM matrix-memory cell, chunkwise-parallel and step form.

Beck, Pöppel, Spanring, Auer, Prudnikova, Kopp, Klambauer, Brandstetter & Hochreiter,
"xLSTM: Extended Long Short-Term Memory", NeurIPS 2024 (arXiv 2405.04517), sec. 2.3 and
appendix A.3. Per head (d = H / heads channels), from the cell input x_t:

    q_t = W_q x_t + b_q,   k_t = (W_k x_t + b_k) / √d,   v_t = W_v x_t + b_v
    ĩ_t = w_iᵀ x_t + b_i,  f̃_t = w_fᵀ x_t + b_f          (one scalar per head)
    o_t = σ(W_o x_t + b_o)
    C_t = f_t C_{t-1} + i_t v_t k_tᵀ                     (d × d) matrix memory
    n_t = f_t n_{t-1} + i_t k_t                          (d) normaliser
    h_t = o_t ⊙ C_t q_t / max(|n_tᵀ q_t|, 1)
    with i_t = exp(ĩ_t) and f_t = σ(f̃_t).

Stabilised (the form computed here; the state holds C' = e^{-m} C and n' = e^{-m} n):

    m_t  = max(log f_t + m_{t-1}, ĩ_t)
    i'_t = exp(ĩ_t - m_t),  f'_t = exp(log f_t + m_{t-1} - m_t)
    C'_t = f'_t C'_{t-1} + i'_t v_t k_tᵀ,   n'_t = f'_t n'_{t-1} + i'_t k_t
    h_t  = o_t ⊙ C'_t q_t / max(|n'_tᵀ q_t|, exp(-m_t))

Parallel form over a chunk of L steps from the carried (C'_0, n'_0, m_0), with F_t = Σ_{j≤t} log f_j:

    log D_ts = F_t - F_s + ĩ_s (s ≤ t),   g_t = F_t + m_0    (weight of the carried state)
    m_t      = max(max_s log D_ts, g_t)                       (equals the sequential m_t)
    S_ts     = (q_tᵀ k_s) exp(log D_ts - m_t)
    h_t      = o_t ⊙ (Σ_s S_ts v_s + e^{g_t - m_t} C'_0 q_t) / max(|Σ_s S_ts + e^{g_t - m_t} n'_0ᵀ q_t|, e^{-m_t})

``MLSTM`` (the registered factory) runs the sequence in chunks of ``chunk_size`` steps, each
in that parallel form, carrying (C', n', m) between chunks: memory O(L²) per chunk instead
of the O(T²) decay matrix of the fully parallel form. ``MLSTMStep`` (``step``) is the
stabilised recurrence one step at a time, the reference.

The cell is the paper's mLSTM memory cell alone, without the up-projection, convolution,
learnable skip and head-wise norm of the mLSTM block. State ``(C', n', m)``: (B, heads, d, d),
(B, heads, d), (B, heads); ``None`` means zeros. Heads: 4 when H is divisible by 4, else 2,
else 1. Initialisation as in the reference code (NX-AI/xlstm ``mlstm/cell.py``, ``layer.py``):
gate weights zero, forget-gate biases linearly spaced in [3, 6] over the heads, input-gate
biases N(0, 0.1²); q, k, v, o weights N(0, 2/(5 I)) ("small init"), biases zero.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from harness import hookimpl
from harness.names import PARALLEL, STEP_IMPL

CHUNK_SIZE = 64
FORGET_BIAS_RANGE = (3.0, 6.0)


def default_heads(hidden_size: int) -> int:
    return next(h for h in (4, 2, 1) if hidden_size % h == 0)


class MLSTM(nn.Module):
    """mLSTM cell; ``forward(x: (T, B, I), state)`` -> ``(h: (T, B, H), (C', n', m))``, chunkwise parallel.

    :param input_size: I.  :param hidden_size: H.  :param heads: memory heads (divides H).
    :param chunk_size: steps per chunk of the parallel form.
    """

    def __init__(self, input_size: int, hidden_size: int, *, heads: int | None = None, chunk_size: int = CHUNK_SIZE):
        super().__init__()
        heads = default_heads(hidden_size) if heads is None else heads
        if input_size <= 0 or hidden_size <= 0 or chunk_size <= 0 or heads <= 0 or hidden_size % heads:
            raise ValueError(f"need positive sizes and heads dividing hidden_size, got input_size={input_size}, "
                             f"hidden_size={hidden_size}, heads={heads}, chunk_size={chunk_size}")
        self.hidden_size, self.heads, self.chunk_size = hidden_size, heads, chunk_size
        self.head_size = hidden_size // heads
        # q, k, v, o (H each), then ĩ and f̃ (one per head): one product for all of them
        self.proj = nn.Linear(input_size, 4 * hidden_size + 2 * heads)
        self._init(input_size)

    def _init(self, input_size: int) -> None:
        H, heads = self.hidden_size, self.heads
        with torch.no_grad():
            self.proj.weight[: 4 * H].normal_(0.0, math.sqrt(2.0 / (5.0 * input_size)))
            self.proj.weight[4 * H:].zero_()
            self.proj.bias.zero_()
            self.proj.bias[4 * H: 4 * H + heads].normal_(0.0, 0.1)
            self.proj.bias[4 * H + heads:].copy_(torch.linspace(*FORGET_BIAS_RANGE, heads))

    def project(self, x: torch.Tensor):
        """x (..., I) -> q, k, v (..., heads, d) with k scaled by 1/√d; o (..., H); ĩ, log f (..., heads)."""
        H, heads, d = self.hidden_size, self.heads, self.head_size
        q, k, v, o, i_pre, f_pre = self.proj(x).split([H, H, H, H, heads, heads], dim=-1)
        shape = x.shape[:-1] + (heads, d)
        return (q.reshape(shape), k.reshape(shape) / math.sqrt(d), v.reshape(shape), torch.sigmoid(o),
                i_pre, F.logsigmoid(f_pre))

    def initial_state(self, batch: int, like: torch.Tensor, state):
        if state is not None:
            return state
        heads, d = self.heads, self.head_size
        return like.new_zeros(batch, heads, d, d), like.new_zeros(batch, heads, d), like.new_zeros(batch, heads)

    def forward(self, x: torch.Tensor, state=None):
        C, n, m = self.initial_state(x.shape[1], x, state)
        q, k, v, o, i_pre, log_f = self.project(x)
        # head-major, time inner: (B, heads, T, d) and (B, heads, T)
        q, k, v = (t.permute(1, 2, 0, 3) for t in (q, k, v))
        i_pre, log_f = (t.permute(1, 2, 0) for t in (i_pre, log_f))
        outputs = []
        for start in range(0, x.shape[0], self.chunk_size):
            piece = slice(start, start + self.chunk_size)
            h, (C, n, m) = parallel_chunk(q[:, :, piece], k[:, :, piece], v[:, :, piece], i_pre[:, :, piece],
                                          log_f[:, :, piece], (C, n, m))
            outputs.append(h)
        h = torch.cat(outputs, dim=2).permute(2, 0, 1, 3).reshape(x.shape[0], x.shape[1], self.hidden_size)
        return o * h, (C, n, m)


def parallel_chunk(q, k, v, i_pre, log_f, state):
    """The stabilised parallel form over one chunk (module docstring).

    q, k, v: (B, heads, L, d); i_pre, log_f: (B, heads, L); state (C', n', m) at the chunk's start
    -> h̃: (B, heads, L, d) (before the output gate) and the state after the chunk's last step.
    """
    C0, n0, m0 = state
    length = q.shape[2]
    cum_log_f = torch.cumsum(log_f, dim=-1)  # F_t
    log_d = cum_log_f.unsqueeze(-1) - cum_log_f.unsqueeze(-2) + i_pre.unsqueeze(-2)  # (B, heads, t, s)
    causal = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
    log_d = log_d.masked_fill(~causal, float("-inf"))
    log_carry = cum_log_f + m0.unsqueeze(-1)  # g_t
    m = torch.maximum(log_d.amax(dim=-1), log_carry)  # (B, heads, L)
    decay = torch.exp(log_d - m.unsqueeze(-1))
    carry = torch.exp(log_carry - m)
    scores = torch.matmul(q, k.transpose(-1, -2)) * decay
    numerator = torch.matmul(scores, v) + carry.unsqueeze(-1) * torch.matmul(q, C0.transpose(-1, -2))
    dot = scores.sum(-1) + carry * torch.matmul(q, n0.unsqueeze(-1)).squeeze(-1)  # n'_tᵀ q_t
    h = numerator / torch.maximum(dot.abs(), torch.exp(-m)).unsqueeze(-1)
    last = decay[..., -1, :].unsqueeze(-1)  # exp(log D_Ls - m_L): (B, heads, L, 1)
    C = carry[..., -1, None, None] * C0 + torch.matmul((v * last).transpose(-1, -2), k)  # Σ_s w_s v_s k_sᵀ
    n = carry[..., -1, None] * n0 + (k * last).sum(-2)
    return h, (C, n, m[..., -1])


class MLSTMStep(nn.Module):
    """The stabilised mLSTM recurrence one step at a time, sharing ``cell``'s parameters (the reference)."""

    def __init__(self, cell: MLSTM):
        super().__init__()
        self.cell = cell

    def precompute(self, x: torch.Tensor) -> torch.Tensor:
        return self.cell.proj(x)

    def recur(self, pre_t: torch.Tensor, state=None):
        cell = self.cell
        H, heads, d = cell.hidden_size, cell.heads, cell.head_size
        C, n, m = cell.initial_state(pre_t.shape[0], pre_t, state)
        q, k, v, o, i_pre, f_pre = pre_t.split([H, H, H, H, heads, heads], dim=-1)
        q, k, v = q.unflatten(-1, (heads, d)), k.unflatten(-1, (heads, d)) / math.sqrt(d), v.unflatten(-1, (heads, d))
        log_f = F.logsigmoid(f_pre)
        m_next = torch.maximum(log_f + m, i_pre)
        i_gate = torch.exp(i_pre - m_next)
        f_gate = torch.exp(log_f + m - m_next)
        C = f_gate[..., None, None] * C + i_gate[..., None, None] * (v.unsqueeze(-1) * k.unsqueeze(-2))
        n = f_gate[..., None] * n + i_gate[..., None] * k
        numerator = torch.matmul(C, q.unsqueeze(-1)).squeeze(-1)
        dot = (n * q).sum(-1)
        h = numerator / torch.maximum(dot.abs(), torch.exp(-m_next)).unsqueeze(-1)
        return torch.sigmoid(o) * h.flatten(-2), (C, n, m_next)

    def forward(self, x_t: torch.Tensor, state=None):
        return self.recur(self.precompute(x_t.unsqueeze(0))[0], state)


@hookimpl
def register_cells(register):
    register("mlstm", MLSTM, impl=PARALLEL, alternatives={STEP_IMPL: MLSTMStep}, reference=STEP_IMPL,
             summary="xLSTM matrix memory, exponential input gate, stabiliser (Beck et al. 2024); chunkwise parallel")
