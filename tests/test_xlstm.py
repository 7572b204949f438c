"""The xLSTM cells: mLSTM and sLSTM against hand-written loops of the paper's (unstabilised)
equations, and the mLSTM's chunkwise-parallel form against its step form."""

from __future__ import annotations

import math

import pytest
import torch

from harness.cells import Unrolled
from harness.testing import implementation_gaps, warm_state
from harness.cells import Unrolled
from plugins.mlstm import MLSTM, MLSTMStep
from plugins.slstm import SLSTMStep, powerlaw_forget_bias

F64 = torch.float64
XS = [1.0, -2.0, 0.5, 3.0, -0.25, 1.5]


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


# mLSTM, I = 1, H = d = 2, one head: projection rows q (2), k (2), v (2), o (2), ĩ, f̃
MLSTM_W = [0.5, -1.0, 0.8, 0.3, -0.6, 1.2, 0.9, -0.4, 0.7, -1.1]
MLSTM_B = [0.1, 0.2, -0.3, 0.0, 0.4, -0.2, 0.1, 0.3, -0.5, 1.0]


def mlstm_by_hand(xs: list[float], biases: list[float] = MLSTM_B) -> list[list[float]]:
    """C_t = f C + i v kᵀ, n_t = f n + i k, h = o ⊙ C q / max(|nᵀq|, 1), i = exp(ĩ), f = σ(f̃); no stabiliser."""
    pre = lambda x: [w * x + b for w, b in zip(MLSTM_W, biases)]  # noqa: E731
    C, n, out = [[0.0, 0.0], [0.0, 0.0]], [0.0, 0.0], []
    for x in xs:
        p = pre(x)
        q, k, v = p[0:2], [p[2] / math.sqrt(2), p[3] / math.sqrt(2)], p[4:6]
        o, i, f = [sigmoid(p[6]), sigmoid(p[7])], math.exp(p[8]), sigmoid(p[9])
        C = [[f * C[r][c] + i * v[r] * k[c] for c in range(2)] for r in range(2)]
        n = [f * n[c] + i * k[c] for c in range(2)]
        denominator = max(abs(n[0] * q[0] + n[1] * q[1]), 1.0)
        out.append([o[r] * (C[r][0] * q[0] + C[r][1] * q[1]) / denominator for r in range(2)])
    return out


def tiny_mlstm(chunk_size: int = 4) -> MLSTM:
    cell = MLSTM(1, 2, heads=1, chunk_size=chunk_size).double()
    with torch.no_grad():
        cell.proj.weight.copy_(torch.tensor(MLSTM_W, dtype=F64).view(10, 1))
        cell.proj.bias.copy_(torch.tensor(MLSTM_B, dtype=F64))
    return cell


@pytest.mark.parametrize("form", ["parallel", "step"])
def test_mlstm_forms_equal_a_hand_written_loop(form):
    cell = tiny_mlstm(chunk_size=4)  # 6 steps: one full chunk and a partial one
    module = cell if form == "parallel" else Unrolled(MLSTMStep(cell))
    x = torch.tensor(XS, dtype=F64).view(-1, 1, 1)
    with torch.no_grad():
        y, _ = module(x)
    torch.testing.assert_close(y[:, 0], torch.tensor(mlstm_by_hand(XS), dtype=F64), rtol=1e-12, atol=1e-14)


def test_mlstm_initialisation_follows_the_reference_code():
    torch.manual_seed(0)
    cell = MLSTM(8, 32)
    assert cell.heads == 4 and cell.head_size == 8
    H = 32
    torch.testing.assert_close(cell.proj.bias[4 * H + 4:], torch.tensor([3.0, 4.0, 5.0, 6.0]))  # forget: linspace(3, 6)
    assert torch.count_nonzero(cell.proj.weight[4 * H:]) == 0  # gate weights start at zero
    assert torch.count_nonzero(cell.proj.bias[: 4 * H]) == 0


@pytest.mark.parametrize("seq_len,chunk,hidden", [(1, 4, 8), (11, 4, 8), (37, 8, 6), (20, 64, 5)])
def test_mlstm_parallel_equals_step_form_in_float64(seq_len, chunk, hidden):
    """Outputs, final (C', n', m) and every parameter gradient, from a non-zero carried state."""
    torch.manual_seed(0)
    cell = MLSTM(3, hidden, chunk_size=chunk).double()
    x = torch.randn(seq_len, 2, 3, dtype=F64)
    result = implementation_gaps(cell, Unrolled(MLSTMStep(cell)), x, warm_state(cell, 2, 3, F64))
    assert result.worst < 1e-10, result


def test_mlstm_parallel_equals_step_form_in_float32_at_4096_steps():
    """Stated tolerance at T = 4096 in float32: outputs and state within 1e-4 of the step form
    (relative to their largest entry), parameter gradients within 1e-4 (measured: 3e-5 outputs, 7e-5
    gradients, so the margin is small; float64 above shows the forms agree to rounding)."""
    torch.manual_seed(0)
    cell = MLSTM(3, 8)
    x = torch.randn(4096, 2, 3)
    result = implementation_gaps(cell, Unrolled(MLSTMStep(cell)), x, warm_state(cell, 2, 3, torch.float32))
    assert result.outputs < 1e-4 and max(result.states) < 1e-4, result
    assert result.worst_grad[1] < 1e-4, result


class SwappedGates(MLSTMStep):
    """A wrong step form: the input and forget gate pre-activations trade places."""

    def precompute(self, x):
        pre = super().precompute(x)
        heads = self.cell.heads
        return torch.cat([pre[..., : -2 * heads], pre[..., -heads:], pre[..., -2 * heads: -heads]], dim=-1)


def test_an_mlstm_step_form_with_input_and_forget_gates_swapped_fails_the_equivalence_check():
    torch.manual_seed(0)
    cell = MLSTM(3, 8, chunk_size=4).double()
    x = torch.randn(11, 2, 3, dtype=F64)
    result = implementation_gaps(cell, Unrolled(SwappedGates(cell)), x, warm_state(cell, 2, 3, F64))
    assert result.outputs > 1e-2 and result.worst > 0.1, result


def test_mlstm_pieces_across_chunk_boundaries_equal_the_whole():
    torch.manual_seed(0)
    cell = MLSTM(3, 8, chunk_size=4).double()
    x = torch.randn(13, 2, 3, dtype=F64)
    state = warm_state(cell, 2, 3, F64)
    with torch.no_grad():
        y_whole, whole = cell(x, state)
        pieces = []
        for lo, hi in [(0, 5), (5, 6), (6, 13)]:
            y, state = cell(x[lo:hi], state)
            pieces.append(y)
    torch.testing.assert_close(torch.cat(pieces), y_whole, rtol=1e-12, atol=1e-13)
    for a, b in zip(state, whole):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


def test_mlstm_stays_finite_where_the_unstabilised_gates_overflow():
    """ĩ ≈ 800 at every step: exp(ĩ) overflows even float64 (above e^709); the stabilised forms
    agree and stay finite."""
    cell = tiny_mlstm(chunk_size=4)
    with torch.no_grad():
        cell.proj.bias[8] = 800.0
    with pytest.raises(OverflowError):
        mlstm_by_hand(XS, MLSTM_B[:8] + [800.0] + MLSTM_B[9:])
    x = torch.tensor(XS, dtype=F64).view(-1, 1, 1)
    with torch.no_grad():
        y_parallel, _ = cell(x)
        y_step, _ = Unrolled(MLSTMStep(cell))(x)
    assert torch.isfinite(y_parallel).all()
    torch.testing.assert_close(y_parallel, y_step, rtol=1e-12, atol=1e-14)


# sLSTM, I = 1, H = d = 2, one head: input rows z (2), i (2), f (2), o (2)
SLSTM_W = [0.5, -1.0, 0.8, 0.3, -0.6, 1.2, 0.9, -0.4]
SLSTM_B = [0.1, 0.2, -0.3, 0.0, 2.0, -1.0, 0.1, 0.3]
SLSTM_R = [[0.2, -0.1, 0.3, 0.05, -0.2, 0.4, 0.1, -0.3],  # from h_0 to z0 z1 i0 i1 f0 f1 o0 o1
           [-0.3, 0.25, -0.15, 0.2, 0.1, -0.05, 0.3, 0.2]]  # from h_1


def slstm_by_hand(xs: list[float]) -> list[list[float]]:
    """c = f c + i z, n = f n + i, h = o c / n with i = exp(ĩ), f = σ(f̃), z = tanh(z̃), o = σ(õ); no stabiliser."""
    h, c, n, out = [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], []
    for x in xs:
        pre = [SLSTM_W[r] * x + SLSTM_B[r] + h[0] * SLSTM_R[0][r] + h[1] * SLSTM_R[1][r] for r in range(8)]
        z, i = [math.tanh(v) for v in pre[0:2]], [math.exp(v) for v in pre[2:4]]
        f, o = [sigmoid(v) for v in pre[4:6]], [sigmoid(v) for v in pre[6:8]]
        c = [f[j] * c[j] + i[j] * z[j] for j in range(2)]
        n = [f[j] * n[j] + i[j] for j in range(2)]
        h = [o[j] * c[j] / n[j] for j in range(2)]
        out.append(h)
    return out


def test_slstm_equals_a_hand_written_loop():
    cell = SLSTMStep(1, 2, heads=1).double()
    with torch.no_grad():
        cell.input.weight.copy_(torch.tensor(SLSTM_W, dtype=F64).view(8, 1))
        cell.input.bias.copy_(torch.tensor(SLSTM_B, dtype=F64))
        cell.recurrent.copy_(torch.tensor(SLSTM_R, dtype=F64).view(1, 2, 8))
    x = torch.tensor(XS, dtype=F64).view(-1, 1, 1)
    with torch.no_grad():
        y, _ = Unrolled(cell)(x)
    torch.testing.assert_close(y[:, 0], torch.tensor(slstm_by_hand(XS), dtype=F64), rtol=1e-12, atol=1e-14)


def test_slstm_recurrence_is_block_diagonal():
    """With two heads, unit 0's next pre-activations do not depend on head 1's units."""
    torch.manual_seed(0)
    cell = SLSTMStep(3, 4, heads=2).double()
    with torch.no_grad():
        cell.recurrent.normal_()
    h = torch.randn(1, 4, dtype=F64, requires_grad=True)
    state = (h, torch.randn(1, 4, dtype=F64), torch.rand(1, 4, dtype=F64) + 0.5, torch.zeros(1, 4, dtype=F64))
    out, _ = cell(torch.randn(1, 3, dtype=F64), state)
    (grad,) = torch.autograd.grad(out[0, 0], h)
    assert torch.count_nonzero(grad[0, 2:]) == 0 and torch.count_nonzero(grad[0, :2]) == 2


def test_slstm_initialisation_follows_the_reference_code():
    torch.manual_seed(0)
    cell = SLSTMStep(8, 32)
    assert cell.heads == 4 and torch.count_nonzero(cell.recurrent) == 0
    forget = cell.input.bias[64:96].view(4, 8)
    torch.testing.assert_close(forget[0, [0, -1]], torch.tensor([5.0, -7.0]))
    assert torch.equal(forget, powerlaw_forget_bias(8).repeat(4, 1))
