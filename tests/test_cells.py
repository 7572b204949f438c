"""Every registered cell honours the cell contract: state carries across pieces, the gradient probe is exact."""

import numpy as np
import pytest
import torch
from torch import nn

from harness.cells import SequenceModel, build_cell
from harness.contract import check_contract
from harness.errors import CellContractError
from harness.gradients import gradient_profile

F64 = torch.float64


def parts(state):
    """The tensors of a state, in order (test-side, independent of the harness helpers)."""
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for s in state for t in parts(s)]


def zeros_like_state(state):
    if isinstance(state, torch.Tensor):
        return torch.zeros_like(state)
    return tuple(zeros_like_state(s) for s in state)


def build(registry, cell_name, input_size, hidden_size, seed=0):
    torch.manual_seed(seed)
    return build_cell(registry.cell(cell_name), input_size, hidden_size).double()


def test_cell_passes_its_contract_check(registry, cell_name):
    """Every registered cell passes the harness's contract check at float32."""
    torch.manual_seed(0)
    cell = build_cell(registry.cell(cell_name), 4, 6)
    check_contract(cell, 4, 6, torch.device("cpu"), name=cell_name)


def test_running_in_pieces_equals_running_whole(registry, cell_name):
    """Splitting a sequence and carrying the state gives the whole run's outputs and final state."""
    cell = build(registry, cell_name, 4, 5)
    gen = torch.Generator().manual_seed(1)
    prefix = torch.randn(3, 3, 4, dtype=F64, generator=gen)
    x = torch.randn(9, 3, 4, dtype=F64, generator=gen)
    with torch.no_grad():
        _, start = cell(prefix, None)  # a nonzero initial state of the cell's own structure
        y_whole, s_whole = cell(x, start)
        pieces, state = [], start
        for lo, hi in [(0, 4), (4, 5), (5, 9)]:
            y, state = cell(x[lo:hi], state)
            pieces.append(y)
    assert y_whole.shape == (9, 3, 5)
    torch.testing.assert_close(torch.cat(pieces), y_whole, rtol=1e-10, atol=1e-12)
    for a, b in zip(parts(state), parts(s_whole), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert max(float(t.abs().max()) for t in parts(start)) > 0


def test_a_later_call_leaves_earlier_outputs_untouched(registry, cell_name):
    """Outputs and states a caller still holds are not overwritten by the cell's next call (buffers are not shared)."""
    cell = build(registry, cell_name, 4, 5)
    gen = torch.Generator().manual_seed(2)
    x1, x2 = torch.randn(6, 3, 4, dtype=F64, generator=gen), torch.randn(6, 3, 4, dtype=F64, generator=gen)
    with torch.no_grad():
        y1, s1 = cell(x1, None)
        y1_copy, s1_copy = y1.clone(), [t.clone() for t in parts(s1)]
        cell(x2, None)
        cell(x2, s1)
    torch.testing.assert_close(y1, y1_copy, rtol=0, atol=0)
    for held, copy in zip(parts(s1), s1_copy, strict=True):
        torch.testing.assert_close(held, copy, rtol=0, atol=0)


def _leaves_like(state, values):
    """``values``' tensors as fresh leaves that require grad, in ``state``'s nesting (test-side)."""
    if isinstance(state, torch.Tensor):
        return values.detach().clone().requires_grad_()
    return tuple(_leaves_like(s, v) for s, v in zip(state, values))


def step_unrolled_norms(model, task, x, target) -> list[float]:
    """||dL/ds_t|| for t = 0..L-1 by plain autograd: the partial derivative with respect to the state
    carried into step t. For each t, s_t (the prefix x[:t] run one step at a time, without gradients)
    becomes a fresh leaf and x[t:] runs from it. (A gradient with respect to s_t as a node of one
    long graph would also count paths between the state's own parts within a step — sLSTM's h_t is
    computed from its c_t — which the state already holds.)"""
    _, probe_state = model.cell(x[:1], None)
    values = zeros_like_state(probe_state)
    norms = []
    for t in range(x.shape[0]):
        start = _leaves_like(probe_state, values)
        y, _ = model.cell(x[t:], start)
        loss = task.last_step_loss(model.readout(y[-1]), target)
        grads = torch.autograd.grad(loss, parts(start), allow_unused=True)
        norms.append(float(sum((g**2).sum() for g in grads if g is not None)) ** 0.5)
        with torch.no_grad():
            _, values = model.cell(x[t : t + 1], values)
    return norms


@pytest.mark.parametrize("sparse", [False, True], ids=["every-step", "sparse-probes"])
def test_gradient_probe_equals_step_unrolled_autograd(registry, cell_name, task_name, sparse):
    """gradient_profile's per-step norms equal autograd on a step-by-step run, with every step or a few probed."""
    factory = registry.task(task_name).factory
    task = factory(max(4, getattr(factory, "min_seq_len", 1)))  # the shortest T the task allows, from 4
    model = SequenceModel(build(registry, cell_name, task.input_size, 6), 6, task.output_size).double()
    x, target = task.sample(5, np.random.default_rng(0)).to(torch.device("cpu"), F64)
    # Jitter the inputs: the probe must equal autograd for any input, and a task's exact
    # zeros (the blank last pixel of a digit) would make some cells' last output exactly 0
    # (a Mamba block's gate projection has no bias), leaving nothing to compare.
    x = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    length = task.length
    expected = step_unrolled_norms(model, task, x, target)  # indexed by state step t
    probes = sorted({0, 1, length // 2, length - 2, length - 1}) if sparse else list(range(length))

    profile = gradient_profile(model, task, x, target, probes)

    assert profile.distances == tuple(sorted(length - t for t in probes))
    np.testing.assert_allclose(profile.norms, [expected[length - d] for d in profile.distances], rtol=1e-7, atol=1e-14)
    assert profile.norms[0] > 0


class NanOutputs(nn.Module):
    """A sequence cell whose outputs are all NaN (e.g. an overflow in its first layer)."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size)

    def forward(self, x, state=None):
        y, h = self.rnn(x, state)
        return y * float("nan"), h


def test_contract_check_reports_wrong_output_shape():
    """A cell with the wrong output size is rejected with expected and actual shapes."""
    with pytest.raises(CellContractError, match=r"\(3, 2, 5\).*\(3, 2, 4\)"):
        check_contract(nn.RNN(3, 5), 3, 4, torch.device("cpu"), name="wrong")


def test_contract_check_names_non_finite_outputs():
    """A cell whose outputs are NaN is told its outputs are not finite, not that its zero state is wrong."""
    with pytest.raises(CellContractError, match=r"(?i)\bnan\b|finite"):
        check_contract(NanOutputs(3, 4), 3, 4, torch.device("cpu"), name="mycell")
