"""A GRU in NumPy, with backpropagation through time by hand.

    r_t = σ(W_r x_t + U_r h_{t-1} + b_r)                    reset gate
    z_t = σ(W_z x_t + U_z h_{t-1} + b_z)                    update gate
    n_t = tanh(W_n x_t + b_n + r_t ⊙ (U_n h_{t-1} + b_hn))  candidate
    h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

``W``: (3H, I), ``U``: (3H, H), ``b``: (3H,), the gates stacked in torch's order r, z, n;
``b_hn``: (H,), the recurrent bias of the candidate, which sits inside the reset gate
and so cannot be folded into ``b``. Equivalent to ``torch.nn.GRU(I, H)`` with
``weight_ih_l0 = W``, ``weight_hh_l0 = U``, ``bias_ih_l0 = b`` except that its first 2H
entries are ``bias_ih_l0 + bias_hh_l0``, and ``b_hn = bias_hh_l0[2H:]``; the state h is
(B, H) where torch's is (1, B, H).

Speed, as in ``numpy_rnn`` and ``numpy_lstm``: the input projection ``W x_t + b`` of all T
steps is one matrix product, and so is each weight gradient; σ(a) is computed as
0.5 + 0.5 tanh(a / 2), with the input side halved once for the whole sequence; backward,
the factors that do not depend on the incoming gradient are computed for all steps
before the loop.
"""

from __future__ import annotations


import numpy as np

from harness import hookimpl
from plugins.numpy_common import check_sizes, uniform_params, with_ones_column


class NumpyGRU:
    """``torch.nn.GRU``'s equations over time-major arrays ``x: (T, B, I)``, state ``h: (B, H)``."""

    def __init__(self, input_size: int, hidden_size: int):
        check_sizes(input_size, hidden_size)
        # Same U(-1/sqrt(H), 1/sqrt(H)) as torch's modules, drawn from torch's generator (seeded runs).
        self.params = uniform_params(hidden_size, {
            "W": (3 * hidden_size, input_size),
            "U": (3 * hidden_size, hidden_size),
            "b": (3 * hidden_size,),
            "b_hn": (hidden_size,),
        })

    def forward(self, x: np.ndarray, state: np.ndarray | None):
        """x: (T, B, I), state: (B, H) or None -> y: (T, B, H), state: (B, H), cache."""
        W, U, b, b_hn = (self.params[n] for n in ("W", "U", "b", "b_hn"))
        seq_len, batch, input_size = x.shape
        hidden = U.shape[1]
        dtype = x.dtype
        hs = np.empty((seq_len + 1, batch, hidden), dtype=dtype)  # hs[t + 1] = h_t
        hs[0] = 0.0 if state is None else state
        # W x_t + b for every step in one product: x gets a column of ones, W gets b.
        x_aug = with_ones_column(x)
        WbT = np.ascontiguousarray(np.concatenate([W, b[:, None]], axis=1).T, dtype=dtype)  # (I + 1, 3H)
        gates = x_aug @ WbT  # (T, B, 3H): input pre-activations, turned into r, z, n in the loop
        gates[..., : 2 * hidden] *= 0.5  # σ(a) = 0.5 + 0.5 tanh(a / 2): halve the sigmoid inputs once
        UT = np.ascontiguousarray(U.T, dtype=dtype)  # astype keeps a view's transposed layout
        UT[:, : 2 * hidden] *= 0.5
        b_hn = b_hn.astype(dtype, copy=False)
        hn = np.empty((seq_len, batch, hidden), dtype=dtype)  # U_n h_{t-1} + b_hn, kept for backward
        recurrent = np.empty((batch, 3 * hidden), dtype=dtype)
        scratch = np.empty((batch, hidden), dtype=dtype)
        for t in range(seq_len):
            a = gates[t]
            np.dot(hs[t], UT, out=recurrent)
            sigmoids = a[:, : 2 * hidden]
            sigmoids += recurrent[:, : 2 * hidden]
            np.tanh(sigmoids, out=sigmoids)
            sigmoids *= 0.5
            sigmoids += 0.5  # r, z = σ
            reset_gate, update_gate, cand = a[:, :hidden], a[:, hidden : 2 * hidden], a[:, 2 * hidden :]
            np.add(recurrent[:, 2 * hidden :], b_hn, out=hn[t])
            np.multiply(reset_gate, hn[t], out=scratch)
            cand += scratch
            np.tanh(cand, out=cand)  # n_t
            np.subtract(hs[t], cand, out=scratch)
            scratch *= update_gate
            np.add(cand, scratch, out=hs[t + 1])  # h_t = n + z (h_{t-1} - n)
        return hs[1:], hs[seq_len], (x_aug, gates, hn, hs)

    def backward(self, cache, dy: np.ndarray, dstate: np.ndarray | None):
        """dy: (T, B, H), dstate: dL/dh_T (B, H) -> dx, dL/dh_0, {W, U, b, b_hn} gradients."""
        x_aug, gates, hn, hs = cache
        W, U = self.params["W"], self.params["U"]
        seq_len, batch, hidden = dy.shape
        input_size = x_aug.shape[-1] - 1
        dtype = hs.dtype
        reset_gate, update_gate, cand = gates[..., :hidden], gates[..., hidden : 2 * hidden], gates[..., 2 * hidden :]
        # Every factor that does not depend on the incoming gradient, for all steps at once.
        to_cand = (1.0 - update_gate) * (1.0 - cand * cand)  # dn/dh_t · tanh': into n's pre-activation
        to_update = (hs[:-1] - cand) * update_gate * (1.0 - update_gate)  # dh_t/dz · σ'
        to_reset = hn * reset_gate * (1.0 - reset_gate)  # d(n's pre-activation)/dr · σ'
        # Gradients of the recurrent pre-activations (r, z, U_n h + b_hn); those of the input
        # side are the same for r and z, and that of n's pre-activation for n.
        d_recurrent = np.empty((seq_len, batch, 3 * hidden), dtype=dtype)
        d_cand = np.empty((seq_len, batch, hidden), dtype=dtype)
        need_dx = getattr(self, "needs_input_grad", True)  # the adapter says when nobody needs dx
        dh = np.zeros((batch, hidden), dtype=dtype) if dstate is None else np.array(dstate, dtype=dtype)
        through_u = np.empty((batch, hidden), dtype=dtype)
        for t in range(seq_len - 1, -1, -1):
            dr, dz, dhn = d_recurrent[t, :, :hidden], d_recurrent[t, :, hidden : 2 * hidden], d_recurrent[t, :, 2 * hidden :]
            dh += dy[t]  # gradient on h_t: from the output at t and from step t + 1
            np.multiply(dh, to_update[t], out=dz)  # backprop into z's pre-activation
            np.multiply(dh, to_cand[t], out=d_cand[t])  # through n = tanh(...) into its pre-activation
            np.multiply(d_cand[t], to_reset[t], out=dr)  # through r ⊙ (U_n h + b_hn) into r's pre-activation
            np.multiply(d_cand[t], reset_gate[t], out=dhn)  # ... and into U_n h + b_hn
            dh *= update_gate[t]  # gradient flowing into h_{t-1} directly, through z h_{t-1}
            np.dot(d_recurrent[t], U, out=through_u)
            dh += through_u  # ... and through the recurrent products
        flat = seq_len * batch
        d_input = np.concatenate([d_recurrent[..., : 2 * hidden], d_cand], axis=-1).reshape(flat, 3 * hidden)
        dU = d_recurrent.reshape(flat, 3 * hidden).T @ hs[:-1].reshape(flat, hidden)
        dWb = d_input.T @ x_aug.reshape(flat, input_size + 1)  # dW and, in the ones column, db
        db_hn = d_recurrent[..., 2 * hidden :].sum(axis=(0, 1))
        dx = (d_input @ W.astype(dtype, copy=False)).reshape(seq_len, batch, input_size) if need_dx else None
        grads = {"W": dWb[:, :input_size], "U": dU, "b": dWb[:, input_size], "b_hn": db_hn}
        return dx, dh, grads


@hookimpl
def register_cells(register):
    register(
        "numpy-gru",
        NumpyGRU,
        backend="numpy",
        summary="GRU in NumPy with hand-written BPTT (matches torch.nn.GRU)",
    )
