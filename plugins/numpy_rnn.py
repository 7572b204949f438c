"""The seed article's vanilla RNN in NumPy, with backpropagation through time by hand.

    a_t = W x_t + U h_{t-1} + b
    h_t = tanh(a_t)

``W``: (H, I) input weights, ``U``: (H, H) recurrent weights, ``b``: (H,) bias.
Equivalent to ``torch.nn.RNN(I, H, nonlinearity="tanh")`` with ``weight_ih_l0 = W``,
``weight_hh_l0 = U`` and ``bias_ih_l0 + bias_hh_l0 = b``.

Speed: the input projection ``W x_t + b`` and every weight gradient are matrix products
over blocks of 32 steps at once, so the time loop holds only what the recurrence forces on
it: one (B, H)·(H, H) product, an add and a tanh forward; one product and two element-wise
operations backward (one, in blocks of steps whose output gradient is all zero, as it is
for a loss on the last step). Every array is written into buffers allocated once per call
or reused between calls.
"""

from __future__ import annotations

import sys

import numpy as np

from harness import hookimpl
from plugins.numpy_common import check_sizes, uniform_params, with_ones_column

BLOCK = 32  # time steps per cache block: 32 x (B=32 x H=128) float32 = 512 KiB


class NumpyTanhRNN:
    """``h_t = tanh(W x_t + U h_{t-1} + b)`` over time-major arrays ``x: (T, B, I)``."""

    def __init__(self, input_size: int, hidden_size: int):
        check_sizes(input_size, hidden_size)
        # Same U(-1/sqrt(H), 1/sqrt(H)) as torch's modules, drawn from torch's generator (seeded runs).
        self.params = uniform_params(hidden_size, {
            "W": (hidden_size, input_size),
            "U": (hidden_size, hidden_size),
            "b": (hidden_size,),
        })
        self._states: list[np.ndarray] = []  # forward buffers, reused once nothing else holds them
        self._scratch: dict[tuple, np.ndarray] = {}  # backward temporaries, private to backward

    def _state_buffer(self, shape: tuple, dtype) -> np.ndarray:
        """A (T + 1, B, H) buffer for the hidden states. Outputs and caches are views of it,
        so it is reused only when its reference count shows that no output, state or cache
        of an earlier call is still alive: fresh 10 MB allocations would otherwise cost page
        faults on every call."""
        for buffer in self._states:
            # References: the list, the loop variable and getrefcount's argument.
            if buffer.shape == shape and buffer.dtype == dtype and sys.getrefcount(buffer) <= 3:
                return buffer
        buffer = np.empty(shape, dtype=dtype)
        if len(self._states) < 4:
            self._states.append(buffer)
        return buffer

    def release_buffers(self) -> None:
        """Drop the buffers kept between calls; the next call allocates them again. The speed
        measurement calls this before it measures peak memory, so the figure counts them."""
        self._states.clear()
        self._scratch.clear()

    def _scratch_buffer(self, name: str, shape: tuple, dtype) -> np.ndarray:
        key = (name, shape, np.dtype(dtype))
        buffer = self._scratch.get(key)
        if buffer is None:
            buffer = self._scratch[key] = np.empty(shape, dtype=dtype)
        return buffer

    def forward(self, x: np.ndarray, state: np.ndarray | None):
        """x: (T, B, I), state: (B, H) or None -> y: (T, B, H), state: (B, H), cache."""
        W, U, b = self.params["W"], self.params["U"], self.params["b"]
        seq_len, batch, input_size = x.shape
        hidden_size = U.shape[0]
        dtype = x.dtype
        hs = self._state_buffer((seq_len + 1, batch, hidden_size), dtype)  # hs[t + 1] = h_t
        hs[0] = 0.0 if state is None else state
        # W x_t + b as one product per block of steps: x gets a column of ones, W gets b.
        x_aug = with_ones_column(x)  # kept in the cache
        # Both right-hand operands are made contiguous (a (H, H) copy per call): OpenBLAS's
        # kernels for a transposed view are up to twice as slow for these small products on
        # some CPUs (19 vs 10 us for B = 32, H = 128 on one 2-core EPYC VM).
        WbT = np.ascontiguousarray(np.concatenate([W, b[:, None]], axis=1).T, dtype=dtype)  # (I + 1, H)
        UT = np.ascontiguousarray(U.T)
        recurrent = np.empty((batch, hidden_size), dtype=dtype)
        steps = list(hs)  # one view per step, made in C rather than indexed in the loop
        dot, add, tanh = np.dot, np.add, np.tanh  # local names and positional outputs: the loop
        # runs 1000s of times, and each global lookup or keyword costs ~50 ns beside a ~1 us call
        # Blocks of BLOCK steps keep the pre-activations in cache between the projection and the loop.
        for start in range(0, seq_len, BLOCK):
            stop = min(start + BLOCK, seq_len)
            # One (n B, I + 1)·(I + 1, H) product: a 3-D matmul would loop over n small ones.
            np.matmul(x_aug[start:stop].reshape(-1, input_size + 1), WbT,
                      out=hs[start + 1 : stop + 1].reshape(-1, hidden_size))
            for h_prev, h_t in zip(steps[start:stop], steps[start + 1 : stop + 1]):
                dot(h_prev, UT, recurrent)
                add(h_t, recurrent, h_t)  # a_t = W x_t + b + U h_{t-1}
                tanh(h_t, h_t)
        return hs[1:], hs[seq_len], (x_aug, hs)

    def backward(self, cache, dy: np.ndarray, dstate: np.ndarray | None):
        """dy: (T, B, H), dstate: dL/dh_T (B, H) -> dx, dL/dh_0, {W, U, b} gradients."""
        x_aug, hs = cache
        W, U = self.params["W"], self.params["U"]
        seq_len, batch, hidden_size = dy.shape
        input_size = x_aug.shape[-1] - 1
        dtype = hs.dtype
        block = min(BLOCK, seq_len)
        tanh_grad = self._scratch_buffer("tanh_grad", (block, batch, hidden_size), dtype)
        da = self._scratch_buffer("da", (block, batch, hidden_size), dtype)
        need_dx = getattr(self, "needs_input_grad", True)  # the adapter says when nobody needs dx
        dx = np.empty((seq_len, batch, input_size), dtype=dtype) if need_dx else None
        dU = np.zeros((hidden_size, hidden_size), dtype=dtype)
        dWbT = np.zeros((input_size + 1, hidden_size), dtype=dtype)  # dW^T and, in the row of ones, db
        # dL/dh_t coming into the block from the steps after it (and dL/dh_T from the caller).
        dh = np.zeros((batch, hidden_size), dtype=dtype) if dstate is None else np.array(dstate, dtype=dtype)
        dot, add, multiply = np.dot, np.add, np.multiply
        # Backwards through blocks of steps, last block first, so each block's data stays in cache.
        # Within a block, da_{t-1} = (da_t U + dy_{t-1}) * (1 - h_{t-1}^2) is computed in place in
        # da's row for t - 1: three arrays in cache per step (da_t, da_{t-1}, its tanh slope).
        for stop in range(seq_len, 0, -BLOCK):
            start = max(stop - BLOCK, 0)
            n = stop - start
            tg = tanh_grad[:n]
            np.multiply(hs[start + 1 : stop + 1], hs[start + 1 : stop + 1], out=tg)
            np.subtract(1.0, tg, out=tg)  # d tanh(a)/da = 1 - h^2
            dy_block = dy[start:stop]
            rows = list(da[:n])
            add(dh, dy_block[n - 1], dh)
            multiply(dh, tg[n - 1], rows[n - 1])
            if dy_block[: n - 1].any():
                for da_t, da_prev, dy_prev, tg_prev in zip(rows[:0:-1], rows[-2::-1], dy_block[n - 2 :: -1], tg[n - 2 :: -1]):
                    dot(da_t, U, da_prev)  # gradient flowing into h_{t-1} ...
                    add(da_prev, dy_prev, da_prev)  # ... plus its own output's
                    multiply(da_prev, tg_prev, da_prev)  # backprop through tanh
            else:
                # No output gradient in these steps (a loss on the last steps only): no add.
                for da_t, da_prev, tg_prev in zip(rows[:0:-1], rows[-2::-1], tg[n - 2 :: -1]):
                    dot(da_t, U, da_prev)
                    multiply(da_prev, tg_prev, da_prev)
            dot(rows[0], U, dh)  # into the block before
            da_block = da[:n].reshape(n * batch, hidden_size)
            dU += da_block.T @ hs[start:stop].reshape(n * batch, hidden_size)
            # (I + 1, n B)·(n B, H): the skinny operand on the left runs faster than da^T x_aug.
            dWbT += x_aug[start:stop].reshape(n * batch, input_size + 1).T @ da_block
            if need_dx:
                np.matmul(da[:n], W, out=dx[start:stop])
        dWb = dWbT.T
        grads = {"W": dWb[:, :input_size], "U": dU, "b": dWb[:, input_size]}
        return dx, dh, grads


@hookimpl
def register_cells(register):
    register(
        "numpy-rnn",
        NumpyTanhRNN,
        backend="numpy",
        summary="tanh RNN in NumPy with hand-written BPTT (seed article)",
    )
