"""Diagonal linear recurrences over time: ``h_t = a_t ⊙ h_{t-1} + b_t``, sequentially and as a chunked scan.

minGRU, minLSTM, LRU and Mamba's selective SSM all reduce to this recurrence with an
element-wise (diagonal) ``a_t`` that does not depend on ``h``, so it can run in parallel over
time (Blelloch 1990; Martin & Cundy 2018; Smith et al. 2023, S5). Two functions:

``sequential_scan(a, b, h0)``  the plain loop, one step per time step: the reference.
``linear_scan(a, b, h0)``      the fast form: a two-level chunked scan (below).

Shapes: ``a`` and ``b`` are ``(T, ...)`` and broadcast against each other (e.g. ``a`` of
``(T, 1, H)`` or ``(1, B, H)`` with ``b`` of ``(T, B, H)``); ``h0`` is broadcastable to one time
slice ``(...)``, or ``None`` for zeros. The result is ``h`` of shape ``(T, ...)`` holding
``h_1 … h_T``; ``h[-1]`` is the state to carry into the next piece. Real (float32/float64)
and complex (complex64/complex128) tensors are accepted; mixed inputs are promoted to one
dtype (a complex ``a`` with a real ``b`` gives a complex ``h``).

How the chunked scan works. Time is cut into ``C`` chunks of ``L`` steps (``C·L ≥ T``; the
tail is padded with ``a = 1, b = 0``, which leaves earlier steps unchanged).

1. Inside every chunk, from a zero start, the chunk's end ``u_L = a_L ⊙ u_{L-1} + b_L`` and
   its total decay ``P_L = a_1 ⊙ … ⊙ a_L`` — a loop over the ``L`` positions that updates all
   ``C`` chunks at once.
2. Between chunks, the carry ``s_c = P_L^{(c)} ⊙ s_{c-1} + u_L^{(c)}`` — a loop over ``C``.
3. Inside every chunk again, now from its true start ``s_{c-1}``:
   ``h_t = a_t ⊙ h_{t-1} + b_t`` — a loop over ``L``, all chunks at once.

With ``L ≈ √T`` (the default) that is about ``3√T`` sequential steps on ``C``-times larger
tensors instead of ``T`` small ones,
and about twice the loop's arithmetic. No division and no logarithm is taken, so zero, negative and
complex gates are exact cases and there is nothing to underflow; every ``h_t`` is the same
sum of products as in the loop, grouped differently. The float32 error is therefore of the
loop's own order: measured against a float64 loop at T = 4096 (B·H = 2048, |a| uniform in
[0.5, 0.999] or on the LRU ring [0.9, 0.999], b standard normal) the largest error is below
1e-6 · max|h|, about the loop's own float32 error; ``tests/test_scan.py`` asserts
1e-4 relative at T = 4096 and 16384. (A whole-sequence log-space scan, Heinsen 2023, drifts
to about 2e-3 at T = 1000 because ``Σ log a`` grows with T; chunking alone would fix that, but
it also needs positive gates, which the LRU does not have.)

Gradients: :func:`linear_scan` is a ``torch.autograd.Function`` whose backward is itself a
linear scan running the other way (``reverse=True``), ``g_t = ∂L/∂h_t + conj(a_{t+1}) ⊙ g_{t+1}``, with ``∂L/∂b_t = g_t``,
``∂L/∂a_t = g_t ⊙ conj(h_{t-1})`` and ``∂L/∂h_0 = conj(a_1) ⊙ g_1`` (PyTorch's conjugate
Wirtinger convention; for real tensors ``conj`` is the identity). It saves only ``a``, ``h``
and ``h_0``, no per-step intermediates, and being built from the same function it can be
differentiated again.
"""

from __future__ import annotations

import math

import torch

MIN_AUTO_CHUNK = 8
CPU_TIME_BLOCK = 256  # steps per block in in_time_blocks: (256, B=8, H=256) float32 tensors are 2 MiB


def sequential_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, *,
                    reverse: bool = False) -> torch.Tensor:
    """``h_t = a_t ⊙ h_{t-1} + b_t`` for t = 1 … T, one step at a time (the reference).

    :param a: ``(T, ...)`` decay/gate, broadcastable against ``b``.
    :param b: ``(T, ...)`` input term.
    :param h0: initial state broadcastable to ``(...)``; ``None`` means zeros.
    :param reverse: run time backwards (see :func:`linear_scan`).
    :returns: ``h`` of shape ``(T, ...)`` (the broadcast shape of ``a`` and ``b``).
    """
    a, b, h0 = _promote(a, b, h0)
    h = h0 if h0 is not None else torch.zeros_like(b[0])
    steps = list(zip(a.unbind(0), b.unbind(0)))  # unbind: its backward is one stack, not T scatters
    out = []
    for a_t, b_t in reversed(steps) if reverse else steps:
        h = a_t * h + b_t
        out.append(h)
    return torch.stack(out[::-1] if reverse else out)


def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, *,
                chunk_size: int | None = None, reverse: bool = False) -> torch.Tensor:
    """``h_t = a_t ⊙ h_{t-1} + b_t`` for t = 1 … T as a chunked parallel scan (see the module docstring).

    :param a: ``(T, ...)`` decay/gate, broadcastable against ``b``; real or complex.
    :param b: ``(T, ...)`` input term.
    :param h0: initial state broadcastable to ``(...)``; ``None`` means zeros.
    :param chunk_size: steps per chunk ``L``; ``None`` picks a power of two near ``√T``
        (at least 8). Any positive value gives the same result up to rounding.
    :param reverse: run time backwards, ``h_t = a_t ⊙ h_{t+1} + b_t`` with ``h0`` after the
        last step (an adjoint or a backward-in-time recurrence).
    :returns: ``h`` of shape ``(T, ...)``, equal to :func:`sequential_scan` up to float rounding.
    """
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    a, b, h0 = _promote(a, b, h0)
    if b.shape[0] == 0:
        return b.clone()
    return _LinearScan.apply(a, b, h0, chunk_size or auto_chunk_size(b.shape[0]), reverse)


def in_time_blocks(forward, x: torch.Tensor, state=None, block_len: int = CPU_TIME_BLOCK):
    """Run a sequence-form ``forward(x, state) -> (y, state)`` over blocks of ``block_len`` steps
    on the CPU, carrying the state between blocks (the cell contract makes that exact); on
    other devices, or for a short ``x``, one call.

    Why: a scan cell written as whole-sequence tensor ops makes a dozen (T, B, H) temporaries
    forward and back; at T = 4096, B = 8, H = 256 each is 32 MiB, which on the CPU comes from
    fresh pages (glibc serves it with mmap, so every one page-faults) and streams from main
    memory. In 256-step blocks the same ops stay in cache and reuse the heap: minGRU
    forward+backward went from 1391 to 356 ms and minLSTM from 2179 to 737 ms there (one
    thread, shared machine, noisy); the LRU's complex arithmetic gained nothing, so it does
    not use this.
    """
    seq_len = x.shape[0]
    if x.device.type != "cpu" or seq_len <= block_len:
        return forward(x, state)
    outputs = []
    for start in range(0, seq_len, block_len):
        y, state = forward(x[start:start + block_len], state)
        outputs.append(y)
    return torch.cat(outputs), state


def backward_can_follow(*operands: torch.Tensor) -> bool:
    """Whether a backward pass can follow an autograd Function applied now to ``operands``: grad
    mode is on and one of them requires a gradient. Decide it before ``apply``: inside
    ``forward`` grad mode is always off. A fused scan keeps its states for the backward only then
    (under ``torch.no_grad``, or with nothing requiring a gradient, nobody would read them)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in operands)


def auto_chunk_size(seq_len: int) -> int:
    """A power of two near ``√seq_len`` (at least 8): balances the two sequential loops."""
    return max(MIN_AUTO_CHUNK, 2 ** round(math.log2(max(seq_len, 1)) / 2))


def _promote(a, b, h0):
    """Broadcast ``a`` and ``b`` to one ``(T, ...)`` shape and one dtype (views, no copies);
    ``h0`` to ``(...)``. Differentiable, so gradients reach the caller's shapes and dtypes."""
    if a.dim() == 0 or b.dim() == 0:
        raise ValueError(f"a and b need a leading time dimension, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    dtype = torch.promote_types(a.dtype, b.dtype)
    if h0 is not None:
        dtype = torch.promote_types(dtype, h0.dtype)
    shape = torch.broadcast_shapes(a.shape, b.shape)
    a, b = a.to(dtype).expand(shape), b.to(dtype).expand(shape)
    if h0 is not None:
        h0 = h0.to(dtype).expand(shape[1:])
    return a, b, h0


def scan_into(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, out: torch.Tensor, *,
              chunk: int | None = None, reverse: bool = False) -> torch.Tensor:
    """The three steps of the module docstring, without autograd, written into ``out``; returns
    the last state (``out[-1]``, or ``out[0]`` when ``reverse``).

    ``b``, ``out``: ``(T, *S)``, one dtype; ``a``: ``(T, *S)`` or time-invariant ``(1, *S)`` (or
    any time stride 0), broadcastable over ``S``. ``reverse`` runs time backwards, ``h_t = a_t ⊙
    h_{t+1} + b_t`` with ``h0`` after the end. The first ``C·L`` steps go through the chunks; the
    last ``T − C·L < L`` run as a plain loop (first when reversed), so nothing is padded or
    copied. For the fused cells (``plugins.gated_scan``, ``plugins.lru``) that call it on
    cache-sized blocks of their own buffers; one that scans the same buffers block after block
    builds a :class:`ChunkedScan` once instead.
    """
    return ChunkedScan(b.shape[0], chunk=chunk, reverse=reverse)(h0, a, b, out)


class ChunkedScan:
    """:func:`scan_into` for one length ``T``, with the per-step views of the operands that stay
    the same between calls (``a``, ``b`` or ``out`` given here) made once.

    Why: on cache-sized blocks the scan is a few dozen small operations, and cutting the
    operands into per-step views (``unbind``, ``view``) cost about half as much again as the
    arithmetic (minGRU's 64-step blocks at B = 8, H = 256: 163 µs a block with the views made
    per call, 108 µs with them made once). ``plan(h0, a=..., b=..., out=...)`` takes the
    operands not fixed here; a fixed operand given again is an error. ``plan(..., steps=L)``
    scans only the first ``L`` steps of every operand (a sequence's shorter last block), through
    :func:`scan_into`.

    ``chunk=1`` (chunks of one step) is the plain loop over those views: the recurrence's own
    arithmetic once, where the three steps do it twice to shorten the chain of dependent
    operations. Where one step's slice is thousands of elements, as in a CPU core's cache-sized
    blocks, the loop is the faster of the two (the LRU's 64-step complex blocks at B·N = 2048:
    156 against 217 µs); where each operation costs a launch, as on a GPU, the chunks are.
    """

    def __init__(self, seq_len: int, *, chunk: int | None = None, reverse: bool = False,
                 a: torch.Tensor | None = None, b: torch.Tensor | None = None, out: torch.Tensor | None = None):
        self.seq_len, self.reverse, self._chunk_asked = seq_len, reverse, chunk
        self.chunk = max(1, min(chunk or auto_chunk_size(seq_len), seq_len))
        self.n_chunks = seq_len // self.chunk
        self.body = self.n_chunks * self.chunk
        self._given = {"a": a, "b": b, "out": out}
        self._fixed = {name: None if t is None else self._cut_operand(name, t) for name, t in self._given.items()}

    def _cut_operand(self, name, t):
        return self._cut_a(t) if name == "a" else self._cut(t, written=name == "out")

    def _cut_a(self, a):
        constant = a.shape[0] == 1 or a.stride(0) == 0
        if constant:  # one coefficient for every step: index it once, never materialise (T, *S)
            a = a[0]
            return a, True, (a,) * self.chunk
        if self.chunk == 1:
            return a, None, a[:self.body].unbind(0)
        chunks = _chunk_major(a, self.n_chunks, self.chunk)
        return a, chunks, chunks.unbind(1)

    def _cut(self, t, written):
        if self.chunk == 1:  # one view per step (those of ``out`` write into it)
            return t, t[:self.body].unbind(0)
        if written:  # a view, so that what is written lands in ``t``
            shape = (self.n_chunks, self.chunk, *t.shape[1:])
            return t, t[:self.body].view(shape).unbind(1)
        return t, _chunk_major(t, self.n_chunks, self.chunk).unbind(1)

    def _whole(self, name, given):
        """The operand as a tensor: ``given``, or the one fixed when the plan was made (exactly one of them)."""
        fixed = self._given[name]
        if given is None and fixed is None:
            raise ValueError(f"ChunkedScan: {name} was not fixed when the plan was made, so it must be given")
        if given is not None and fixed is not None:
            raise ValueError(f"ChunkedScan: {name} was fixed when the plan was made; it cannot be given again")
        return fixed if given is None else given

    def _operand(self, name, given):
        """The operand cut into per-step views: those made when the plan was made, or made now."""
        whole = self._whole(name, given)
        return self._fixed[name] if given is None else self._cut_operand(name, whole)

    def __call__(self, h0: torch.Tensor | None, a: torch.Tensor | None = None, b: torch.Tensor | None = None,
                 out: torch.Tensor | None = None, *, steps: int | None = None) -> torch.Tensor:
        if steps is not None and steps != self.seq_len:
            a, b, out = (self._whole(name, t)[:steps] for name, t in (("a", a), ("b", b), ("out", out)))
            return scan_into(a, b, h0, out, chunk=self._chunk_asked, reverse=self.reverse)
        a, a_chunks, a_steps = self._operand("a", a)  # a_chunks: (C, L, *S); True if constant, None for chunk 1
        constant = a_chunks is True
        b, b_steps = self._operand("b", b)
        out, out_steps = self._operand("out", out)
        if self.seq_len == 0:
            return h0
        reverse, body, n_chunks = self.reverse, self.body, self.n_chunks
        state = h0 if h0 is not None else torch.zeros_like(b[0])
        if self.chunk == 1:  # the plain loop (see the class docstring)
            for t in range(body - 1, -1, -1) if reverse else range(body):
                state = torch.addcmul(b_steps[t], a_steps[0 if constant else t], state, out=out_steps[t])
            return state
        if reverse:
            state = _loop(a, b[body:], state, out[body:], reverse, constant, offset=body)
        steps = range(self.chunk - 1, -1, -1) if reverse else range(self.chunk)
        chunks = range(n_chunks - 1, -1, -1) if reverse else range(n_chunks)

        # 1. each chunk's end from a zero start, u_L, and its total decay, P_L (all chunks at once;
        # for a constant a, P_L = a^L is one slice)
        first, *rest = steps
        u_end, p_end = b_steps[first], a_steps[first]
        for t in rest:
            u_end = torch.addcmul(b_steps[t], a_steps[t], u_end)
            if constant:
                p_end = a_steps[t] * p_end
        if not constant and rest:
            p_end = a_chunks.prod(1)  # one reduction instead of L - 1 products (the order of a product is free)

        # 2. the state entering each chunk, s_{c-1}, one chunk at a time
        carries = torch.empty_like(b_steps[0])
        carry_rows, end_rows = carries.unbind(0), u_end.unbind(0)
        decay_rows = None if constant else p_end.unbind(0)
        order = list(chunks)
        carry_rows[order[0]].copy_(state)
        for c, following in zip(order, order[1:] + [None]):  # each carry written in place: no copies
            decay = p_end if constant else decay_rows[c]
            state = torch.addcmul(end_rows[c], decay, carry_rows[c],
                                  out=None if following is None else carry_rows[following])

        # 3. every chunk again from its true start; cheaper than forming P_t for every t
        # (a cumprod along time and a full-size multiply) and the same products as the loop
        inner = carries
        for t in steps:
            inner = torch.addcmul(b_steps[t], a_steps[t], inner, out=out_steps[t])
        if not reverse:
            state = _loop(a, b[body:], state, out[body:], reverse, constant, offset=body)
        return state


def _chunk_major(t: torch.Tensor, n_chunks: int, chunk: int) -> torch.Tensor:
    """The first ``n_chunks · chunk`` steps of ``t`` as ``(n_chunks, chunk, ...)`` (a view when contiguous)."""
    body = t[:n_chunks * chunk]
    shape = (n_chunks, chunk, *t.shape[1:])
    return body.view(shape) if body.is_contiguous() else body.reshape(shape)


def _loop(a, b, state, out, reverse, constant, offset):
    """The plain recurrence over the few steps ``b`` (from step ``offset`` of ``a``), written into
    ``out``; returns the last state."""
    for t in range(b.shape[0] - 1, -1, -1) if reverse else range(b.shape[0]):
        state = torch.addcmul(b[t], a if constant else a[offset + t], state, out=out[t])
    return state


class _LinearScan(torch.autograd.Function):
    """Forward: :func:`scan_into`. Backward: the adjoint recurrence runs the other way,
    ``g_t = ∂L/∂h_t + conj(a_{t±1}) ⊙ g_{t±1}``, itself a linear scan (so differentiable again)."""

    @staticmethod
    def forward(ctx, a, b, h0, chunk, reverse):
        h = torch.empty_like(b, memory_format=torch.contiguous_format)
        with torch.no_grad():
            scan_into(a, b, h0, h, chunk=chunk, reverse=reverse)
        ctx.chunk, ctx.reverse, ctx.has_h0 = chunk, reverse, h0 is not None
        ctx.save_for_backward(a, h, h0 if h0 is not None else h.new_zeros(h.shape[1:]))
        return h

    @staticmethod
    def backward(ctx, grad_h):
        a, h, h0 = ctx.saved_tensors
        g = _adjoint(a, grad_h, ctx.chunk, ctx.reverse)
        grad_a = grad_h0 = None
        if ctx.needs_input_grad[0]:  # ∂L/∂a_t = g_t ⊙ conj(the state a_t multiplied)
            inner, edge = (slice(None, -1), -1) if ctx.reverse else (slice(1, None), 0)
            neighbours = h[1:] if ctx.reverse else h[:-1]
            if torch.is_grad_enabled():  # double backward: out= is not differentiable
                grad_a = g * torch.cat([neighbours, h0[None]] if ctx.reverse else [h0[None], neighbours]).conj()
            else:
                grad_a = torch.empty_like(g)
                torch.mul(g[inner], neighbours.conj(), out=grad_a[inner])
                torch.mul(g[edge], h0.conj(), out=grad_a[edge])
        if ctx.has_h0 and ctx.needs_input_grad[2]:
            grad_h0 = a[-1].conj() * g[-1] if ctx.reverse else a[0].conj() * g[0]
        return grad_a, g if ctx.needs_input_grad[1] else None, grad_h0, None, None


def _adjoint(a: torch.Tensor, grad_h: torch.Tensor, chunk: int, reverse: bool) -> torch.Tensor:
    """``g_t = ∂L/∂h_t + conj(a_{t+1}) ⊙ g_{t+1}`` (``a_{t-1}``, ``g_{t-1}`` when ``reverse``).

    The adjoint's first step — the cell's last — has no coefficient, so it is ``∂L/∂h`` there
    and enters the rest as its initial state."""
    if reverse:
        edge, rest, coeff = slice(0, 1), slice(1, None), a[:-1].conj()
    else:
        edge, rest, coeff = slice(-1, None), slice(None, -1), a[1:].conj()
    if torch.is_grad_enabled():  # double backward: stay differentiable
        body = _LinearScan.apply(coeff, grad_h[rest], grad_h[edge][0], chunk, not reverse)
        return torch.cat([grad_h[edge], body] if reverse else [body, grad_h[edge]])
    g = torch.empty_like(grad_h, memory_format=torch.contiguous_format)
    g[edge] = grad_h[edge]
    if grad_h.shape[0] > 1:
        scan_into(coeff, grad_h[rest], g[edge][0], g[rest], chunk=chunk, reverse=not reverse)
    return g
