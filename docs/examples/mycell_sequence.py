"""mycell-seq: the minimal GRU in sequence form, the input projection of all steps in one product."""

import torch
from torch import nn

from harness import hookimpl


class MinGRUSequence(nn.Module):
    """The cell of mycell.py; forward sees the whole sequence, so W x_t is computed for all t at once."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.linear = nn.Linear(input_size, 2 * hidden_size)  # gate and candidate in one product

    def forward(self, x, state=None):  # x: (T, B, I); state: (B, H), or None for zeros
        h = x.new_zeros(x.shape[1], self.hidden_size) if state is None else state
        gates, candidates = self.linear(x).chunk(2, dim=-1)  # (T, B, H) each, every step at once
        outputs = []
        for z_t, candidate_t in zip(torch.sigmoid(gates).unbind(0), candidates.unbind(0)):
            h = torch.lerp(h, candidate_t, z_t)  # (1 - z) ⊙ h + z ⊙ h̃
            outputs.append(h)
        return torch.stack(outputs), h  # y: (T, B, H), and the state after the last step


@hookimpl
def register_cells(register):
    register("mycell-seq", MinGRUSequence, summary="minimal GRU, sequence form (input projection hoisted)")
