"""``project(x, weight, bias)``: ``x W^T + b`` over a whole sequence, with a fast weight gradient on CPU.

``F.linear`` (and so ``nn.Linear``) computes the weight gradient of ``x: (N, I)`` as
``grad_y^T @ x``, a product whose left operand is a transposed view. For the tall, skinny
shapes of a whole sequence (N = T·B = 32768 rows, I = 8, 3H = 768) MKL on the AMD EPYC
machines this project runs on took 380 ms for it, against 33 ms for the same product as
``x^T @ grad_y`` (single thread, torch 2.13). Writing the projection as
``addmm(b, x, W^T)`` makes autograd take the second form: the gradient of ``W^T`` is
``x^T @ grad_y``, then transposed as a view. Same numbers up to summation order.
"""

from __future__ import annotations

import torch


def project(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight^T + bias`` for ``x`` of shape (..., I), ``weight`` (O, I); returns (..., O)."""
    rows = x.reshape(-1, x.shape[-1])
    out = torch.mm(rows, weight.t()) if bias is None else torch.addmm(bias, rows, weight.t())
    return out.view(*x.shape[:-1], weight.shape[0])
