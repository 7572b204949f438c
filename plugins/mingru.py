"""Built-in cell ``mingru``: the minimal GRU, written as a single step the harness unrolls.

    z_t = σ(W_z x_t + b_z)                       update gate, from the input alone
    h̃_t = W_h x_t + b_h                          candidate state, linear in the input
    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t

Feng, Tung, Ahmed, Bengio & Hajimirsadeghi, "Were RNNs All We Needed?", 2024, sec. 3.1.
Neither the gate nor the candidate looks at h_{t-1}, so the recurrence is linear in h and
could run as a parallel scan; written as one step it shows what a step-form cell plugin
is. The class is the worked example of ``docs/writing-cells.md`` (``docs/examples/mycell.py``,
which registers it as ``mycell``); ``tests/test_docs.py`` keeps the two identical.
"""

import torch
from torch import nn

from harness import hookimpl


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


@hookimpl
def register_cells(register):
    register("mingru", MinGRU, form="step", summary="minimal GRU, gates from the input only (Feng et al. 2024); step form")
