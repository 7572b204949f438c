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
