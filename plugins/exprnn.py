"""Built-in cell ``exprnn``: a tanh RNN whose recurrent matrix is orthogonal by construction.

    U   = exp(A - Aᵀ)                      A: (H, H), trained; A - Aᵀ is skew-symmetric
    h_t = tanh(W x_t + b + U h_{t-1})

Lezcano-Casado & Martínez-Rubio, "Cheap Orthogonal Constraints in Neural Networks: A
Simple Parametrization of the Orthogonal and Unitary Group", ICML 2019 (expRNN). The
exponential of a skew-symmetric matrix is orthogonal, so ``‖U h‖ = ‖h‖`` for every value of
the trained parameter A: the linear part of the recurrence neither shrinks nor grows the
state or its gradient, which is why orthogonal and unitary RNNs solve the copy task at
delays where LSTMs stall (Arjovsky, Shah & Bengio 2016; Henaff, Szlam & LeCun 2016).

A is initialised as in Henaff et al. 2016 ("Recurrent Orthogonal Networks and Long-Memory
Tasks", ICML), the initialisation the expRNN paper uses for copy: ``exp(A - Aᵀ)`` is block
diagonal, 2 × 2 rotations by angles drawn from U(-π, π).

The paper's nonlinearity is modReLU; this cell uses tanh, so that the recurrence is
``torch.nn.RNN`` itself (a fused oneDNN / cuDNN kernel) with its ``weight_hh_l0``
parametrised through ``torch.nn.utils.parametrize``. Each forward call computes U once
with ``torch.linalg.matrix_exp`` (and its backward), an O(H³) cost that does not grow
with T.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from harness import hookimpl


class SkewExponential(nn.Module):
    """``A -> exp(A - Aᵀ)``: any square matrix to an orthogonal one (determinant +1)."""

    def forward(self, A: torch.Tensor) -> torch.Tensor:
        return torch.linalg.matrix_exp(A - A.transpose(-2, -1))


def henaff_generator(hidden_size: int) -> torch.Tensor:
    """An A whose ``exp(A - Aᵀ)`` rotates each pair of units (2k, 2k+1) by θ_k ~ U(-π, π)."""
    A = torch.zeros(hidden_size, hidden_size)
    angles = torch.empty(hidden_size // 2).uniform_(-math.pi, math.pi)
    pairs = torch.arange(hidden_size // 2) * 2
    A[pairs, pairs + 1] = angles  # A - Aᵀ then holds [[0, θ], [-θ, 0]] on each 2 × 2 block
    return A


def build(input_size: int, hidden_size: int) -> nn.RNN:
    """A one-layer tanh ``nn.RNN`` with ``weight_hh_l0 = exp(A - Aᵀ)``; state (1, B, H) as torch's."""
    rnn = nn.RNN(input_size, hidden_size, nonlinearity="tanh")
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(henaff_generator(hidden_size))  # becomes A once parametrised
    parametrize.register_parametrization(rnn, "weight_hh_l0", SkewExponential())
    return rnn


@hookimpl
def register_cells(register):
    register("exprnn", build, summary="tanh RNN, orthogonal U = exp(A - Aᵀ) (Lezcano-Casado & Martínez-Rubio 2019)")
