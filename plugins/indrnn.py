"""Built-in cell ``indrnn``: the independently recurrent neural network.

    h_t = relu(W x_t + b + u ⊙ h_{t-1})

Li, Li, Cook, Zhu & Gao, "Independently Recurrent Neural Network (IndRNN): Building a
Longer and Deeper RNN", CVPR 2018. Each unit sees only its own past (the recurrent
weight is a vector ``u``, not a matrix), so the gradient through n steps of unit k is
``u_k^n`` times the relu gates that were open: it neither vanishes nor explodes as long
as ``|u_k|`` stays near 1.

Constraint (sec. 3.1 of the paper): ``|u_k| <= γ^(1/T)`` keeps the gradient over T steps
below γ; with γ = 2 and T = ``max_seq_len`` (default 1000) the bound is
``u_max = 2^(1/1000) ≈ 1.0007``. The paper clips u after every optimizer step; a cell
cannot see the optimizer, so here the constraint is a parametrisation,
``u = u_max · tanh(v)`` with ``v`` the trained parameter, which holds it exactly for every
value of ``v`` and keeps a gradient at the bound (a clamp in forward would not).
Initialisation: ``u ~ U(0, 1)`` as in the paper, ``W`` and ``b`` as ``torch.nn.Linear``.

Sequence form: ``W x_t + b`` for all T steps is one matrix product; the time loop holds
one fused multiply-add and a relu per step.
"""

from __future__ import annotations

import torch
from torch import nn

from harness import hookimpl

GRADIENT_BOUND = 2.0  # γ: the largest growth of the gradient over max_seq_len steps


class IndRNN(nn.Module):
    """``h_t = relu(W x_t + b + u ⊙ h_{t-1})`` over ``x: (T, B, I)``; state ``h: (B, H)``.

    :param input_size: I, features per step.
    :param hidden_size: H, units (each with its own scalar recurrent weight).
    :param max_seq_len: T in the bound ``|u| <= 2^(1/T)``.
    """

    def __init__(self, input_size: int, hidden_size: int, max_seq_len: int = 1000):
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"input_size and hidden_size must be greater than zero, got {input_size}, {hidden_size}")
        if max_seq_len <= 0:
            raise ValueError(f"max_seq_len must be greater than zero, got {max_seq_len}")
        self.hidden_size = hidden_size
        self.u_max = GRADIENT_BOUND ** (1.0 / max_seq_len)
        self.input = nn.Linear(input_size, hidden_size)
        u_init = torch.empty(hidden_size).uniform_(0.0, 1.0)
        self.v = nn.Parameter(torch.atanh(u_init / self.u_max))

    @property
    def u(self) -> torch.Tensor:
        """The recurrent weights, each in (-u_max, u_max)."""
        return self.u_max * torch.tanh(self.v)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None):
        """x: (T, B, I), state: (B, H) or None -> y: (T, B, H), h_T: (B, H)."""
        u = self.u
        pre = self.input(x)  # W x_t + b for every step at once
        h = x.new_zeros(x.shape[1], self.hidden_size) if state is None else state
        outputs = []
        for pre_t in pre.unbind(0):
            h = torch.relu(torch.addcmul(pre_t, u, h))
            outputs.append(h)
        return torch.stack(outputs), h


@hookimpl
def register_cells(register):
    register("indrnn", IndRNN, summary="IndRNN: relu, element-wise recurrence, |u| <= 2^(1/1000) (Li et al. 2018)")
