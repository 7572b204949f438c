"""The fused scan forms of mingru, minlstm and lru across block boundaries, and their edge cases.

``tests/test_modern_cells.py`` compares every scan form with its step form at sizes where the
whole sequence is one block; here the block is forced down to a few steps (with a ragged last
block) so that the state carried between blocks forward and the adjoint carried back are
checked too, in float64 with a tight tolerance, with gradients of every parameter, the input
and the initial state.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

import plugins.gated_scan as gated_scan
import plugins.lru_scan as lru_scan
from plugins.minlstm import MinLSTM, MinLSTMStep
from harness.cells import Unrolled
from test_modern_cells import SCAN_CELLS, _forms, _state_like, assert_forms_agree


@pytest.mark.parametrize("name", SCAN_CELLS)
@pytest.mark.parametrize("elements", [1, 2 * 5 * 7])  # 16 steps per block (the floor), and 7
def test_scan_equals_step_across_blocks_float64(name, elements, monkeypatch):
    monkeypatch.setattr(gated_scan, "CPU_BLOCK_ELEMENTS", elements)
    scan, step = _forms(name, 3, 5)
    scan, step = scan.double(), step.double()
    x = torch.randn(53, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    assert_forms_agree(scan, step, x, _state_like(scan, x, 7), rtol=1e-11)


@pytest.mark.parametrize("sequential", [("cpu",), ()], ids=["loop", "chunked"])
@pytest.mark.parametrize("keep_bytes", [2**30, 0], ids=["kept", "recomputed"])
@pytest.mark.parametrize("elements", [2 * 5 * 7, 10**6])  # 16-step blocks (ragged last), one block
def test_lru_backward_with_states_kept_or_recomputed(keep_bytes, elements, sequential, monkeypatch):
    """The LRU's backward reads the states the forward kept, or (above KEEP_BYTES) recomputes them
    block by block from each block's start state: both agree with the step form, and each takes the
    path it says (the drive and states are computed once per block, or twice). Each block's
    recurrence and adjoint as the CPU runs them (a loop) and as other devices do (the chunked scan)."""
    monkeypatch.setattr(lru_scan, "KEEP_BYTES", keep_bytes)
    monkeypatch.setattr(lru_scan, "SEQUENTIAL_DEVICES", sequential)
    monkeypatch.setattr(gated_scan, "CPU_BLOCK_ELEMENTS", elements)
    calls = []
    original = lru_scan._BlockStates.__call__
    monkeypatch.setattr(lru_scan._BlockStates, "__call__", lambda self, *a: calls.append(1) or original(self, *a))
    scan, step = _forms("lru", 3, 5)
    scan, step = scan.double(), step.double()
    x = torch.randn(53, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    state = _state_like(scan, x, 7)
    calls.clear()
    assert_forms_agree(scan, step, x, state, rtol=1e-11)
    blocks = -(-53 // gated_scan.default_block_len(x, 2 * 5))
    assert len(calls) == blocks * (1 if keep_bytes else 2)


def _spy_on_state_buffers(monkeypatch):
    """Weak references to every tensor the LRU's blocks write states into (the reused buffer, and
    a kept block's own tensor), and the list of ``out`` arguments (None: the reused buffer)."""
    buffers, outs = [], []
    init, call = lru_scan._BlockStates.__init__, lru_scan._BlockStates.__call__

    def spy_init(self, decay, input_weight, drive_real, states, batch):
        buffers.append(weakref.ref(states))
        init(self, decay, input_weight, drive_real, states, batch)

    def spy_call(self, x_rows, start, steps, out=None):
        outs.append(out is not None)
        if out is not None:
            buffers.append(weakref.ref(out))
        return call(self, x_rows, start, steps, out)

    monkeypatch.setattr(lru_scan._BlockStates, "__init__", spy_init)
    monkeypatch.setattr(lru_scan._BlockStates, "__call__", spy_call)
    return buffers, outs


@pytest.mark.parametrize(("sequential", "elements"), [(("cpu",), 2 * 5 * 7), ((), 10**6)],
                         ids=["loop-blocks", "chunked-one-block"])
def test_lru_kept_states_are_freed_by_the_backward(sequential, elements, monkeypatch):
    """The states the forward keeps are freed once the backward has run, as autograd frees what a
    Function saves, though the outputs live on (a training loop holds the last step's loss and
    logits into the next step's forward, which would otherwise hold two sequences' states)."""
    monkeypatch.setattr(lru_scan, "SEQUENTIAL_DEVICES", sequential)
    monkeypatch.setattr(gated_scan, "CPU_BLOCK_ELEMENTS", elements)
    scan, _ = _forms("lru", 3, 5)
    x = torch.randn(53, 2, 3)
    buffers, _ = _spy_on_state_buffers(monkeypatch)
    y, final = scan(x, None)
    (y.sum() + final.sum()).backward()
    gc.collect()
    assert buffers and all(ref() is None for ref in buffers), "states still held after the backward"
    assert y.grad_fn is not None and final.shape == (2, 5, 2)  # the outputs (and their graph) are alive


def test_lru_forward_without_gradient_keeps_no_states(monkeypatch):
    """Without a backward to come (``torch.no_grad``, or nothing requiring a gradient) the forward
    writes every block's states into the one reused buffer instead of keeping a (T, B, N) copy."""
    monkeypatch.setattr(gated_scan, "CPU_BLOCK_ELEMENTS", 2 * 5 * 7)
    scan, _ = _forms("lru", 3, 5)
    x = torch.randn(53, 2, 3)
    _, outs = _spy_on_state_buffers(monkeypatch)
    with torch.no_grad():
        scan(x, None)
    scan.requires_grad_(False)
    scan(x, None)
    assert len(outs) == 2 * 4 and not any(outs)
    scan.requires_grad_(True)
    scan(x, None)
    assert all(outs[8:]), "with a gradient to come, each block's states are kept"


@pytest.mark.parametrize("operand", ["x", "state"])
def test_lru_keeps_states_for_a_gradient_through_the_input_or_state_alone(operand, monkeypatch):
    """A frozen LRU trained through its input, or a gradient through the carried state alone, is a
    backward to come: each block's states are kept, and the gradient reaches that operand."""
    monkeypatch.setattr(gated_scan, "CPU_BLOCK_ELEMENTS", 2 * 5 * 7)
    scan, _ = _forms("lru", 3, 5)
    scan.requires_grad_(False)
    x = torch.randn(53, 2, 3)
    inputs = {"x": x, "state": _state_like(scan, x, 7)}
    inputs[operand].requires_grad_()
    _, outs = _spy_on_state_buffers(monkeypatch)
    y, final = scan(inputs["x"], inputs["state"])
    assert len(outs) == 4 and all(outs), "with a gradient to come, each block's states are kept"
    (y.sum() + final.sum()).backward()
    assert inputs[operand].grad is not None and inputs[operand].grad.abs().sum() > 0


@pytest.mark.parametrize("keep_bytes", [2**30, 0], ids=["kept", "recomputed"])
@pytest.mark.parametrize("sequential", [("cpu",), ()], ids=["loop", "chunked"])
def test_lru_backward_twice_with_retained_graph(keep_bytes, sequential, monkeypatch):
    """A second backward through a retained graph reads the same kept (or recomputed) states."""
    monkeypatch.setattr(lru_scan, "KEEP_BYTES", keep_bytes)
    monkeypatch.setattr(lru_scan, "SEQUENTIAL_DEVICES", sequential)
    monkeypatch.setattr(gated_scan, "CPU_BLOCK_ELEMENTS", 2 * 5 * 7)
    scan, _ = _forms("lru", 3, 5)
    scan = scan.double()
    y, final = scan(torch.randn(53, 2, 3, dtype=torch.float64), None)
    loss = y.square().sum() + final.square().sum()
    first = torch.autograd.grad(loss, list(scan.parameters()), retain_graph=True)
    second = torch.autograd.grad(loss, list(scan.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_block_length_floor():
    x = torch.zeros(100, 8, 3)
    assert gated_scan.default_block_len(x, 8 * 256) == max(16, gated_scan.CPU_BLOCK_ELEMENTS // 2048)
    assert gated_scan.default_block_len(x, 10**9) == 16


def test_minlstm_where_both_gates_underflow():
    """f / (f + i) is 0/0 there; the block falls back to the log form and matches the step form."""
    torch.manual_seed(0)
    cell = MinLSTM(3, 4).double()
    with torch.no_grad():
        cell.linear.bias[:8] -= 800.0  # σ underflows to 0 in float64 for both gates
    x = torch.randn(20, 2, 3, dtype=torch.float64)
    y, _ = cell(x)
    want, _ = Unrolled(MinLSTMStep(cell))(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, want)


def _lru_by_hand(x, decay, input_weight, readout_weight, skip_weight, h0):
    """The LRU's recurrence and readout as a plain autograd loop, for :func:`plugins.lru_scan.lru_scan`'s
    own arguments: ``h_t = λ h_{t-1} + W_in x_t`` (real rows (Re, Im) interleaved), ``y_t = W_out [Re h_t, Im h_t] + D x_t``."""
    batch = x.shape[1]
    h = torch.zeros(batch, decay.shape[0], dtype=decay.dtype) if h0 is None else h0
    outputs = []
    for x_t in x:
        h = decay * h + torch.view_as_complex((x_t @ input_weight.t()).view(batch, -1, 2))
        outputs.append(torch.view_as_real(h).flatten(-2) @ readout_weight.t() + x_t @ skip_weight.t())
    return torch.stack(outputs), h


@pytest.mark.parametrize("keep_bytes", [2**30, 0], ids=["kept", "recomputed"])
@pytest.mark.parametrize("sequential", [("cpu",), ()], ids=["loop", "chunked"])
@pytest.mark.parametrize(("block_len", "seq_len"), [(4, 1), (4, 2), (4, 3), (4, 8), (16, 37)])
@pytest.mark.parametrize("given_h0", [True, False], ids=["h0", "zeros"])
@pytest.mark.parametrize("loss_on", ["outputs", "final state"])
def test_lru_scan_against_a_loop_by_hand(keep_bytes, sequential, block_len, seq_len, given_h0, loss_on, monkeypatch):
    """lru_scan's outputs, final state and the gradients of all its arguments against autograd
    through a plain loop, in float64: one step, a block shorter or exactly full, several blocks with a
    ragged last one; zeros or a given start; a loss on the outputs only (the final state's
    gradient arrives as zeros) or on the final state only (the outputs' as zeros)."""
    monkeypatch.setattr(lru_scan, "KEEP_BYTES", keep_bytes)
    monkeypatch.setattr(lru_scan, "SEQUENTIAL_DEVICES", sequential)
    gen = torch.Generator().manual_seed(seq_len)
    batch, inputs, states, hidden = 2, 3, 4, 5

    def draw(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=gen)
    radius = 0.6 + 0.35 * torch.rand(states, dtype=torch.float64, generator=gen)
    args = {"x": draw(seq_len, batch, inputs),
            "decay": torch.polar(radius, 6 * torch.rand(states, dtype=torch.float64, generator=gen)),
            "input_weight": draw(2 * states, inputs), "readout_weight": draw(hidden, 2 * states),
            "skip_weight": draw(hidden, inputs), "h0": torch.complex(draw(batch, states), draw(batch, states))}
    output_weights, state_weights = draw(seq_len, batch, hidden), draw(batch, states, 2)
    if not given_h0:
        del args["h0"]

    def run(function, **kwargs):
        leaves = {name: value.clone().requires_grad_() for name, value in args.items()}
        y, final = function(*leaves.values(), **({} if given_h0 else {"h0": None}), **kwargs)
        loss = (y * output_weights).sum() if loss_on == "outputs" else (torch.view_as_real(final) * state_weights).sum()
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        return {"output": y, "final state": final,
                **{f"grad {name}": torch.zeros_like(value) if grad is None else grad
                   for (name, value), grad in zip(leaves.items(), grads)}}

    got, want = run(lru_scan.lru_scan, block_len=block_len), run(_lru_by_hand)
    for key, expected in want.items():
        scale = max(expected.abs().max().item(), 1e-300)
        assert (got[key] - expected).abs().max().item() <= 1e-11 * scale, key
