"""`--layers N`: every cell stacked, pre-norm and residual; the stack keeps the cell contract, so the
pieces check, the gradient probe and a run work on it unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from harness.cells import build_impl, flatten_state, map_state
from harness.checks import check_gradients, check_pieces, check_shapes, check_zero_state
from harness.cells import SequenceModel
from harness.gradients import gradient_profile
from harness.runner import build_model_cell
from harness.sizing import param_count
from harness.stacking import Stacked
from harness.testing import make_spec

F64 = torch.float64


def stacked_spec(registry, cell_name, layers=2):
    spec = registry.cell(cell_name)
    impl = spec.default_impl("cpu")
    return make_spec(f"{cell_name}-x{layers}", lambda i, h: build_model_cell(spec, impl, i, h, layers))


def test_two_layers_keep_the_cell_contract(registry, cell_name):
    """shapes, None = zeros, pieces == whole (float64, state carried) and finite gradients, on the 2-layer stack."""
    spec = stacked_spec(registry, cell_name)
    for check in (check_shapes, check_zero_state, check_pieces, check_gradients):
        check(spec)  # raises CellContractError with the reason


def test_the_stacked_state_is_the_tuple_of_the_layers_states(registry, cell_name):
    torch.manual_seed(0)
    stacked = build_model_cell(registry.cell(cell_name), registry.cell(cell_name).default_impl("cpu"), 3, 5, 3)
    torch.manual_seed(0)
    alone = build_impl(registry.cell(cell_name), registry.cell(cell_name).default_impl("cpu"), 3, 5)
    x = torch.randn(4, 2, 3)
    with torch.no_grad():
        y, state = stacked(x, None)
        y_alone, state_alone = alone(x, None)
    assert isinstance(state, tuple) and len(state) == 3
    for layer_state in state:  # every layer's state has the single cell's structure
        assert [t.shape for t in flatten_state(layer_state)] == [t.shape for t in flatten_state(state_alone)]
    assert y.shape == y_alone.shape == (4, 2, 5)


def _norms_by_autograd(model, task, x, target) -> list[float]:
    """||dL/ds_t|| for every t by plain autograd: the prefix x[:t] run without grad, then s_t as a leaf."""
    norms = []
    for t in range(x.shape[0]):
        with torch.no_grad():
            _, state = model.cell(x[:t], None) if t else model.cell(x[:1], None)
        state = map_state(lambda s: (s if t else torch.zeros_like(s)).detach().requires_grad_(), state)
        y, _ = model.cell(x[t:], state)
        loss = task.last_step_loss(model.readout(y[-1]), target)
        grads = torch.autograd.grad(loss, list(flatten_state(state)), allow_unused=True)
        norms.append(float(sum((g**2).sum() for g in grads if g is not None)) ** 0.5)
    return norms


def test_two_layer_gradient_probe_equals_autograd(registry, cell_name):
    task = registry.task("adding").factory(6)
    spec = stacked_spec(registry, cell_name)
    torch.manual_seed(0)
    model = SequenceModel(spec.factory(task.input_size, 6), 6, task.output_size).double()
    x, target = task.sample(3, np.random.default_rng(0)).to(torch.device("cpu"), F64)
    x = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    expected = _norms_by_autograd(model, task, x, target)
    profile = gradient_profile(model, task, x, target, list(range(task.length)))
    np.testing.assert_allclose(profile.norms, [expected[task.length - d] for d in profile.distances], rtol=1e-7, atol=1e-14)
    assert profile.norms[0] > 0


def test_one_layer_is_the_cell_itself(registry):
    spec = registry.cell("lstm")
    torch.manual_seed(0)
    assert isinstance(build_model_cell(spec, "fused", 3, 5, 1), nn.LSTM)


class Doubler(nn.Module):
    """y_t = 2 x_t (a 'cell' with a known output), state: the running count of steps."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.w = nn.Parameter(torch.full((1,), 2.0))

    def forward(self, x, state=None):
        count = x.new_zeros(x.shape[1], 1) if state is None else state
        return self.w * x, count + x.shape[0]


def test_the_stack_is_pre_norm_residual_by_hand():
    """y = y1 + cell2(LayerNorm(y1)) with y1 = cell1(x): by hand for a doubling cell."""
    stack = Stacked([Doubler(4, 4), Doubler(4, 4)], 4)
    x = torch.tensor([[[1.0, 2.0, 3.0, 6.0]]])  # (T=1, B=1, 4)
    y, (s1, s2) = stack(x, None)
    y1 = 2 * x
    normed = (y1 - y1.mean()) / torch.sqrt(y1.var(unbiased=False) + 1e-5)
    torch.testing.assert_close(y, y1 + 2 * normed)
    assert float(s1) == float(s2) == 1.0
    y, (s1, s2) = stack(x, (s1, s2))
    assert float(s1) == float(s2) == 2.0


def test_param_count_counts_every_layer_and_norm(registry):
    for name in ("lstm", "mamba", "numpy-rnn"):
        torch.manual_seed(0)
        built = build_model_cell(registry.cell(name), registry.cell(name).default_impl("cpu"), 3, 8, 3)
        assert param_count(registry.cell(name), 3, 8, layers=3) == sum(p.numel() for p in built.parameters())
    # lstm: 4H(I + H + 2) at (3, 8), then twice 4H(2H + 2) and a LayerNorm (2H)
    assert param_count(registry.cell("lstm"), 3, 8, layers=3) == 4 * 8 * 13 + 2 * (4 * 8 * 18 + 16)


def test_a_short_run_with_two_layers_on_every_cell(rnnbench, tmp_path):
    from harness.store import ResultStore

    db = tmp_path / "r.sqlite"
    result = rnnbench("run", "--cells", "all", "--layers", "2", "--measure", "accuracy,gradients", "--profile", "smoke",
                      "--steps", "3", "--device", "cpu", "--tasks", "adding", "--db", db, "--out", tmp_path / "out")
    assert result.code == 0, result.err
    with ResultStore(db) as store:
        run_id = store.resolve_run("latest")
        config, rows = store.run(run_id).config, store.rows(run_id)
    assert config.layers == 2
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows if r["status"] != "ok"][:3]
    assert {r["cell"] for r in rows} == set(config.cells) and len(config.cells) >= 14


def test_bad_layer_counts_are_one_line_and_exit_2(rnnbench, tmp_path):
    for value in ("0", "1000"):
        result = rnnbench("run", "--layers", value, "--cells", "lstm", "--db", tmp_path / "r.sqlite")
        assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and "--layers" in result.err, result.err


# --- the preflight memory estimate counts the layers ----------------------------------------------


def test_the_memory_estimate_grows_by_each_inner_layers_weights_and_kept_input():
    """Each layer after the first adds a cell at (H, H) with a layer norm, P += H(2H + 1) + 2H, and keeps
    its H-wide input for the backward pass, B T H (float32). By hand at B=8, T=100, I=3, H=10, E=50:
    P += 10·21 + 20 = 230, so speed (2P + B T ·) grows by 4·(460 + 8000) and training
    (4P + B L · + E L (I + H)) by 4·(920 + 8000); a third layer adds as much again."""
    from harness.preflight import cell_params, speed_item_bytes, train_item_bytes

    assert cell_params(3, 10, layers=2) - cell_params(3, 10) == 230
    speed = [speed_item_bytes(8, 100, 3, 10, layers=n) for n in (1, 2, 3)]
    assert speed[0] == 4 * (2 * 10 * 14 + 8 * 100 * 23)
    assert speed[1] - speed[0] == speed[2] - speed[1] == 4 * (460 + 8000) == 33_840
    train = [train_item_bytes(8, 50, 100, 3, 10, layers=n) for n in (1, 2, 3)]
    assert train[1] - train[0] == train[2] - train[1] == 4 * (920 + 8000) == 35_680
    # with a parameter budget the stack's parameters are the budget: only the kept inputs grow (H = 1)
    assert speed_item_bytes(8, 100, 3, 1, params=500, layers=2) - speed_item_bytes(8, 100, 3, 1, params=500) == 4 * 800


def test_the_estimate_stays_below_what_a_stacked_lstm_has(registry):
    """A lower bound: an LSTM stack has more parameters than the estimate counts, at every depth."""
    from harness.preflight import cell_params

    for layers in (1, 2, 4):
        assert cell_params(3, 10, layers) < param_count(registry.cell("lstm"), 3, 10, layers=layers)


def test_a_run_that_fits_in_one_layer_is_refused_at_two(rnnbench, tmp_path, monkeypatch, run_config):
    """With the machine's memory set to exactly the one-layer speed item's need, one layer passes the
    check and two are refused in one line that names the layers."""
    import harness.preflight as preflight

    config = run_config(measures=("speed",), tasks=())
    sizes = (max(config.speed_batch_sizes), max(config.speed_seq_lens), config.speed_input_size, max(config.speed_hidden_sizes))
    one_layer = preflight.speed_item_bytes(*sizes)
    monkeypatch.setattr(preflight, "machine_memory_bytes", lambda device: one_layer)
    (need,) = preflight.largest_items(config, {})
    assert need.need_bytes == one_layer and ", 2 layers" not in need.what
    preflight.check_memory(config, {}, allow_large=False)  # fits: not refused
    (stacked,) = preflight.largest_items(run_config(measures=("speed",), tasks=(), layers=2), {})
    assert stacked.need_bytes == preflight.speed_item_bytes(*sizes, layers=2) > one_layer
    db = tmp_path / "r.sqlite"
    result = rnnbench("run", "--cells", "lstm", "--measure", "speed", "--profile", "smoke", "--device", "cpu",
                      "--layers", "2", "--db", db)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert f"H={sizes[3]}, 2 layers needs at least" in result.err and "--ignore-memory-estimate" in result.err
    assert not db.exists()
