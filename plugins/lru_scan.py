"""The LRU over a sequence as one fused autograd Function: projection, complex scan and readout per block.

    h_t = λ ⊙ h_{t-1} + W_in x_t          h ∈ ℂ^N; W_in x as a real product with rows (Re, Im) interleaved
    y_t = W_out [Re h_t, Im h_t] + D x_t   W_out (H, 2N) real, columns interleaved to match

(:mod:`plugins.lru` builds ``λ``, ``W_in = γ ⊙ B`` and ``W_out = (Re C, -Im C)`` from its parameters;
they stay in autograd, this Function takes them as inputs.) Written with autograd over the whole
sequence, the drive, the states, their conjugates and products are (T, B, N) complex
temporaries, 64 MiB each at T = 4096, B = 8, N = 256, streaming from main memory forward and
back. Here time is cut into cache-sized blocks whose working buffers are allocated once. The
forward pass keeps each block's states for the backward pass (one (T, B, N) complex tensor in
all, as block-sized pieces that the allocator reuses from call to call, saved so that autograd
frees them after the backward) when they fit in ``KEEP_BYTES`` and a backward can follow (not
under ``torch.no_grad``, which writes every block into one reused buffer); above it, it keeps
only the state at each block's start and the backward pass recomputes the block's drive and
states from it (recompute rather than store, as Gu & Dao's Mamba kernel). Per block, backward:
the readout's gradients (two products), the adjoint scan
``g_t = ∂L/∂h_t + conj(λ) ⊙ g_{t+1}`` backwards in place from the next block's ``g``,
``∂L/∂λ = Σ g_t ⊙ conj(h_{t-1})`` and the input weight's gradient (one product). PyTorch's
convention for complex gradients (``∂L/∂Re + i ∂L/∂Im``) throughout, as
:func:`harness.scan.linear_scan`. Inside a block the recurrence and its adjoint run step by step
on the CPU and as a chunked scan elsewhere (:func:`_in_block_chunk` says why). At the benchmark's
sizes (B = 8, I = 8, H = N = 256, T = 4096, one CPU thread) forward+backward takes ~350 ms, of
which the three large products take ~90 ms each; keeping the states instead of recomputing
them was 369 against 394 ms (fastest of 6 interleaved rounds, a slow hour of the host), for
64 MiB more memory. Once differentiable.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from harness.scan import ChunkedScan, backward_can_follow
from plugins.gated_scan import _blocks, default_block_len

# Up to this many bytes of states, (T, B, N) complex, the forward pass keeps them for the backward
# pass; above it the backward recomputes them block by block (as plugins.selective_scan's Mamba).
KEEP_BYTES = 256 * 2**20
SEQUENTIAL_DEVICES = ("cpu",)  # where a block's recurrence runs as a plain loop (see _in_block_chunk)


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
    operands = (x, decay, input_weight, readout_weight, skip_weight, h0)
    return _LRUScan.apply(*operands, max(1, min(block_len, seq_len)), backward_can_follow(*operands))


def _in_block_chunk(device: torch.device) -> int | None:
    """Steps per chunk of the recurrence inside a block: 1, the plain loop, on ``SEQUENTIAL_DEVICES``
    (a CPU core: a block's step is a (B, N) slice of thousands of elements, where the chunked scan's
    second pass costs more than it saves, :class:`harness.scan.ChunkedScan` says why); else the
    chunked scan's own choice (a GPU, where the whole sequence is one block)."""
    return 1 if device.type in SEQUENTIAL_DEVICES else None


class _BlockStates:
    """One block's drive ``W_in x`` (as real rows, into ``drive_real``) and its states ``h`` (into
    ``states``, or into ``out``) from a start state, on buffers reused block after block; the
    recurrence over them is planned once (:func:`_in_block_chunk` says how)."""

    def __init__(self, decay, input_weight, drive_real, states, batch):
        self.input_weight, self.drive_real, self.states, self.batch = input_weight, drive_real, states, batch
        drive = torch.view_as_complex(drive_real.view(states.shape[0], batch, -1, 2))
        self.scan = ChunkedScan(states.shape[0], chunk=_in_block_chunk(states.device), a=decay[None], b=drive)

    def __call__(self, x_rows, start, steps, out=None):
        """Returns h at the block's end (a view of ``states``, or of ``out``: (steps, B, N) complex)."""
        torch.mm(x_rows, self.input_weight.t(), out=self.drive_real[:steps * self.batch])
        return self.scan(start, out=self.states[:steps] if out is None else out, steps=steps)


class _LRUScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, decay, input_weight, readout_weight, skip_weight, h0, block_len, differentiable):
        seq_len, batch, inputs = x.shape
        state_size, hidden = decay.shape[0], readout_weight.shape[0]
        y = x.new_empty(seq_len, batch, hidden)
        drive_real = x.new_empty(block_len * batch, 2 * state_size)
        states = torch.empty(block_len, batch, state_size, dtype=decay.dtype, device=x.device)
        starts, kept, state = [], [], h0
        blocks = _blocks(seq_len, block_len)
        keep = differentiable and seq_len * batch * state_size * states.element_size() <= KEEP_BYTES
        block_states = _BlockStates(decay, input_weight, drive_real, states, batch)
        for block in blocks:
            steps, rows = block.stop - block.start, (block.stop - block.start) * batch
            starts.append(state)
            x_rows = x[block].reshape(rows, inputs)
            # kept states: each block's own tensor, or the buffer itself when it holds the whole sequence
            own = torch.empty_like(states[:steps]) if keep and len(blocks) > 1 else None
            state = block_states(x_rows, state, steps, own).clone()  # a view of a buffer otherwise
            block_h = states[:steps] if own is None else own
            if keep:
                kept.append(block_h)
            y_rows = torch.mm(torch.view_as_real(block_h).view(rows, 2 * state_size), readout_weight.t(),
                              out=y[block].view(rows, hidden))
            y_rows.addmm_(x_rows, skip_weight.t())
        ctx.block_len = block_len
        # saved, not held on ctx, so that autograd frees them once the (last) backward has run
        ctx.save_for_backward(x, decay, input_weight, readout_weight, skip_weight, torch.stack(starts), *kept)
        return y, state

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, grad_state):
        x, decay, input_weight, readout_weight, skip_weight, starts, *kept = ctx.saved_tensors
        block_len = ctx.block_len
        seq_len, batch, inputs = x.shape
        state_size, hidden = decay.shape[0], readout_weight.shape[0]
        grad_real = x.new_empty(block_len * batch, 2 * state_size)
        if not kept:  # buffers to recompute each block's drive and states in
            states = torch.empty(block_len, batch, state_size, dtype=decay.dtype, device=x.device)
            block_states = _BlockStates(decay, input_weight, x.new_empty(block_len * batch, 2 * state_size), states, batch)
        grad_input_t = x.new_zeros(inputs, 2 * state_size)  # accumulated transposed: x^T ∂L/∂drive
        grad_readout = x.new_zeros(hidden, 2 * state_size)
        grad_skip_t = x.new_zeros(inputs, hidden)
        grad_decay = torch.zeros_like(decay)
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        back_decay = decay.conj().resolve_conj()  # conj(λ) in memory: a lazy conj view is copied by every op using it
        g_full = torch.view_as_complex(grad_real.view(block_len, batch, state_size, 2))
        # in place over the gradient buffer, g_t = ∂L/∂h_t + conj(λ) g_{t+1}: its views made once
        adjoint = ChunkedScan(block_len, chunk=_in_block_chunk(x.device), reverse=True, a=back_decay[None], b=g_full, out=g_full)
        following = torch.zeros_like(starts[0])  # g at the first step of the block after this one
        for index, block in reversed(list(enumerate(_blocks(seq_len, block_len)))):
            steps, rows = block.stop - block.start, (block.stop - block.start) * batch
            x_rows, gy_rows = x[block].reshape(rows, inputs), grad_y[block].reshape(rows, hidden)
            start = starts[index]
            if kept:
                block_h = kept[index][:steps]
            else:
                block_states(x_rows, start, steps)
                block_h = states[:steps]
            states_real = torch.view_as_real(block_h).view(rows, 2 * state_size)
            grad_skip_t.addmm_(x_rows.t(), gy_rows)
            grad_readout.addmm_(gy_rows.t(), states_real)  # (gy^T h: ~7% faster here than its transpose h^T gy)
            g_real = torch.mm(gy_rows, readout_weight, out=grad_real[:rows])  # ∂L/∂[Re h, Im h] through y
            g = torch.view_as_complex(g_real.view(steps, batch, state_size, 2))
            if index == len(starts) - 1:
                g[-1] += grad_state  # ∂L/∂h_T from the caller
            adjoint(following, steps=steps)  # in place: g_t += conj(λ) g_{t+1}, g_{t+1} = following at the end
            following = g[0].clone()  # the buffer is overwritten by the block before
            grad_decay += (g[1:] * block_h[:steps - 1].conj()).sum((0, 1)) + (g[0] * start.conj()).sum(0)  # Σ g_t conj(h_{t-1})
            grad_input_t.addmm_(x_rows.t(), g_real)
            if grad_x is not None:
                gx = torch.mm(gy_rows, skip_weight, out=grad_x[block].view(rows, inputs))
                gx.addmm_(g_real, input_weight)
        grad_h0 = back_decay * following  # ∂L/∂h_0 = conj(λ) g_1
        return grad_x, grad_decay, grad_input_t.t(), grad_readout, grad_skip_t.t(), grad_h0, None, None
