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

``MinLSTM``      sequence form (``scan`` in the speed table): one fused scan over time
                 (:func:`plugins.gated_scan.gated_scan`).
``MinLSTMStep``  step form (``step``, the reference): ``precompute(x)`` does the input projection for
                 every step at once, ``recur`` one step of the recurrence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness import hookimpl
from harness.names import SCAN, STEP_IMPL
from plugins.gated_scan import Gates, gated_scan
from plugins.projection import project


def coefficients(projected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f', i' ⊙ h̃)`` from the projection ``W x + b`` of shape (..., 3H): the recurrence is
    ``h_t = f'_t ⊙ h_{t-1} + (i' ⊙ h̃)_t`` (the step form's; the scan form uses :class:`MinLSTMGates`)."""
    forget, input_, candidate = projected.chunk(3, dim=-1)
    keep = torch.sigmoid(F.logsigmoid(forget) - F.logsigmoid(input_))  # σ(log f - log i) = f / (f + i)
    return keep, (1 - keep) * candidate


class MinLSTMGates(Gates):
    """``p = (f̂, î, h̃)``: ``a = f' = f / (f + i)`` with ``f = σ(f̂)``, ``i = σ(î)``; ``b = (1 - a) ⊙ h̃``.
    Backward, with ``∂L/∂a = g ⊙ (h_{t-1} - h̃)`` and ``∂L/∂d = ∂L/∂a ⊙ a ⊙ (1 - a)`` (``a = σ(d)``,
    ``d = log f - log i``): ``∂L/∂f̂ = ∂L/∂d ⊙ (1 - f)``, ``∂L/∂î = -∂L/∂d ⊙ (1 - i)``, ``∂L/∂h̃ = g ⊙ (1 - a)``.

    ``f / (f + i)`` costs two sigmoids where ``σ(log σ(f̂) - log σ(î))`` costs two log-sigmoids,
    four times as much on the CPU; it is 0/0 only where both gates underflow (pre-activations
    below about -88 in float32), and a block where that happens is recomputed in the log form.
    Off the CPU the log form is used throughout (no host check, and the cost is memory traffic).
    """

    groups = 3

    def forward(self, p, a, b, scratch):
        forget, input_, candidate = p.chunk(3, dim=-1)
        f, i, _ = scratch.chunk(3, dim=-1)  # kept for backward: it reads 1 - f and 1 - i
        torch.sigmoid(forget, out=f)
        torch.sigmoid(input_, out=i)
        torch.add(f, i, out=a)
        if a.device.type != "cpu" or a.amin() == 0:  # both gates underflowed somewhere: the log form
            torch.sigmoid(torch.sub(F.logsigmoid(forget), F.logsigmoid(input_), out=a), out=a)
        else:
            torch.div(f, a, out=a)
        if b is not None:
            torch.addcmul(candidate, a, candidate, value=-1, out=b)  # (1 - f') ⊙ h̃

    def backward(self, p, a, g, h_prev, grad_p):
        _, _, candidate = p.chunk(3, dim=-1)
        grad_forget, grad_input, grad_candidate = grad_p.chunk(3, dim=-1)  # the first two hold f and i
        keep_rest = torch.sub(1, a)  # 1 - a
        grad_d = torch.sub(h_prev, candidate).mul_(g).mul_(a).mul_(keep_rest)
        torch.mul(g, keep_rest, out=grad_candidate)
        torch.sub(1, grad_forget, out=grad_forget).mul_(grad_d)  # (1 - f) ∂L/∂d
        torch.sub(grad_input, 1, out=grad_input).mul_(grad_d)  # -(1 - i) ∂L/∂d


GATES = MinLSTMGates()


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
        h = gated_scan(GATES, x, self.linear.weight, self.linear.bias, state)  # fused, gates recomputed in backward
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
