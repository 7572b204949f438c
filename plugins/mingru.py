"""Built-in cell ``mingru``: the minimal GRU, as a parallel scan over time and as a single step.

    z_t = σ(W_z x_t + b_z)                       update gate, from the input alone
    h̃_t = W_h x_t + b_h                          candidate state, linear in the input
    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t

Feng, Tung, Ahmed, Bengio & Hajimirsadeghi, "Were RNNs All We Needed?", 2024, sec. 3.1.
Neither the gate nor the candidate looks at h_{t-1}, so the recurrence is linear in h,
``h_t = a_t ⊙ h_{t-1} + b_t`` with ``a_t = 1 - z_t = σ(-W_z x_t - b_z)`` and ``b_t = z_t ⊙ h̃_t``,
and runs as a parallel scan (:func:`harness.scan.scan_into` inside the fused
:func:`plugins.gated_scan.gated_scan`; the paper's own parallel
form is a log-space scan, which needs a positive candidate; the chunked scan does not).

Two forms over the same parameters, one ``nn.Linear(I, 2H)`` (gate rows first):

``MinGRUScan``  sequence form, ``(x: (T, B, I), h0: (B, H) | None) -> (h: (T, B, H), h_T)``;
                registered as the cell (``scan`` in the speed table).
``MinGRU``      step form, ``(x_t: (B, I), h) -> (h_t, h_t)``; ``step_form(scan)`` builds it
                on the scan's parameters (``step`` in the speed table, the reference).

``MinGRU`` is the worked example of ``docs/writing-cells.md`` (``docs/examples/mycell.py``,
which registers it as ``mycell``); ``tests/test_docs.py`` keeps the two identical.
"""

import torch
from torch import nn

from harness import hookimpl
from harness.names import SCAN, STEP_IMPL
from plugins.gated_scan import Gates, gated_scan


class MinGRU(nn.Module):
    """z_t = σ(W_z x_t + b_z), h̃_t = W_h x_t + b_h, h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t"""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.linear = nn.Linear(input_size, 2 * hidden_size)  # gate and candidate in one product

    def forward(self, x_t, state=None):  # x_t: (B, I); state: (B, H), or None at the first step
        h = x_t.new_zeros(x_t.shape[0], self.hidden_size) if state is None else state
        gate, candidate = self.linear(x_t).chunk(2, dim=-1)
        h_t = torch.lerp(h, candidate, torch.sigmoid(gate))  # (1 - z) ⊙ h + z ⊙ h̃
        return h_t, h_t  # the output at this step, and the state for the next one


class MinGRUGates(Gates):
    """``p = (gate, h̃)``: ``a = 1 - z = σ(-gate)`` (not rounded to 1 early), ``b = z ⊙ h̃ = h̃ - a ⊙ h̃``;
    backward ``∂L/∂h̃ = g ⊙ z``, ``∂L/∂gate = g ⊙ z ⊙ a ⊙ (h̃ - h_{t-1})`` with ``z = 1 - a``
    (a subtraction instead of a second sigmoid; where z underflows it is 0 within rounding)."""

    groups = 2

    def forward(self, p, a, b, scratch):
        gate, candidate = p.chunk(2, dim=-1)
        torch.sigmoid(torch.neg(gate, out=a), out=a)
        if b is not None:
            torch.addcmul(candidate, a, candidate, value=-1, out=b)

    def backward(self, p, a, g, h_prev, grad_p):
        gate, candidate = p.chunk(2, dim=-1)
        grad_gate, grad_candidate = grad_p.chunk(2, dim=-1)
        torch.sub(1, a, out=grad_candidate).mul_(g)  # g ⊙ z
        torch.sub(candidate, h_prev, out=grad_gate).mul_(a).mul_(grad_candidate)


GATES = MinGRUGates()


class MinGRUScan(nn.Module):
    """The same cell over a whole sequence: h = linear_scan(1 - z, z ⊙ h̃, h0), fused
    (:func:`plugins.gated_scan.gated_scan`: cache-sized blocks, gates recomputed in backward)."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.linear = nn.Linear(input_size, 2 * hidden_size)  # as MinGRU's, so one seed builds the same cell

    def forward(self, x, state=None):  # x: (T, B, I); state: (B, H) or None
        h = gated_scan(GATES, x, self.linear.weight, self.linear.bias, state)
        return h, h[-1]


def step_form(scan: MinGRUScan) -> MinGRU:
    """The step module computing ``scan``'s function on ``scan``'s own parameters (shared, not copied)."""
    with torch.device("meta"):  # build without drawing random numbers, then adopt scan's layer
        step = MinGRU(scan.linear.in_features, scan.hidden_size)
    step.linear = scan.linear
    return step


@hookimpl
def register_cells(register):
    register("mingru", MinGRUScan, impl=SCAN, alternatives={STEP_IMPL: step_form}, reference=STEP_IMPL,
             summary="minimal GRU, gates from the input only (Feng et al. 2024); chunked scan, step form as reference")
