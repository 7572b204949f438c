"""The built-in cells beyond RNN/LSTM/GRU: NumPy LSTM and GRU against torch, IndRNN's bound,
expRNN's orthogonality, minGRU's equations."""

import numpy as np
import pytest
import torch

from harness.cells import NumpyCell, build_cell
from harness.testing import numeric_gradient
from plugins.exprnn import SkewExponential
from plugins.indrnn import IndRNN
from plugins.numpy_gru import NumpyGRU
from plugins.numpy_lstm import NumpyLSTM

F64 = torch.float64
INPUT, HIDDEN, SEQ_LEN, BATCH = 3, 5, 7, 4


def assert_close(actual, expected, name):
    """Within 1e-6 relative (of the largest entry), in float64."""
    scale = float(expected.detach().abs().max())
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6 * scale + 1e-15, msg=lambda m: f"{name}: {m}")


def random_data(gen, state_parts: int):
    """Input, an initial state of ``state_parts`` (B, H) tensors, and random loss weights for y and the final state."""
    x = torch.randn(SEQ_LEN, BATCH, INPUT, dtype=F64, generator=gen)
    state = [0.5 * torch.randn(BATCH, HIDDEN, dtype=F64, generator=gen) for _ in range(state_parts)]
    weight_y = torch.randn(SEQ_LEN, BATCH, HIDDEN, dtype=F64, generator=gen)
    weight_state = [torch.randn(BATCH, HIDDEN, dtype=F64, generator=gen) for _ in range(state_parts)]
    return x, state, weight_y, weight_state


def leaves(*tensors):
    return [t.clone().requires_grad_() for t in tensors]


@pytest.mark.parametrize("with_state", [True, False], ids=["state", "no-state"])
def test_numpy_lstm_matches_torch_lstm_outputs_state_and_all_gradients(registry, with_state):
    """numpy-lstm through its adapter equals torch.nn.LSTM with copied weights: y, (h, c) and every gradient."""
    torch.manual_seed(0)
    cell = build_cell(registry.cell("numpy-lstm"), INPUT, HIDDEN).double()
    assert isinstance(cell, NumpyCell)
    reference = torch.nn.LSTM(INPUT, HIDDEN).double()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        reference.weight_ih_l0.copy_(cell.W)
        reference.weight_hh_l0.copy_(cell.U)
        bias_ih = torch.randn(4 * HIDDEN, dtype=F64, generator=gen)  # b = bias_ih + bias_hh, split unevenly
        reference.bias_ih_l0.copy_(bias_ih)
        reference.bias_hh_l0.copy_(cell.b - bias_ih)
    x, state, weight_y, (weight_h, weight_c) = random_data(gen, 2)

    x_np, *state_np = leaves(x, *state)
    y_np, (h_np, c_np) = cell(x_np, tuple(state_np) if with_state else None)
    ((y_np * weight_y).sum() + (h_np * weight_h).sum() + (c_np * weight_c).sum()).backward()

    x_t, *state_t = leaves(x, *state)
    y_t, (h_t, c_t) = reference(x_t, tuple(s.unsqueeze(0) for s in state_t) if with_state else None)
    ((y_t * weight_y).sum() + (h_t[0] * weight_h).sum() + (c_t[0] * weight_c).sum()).backward()

    assert y_np.dtype == F64 and h_np.shape == c_np.shape == (BATCH, HIDDEN)
    assert_close(y_np, y_t, "y")
    assert_close(h_np, h_t[0], "h_T")
    assert_close(c_np, c_t[0], "c_T")
    assert_close(x_np.grad, x_t.grad, "dx")
    if with_state:
        assert_close(state_np[0].grad, state_t[0].grad, "dh_0")
        assert_close(state_np[1].grad, state_t[1].grad, "dc_0")
    assert_close(cell.W.grad, reference.weight_ih_l0.grad, "dW")
    assert_close(cell.U.grad, reference.weight_hh_l0.grad, "dU")
    assert_close(cell.b.grad, reference.bias_ih_l0.grad, "db")
    assert_close(cell.b.grad, reference.bias_hh_l0.grad, "db")


@pytest.mark.parametrize("with_state", [True, False], ids=["state", "no-state"])
def test_numpy_gru_matches_torch_gru_outputs_state_and_all_gradients(registry, with_state):
    """numpy-gru through its adapter equals torch.nn.GRU with copied weights: y, h and every gradient."""
    torch.manual_seed(0)
    cell = build_cell(registry.cell("numpy-gru"), INPUT, HIDDEN).double()
    reference = torch.nn.GRU(INPUT, HIDDEN).double()
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        reference.weight_ih_l0.copy_(cell.W)
        reference.weight_hh_l0.copy_(cell.U)
        bias_hh = torch.randn(3 * HIDDEN, dtype=F64, generator=gen)
        bias_hh[2 * HIDDEN :] = cell.b_hn  # inside the reset gate: its own parameter
        reference.bias_hh_l0.copy_(bias_hh)
        bias_ih = cell.b.clone()
        bias_ih[: 2 * HIDDEN] -= bias_hh[: 2 * HIDDEN]  # r and z: b = bias_ih + bias_hh
        reference.bias_ih_l0.copy_(bias_ih)
    x, state, weight_y, (weight_h,) = random_data(gen, 1)

    x_np, *state_np = leaves(x, *state)
    y_np, h_np = cell(x_np, state_np[0] if with_state else None)
    ((y_np * weight_y).sum() + (h_np * weight_h).sum()).backward()

    x_t, *state_t = leaves(x, *state)
    y_t, h_t = reference(x_t, state_t[0].unsqueeze(0) if with_state else None)
    ((y_t * weight_y).sum() + (h_t[0] * weight_h).sum()).backward()

    assert_close(y_np, y_t, "y")
    assert_close(h_np, h_t[0], "h_T")
    assert_close(x_np.grad, x_t.grad, "dx")
    if with_state:
        assert_close(state_np[0].grad, state_t[0].grad, "dh_0")
    assert_close(cell.W.grad, reference.weight_ih_l0.grad, "dW")
    assert_close(cell.U.grad, reference.weight_hh_l0.grad, "dU")
    assert_close(cell.b.grad[: 2 * HIDDEN], reference.bias_hh_l0.grad[: 2 * HIDDEN], "db (r, z)")
    assert_close(cell.b.grad, reference.bias_ih_l0.grad, "db")
    assert_close(cell.b_hn.grad, reference.bias_hh_l0.grad[2 * HIDDEN :], "db_hn")


@pytest.mark.parametrize("cell_class,state_parts", [(NumpyLSTM, 2), (NumpyGRU, 1)], ids=["numpy-lstm", "numpy-gru"])
def test_numpy_backward_matches_central_differences_at_every_entry(cell_class, state_parts):
    """Every entry of every gradient (parameters, input, each initial-state tensor) equals central differences."""
    rng = np.random.default_rng(0)
    seq_len, batch, input_size, hidden = 4, 2, 2, 3
    cell = cell_class(input_size, hidden)
    cell.params = {name: rng.normal(scale=0.6, size=value.shape) for name, value in cell.params.items()}
    x = rng.normal(size=(seq_len, batch, input_size))
    parts = [rng.normal(scale=0.5, size=(batch, hidden)) for _ in range(state_parts)]
    state0 = tuple(parts) if state_parts > 1 else parts[0]
    weight_y = rng.normal(size=(seq_len, batch, hidden))
    weight_parts = [rng.normal(size=(batch, hidden)) for _ in range(state_parts)]
    weight_state = tuple(weight_parts) if state_parts > 1 else weight_parts[0]

    def loss() -> float:
        y, state, _ = cell.forward(x, state0)
        state = state if isinstance(state, tuple) else (state,)
        return float((y * weight_y).sum()) + sum(float((s * w).sum()) for s, w in zip(state, weight_parts))

    _, _, cache = cell.forward(x, state0)
    dx, dstate0, grads = cell.backward(cache, weight_y, weight_state)
    dstate0 = dstate0 if isinstance(dstate0, tuple) else (dstate0,)
    checked = {"x": (x, dx), **{name: (cell.params[name], grads[name]) for name in cell.params}}
    checked.update({f"state0[{i}]": (p, d) for i, (p, d) in enumerate(zip(parts, dstate0))})
    for name, (array, analytic) in checked.items():
        assert analytic.shape == array.shape, name
        np.testing.assert_allclose(analytic, numeric_gradient(loss, array), rtol=1e-6, atol=1e-8, err_msg=f"gradient of {name}")


def test_numpy_cells_skip_dx_when_nobody_needs_it():
    """With needs_input_grad false (set by the adapter) backward returns dx=None; the other gradients are unchanged."""
    for cell_class in (NumpyLSTM, NumpyGRU):
        torch.manual_seed(0)
        cell = cell_class(3, 4)
        x = np.random.default_rng(0).normal(size=(5, 2, 3)).astype(np.float32)
        y, state, cache = cell.forward(x, None)
        dstate = tuple(np.zeros_like(s) for s in state) if isinstance(state, tuple) else np.zeros_like(state)
        _, _, full = cell.backward(cache, np.ones_like(y), dstate)
        cell.needs_input_grad = False
        dx, _, grads = cell.backward(cache, np.ones_like(y), dstate)
        assert dx is None
        for name in full:
            np.testing.assert_array_equal(grads[name], full[name])


@pytest.mark.parametrize("cell_class", [NumpyLSTM, NumpyGRU, IndRNN])
def test_constructors_reject_non_positive_sizes(cell_class):
    """A zero size is rejected with a message that shows the value."""
    with pytest.raises(ValueError, match="greater than zero.*0"):
        cell_class(3, 0)


def test_indrnn_recurrent_weight_is_bounded_by_two_to_the_one_over_t_max():
    """u = u_max tanh(v) keeps |u| < 2^(1/max_seq_len) for any v, and the cell computes relu(W x + b + u h)."""
    torch.manual_seed(0)
    cell = IndRNN(3, 4, max_seq_len=100).double()
    assert cell.u_max == pytest.approx(2 ** (1 / 100))
    with torch.no_grad():
        cell.v.copy_(torch.tensor([-50.0, -0.3, 0.3, 50.0]))
    u = cell.u.detach()
    assert float(u.abs().max()) <= cell.u_max
    assert float(u.abs().max()) == pytest.approx(cell.u_max)
    x = torch.randn(6, 2, 3, dtype=F64)
    h0 = torch.rand(2, 4, dtype=F64)
    y, h_last = cell(x, h0)
    h = h0
    for t in range(6):
        h = torch.relu(x[t] @ cell.input.weight.T + cell.input.bias + u * h)
        torch.testing.assert_close(y[t], h)
    torch.testing.assert_close(h_last, h)


def test_indrnn_initial_recurrent_weights_lie_in_zero_one():
    """Li et al.'s initialisation u ~ U(0, 1), inside the bound; the default bound is 2^(1/1000)."""
    torch.manual_seed(0)
    cell = IndRNN(2, 256)
    assert cell.u_max == pytest.approx(2 ** (1 / 1000))
    u = cell.u.detach()
    assert float(u.min()) >= 0.0 and float(u.max()) <= 1.0 + 1e-6
    assert 0.4 < float(u.mean()) < 0.6


def test_exprnn_recurrent_matrix_is_orthogonal_before_and_after_training(registry):
    """U = exp(A - Aᵀ) is orthogonal at init (2x2 rotations, Henaff et al.) and stays so after Adam steps."""
    torch.manual_seed(0)
    rnn = build_cell(registry.cell("exprnn"), 3, 6).double()
    eye = torch.eye(6, dtype=F64)
    U = rnn.weight_hh_l0.detach()
    torch.testing.assert_close(U @ U.T, eye)
    off_block = U.clone()
    for k in range(3):
        off_block[2 * k : 2 * k + 2, 2 * k : 2 * k + 2] = 0
    assert float(off_block.abs().max()) < 1e-12  # block diagonal: rotations of unit pairs
    optimizer = torch.optim.Adam(rnn.parameters(), lr=0.1)
    for _ in range(5):
        y, _ = rnn(torch.randn(5, 2, 3, dtype=F64))
        optimizer.zero_grad()
        (y**2).sum().backward()
        optimizer.step()
    trained = rnn.weight_hh_l0.detach()
    assert float((trained - U).abs().max()) > 1e-3  # training moved it...
    torch.testing.assert_close(trained @ trained.T, eye)  # ...within the orthogonal group
    assert rnn.parametrizations.weight_hh_l0.original.grad is not None


def test_exprnn_computes_a_tanh_rnn_with_the_orthogonal_matrix(registry):
    """The fused nn.RNN sees the parametrised U: outputs equal a plain nn.RNN holding exp(A - Aᵀ)."""
    torch.manual_seed(0)
    rnn = build_cell(registry.cell("exprnn"), 3, 4).double()
    with torch.no_grad():
        rnn.parametrizations.weight_hh_l0.original.add_(torch.randn(4, 4, dtype=F64))  # not just the init
    plain = torch.nn.RNN(3, 4).double()
    with torch.no_grad():
        for name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(plain, name).copy_(getattr(rnn, name))
        plain.weight_hh_l0.copy_(SkewExponential()(rnn.parametrizations.weight_hh_l0.original))
    x = torch.randn(5, 2, 3, dtype=F64)
    torch.testing.assert_close(rnn(x)[0], plain(x)[0])


def test_mingru_follows_its_equations(registry):
    """h_t = (1 - z_t) h_{t-1} + z_t h̃_t with z and h̃ from the input alone."""
    torch.manual_seed(0)
    cell = build_cell(registry.cell("mingru"), 3, 4).double()
    x = torch.randn(5, 2, 3, dtype=F64)
    with torch.no_grad():
        y, _ = cell(x, None)
    weight, bias = cell.linear.weight.detach(), cell.linear.bias.detach()
    h = torch.zeros(2, 4, dtype=F64)
    for t in range(5):
        z = torch.sigmoid(x[t] @ weight[:4].T + bias[:4])
        candidate = x[t] @ weight[4:].T + bias[4:]
        h = (1 - z) * h + z * candidate
        torch.testing.assert_close(y[t], h)
