"""Pieces the NumPy cells share: size checks, torch-seeded initialisation, the bias trick.

Not a plugin module: it registers nothing.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def check_sizes(input_size: int, hidden_size: int) -> None:
    if input_size <= 0 or hidden_size <= 0:
        raise ValueError(f"input_size and hidden_size must be greater than zero, got {input_size}, {hidden_size}")


def uniform_params(hidden_size: int, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """U(-1/sqrt(H), 1/sqrt(H)) arrays, as torch.nn.RNN/LSTM/GRU initialise theirs, drawn in
    order from torch's generator so that ``torch.manual_seed(seed)`` seeds NumPy cells too."""
    bound = 1.0 / math.sqrt(hidden_size)
    return {name: torch.empty(*shape).uniform_(-bound, bound).numpy() for name, shape in shapes.items()}


def with_ones_column(x: np.ndarray) -> np.ndarray:
    """``x`` (T, B, I) with a column of ones appended, (T, B, I + 1): multiplied by ``[W | b]^T``
    it gives ``W x_t + b`` for every step in one matrix product, and ``da^T x_aug`` gives
    ``dW`` and ``db`` together."""
    x_aug = np.empty(x.shape[:-1] + (x.shape[-1] + 1,), dtype=x.dtype)
    x_aug[..., :-1] = x
    x_aug[..., -1] = 1.0
    return x_aug
