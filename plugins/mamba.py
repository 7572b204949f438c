"""Built-in cell ``mamba``: one Mamba block (the selective state-space mixer), chunked scan and step form.

Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", 2023 (arXiv
2312.00752), sec. 3 and fig. 3. With E = expand·H inner channels and N state entries per channel:

    (u_t, z_t)   = W_in x_t                                   (E each; no bias)
    ū_t          = SiLU(Σ_{j<K} w_j ⊙ u_{t-K+1+j} + b_conv)    causal depthwise conv, window K = d_conv
    (δ_t, B_t, C_t) = W_x ū_t                                 δ_t: dt_rank, B_t, C_t: N each
    Δ_t          = softplus(W_dt δ_t + b_dt)                  (E) input-dependent step size
    A            = -exp(A_log)                                (E, N) S4D-real: A_{e,n} = -(n+1) at init
    h_t          = exp(Δ_t ⊗ A) ⊙ h_{t-1} + (Δ_t ⊙ ū_t) ⊗ B_t  (E, N) zero-order hold of A, Euler for B
    y_t          = h_t C_t + D ⊙ ū_t                          (E) D: skip, ones at init
    out_t        = W_out (y_t ⊙ SiLU(z_t))                    (H)

The block is the mixer alone, without the norm and residual of a Mamba layer (input_size
and hidden_size may differ here). Initialisation as in the paper's reference code
(``mamba_simple.py``): expand = 2, N = 16, K = 4, dt_rank = ⌈H/16⌉; W_dt ~ U(±dt_rank^-½);
b_dt = softplus⁻¹(Δ₀) with Δ₀ log-uniform in [1e-3, 1e-1] (floored at 1e-4); A_log = log(n+1);
D = 1; the projections and the conv as ``torch.nn.Linear`` / ``Conv1d``.

State: ``(window, h)`` — ``window: (B, E, K-1)`` the last K-1 conv inputs u (oldest first) and
``h: (B, E, N)``; ``None`` means zeros, so a sequence split into pieces with the state carried
gives the outputs of the whole.

Two implementations of the same function over the same parameters:

* ``MambaStep`` (registered as ``step``): the recurrence above one step at a time — the
  reference.
* ``Mamba`` (the registered factory): every projection, the conv, Δ, B and C over all T at
  once, and the recurrence h_t as a chunked scan (:func:`plugins.selective_scan.selective_scan`):
  per chunk of ``chunk_size`` steps the discretisation, readout and gradient reductions are
  single operations, the carry is one fused multiply-add per step, and the backward pass is
  written by hand and recomputes each chunk: the (T, B, E, N) tensors of the discretised A
  and B never exist for the whole sequence (at B=8, E=512, N=16, T=4096 one of them is 1 GiB
  in float32) — unless, with the states, they fit in that module's ``KEEP_BYTES`` (256 MiB),
  when the forward pass keeps them for the backward pass. That module's docstring says why
  this beats a parallel (doubling) scan on a CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from harness import hookimpl
from harness.names import SCAN, STEP_IMPL
from plugins.selective_scan import DEFAULT_CHUNK, selective_scan

EXPAND = 2
STATE_SIZE = 16  # N
CONV_WIDTH = 4  # K = d_conv
DT_MIN, DT_MAX, DT_FLOOR = 1e-3, 1e-1, 1e-4


def causal_conv(u: torch.Tensor, window: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
    """Depthwise causal convolution over time, continuing from the carried inputs.

    u: (T, B, E); window: (B, E, K-1); weight: (E, 1, K); bias: (E,)
    -> (T, B, E) outputs and the new window, the last K-1 inputs of ``window ++ u``.

    As K shifted multiply-adds in the time-major layout, ``out_t = b + Σ_j w_j ⊙ u_{t-K+1+j}``:
    no permuted copies, and a backward pass of K products (the depthwise ``conv1d`` this
    replaced took about 14 ms of a 190 ms training step at B=64, E=128, T=100 in its backward).
    """
    width, seq_len = weight.shape[-1], u.shape[0]
    full = torch.cat([window.permute(2, 0, 1), u])  # (K-1+T, B, E): the window is the past
    taps = weight.squeeze(1).t()  # (K, E)
    out = torch.addcmul(bias, full[0:seq_len], taps[0])
    for j in range(1, width):
        out = torch.addcmul(out, full[j:j + seq_len], taps[j])
    return out, full[full.shape[0] - (width - 1):].permute(1, 2, 0)


class Mamba(nn.Module):
    """One Mamba block; ``forward(x: (T, B, I), state)`` -> ``(y: (T, B, H), (window, h))`` by the chunked scan.

    :param input_size: I.  :param hidden_size: H, the block's output width.
    :param expand: E / H.  :param state_size: N.  :param conv_width: K.
    :param chunk_size: steps per chunk of the scan (memory ~ chunk_size · B · E · N per chunk);
        ``None``: cache-sized (:func:`plugins.selective_scan.auto_chunk_size`).
    """

    def __init__(self, input_size: int, hidden_size: int, *, expand: int = EXPAND, state_size: int = STATE_SIZE,
                 conv_width: int = CONV_WIDTH, chunk_size: int | None = DEFAULT_CHUNK):
        super().__init__()
        if min(input_size, hidden_size, expand, state_size, conv_width, 1 if chunk_size is None else chunk_size) <= 0:
            raise ValueError(f"sizes must be greater than zero, got input_size={input_size}, hidden_size={hidden_size}, "
                             f"expand={expand}, state_size={state_size}, conv_width={conv_width}, chunk_size={chunk_size}")
        self.hidden_size, self.chunk_size = hidden_size, chunk_size
        inner = expand * hidden_size
        self.dt_rank = math.ceil(hidden_size / 16)
        self.state_size = state_size
        self.in_proj = nn.Linear(input_size, 2 * inner, bias=False)
        self.conv = nn.Conv1d(inner, inner, conv_width, groups=inner)
        self.x_proj = nn.Linear(inner, self.dt_rank + 2 * state_size, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, inner)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, state_size + 1, dtype=torch.float32)).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, hidden_size, bias=False)
        self._init_dt()

    def _init_dt(self) -> None:
        """W_dt ~ U(±dt_rank^-½); b_dt = softplus⁻¹(Δ₀), Δ₀ log-uniform in [DT_MIN, DT_MAX] (paper's code)."""
        bound = self.dt_rank ** -0.5
        with torch.no_grad():
            self.dt_proj.weight.uniform_(-bound, bound)
            log_dt = torch.empty_like(self.dt_proj.bias).uniform_(math.log(DT_MIN), math.log(DT_MAX))
            dt = torch.exp(log_dt).clamp(min=DT_FLOOR)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # log(exp(dt) - 1), stable

    def initial_state(self, batch: int, like: torch.Tensor, state):
        """``state`` or zeros: ``(window: (B, E, K-1), h: (B, E, N))``."""
        if state is not None:
            return state
        inner, width = self.conv.weight.shape[0], self.conv.weight.shape[-1]
        return like.new_zeros(batch, inner, width - 1), like.new_zeros(batch, inner, self.state_size)

    def select(self, u_act: torch.Tensor):
        """ū (..., E) -> Δ (..., E), B (..., N), C (..., N): the input-dependent SSM parameters."""
        low_rank, B, C = self.x_proj(u_act).split([self.dt_rank, self.state_size, self.state_size], dim=-1)
        return F.softplus(self.dt_proj(low_rank)), B, C

    def forward(self, x: torch.Tensor, state=None):
        window, h = self.initial_state(x.shape[1], x, state)
        u, z = self.in_proj(x).chunk(2, dim=-1)
        u_conv, window = causal_conv(u, window, self.conv.weight, self.conv.bias)
        u_act = F.silu(u_conv)
        delta, B, C = self.select(u_act)
        y, h = selective_scan(u_act, delta, -torch.exp(self.A_log), B, C, h, self.chunk_size)
        y = (y + self.D * u_act) * F.silu(z)
        return self.out_proj(y), (window, h)


class MambaStep(nn.Module):
    """The same block one step at a time (the reference recurrence), sharing ``block``'s parameters.

    ``precompute(x: (T, B, I))`` is the input projection for all steps; ``recur(xz_t: (B, 2E), state)``
    does the rest of one step and returns ``(out_t: (B, H), (window, h))``.
    """

    def __init__(self, block: Mamba):
        super().__init__()
        self.block = block

    def precompute(self, x: torch.Tensor) -> torch.Tensor:
        return self.block.in_proj(x)

    def recur(self, xz_t: torch.Tensor, state=None):
        block = self.block
        window, h = block.initial_state(xz_t.shape[0], xz_t, state)
        u, z = xz_t.chunk(2, dim=-1)
        full = torch.cat([window, u.unsqueeze(-1)], dim=-1)  # (B, E, K): the conv's receptive field
        u_act = F.silu((full * block.conv.weight.squeeze(1)).sum(-1) + block.conv.bias)
        delta, B, C = block.select(u_act)
        A = -torch.exp(block.A_log)
        h = torch.exp(delta.unsqueeze(-1) * A) * h + (delta * u_act).unsqueeze(-1) * B.unsqueeze(-2)
        y = (h * C.unsqueeze(-2)).sum(-1) + block.D * u_act
        return block.out_proj(y * F.silu(z)), (full[..., 1:], h)

    def forward(self, x_t: torch.Tensor, state=None):
        return self.recur(self.precompute(x_t.unsqueeze(0))[0], state)


@hookimpl
def register_cells(register):
    register("mamba", Mamba, impl=SCAN, alternatives={STEP_IMPL: MambaStep}, reference=STEP_IMPL,
             summary="Mamba block: selective SSM, S4D-real A, conv window in the state (Gu & Dao 2023); chunked scan")
