"""A gated linear recurrence fed by an input projection, as one fused autograd Function.

    p_t = W x_t + b                         (B, K·H) projection, K gate groups
    (a_t, b_t) = gates(p_t)                 element-wise, (B, H) each
    h_t = a_t ⊙ h_{t-1} + b_t

minGRU and minLSTM (Feng et al. 2024) are this with two and three groups. Written with
autograd, every gate is a (T, B, H) temporary kept for the backward pass, and each of a
dozen element-wise ops makes a fresh one forward and back; at T = 4096, B = 8, H = 256 each
is 32 MiB that streams from main memory. Here time is cut into blocks of ``block_len``
steps whose buffers (projection, a, b, gradients) are allocated once and stay in cache; the
forward pass keeps only the input and the outputs h, and the backward pass recomputes each
block's projection and gates (the plan of Gu & Dao's Mamba kernel: recompute rather than
store). Per block, forward: one matrix product, the gates, :func:`harness.scan.scan_into`;
backward: the same again, the adjoint scan ``g_t = ∂L/∂h_t + a_{t+1} ⊙ g_{t+1}`` run
backwards, the gates' gradients, and the weight gradient accumulated as ``x^T @ ∂L/∂p``
(the operand order that MKL runs fast on these shapes, see :mod:`plugins.projection`).

A cell supplies its gate math as a :class:`Gates` object: ``forward(p, a, b, scratch)`` writes the
coefficients and ``backward(p, g, h_prev, grad_p)`` writes ``∂L/∂p`` given ``g = ∂L/∂h_t``
(total) and the previous states. Real dtypes only; once differentiable.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from harness.scan import ChunkedScan

CPU_BLOCK_ELEMENTS = 2**17  # B·H·steps per block on the CPU: (block, B, H) float32 buffers of 512 KiB, L2-sized


class Gates:
    """Element-wise gate math of one cell; ``groups`` is K, the projection's width over H."""

    groups: int

    def forward(self, p: torch.Tensor, a: torch.Tensor, b: torch.Tensor | None, scratch: torch.Tensor) -> None:
        """Write ``a_t`` and (unless ``b`` is ``None``) ``b_t``, (L, B, H), from the projection ``p`` (L, B, K·H).
        ``scratch`` (L, B, K·H) is free space; in the backward pass it is the ``grad_p`` that
        :meth:`backward` receives next, so intermediate values left there can be reused."""
        raise NotImplementedError

    def backward(self, p: torch.Tensor, a: torch.Tensor, g: torch.Tensor, h_prev: torch.Tensor,
                 grad_p: torch.Tensor) -> None:
        """Write ``∂L/∂p`` (L, B, K·H) from ``a_t``, ``g = ∂L/∂h_t`` (through ``a_t`` and ``b_t``) and ``h_{t-1}``."""
        raise NotImplementedError


def gated_scan(gates: Gates, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
               h0: torch.Tensor | None = None, block_len: int | None = None) -> torch.Tensor:
    """``h`` (T, B, H) of the recurrence above for ``x`` (T, B, I), ``weight`` (K·H, I), ``bias`` (K·H,),
    ``h0`` (B, H) or ``None`` (zeros). ``block_len``: steps per block; ``None``: cache-sized on the
    CPU, the whole sequence elsewhere."""
    seq_len, batch = x.shape[0], x.shape[1]
    hidden = weight.shape[0] // gates.groups
    if block_len is None:
        block_len = default_block_len(x, batch * hidden)
    if h0 is None:
        h0 = x.new_zeros(batch, hidden)
    return _GatedScan.apply(gates, x, weight, bias, h0, max(1, min(block_len, seq_len)))


def default_block_len(x: torch.Tensor, elements_per_step: int) -> int:
    """Steps per block: about ``CPU_BLOCK_ELEMENTS`` state elements (at least 16 steps) on the
    CPU, where blocks keep the buffers in cache; the whole sequence on other devices."""
    if x.device.type != "cpu":
        return x.shape[0]
    return max(16, CPU_BLOCK_ELEMENTS // max(1, elements_per_step))


def _blocks(seq_len: int, block_len: int) -> list[slice]:
    return [slice(start, min(start + block_len, seq_len)) for start in range(0, seq_len, block_len)]


class _GatedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gates, x, weight, bias, h0, block_len):
        seq_len, batch, inputs = x.shape
        width = weight.shape[0]
        hidden = width // gates.groups
        h = x.new_empty(seq_len, batch, hidden)
        p, scratch = x.new_empty(block_len * batch, width), x.new_empty(block_len, batch, width)
        a, b = x.new_empty(block_len, batch, hidden), x.new_empty(block_len, batch, hidden)
        state = h0
        weight_t = weight.t()
        scan = ChunkedScan(block_len, a=a, b=b)  # the buffers' per-step views, made once
        for block in _blocks(seq_len, block_len):
            steps = block.stop - block.start
            p_block = torch.addmm(bias, x[block].reshape(-1, inputs), weight_t, out=p[:steps * batch])
            gates.forward(p_block.view(steps, batch, width), a[:steps], b[:steps], scratch[:steps])
            state = scan(state, out=h[block], steps=steps)
        ctx.gates, ctx.block_len = gates, block_len
        ctx.save_for_backward(x, weight, bias, h0, h)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h):
        x, weight, bias, h0, h = ctx.saved_tensors
        gates, block_len = ctx.gates, ctx.block_len
        seq_len, batch, inputs = x.shape
        width = weight.shape[0]
        hidden = width // gates.groups
        grad_h = grad_h.contiguous()
        p, grad_p = x.new_empty(block_len * batch, width), x.new_empty(block_len * batch, width)
        a = x.new_empty(block_len, batch, hidden)
        g = x.new_empty(block_len, batch, hidden)
        grad_weight_t = x.new_zeros(inputs, width)  # accumulated as x^T ∂L/∂p, transposed once at the end
        grad_bias = x.new_zeros(width)
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[1] else None
        carry = None  # a_{t+1} ⊙ g_{t+1} from the block after this one
        weight_t = weight.t()
        # the adjoint's coefficients and outputs stay in the same buffers: their per-step views made once
        adjoint = ChunkedScan(block_len - 1, reverse=True, a=a[1:], out=g[:-1])
        for block in reversed(_blocks(seq_len, block_len)):
            steps, rows = block.stop - block.start, (block.stop - block.start) * batch
            x_rows = x[block].reshape(-1, inputs)
            p_block = torch.addmm(bias, x_rows, weight_t, out=p[:rows]).view(steps, batch, width)
            a_b, g_b = a[:steps], g[:steps]
            gp = grad_p[:rows]
            gates.forward(p_block, a_b, None, gp.view(steps, batch, width))
            # adjoint: g_t = ∂L/∂h_t + a_{t+1} ⊙ g_{t+1}, backwards; the block's last step takes the carry
            if carry is None:
                g_b[-1].copy_(grad_h[block.stop - 1])
            else:
                torch.add(grad_h[block.stop - 1], carry, out=g_b[-1])
            adjoint(g_b[-1], b=grad_h[block.start:block.stop - 1], steps=steps - 1)
            carry = a_b[0] * g_b[0]
            h_prev = h[block.start - 1:block.stop - 1] if block.start else torch.cat([h0[None], h[:block.stop - 1]])
            gates.backward(p_block, a_b, g_b, h_prev, gp.view(steps, batch, width))
            grad_weight_t.addmm_(x_rows.t(), gp)
            grad_bias += gp.sum(0)
            if grad_x is not None:
                torch.mm(gp, weight, out=grad_x[block].view(-1, inputs))
        return None, grad_x, grad_weight_t.t(), grad_bias, carry, None
