"""mycell-numpy: the minimal GRU in NumPy, with backpropagation through time written by hand."""

import math

import numpy as np
import torch

from harness import hookimpl


def sigmoid(a):
    return 0.5 + 0.5 * np.tanh(0.5 * a)  # = 1 / (1 + exp(-a)), and cannot overflow


class MinGRUNumpy:
    """params: W (2H, I) and b (2H,): the gate's rows, then the candidate's."""

    def __init__(self, input_size, hidden_size):
        bound = 1.0 / math.sqrt(input_size)  # nn.Linear's initialisation, from torch's generator
        self.params = {
            "W": torch.empty(2 * hidden_size, input_size).uniform_(-bound, bound).numpy(),
            "b": torch.empty(2 * hidden_size).uniform_(-bound, bound).numpy(),
        }

    def forward(self, x, state):  # x: (T, B, I); state: (B, H) or None -> y, state, cache
        W, b = self.params["W"], self.params["b"]
        seq_len, batch, _ = x.shape
        hidden = W.shape[0] // 2
        projected = x @ W.T + b  # (T, B, 2H): gate and candidate for every step in one product
        z, candidates = sigmoid(projected[..., :hidden]), projected[..., hidden:]
        hs = np.empty((seq_len + 1, batch, hidden), dtype=x.dtype)  # hs[t + 1] = h_t
        hs[0] = 0.0 if state is None else state
        for t in range(seq_len):
            hs[t + 1] = hs[t] + z[t] * (candidates[t] - hs[t])  # (1 - z) ⊙ h + z ⊙ h̃
        return hs[1:], hs[seq_len], (x, z, candidates, hs)

    def backward(self, cache, dy, dstate):  # dy: (T, B, H); dstate: dL/dh_T -> dx, dL/dh_0, grads
        x, z, candidates, hs = cache
        seq_len, batch, hidden = dy.shape
        dprojected = np.empty((seq_len, batch, 2 * hidden), dtype=dy.dtype)
        dz, dcandidates = dprojected[..., :hidden], dprojected[..., hidden:]
        dh = np.zeros_like(hs[0]) if dstate is None else np.array(dstate)
        for t in reversed(range(seq_len)):
            dh = dh + dy[t]  # gradient on h_t: from the output at t and from step t + 1
            dz[t] = dh * (candidates[t] - hs[t])  # through z in h_t = h + z (h̃ - h)
            dcandidates[t] = dh * z[t]  # through h̃
            dh = dh * (1.0 - z[t])  # gradient flowing into h_{t-1}
        dz *= z * (1.0 - z)  # backprop through the sigmoid, every step at once
        flat = dprojected.reshape(seq_len * batch, 2 * hidden)
        grads = {"W": flat.T @ x.reshape(seq_len * batch, -1), "b": flat.sum(axis=0)}
        return dprojected @ self.params["W"], dh, grads


@hookimpl
def register_cells(register):
    register("mycell-numpy", MinGRUNumpy, backend="numpy", summary="minimal GRU in NumPy, hand-written BPTT")
