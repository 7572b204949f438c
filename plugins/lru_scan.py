"""The LRU over a sequence as one fused autograd Function: projection, complex scan and readout per block.

    h_t = λ ⊙ h_{t-1} + W_in x_t          h ∈ ℂ^N; W_in x as a real product with rows (Re, Im) interleaved
    y_t = W_out [Re h_t, Im h_t] + D x_t   W_out (H, 2N) real, columns interleaved to match

(:mod:`plugins.lru` builds ``λ``, ``W_in = γ ⊙ B`` and ``W_out = (Re C, -Im C)`` from its parameters;
they stay in autograd, this Function takes them as inputs.) Written with autograd over the whole
sequence, the drive, the states, their conjugates and products are (T, B, N) complex
temporaries, 64 MiB each at T = 4096, B = 8, N = 256, streaming from main memory forward and
back. Here time is cut into cache-sized blocks whose buffers are allocated once; the forward
pass keeps only the input and the state at each block's start, and the backward pass
recomputes each block's drive and states from it (recompute rather than store, as
Gu & Dao's Mamba kernel). Per block, backward: the readout's gradients (two products), the
adjoint scan ``g_t = ∂L/∂h_t + conj(λ) ⊙ g_{t+1}`` backwards in place, ``∂L/∂λ = Σ g_t ⊙
conj(h_{t-1})`` and the input weight's gradient (one product). PyTorch's convention for complex
gradients (``∂L/∂Re + i ∂L/∂Im``) throughout, as :func:`harness.scan.linear_scan`.
Once differentiable.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from harness.scan import ChunkedScan
from plugins.gated_scan import _blocks, default_block_len


def lru_scan(x: torch.Tensor, decay: torch.Tensor, input_weight: torch.Tensor, readout_weight: torch.Tensor,
             skip_weight: torch.Tensor, h0: torch.Tensor | None = None, block_len: int | None = None):
    """``(y: (T, B, H), h_T: (B, N) complex)`` for ``x`` (T, B, I), ``decay`` λ (N,) complex,
    ``input_weight`` (2N, I), ``readout_weight`` (H, 2N), ``skip_weight`` D (H, I), ``h0`` (B, N)
    complex or ``None`` (zeros). ``block_len``: steps per block; ``None``: cache-sized on the
    CPU, the whole sequence elsewhere."""
    seq_len, batch = x.shape[0], x.shape[1]
    state_size = decay.shape[0]
    if block_len is None:
        block_len = default_block_len(x, batch * state_size)
    if h0 is None:
        h0 = torch.zeros(batch, state_size, dtype=decay.dtype, device=x.device)
    return _LRUScan.apply(x, decay, input_weight, readout_weight, skip_weight, h0, max(1, min(block_len, seq_len)))


class _BlockStates:
    """One block's drive ``W_in x`` (as real rows, into ``drive_real``) and its states ``h`` (into
    ``states``) from a start state, on buffers reused block after block; the scan over them is
    planned once (:class:`harness.scan.ChunkedScan`)."""

    def __init__(self, decay, input_weight, drive_real, states, batch):
        self.input_weight, self.drive_real, self.batch = input_weight, drive_real, batch
        drive = torch.view_as_complex(drive_real.view(states.shape[0], batch, -1, 2))
        self.scan = ChunkedScan(states.shape[0], a=decay[None], b=drive, out=states)

    def __call__(self, x_rows, start, steps):
        """Returns h at the block's end (a view of ``states``)."""
        torch.mm(x_rows, self.input_weight.t(), out=self.drive_real[:steps * self.batch])
        return self.scan(start, steps=steps)


class _LRUScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, decay, input_weight, readout_weight, skip_weight, h0, block_len):
        seq_len, batch, inputs = x.shape
        state_size, hidden = decay.shape[0], readout_weight.shape[0]
        y = x.new_empty(seq_len, batch, hidden)
        drive_real = x.new_empty(block_len * batch, 2 * state_size)
        states = torch.empty(block_len, batch, state_size, dtype=decay.dtype, device=x.device)
        starts, state = [], h0
        block_states = _BlockStates(decay, input_weight, drive_real, states, batch)
        for block in _blocks(seq_len, block_len):
            steps, rows = block.stop - block.start, (block.stop - block.start) * batch
            starts.append(state)
            x_rows = x[block].reshape(rows, inputs)
            state = block_states(x_rows, state, steps).clone()  # a view of the reused buffer otherwise
            y_rows = torch.mm(torch.view_as_real(states[:steps]).view(rows, 2 * state_size), readout_weight.t(),
                              out=y[block].view(rows, hidden))
            y_rows.addmm_(x_rows, skip_weight.t())
        ctx.block_len = block_len
        ctx.save_for_backward(x, decay, input_weight, readout_weight, skip_weight, torch.stack(starts))
        return y, state

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, grad_state):
        x, decay, input_weight, readout_weight, skip_weight, starts = ctx.saved_tensors
        block_len = ctx.block_len
        seq_len, batch, inputs = x.shape
        state_size, hidden = decay.shape[0], readout_weight.shape[0]
        drive_real = x.new_empty(block_len * batch, 2 * state_size)
        grad_real = x.new_empty(block_len * batch, 2 * state_size)
        states = torch.empty(block_len, batch, state_size, dtype=decay.dtype, device=x.device)
        grad_input_t = x.new_zeros(inputs, 2 * state_size)  # accumulated transposed: x^T ∂L/∂drive
        grad_readout_t = x.new_zeros(2 * state_size, hidden)
        grad_skip_t = x.new_zeros(inputs, hidden)
        grad_decay = torch.zeros_like(decay)
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        back_decay = decay.conj().resolve_conj()  # conj(λ) in memory: a lazy conj view is copied by every op using it
        carry = grad_state  # ∂L/∂h at the end of the current block from everything after it
        block_states = _BlockStates(decay, input_weight, drive_real, states, batch)
        g_full = torch.view_as_complex(grad_real.view(block_len, batch, state_size, 2))
        # in place over the gradient buffer, g_t += conj(λ) g_{t+1}: its views made once
        adjoint = ChunkedScan(block_len - 1, reverse=True, a=back_decay[None], b=g_full[:-1], out=g_full[:-1])
        for index, block in reversed(list(enumerate(_blocks(seq_len, block_len)))):
            steps, rows = block.stop - block.start, (block.stop - block.start) * batch
            x_rows, gy_rows = x[block].reshape(rows, inputs), grad_y[block].reshape(rows, hidden)
            start = starts[index]
            block_states(x_rows, start, steps)
            states_real = torch.view_as_real(states[:steps]).view(rows, 2 * state_size)
            grad_skip_t.addmm_(x_rows.t(), gy_rows)
            grad_readout_t.addmm_(states_real.t(), gy_rows)
            g_real = torch.mm(gy_rows, readout_weight, out=grad_real[:rows])  # ∂L/∂[Re h, Im h] through y
            g = torch.view_as_complex(g_real.view(steps, batch, state_size, 2))
            g[-1] += carry
            adjoint(g[-1], steps=steps - 1)  # in place: g_t += conj(λ) g_{t+1}
            carry = back_decay * g[0]
            grad_decay += (g[1:] * states[:steps - 1].conj()).sum((0, 1)) + (g[0] * start.conj()).sum(0)  # Σ g_t conj(h_{t-1})
            grad_input_t.addmm_(x_rows.t(), g_real)
            if grad_x is not None:
                gx = torch.mm(gy_rows, skip_weight, out=grad_x[block].view(rows, inputs))
                gx.addmm_(g_real, input_weight)
        return grad_x, grad_decay, grad_input_t.t(), grad_readout_t.t(), grad_skip_t.t(), carry, None
