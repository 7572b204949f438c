"""Mamba's selective scan, chunked, with its backward pass written by hand.

    h_t = exp(Δ_t ⊗ A) ⊙ h_{t-1} + (Δ_t ⊙ u_t) ⊗ B_t        h: (Bt, E, N)
    y_t = h_t C_t                                           y: (Bt, E)

Gu & Dao 2023, sec. 3.3 (their CUDA kernel keeps h in on-chip memory and recomputes it in
the backward pass; this is the same plan with chunks in place of on-chip memory).

Why not autograd over a parallel scan: the discretised decay exp(Δ_t A) and drive
Δ_t u_t B_t are (T, Bt, E, N) — 1 GiB each in float32 at Bt=8, E=512, N=16, T=4096 — and
an autograd graph keeps several of them per step of a scan. A Hillis-Steele doubling scan
within chunks of 64, recomputed per chunk under ``torch.utils.checkpoint``, kept memory
bounded but took 3.4× the time of the step loop at T=512 on this CPU (measured under load):
it does ⌈log₂ L⌉ times the element work of the recurrence, and on a CPU each element-wise
pass over (L, Bt, E, N) costs about what the same pass costs step by step.

So the work is split by what vectorises: per chunk of L steps, the decay, the drive, the
readout y = h C and every gradient reduction are single operations over (L, Bt, E, N); only
the carry itself runs step by step — one fused multiply-add per step forward, one more per
step backward (g_t = C_t dy_t + exp(Δ_{t+1} A) ⊙ g_{t+1}). Memory: the h at each chunk
boundary is saved; each chunk's states are recomputed in the backward pass, so memory is
O(T/L · Bt·E·N + L · Bt·E·N) instead of O(T · Bt·E·N) — unless all of them together fit in
``KEEP_BYTES`` and a backward pass can follow (grad mode on and some operand requiring a
gradient), when they are kept rather than recomputed, saved so that autograd frees them once
the backward has run.

Two choices that only change speed (measured on this project's 2-core CPU, one thread,
Bt=8, E=512, N=16, T=4096, forward + backward):

* Inside, states are laid out ``(Bt, N, E)``, E innermost: every sum over n (the readout,
  ∂L/∂(Δu), ∂L/∂Δ) is then a (1 × N)·(N × E) product or a sum of N contiguous rows of E,
  and every sum over e (∂L/∂B, ∂L/∂C) a row sum of E contiguous values. In the ``(Bt, E, N)``
  layout the readout as MKL's batched (E × N)·(N × 1) product took 397 µs per chunk against
  60 µs now, and a batched (N × E)·(E × 1) product 590 µs against 80 µs for a product and a
  row sum. The caller's state stays ``(Bt, E, N)``; the transposes are at the edges.
* exp(Δ A) is taken as 2^(Δ · A log₂e): ``torch.exp2`` ran 3× faster than ``torch.exp`` here
  (150 vs 450 µs per (8, 8, 512, 16) chunk); the rounding of A log₂e moves each exponent
  by at most one part in 10⁷ of itself, below float32's own rounding of Δ A.

Gradients, with g_t = ∂L/∂h_t (total) and the chunk's h_{t-1}:
    ∂L/∂(Δ_t A)_{en}  = g_t ⊙ exp(Δ_t A) ⊙ h_{t-1} = g_t ⊙ (h_t - drive_t)
    ∂L/∂Δ_t  += Σ_n ∂L/∂(Δ_t A) · A       ∂L/∂A = Σ_{t,b} ∂L/∂(Δ_t A) · Δ_t
    ∂L/∂(Δ_t u_t) = g_t B_t               ∂L/∂B_t = Σ_e g_t · (Δ_t u_t)
    ∂L/∂C_t  = Σ_e dy_t · h_t             ∂L/∂h_0 = exp(Δ_1 A) ⊙ g_1
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from harness.scan import backward_can_follow

DEFAULT_CHUNK = None  # None: cache-sized, see auto_chunk_size
CHUNK_ELEMENTS = 2**19  # Bt·E·N·L per chunk: (L, Bt, N, E) float32 tensors of 2 MiB stay in cache
# Below this many bytes for all chunks' decay, drive and states together, the forward pass keeps
# them for the backward pass instead of recomputing them (a quarter of the backward's work):
# at the default training sizes (B=64, E=128, N=16, T=120) they take 190 MB.
KEEP_BYTES = 256 * 2**20
LOG2_E = 1.0 / math.log(2.0)


def _discretise(u, delta, A2, B):
    """(L, Bt, E) u, Δ; (N, E) A2 = Aᵀ log₂e; (L, Bt, N) B -> decay exp(Δ ⊗ A), drive (Δ u) ⊗ B, both (L, Bt, N, E)."""
    decay = torch.exp2(delta.unsqueeze(-2) * A2)
    drive = B.unsqueeze(-1) * (delta * u).unsqueeze(-2)
    return decay, drive


def _carry(decay, drive, h0):
    """h_t = decay_t ⊙ h_{t-1} + drive_t for the chunk, one fused multiply-add per step -> (L, Bt, N, E)."""
    states = torch.empty_like(drive)
    h = h0
    for decay_t, drive_t, out_t in zip(decay.unbind(0), drive.unbind(0), states.unbind(0)):
        h = torch.addcmul(drive_t, decay_t, h, out=out_t)
    return states


class _SelectiveScan(torch.autograd.Function):
    """The scan on the inner layout: A as (N, E), h0 and the returned h as (Bt, N, E)."""

    @staticmethod
    def forward(ctx, u, delta, A_t, B, C, h0, chunk_size, differentiable):
        outputs, boundaries, kept, h = [], [], [], h0
        A2 = A_t * LOG2_E
        # decay, drive, states of all chunks; only for a backward pass that can come
        keep = differentiable and 3 * u.numel() * A_t.shape[0] * u.element_size() <= KEEP_BYTES
        for start in range(0, u.shape[0], chunk_size):
            piece = slice(start, start + chunk_size)
            boundaries.append(h)
            decay, drive = _discretise(u[piece], delta[piece], A2, B[piece])
            states = _carry(decay, drive, h)
            outputs.append(torch.matmul(C[piece].unsqueeze(-2), states).squeeze(-2))  # (L, Bt, 1, N) @ (L, Bt, N, E)
            if keep:
                kept.append((decay, drive, states))
            h = states[-1].clone()  # unless kept, the chunk's buffers are freed; keep only its last state
        # saved, not held on ctx, so that autograd frees them once the (last) backward has run
        ctx.save_for_backward(u, delta, A_t, B, C, *boundaries, *(t for chunk in kept for t in chunk))
        ctx.chunk_size = chunk_size
        return torch.cat(outputs), h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, grad_h_last):
        u, delta, A_t, B, C, *saved = ctx.saved_tensors
        size = ctx.chunk_size
        chunks = len(range(0, u.shape[0], size))  # the boundaries, one per chunk; then the kept chunks, if any
        boundaries, kept_flat = saved[:chunks], saved[chunks:]
        kept = [kept_flat[i:i + 3] for i in range(0, len(kept_flat), 3)]  # (decay, drive, states) per chunk
        A2 = A_t * LOG2_E
        grad_u, grad_delta = torch.empty_like(u), torch.empty_like(delta)
        grad_A, grad_B, grad_C = torch.zeros_like(A_t), torch.empty_like(B), torch.empty_like(C)
        if grad_y is None:
            grad_y = u.new_zeros(u.shape)
        # ∂L/∂h at the end of the current chunk coming from everything after it
        carry = grad_h_last.clone() if grad_h_last is not None else torch.zeros_like(boundaries[0])
        for index in reversed(range(len(boundaries))):
            piece = slice(index * size, (index + 1) * size)
            u_c, delta_c, B_c, C_c, dy_c = u[piece], delta[piece], B[piece], C[piece], grad_y[piece]
            if kept:
                decay, drive, states = kept[index]  # read, never written: backward may run twice
            else:
                decay, drive = _discretise(u_c, delta_c, A2, B_c)
                states = _carry(decay, drive, boundaries[index])
            grads = C_c.unsqueeze(-1) * dy_c.unsqueeze(-2)  # direct ∂L/∂h_t through y_t; becomes g_t below
            grads[-1] += carry
            steps = grads.unbind(0)
            for t in range(len(steps) - 2, -1, -1):
                steps[t].addcmul_(decay[t + 1], steps[t + 1])
            carry = decay[0] * grads[0]
            # g_t ⊙ exp(Δ_t A) ⊙ h_{t-1} = g_t ⊙ (h_t - drive_t); in a fresh buffer when drive is kept
            grad_log_decay = torch.sub(states, drive).mul_(grads)
            grad_delta[piece] = (grad_log_decay * A_t).sum(-2)
            grad_A += (grad_log_decay * delta_c.unsqueeze(-2)).sum((0, 1))
            grad_drive_scale = torch.matmul(B_c.unsqueeze(-2), grads).squeeze(-2)  # ∂L/∂(Δ u): (L, Bt, E)
            torch.mul(grad_drive_scale, delta_c, out=grad_u[piece])
            grad_delta[piece] += grad_drive_scale * u_c
            # sums over e, the inner axis: a product and a row sum (MKL's batched (N × E)·(E × 1) ran 7× slower)
            torch.sum(grads.mul_((delta_c * u_c).unsqueeze(-2)), -1, out=grad_B[piece])  # grads not needed after
            torch.sum(states.mul_(dy_c.unsqueeze(-2)) if not kept else states * dy_c.unsqueeze(-2), -1,
                      out=grad_C[piece])
        return grad_u, grad_delta, grad_A, grad_B, grad_C, carry, None, None


def auto_chunk_size(batch: int, inner: int, state_size: int) -> int:
    """Steps per chunk such that one (L, Bt, N, E) tensor holds about ``CHUNK_ELEMENTS`` (1 … 64 steps).

    Every chunk makes several such tensors and passes over them a dozen times forward and
    back; kept in cache they cost a fraction of what they cost from main memory (training
    step of a block at Bt=64, H=64, T=100 on this project's CPU: 207 ms with 32-step chunks,
    146 ms with 4-step ones, measured under load)."""
    return max(1, min(64, CHUNK_ELEMENTS // max(1, batch * inner * state_size)))


def selective_scan(u, delta, A, B, C, h0, chunk_size: int | None = DEFAULT_CHUNK):
    """h_t = exp(Δ_t A) h_{t-1} + Δ_t u_t B_t, y_t = h_t C_t over t = 1..T, chunk by chunk.

    u, delta: (T, Bt, E); A: (E, N); B, C: (T, Bt, N); h0: (Bt, E, N) -> (y: (T, Bt, E), h_T: (Bt, E, N)).
    ``chunk_size``: steps per chunk; ``None``: :func:`auto_chunk_size`.
    Differentiable in every argument (backward by hand, see the module docstring).
    """
    if chunk_size is None:
        chunk_size = auto_chunk_size(u.shape[1], *A.shape)
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be greater than zero, got {chunk_size}")
    inner_h0 = h0.transpose(-1, -2).contiguous()  # (Bt, N, E): see the module docstring
    differentiable = backward_can_follow(u, delta, A, B, C, h0)  # the chunks are kept only then
    y, h = _SelectiveScan.apply(u, delta, A.t().contiguous(), B, C, inner_h0, chunk_size, differentiable)
    return y, h.transpose(-1, -2).contiguous()
