"""The seed article's vanilla RNN in NumPy, with backpropagation through time by hand.

    a_t = W x_t + U h_{t-1} + b
    h_t = tanh(a_t)

``W``: (H, I) input weights, ``U``: (H, H) recurrent weights, ``b``: (H,) bias.
Equivalent to ``torch.nn.RNN(I, H, nonlinearity="tanh")`` with ``weight_ih_l0 = W``,
``weight_hh_l0 = U`` and ``bias_ih_l0 + bias_hh_l0 = b``.

Speed: the input projection ``W x_t + b`` and every weight gradient are single matrix
products over all T steps at once, so the time loop holds only what the recurrence forces
on it: one (B, H)·(H, H) product and one tanh forward, one product and two element-wise
operations backward, all written into buffers allocated once per call.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from harness.hookspecs import hookimpl


class NumpyTanhRNN:
    """``h_t = tanh(W x_t + U h_{t-1} + b)`` over time-major arrays ``x: (T, B, I)``."""

    def __init__(self, input_size: int, hidden_size: int):
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"input_size and hidden_size must be greater than zero, got {input_size}, {hidden_size}")
        bound = 1.0 / math.sqrt(hidden_size)
        # Drawn from torch's generator so that torch.manual_seed(seed) seeds this cell too;
        # same U(-1/sqrt(H), 1/sqrt(H)) as torch.nn.RNN.
        uniform = lambda *shape: torch.empty(*shape).uniform_(-bound, bound).numpy()
        self.params = {
            "W": uniform(hidden_size, input_size),
            "U": uniform(hidden_size, hidden_size),
            "b": uniform(hidden_size),
        }

    def forward(self, x: np.ndarray, state: np.ndarray | None):
        """x: (T, B, I), state: (B, H) or None -> y: (T, B, H), state: (B, H), cache."""
        W, U, b = self.params["W"], self.params["U"], self.params["b"]
        seq_len, batch, input_size = x.shape
        hidden_size = U.shape[0]
        hs = np.empty((seq_len + 1, batch, hidden_size), dtype=x.dtype)  # hs[t + 1] = h_t
        hs[0] = 0.0 if state is None else state
        pre = hs[1:].reshape(seq_len * batch, hidden_size)
        np.matmul(x.reshape(seq_len * batch, input_size), W.T, out=pre)  # W x_t for every t at once
        pre += b
        recurrent = np.empty((batch, hidden_size), dtype=x.dtype)
        UT = U.T
        for t in range(seq_len):
            np.matmul(hs[t], UT, out=recurrent)
            h_t = hs[t + 1]
            h_t += recurrent  # a_t = W x_t + b + U h_{t-1}
            np.tanh(h_t, out=h_t)
        return hs[1:], hs[seq_len], (x, hs)

    def backward(self, cache, dy: np.ndarray, dstate: np.ndarray | None):
        """dy: (T, B, H), dstate: dL/dh_T (B, H) -> dx, dL/dh_0, {W, U, b} gradients."""
        x, hs = cache
        W, U = self.params["W"], self.params["U"]
        seq_len, batch, input_size = x.shape
        hidden_size = U.shape[0]
        tanh_grad = hs[1:] * hs[1:]
        np.subtract(1.0, tanh_grad, out=tanh_grad)  # d tanh(a)/da = 1 - h^2, all steps at once
        da = np.empty_like(tanh_grad)
        dh = np.zeros((batch, hidden_size), dtype=x.dtype) if dstate is None else np.array(dstate, dtype=x.dtype)
        for t in range(seq_len - 1, -1, -1):
            dh += dy[t]  # gradient on h_t: from the output at t and from step t + 1
            np.multiply(dh, tanh_grad[t], out=da[t])  # backprop through tanh
            np.matmul(da[t], U, out=dh)  # gradient flowing into h_{t-1}
        da_flat = da.reshape(seq_len * batch, hidden_size)
        grads = {
            "W": da_flat.T @ x.reshape(seq_len * batch, input_size),
            "U": da_flat.T @ hs[:-1].reshape(seq_len * batch, hidden_size),
            "b": da_flat.sum(axis=0),
        }
        dx = (da_flat @ W).reshape(seq_len, batch, input_size)
        return dx, dh, grads


@hookimpl
def register_cells(register):
    register(
        "numpy-rnn",
        NumpyTanhRNN,
        backend="numpy",
        summary="tanh RNN in NumPy with hand-written BPTT (seed article)",
    )
