"""The NumPy tanh RNN: hand-written BPTT against finite differences and against torch.nn.RNN."""

import numpy as np
import pytest
import torch

from harness.cells import NumpyCell, build_cell
from harness.testing import numeric_gradient
from plugins.numpy_rnn import NumpyTanhRNN

F64 = torch.float64


def assert_close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-12)


# Lengths around the NumPy cell's time blocking (plugins.numpy_rnn.BLOCK = 32): one partial
# block, exactly one block, one step into the next, several blocks with a partial last one.
SEQ_LENS = [1, 7, 32, 33, 70]


@pytest.mark.parametrize("loss_on", ["every-step", "two-steps"])
@pytest.mark.parametrize("seq_len", SEQ_LENS)
def test_numpy_rnn_matches_torch_rnn_outputs_state_and_all_gradients(registry, seq_len, loss_on):
    """numpy-rnn through its autograd adapter equals torch.nn.RNN(tanh) with the same weights, gradients included.

    ``two-steps``: the loss sees steps 3 and T - 1 only, so at T=70 the blocks of 32 steps
    are [38, 70) with an output gradient, [6, 38) without one (the backward's shortcut
    for all-zero blocks) and [0, 6) with one again."""
    input_size, hidden_size, batch = 3, 5, 4
    torch.manual_seed(0)
    cell = build_cell(registry.cell("numpy-rnn"), input_size, hidden_size).double()
    assert isinstance(cell, NumpyCell)
    reference = torch.nn.RNN(input_size, hidden_size, nonlinearity="tanh").double()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        reference.weight_ih_l0.copy_(cell.W)
        reference.weight_hh_l0.copy_(cell.U)
        # b = bias_ih + bias_hh: split it unevenly so the mapping itself is tested.
        bias_ih = torch.randn(hidden_size, dtype=F64, generator=gen)
        reference.bias_ih_l0.copy_(bias_ih)
        reference.bias_hh_l0.copy_(cell.b - bias_ih)

    x = torch.randn(seq_len, batch, input_size, dtype=F64, generator=gen)
    h0 = 0.5 * torch.randn(batch, hidden_size, dtype=F64, generator=gen)
    weight_y = torch.randn(seq_len, batch, hidden_size, dtype=F64, generator=gen)
    weight_h = torch.randn(batch, hidden_size, dtype=F64, generator=gen)
    if loss_on == "two-steps":
        keep = torch.zeros(seq_len, 1, 1, dtype=F64)
        keep[[min(3, seq_len - 1), seq_len - 1]] = 1.0
        weight_y = weight_y * keep

    x_np, h0_np = x.clone().requires_grad_(), h0.clone().requires_grad_()
    y_np, h_np = cell(x_np, h0_np)
    ((y_np * weight_y).sum() + (h_np * weight_h).sum()).backward()

    x_t, h0_t = x.clone().requires_grad_(), h0.clone().requires_grad_()
    y_t, h_t = reference(x_t, h0_t.unsqueeze(0))
    ((y_t * weight_y).sum() + (h_t[0] * weight_h).sum()).backward()

    assert y_np.dtype == F64 and h_np.shape == (batch, hidden_size)
    assert_close(y_np, y_t)
    assert_close(h_np, h_t[0])
    assert_close(x_np.grad, x_t.grad)
    assert_close(h0_np.grad, h0_t.grad)
    assert_close(cell.W.grad, reference.weight_ih_l0.grad)
    assert_close(cell.U.grad, reference.weight_hh_l0.grad)
    assert_close(cell.b.grad, reference.bias_ih_l0.grad)
    assert_close(cell.b.grad, reference.bias_hh_l0.grad)
    assert cell.W.grad.abs().max() > 0 and h0_np.grad.abs().max() > 0


def _random_cell(rng, input_size, hidden_size):
    cell = NumpyTanhRNN(input_size, hidden_size)
    cell.params = {name: rng.normal(scale=0.6, size=value.shape) for name, value in cell.params.items()}
    return cell


@pytest.mark.parametrize("seq_len", [4, 70])
@pytest.mark.parametrize("with_state", [True, False], ids=["state", "no-state"])
def test_numpy_rnn_backward_matches_central_differences(with_state, seq_len):
    """NumpyTanhRNN.backward equals central finite differences for W, U, b, the input and the initial state."""
    rng = np.random.default_rng(0)
    batch, input_size, hidden_size = 2, 3, 3
    cell = _random_cell(rng, input_size, hidden_size)
    x = rng.normal(size=(seq_len, batch, input_size))
    h0 = rng.normal(scale=0.5, size=(batch, hidden_size)) if with_state else None
    weight_y = rng.normal(size=(seq_len, batch, hidden_size))
    weight_h = rng.normal(size=(batch, hidden_size)) if with_state else None

    def loss() -> float:
        y, h_last, _ = cell.forward(x, h0)
        total = float((y * weight_y).sum())
        return total + (float((h_last * weight_h).sum()) if with_state else 0.0)

    _, _, cache = cell.forward(x, h0)
    dx, dh0, grads = cell.backward(cache, weight_y, weight_h)

    arrays = {"x": (x, dx), **{n: (cell.params[n], grads[n]) for n in ("W", "U", "b")}}
    if with_state:
        arrays["h0"] = (h0, dh0)
    for name, (array, analytic) in arrays.items():
        assert analytic.shape == array.shape, name
        numeric = numeric_gradient(loss, array)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8, err_msg=f"gradient of {name}")


def test_numpy_rnn_rejects_non_positive_sizes():
    """The constructor rejects a zero size with a message that shows the value."""
    with pytest.raises(ValueError, match="greater than zero.*0"):
        NumpyTanhRNN(3, 0)


def test_in_place_op_on_outputs_cannot_corrupt_gradients(registry):
    """After y.add_(1) the gradients are either right (as torch.nn.RNN's are) or autograd raises; never silently wrong."""
    torch.manual_seed(0)
    cell = build_cell(registry.cell("numpy-rnn"), 3, 4).double()
    x = torch.randn(5, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    y, _ = cell(x, None)
    y.sum().backward()
    expected = cell.U.grad.clone()
    cell.zero_grad()
    y, _ = cell(x, None)
    y.add_(1.0)  # same loss gradient: d(sum(y + 1))/dU = d(sum(y))/dU
    try:
        y.sum().backward()
    except RuntimeError:
        return  # autograd refused: acceptable
    assert_close(cell.U.grad, expected)
