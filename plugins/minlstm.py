"""Built-in cell ``minlstm``: the minimal LSTM, as a parallel scan over time and as a single step.

    f_t = σ(W_f x_t + b_f)                      forget gate, from the input alone
    i_t = σ(W_i x_t + b_i)                      input gate, from the input alone
    h̃_t = W_h x_t + b_h                         candidate state, linear in the input
    f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)      normalised, so f' + i' = 1
    h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t

Feng, Tung, Ahmed, Bengio & Hajimirsadeghi, "Were RNNs All We Needed?", 2024, sec. 3.2
(minLSTM with the time-independent normalisation of its appendix). The normalised gates are
computed as ``f' = σ(log f - log i)`` (``log f = logsigmoid(f̂)``, f̂ the pre-activation) and
``i' = 1 - f'``: the same numbers, without 0/0 when both gates underflow.

Initialisation as in the authors' code (BorealisAI/minRNNs): PyTorch's default ``nn.Linear``
for all three projections, i.e. U(-1/√I, 1/√I); ``forget_bias`` (default 0, their default) is
added to the forget gate's bias. The paper's log-space variant also makes the candidate
positive, ``g(h̃)``; here the candidate stays linear as in the equations above (and as in
``mingru``), and the scan is :func:`harness.scan.linear_scan`, which takes any sign.

State: ``h`` of shape (B, H); the output is ``h`` itself (y_t = h_t), as for ``mingru``.
Two forms over the same parameters, one ``nn.Linear(I, 3H)`` (rows: forget, input, candidate):

``MinLSTM``      sequence form (``module`` in the speed table): one scan over time.
``MinLSTMStep``  step form (``unrolled``): ``precompute(x)`` does the input projection for
                 every step at once, ``recur`` one step of the recurrence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness import hookimpl
from harness.names import SCAN, STEP_IMPL
from harness.scan import in_time_blocks, linear_scan
from plugins.projection import project


def coefficients(projected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f', i' ⊙ h̃)`` from the projection ``W x + b`` of shape (..., 3H): the recurrence is
    ``h_t = f'_t ⊙ h_{t-1} + (i' ⊙ h̃)_t``."""
    forget, input_, candidate = projected.chunk(3, dim=-1)
    keep = torch.sigmoid(F.logsigmoid(forget) - F.logsigmoid(input_))  # σ(log f - log i) = f / (f + i)
    return keep, (1 - keep) * candidate


class MinLSTM(nn.Module):
    """minLSTM over a sequence: ``forward(x: (T, B, I), h0: (B, H) | None) -> (h: (T, B, H), h_T)``."""

    def __init__(self, input_size: int, hidden_size: int, *, forget_bias: float = 0.0):
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"input_size and hidden_size must be positive, got {input_size} and {hidden_size}")
        self.hidden_size = hidden_size
        self.linear = nn.Linear(input_size, 3 * hidden_size)
        with torch.no_grad():
            self.linear.bias[:hidden_size] += forget_bias

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None):
        return in_time_blocks(self._forward, x, state)  # cache-sized blocks on the CPU, whole on a GPU

    def _forward(self, x: torch.Tensor, state: torch.Tensor | None):
        keep, write = coefficients(project(x, self.linear.weight, self.linear.bias))
        h = linear_scan(keep, write, state)
        return h, h[-1]


class MinLSTMStep(nn.Module):
    """One step of ``cell``'s recurrence, on ``cell``'s parameters: ``(x_t: (B, I), h) -> (h_t, h_t)``."""

    def __init__(self, cell: MinLSTM):
        super().__init__()
        self.cell = cell

    def precompute(self, x: torch.Tensor) -> torch.Tensor:
        return project(x, self.cell.linear.weight, self.cell.linear.bias)  # (T, B, 3H), all steps in one product

    def recur(self, projected_t: torch.Tensor, state: torch.Tensor | None = None):
        keep, write = coefficients(projected_t)
        h = write if state is None else torch.addcmul(write, keep, state)  # f' ⊙ h + i' ⊙ h̃
        return h, h

    def forward(self, x_t: torch.Tensor, state: torch.Tensor | None = None):
        return self.recur(self.precompute(x_t), state)


@hookimpl
def register_cells(register):
    register("minlstm", MinLSTM, impl=SCAN, alternatives={STEP_IMPL: MinLSTMStep}, reference=STEP_IMPL,
             summary="minimal LSTM, normalised gates from the input only (Feng et al. 2024); chunked scan, step form as reference")
