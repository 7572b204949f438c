"""harness.scan: the chunked linear scan equals the plain loop, in values and gradients."""

from __future__ import annotations

import pytest
import torch

from harness.scan import auto_chunk_size, linear_scan, sequential_scan

F64 = torch.float64
F32_RTOL = 1e-4  # the bound for float32 scans at T = 4096, relative to max |h|


def _random(shape, dtype, seed, low=0.5, high=0.999):
    gen = torch.Generator().manual_seed(seed)
    a = torch.empty(shape, dtype=torch.float64).uniform_(low, high, generator=gen)
    b = torch.randn(shape, generator=gen, dtype=torch.float64)
    h0 = torch.randn(shape[1:], generator=gen, dtype=torch.float64)
    return a.to(dtype), b.to(dtype), h0.to(dtype)


def _rel_err(got, ref):
    return ((got.to(ref.dtype) - ref).abs().max() / ref.abs().max()).item()


def test_known_values_by_hand():
    """h1 = 2·1 + 1 = 3, h2 = 0.5·3 + 2 = 3.5, h3 = -1·3.5 + 0 = -3.5, h4 = 0·(-3.5) + 4 = 4."""
    a = torch.tensor([2.0, 0.5, -1.0, 0.0], dtype=torch.float64)
    b = torch.tensor([1.0, 2.0, 0.0, 4.0], dtype=torch.float64)
    want = torch.tensor([3.0, 3.5, -3.5, 4.0], dtype=torch.float64)
    h0 = torch.tensor(1.0, dtype=torch.float64)
    for chunk in (1, 2, 3, 4, 7):
        torch.testing.assert_close(linear_scan(a, b, h0, chunk_size=chunk), want, rtol=0, atol=1e-15)
    torch.testing.assert_close(sequential_scan(a, b, h0), want, rtol=0, atol=0)
    # reversed: h4 = 0·1 + 4 = 4, h3 = -1·4 + 0 = -4, h2 = 0.5·(-4) + 2 = 0, h1 = 2·0 + 1 = 1
    want_rev = torch.tensor([1.0, 0.0, -4.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(linear_scan(a, b, h0, chunk_size=3, reverse=True), want_rev, rtol=0, atol=1e-15)
    torch.testing.assert_close(sequential_scan(a, b, h0, reverse=True), want_rev, rtol=0, atol=0)


@pytest.mark.parametrize("seq_len", [1, 2, 5, 63, 64, 65, 300])
@pytest.mark.parametrize("chunk", [None, 1, 4, 16, 1000])
@pytest.mark.parametrize("reverse", [False, True])
def test_float64_equals_loop(seq_len, chunk, reverse):
    a, b, h0 = _random((seq_len, 3, 5), torch.float64, seed=seq_len)
    got = linear_scan(a, b, h0, chunk_size=chunk, reverse=reverse)
    torch.testing.assert_close(got, sequential_scan(a, b, h0, reverse=reverse), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seq_len", [4096, 16384])
def test_float32_long_sequence_within_bound(seq_len):
    """Against a float64 loop: the chunked float32 scan stays within 1e-4 of max |h| (measured ~1e-7)."""
    a, b, h0 = _random((seq_len, 4, 64), torch.float64, seed=1)
    ref = sequential_scan(a, b, h0)
    got = linear_scan(a.float(), b.float(), h0.float())
    assert got.dtype == torch.float32
    assert _rel_err(got, ref) < F32_RTOL
    # and against the float32 loop itself, elementwise with a floor at 1e-4 of the scale
    loop32 = sequential_scan(a.float(), b.float(), h0.float())
    torch.testing.assert_close(got, loop32, rtol=F32_RTOL, atol=F32_RTOL * loop32.abs().max().item())


def test_complex_lru_ring_float32():
    """Complex decays on a ring |λ| ∈ [0.9, 0.999] with random phase, T = 4096, complex64 vs complex128 loop."""
    gen = torch.Generator().manual_seed(2)
    seq_len, batch, hidden = 4096, 2, 32
    radius = torch.empty(hidden, dtype=torch.float64).uniform_(0.9, 0.999, generator=gen)
    phase = torch.rand(hidden, generator=gen, dtype=torch.float64) * 2 * torch.pi
    lam = torch.polar(radius, phase).expand(seq_len, 1, hidden)  # one λ for every step, broadcast over batch
    b = torch.randn(seq_len, batch, hidden, generator=gen, dtype=torch.complex128)
    ref = sequential_scan(lam, b)
    got = linear_scan(lam.to(torch.complex64), b.to(torch.complex64))
    assert got.dtype == torch.complex64 and got.shape == (seq_len, batch, hidden)
    assert _rel_err(got, ref) < F32_RTOL


def test_broadcasting_and_promotion():
    """a of (T, 1, H) against b of (T, B, H); complex a with real b gives complex h; h0 broadcast."""
    a = torch.rand(10, 1, 4, dtype=torch.float64)
    b = torch.randn(10, 3, 4, dtype=torch.float64)
    h0 = torch.randn(4, dtype=torch.float64)
    torch.testing.assert_close(linear_scan(a, b, h0, chunk_size=3), sequential_scan(a.expand(10, 3, 4), b, h0.expand(3, 4)))
    ac = torch.polar(a, torch.ones_like(a))
    out = linear_scan(ac, b, chunk_size=4)
    assert out.dtype == torch.complex128 and out.shape == (10, 3, 4)
    torch.testing.assert_close(out, sequential_scan(ac, b.to(torch.complex128)))


def test_zero_gates_are_exact():
    """A zero gate resets the state: no division, so no NaN (a cumprod/cumsum scan would divide by 0)."""
    a = torch.tensor([[0.5], [0.0], [0.0], [0.9]])
    b = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    got = linear_scan(a, b, torch.tensor([10.0]), chunk_size=2)
    torch.testing.assert_close(got, torch.tensor([[6.0], [2.0], [3.0], [6.7]]))


def test_h0_carried_two_halves_equal_whole():
    a, b, h0 = _random((101, 2, 3), torch.float64, seed=3)
    whole = linear_scan(a, b, h0, chunk_size=8)
    first = linear_scan(a[:40], b[:40], h0, chunk_size=8)
    second = linear_scan(a[40:], b[40:], first[-1], chunk_size=8)
    torch.testing.assert_close(torch.cat([first, second]), whole, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_gradients_equal_loop(dtype, reverse):
    """Gradients of a, b (broadcast) and h0 equal those through the autograd loop."""
    gen = torch.Generator().manual_seed(4)
    a = (0.9 * torch.rand(23, 1, 4, generator=gen, dtype=torch.float64)).to(dtype).requires_grad_()
    b = torch.randn(23, 3, 4, generator=gen, dtype=dtype).requires_grad_()
    h0 = torch.randn(3, 4, generator=gen, dtype=dtype).requires_grad_()
    weight = torch.randn(23, 3, 4, generator=gen, dtype=dtype)

    def grads(fn):
        loss = (fn(a, b, h0).abs() ** 2 * weight.real).sum() + fn(a, b, h0).real.sum()
        return torch.autograd.grad(loss, (a, b, h0))

    got = grads(lambda *t: linear_scan(*t, chunk_size=5, reverse=reverse))
    want = grads(lambda *t: sequential_scan(*t, reverse=reverse))
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


def test_gradcheck_and_second_order():
    gen = torch.Generator().manual_seed(5)
    a = torch.rand(9, 2, dtype=torch.float64, generator=gen).requires_grad_()
    b = torch.randn(9, 2, dtype=torch.float64, generator=gen).requires_grad_()
    h0 = torch.randn(2, dtype=torch.float64, generator=gen).requires_grad_()
    fn = lambda a, b, h0: linear_scan(a, b, h0, chunk_size=4)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (a, b, h0))
    assert torch.autograd.gradgradcheck(fn, (a, b, h0))


def test_float32_gradients_long_sequence():
    """At T = 4096 in float32 the gradients agree with the float64 loop to 1e-4 relative."""
    a, b, h0 = _random((4096, 2, 16), torch.float64, seed=6)
    weight = torch.randn(4096, 2, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(7))

    def grads(fn, dtype):
        leaves = [t.to(dtype).requires_grad_() for t in (a, b, h0)]
        loss = (fn(*leaves) * weight.to(dtype)).sum()
        return torch.autograd.grad(loss, leaves)

    for got, want in zip(grads(linear_scan, torch.float32), grads(sequential_scan, torch.float64)):
        assert _rel_err(got, want) < F32_RTOL


def test_auto_chunk_size_near_sqrt():
    assert auto_chunk_size(1) == 8 and auto_chunk_size(4096) == 64 and auto_chunk_size(16384) == 128


def test_bad_arguments_say_what_is_allowed():
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        linear_scan(torch.ones(3), torch.ones(3), chunk_size=0)
    with pytest.raises(ValueError, match="leading time dimension"):
        linear_scan(torch.tensor(1.0), torch.tensor(1.0))


def test_in_time_blocks_equals_one_call():
    """Blocks of 16 with the state carried give the whole-sequence outputs, state and gradients."""
    from harness.scan import in_time_blocks

    decay = torch.full((3,), 0.9, dtype=torch.float64)
    lengths = []

    def forward(x, state):
        lengths.append(x.shape[0])
        h = linear_scan(decay, x, state)
        return h, h[-1]

    _, b, h0 = _random((40, 2, 3), torch.float64, seed=8)
    x = b.clone().requires_grad_()
    y_blocks, s_blocks = in_time_blocks(forward, x, h0, block_len=16)
    assert lengths == [16, 16, 8]
    y_whole = sequential_scan(decay, x, h0)
    torch.testing.assert_close(y_blocks, y_whole)
    torch.testing.assert_close(s_blocks, y_whole[-1])
    weight = torch.randn(y_whole.shape, dtype=torch.float64)
    grad_blocks, = torch.autograd.grad((y_blocks * weight).sum(), x)
    grad_whole, = torch.autograd.grad((y_whole * weight).sum(), x)
    torch.testing.assert_close(grad_blocks, grad_whole)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("seq_len, chunk", [(64, 8), (63, 8), (10, 4), (5, None), (63, 1)])  # 1: the plain loop
def test_chunked_scan_plan_reused_over_new_contents_equals_loop(seq_len, chunk, reverse):
    """A plan made once over fixed buffers gives the loop's result for whatever they hold at each
    call (the fused cells refill the same buffers block after block)."""
    from harness.scan import ChunkedScan

    gen = torch.Generator().manual_seed(3)
    a, out = torch.empty(seq_len, 3, 4, dtype=F64), torch.empty(seq_len, 3, 4, dtype=F64)
    plan = ChunkedScan(seq_len, chunk=chunk, reverse=reverse, a=a, out=out)
    for _ in range(3):
        a.copy_(torch.rand(seq_len, 3, 4, generator=gen, dtype=F64) * 1.5 - 0.5)
        b, h0 = torch.randn(seq_len, 3, 4, generator=gen, dtype=F64), torch.randn(3, 4, generator=gen, dtype=F64)
        last = plan(h0, b=b)
        expected = sequential_scan(a, b, h0, reverse=reverse)
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(last, expected[0] if reverse else expected[-1], rtol=1e-12, atol=1e-12)


def test_chunked_scan_plan_says_which_operand_is_fixed():
    from harness.scan import ChunkedScan

    a, b = torch.rand(8, 2), torch.rand(8, 2)
    plan = ChunkedScan(8, a=a)
    with pytest.raises(ValueError, match="a was fixed when the plan was made"):
        plan(None, a=a, b=b, out=torch.empty(8, 2))
    with pytest.raises(ValueError, match="out was not fixed when the plan was made"):
        plan(None, b=b)


@pytest.mark.parametrize("reverse", [False, True])
def test_chunked_scan_plan_over_a_shorter_prefix_equals_loop(reverse):
    """``steps=`` scans the first steps of fixed buffers (a sequence's shorter last block)."""
    from harness.scan import ChunkedScan

    gen = torch.Generator().manual_seed(5)
    a, out = torch.rand(16, 3, dtype=F64, generator=gen), torch.zeros(16, 3, dtype=F64)
    plan = ChunkedScan(16, chunk=4, reverse=reverse, a=a, out=out)
    for steps in (16, 7, 1, 0):
        b, h0 = torch.randn(steps, 3, generator=gen, dtype=F64), torch.randn(3, generator=gen, dtype=F64)
        last = plan(h0, b=b, steps=steps)
        if steps:
            expected = sequential_scan(a[:steps], b, h0, reverse=reverse)
            torch.testing.assert_close(out[:steps], expected, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(last, expected[0] if reverse else expected[-1], rtol=1e-12, atol=1e-12)
        else:
            assert last is h0
