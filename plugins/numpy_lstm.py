"""An LSTM in NumPy, with backpropagation through time by hand.

    i_t = σ(W_i x_t + U_i h_{t-1} + b_i)        input gate
    f_t = σ(W_f x_t + U_f h_{t-1} + b_f)        forget gate
    g_t = tanh(W_g x_t + U_g h_{t-1} + b_g)     candidate cell
    o_t = σ(W_o x_t + U_o h_{t-1} + b_o)        output gate
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)

``W``: (4H, I), ``U``: (4H, H), ``b``: (4H,), the gates stacked in torch's order i, f, g, o.
The state is the tuple ``(h, c)``, each (B, H). Equivalent to ``torch.nn.LSTM(I, H)`` with
``weight_ih_l0 = W``, ``weight_hh_l0 = U``, ``bias_ih_l0 + bias_hh_l0 = b`` and the state
``(h[None], c[None])``.

Speed, as in ``numpy_rnn``: the input projection ``W x_t + b`` of all T steps is one
matrix product, and so is each weight gradient, so the time loops hold only what the
recurrence forces on them. Inside the loops the gates are kept in the order o, i, f, g,
so the three sigmoids are one contiguous slice forward and the three gates that ``c_t``
feeds are one slice backward; σ(a) is computed as 0.5 + 0.5 tanh(a / 2),
which cannot overflow, with the halving done once for the whole sequence. Backward, every
factor that does not depend on the incoming gradient (σ', tanh', the other gate) is
computed for all steps at once before the loop, which then costs six element-wise
operations and one product per step.
"""

from __future__ import annotations


import numpy as np

from harness import hookimpl
from plugins.numpy_common import check_sizes, uniform_params, with_ones_column


def _internal_order(hidden_size: int) -> np.ndarray:
    """Row indices that turn torch's gate order i, f, g, o into the loops' order o, i, f, g:
    the sigmoid gates (o, i, f) are one slice forward, the gates that c_t feeds (i, f, g) one
    slice backward."""
    i, f, g, o = (np.arange(k * hidden_size, (k + 1) * hidden_size) for k in range(4))
    return np.concatenate([o, i, f, g])


class NumpyLSTM:
    """``torch.nn.LSTM``'s equations over time-major arrays ``x: (T, B, I)``, state ``(h, c)``."""

    def __init__(self, input_size: int, hidden_size: int):
        check_sizes(input_size, hidden_size)
        # Same U(-1/sqrt(H), 1/sqrt(H)) as torch's modules, drawn from torch's generator (seeded runs).
        self.params = uniform_params(hidden_size, {
            "W": (4 * hidden_size, input_size),
            "U": (4 * hidden_size, hidden_size),
            "b": (4 * hidden_size,),
        })

    def forward(self, x: np.ndarray, state: tuple[np.ndarray, np.ndarray] | None):
        """x: (T, B, I), state: (h, c) each (B, H) or None -> y: (T, B, H), (h_T, c_T), cache."""
        W, U, b = self.params["W"], self.params["U"], self.params["b"]
        seq_len, batch, input_size = x.shape
        hidden = U.shape[1]
        dtype = x.dtype
        order = _internal_order(hidden)
        hs = np.empty((seq_len + 1, batch, hidden), dtype=dtype)  # hs[t + 1] = h_t
        cs = np.empty((seq_len + 1, batch, hidden), dtype=dtype)  # cs[t + 1] = c_t
        hs[0], cs[0] = (0.0, 0.0) if state is None else state
        # W x_t + b for every step in one product: x gets a column of ones, W gets b.
        x_aug = with_ones_column(x)
        WbT = np.ascontiguousarray(np.concatenate([W, b[:, None]], axis=1)[order].T, dtype=dtype)  # (I + 1, 4H)
        gates = x_aug @ WbT  # (T, B, 4H): pre-activations, turned into the gates o, i, f, g in the loop
        gates[..., : 3 * hidden] *= 0.5  # σ(a) = 0.5 + 0.5 tanh(a / 2): halve the sigmoid inputs once
        UT = np.ascontiguousarray(U[order].T, dtype=dtype)  # astype keeps a view's transposed layout
        UT[:, : 3 * hidden] *= 0.5
        tanh_cs = np.empty((seq_len, batch, hidden), dtype=dtype)
        recurrent = np.empty((batch, 4 * hidden), dtype=dtype)
        scratch = np.empty((batch, hidden), dtype=dtype)
        for t in range(seq_len):
            a = gates[t]
            np.dot(hs[t], UT, out=recurrent)
            a += recurrent  # pre-activations (the sigmoid ones halved)
            np.tanh(a, out=a)
            sigmoids = a[:, : 3 * hidden]
            sigmoids *= 0.5
            sigmoids += 0.5  # o, i, f = σ; g = tanh
            out_gate, in_gate, forget_gate, cand = (a[:, k * hidden : (k + 1) * hidden] for k in range(4))
            np.multiply(forget_gate, cs[t], out=cs[t + 1])
            np.multiply(in_gate, cand, out=scratch)
            cs[t + 1] += scratch  # c_t = f c_{t-1} + i g
            np.tanh(cs[t + 1], out=tanh_cs[t])
            np.multiply(out_gate, tanh_cs[t], out=hs[t + 1])  # h_t = o tanh(c_t)
        return hs[1:], (hs[seq_len], cs[seq_len]), (x_aug, gates, hs, cs, tanh_cs)

    def backward(self, cache, dy: np.ndarray, dstate):
        """dy: (T, B, H), dstate: (dL/dh_T, dL/dc_T) -> dx, (dL/dh_0, dL/dc_0), {W, U, b} gradients."""
        x_aug, gates, hs, cs, tanh_cs = cache
        W, U = self.params["W"], self.params["U"]
        seq_len, batch, hidden = dy.shape
        input_size = x_aug.shape[-1] - 1
        dtype = hs.dtype
        order = _internal_order(hidden)
        out_gate, in_gate, forget_gate, cand = (gates[..., k * hidden : (k + 1) * hidden] for k in range(4))
        # Every factor that does not depend on the incoming gradient, for all steps at once.
        h_to_c = out_gate * (1.0 - tanh_cs * tanh_cs)  # dh_t/dc_t = o tanh'(c_t)
        local = np.empty_like(gates)  # d(pre-activation of o) per dh_t; of i, f, g per dc_t
        np.multiply(tanh_cs, out_gate * (1.0 - out_gate), out=local[..., :hidden])  # tanh(c_t) σ'(o)
        np.multiply(cand, in_gate * (1.0 - in_gate), out=local[..., hidden : 2 * hidden])  # g σ'(i)
        np.multiply(cs[:-1], forget_gate * (1.0 - forget_gate), out=local[..., 2 * hidden : 3 * hidden])  # c_{t-1} σ'(f)
        np.multiply(in_gate, 1.0 - cand * cand, out=local[..., 3 * hidden :])  # i tanh'(g)
        local_by_gate = local.reshape(seq_len, batch, 4, hidden)
        da = np.empty_like(gates)  # gradients of the pre-activations, gates o, i, f, g
        da_by_gate = da.reshape(seq_len, batch, 4, hidden)
        Ui = U[order].astype(dtype, copy=False)  # rows in the loop's gate order
        need_dx = getattr(self, "needs_input_grad", True)  # the adapter says when nobody needs dx
        if dstate is None:
            dh = np.zeros((batch, hidden), dtype=dtype)
            dc = np.zeros((batch, hidden), dtype=dtype)
        else:
            dh, dc = (np.array(d, dtype=dtype) for d in dstate)
        scratch = np.empty((batch, hidden), dtype=dtype)
        for t in range(seq_len - 1, -1, -1):
            dh += dy[t]  # gradient on h_t: from the output at t and from step t + 1
            np.multiply(dh, h_to_c[t], out=scratch)
            dc += scratch  # gradient on c_t: through h_t and from c_{t+1}
            np.multiply(dh, local_by_gate[t, :, 0], out=da_by_gate[t, :, 0])  # backprop into o
            np.multiply(dc[:, None, :], local_by_gate[t, :, 1:], out=da_by_gate[t, :, 1:])  # into i, f and g
            dc *= forget_gate[t]  # gradient flowing into c_{t-1}
            np.dot(da[t], Ui, out=dh)  # gradient flowing into h_{t-1}
        da_flat = da.reshape(seq_len * batch, 4 * hidden)
        inverse = np.argsort(order)  # back to torch's gate order i, f, g, o
        dU = (da_flat.T @ hs[:-1].reshape(seq_len * batch, hidden))[inverse]
        dWb = (da_flat.T @ x_aug.reshape(seq_len * batch, input_size + 1))[inverse]  # dW and, in the ones column, db
        dx = da @ W[order].astype(dtype, copy=False) if need_dx else None
        grads = {"W": dWb[:, :input_size], "U": dU, "b": dWb[:, input_size]}
        return dx, (dh, dc), grads


@hookimpl
def register_cells(register):
    register(
        "numpy-lstm",
        NumpyLSTM,
        backend="numpy",
        summary="LSTM in NumPy with hand-written BPTT (matches torch.nn.LSTM)",
    )
