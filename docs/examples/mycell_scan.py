"""mycell-scan: the minimal GRU with two implementations, a parallel scan and the plain step.

The recurrence h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t is linear in h (neither z_t nor h̃_t reads
h_{t-1}), so the whole sequence can run as one scan over time. The step form is the plain
recurrence: the reference that `rnnbench check` verifies the scan against.
"""

import torch
from torch import nn

from harness import hookimpl
from harness.scan import linear_scan


class MinGRUStep(nn.Module):
    """One step: z_t = σ(W_z x_t + b_z), h̃_t = W_h x_t + b_h, h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t."""

    def __init__(self, scan):
        super().__init__()
        self.hidden_size = scan.hidden_size
        self.linear = scan.linear  # the scan's own layer: shared, not copied

    def forward(self, x_t, state=None):  # x_t: (B, I); state: (B, H), or None at the first step
        h = x_t.new_zeros(x_t.shape[0], self.hidden_size) if state is None else state
        gate, candidate = self.linear(x_t).chunk(2, dim=-1)
        h_t = torch.lerp(h, candidate, torch.sigmoid(gate))
        return h_t, h_t


class MinGRUScan(nn.Module):
    """The whole sequence at once: h = scan(a = 1 - z, b = z ⊙ h̃) with h_t = a_t ⊙ h_{t-1} + b_t."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.linear = nn.Linear(input_size, 2 * hidden_size)  # gate and candidate in one product

    def forward(self, x, state=None):  # x: (T, B, I); state: (B, H), or None for zeros
        gate, candidate = self.linear(x).chunk(2, dim=-1)  # (T, B, H) each, every step at once
        h = linear_scan(torch.sigmoid(-gate), torch.sigmoid(gate) * candidate, state)  # 1 - σ(g) = σ(-g)
        return h, h[-1]  # y: (T, B, H), and the state after the last step


@hookimpl
def register_cells(register):
    register("mycell-scan", MinGRUScan, impl="scan", alternatives={"step": MinGRUStep}, reference="step",
             summary="minimal GRU: a parallel scan, checked against its step form")
