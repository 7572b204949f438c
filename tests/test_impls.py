"""The speed table's implementations compute the same function: unrolled (and graphed) equal fused."""

from __future__ import annotations

import pytest
import torch

from harness.cells import available_impls, build_impl
from harness.plugins import load_plugins

REGISTRY = load_plugins(autoload=False)
UNROLLABLE = [c.name for c in REGISTRY.cells.values() if "unrolled" in available_impls(c, "cpu") and c.form == "sequence"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _outputs_and_grads(module, x, state):
    y, final = module(x, state)
    parts = final if isinstance(final, tuple) else (final,)
    loss = (y * torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype, device=y.device)).sum() + sum(p.sum() for p in parts)
    params = list(module.parameters())
    grads = torch.autograd.grad(loss, params + [x])
    return y.detach(), [p.detach() for p in parts], grads


def _renamed(source: dict, target: dict) -> dict:
    """``source``'s tensors under ``target``'s keys: the step module wraps the sequence module
    (``step.<attr>.<key>``, whatever it names the attribute), so keys pair up in order."""
    assert len(source) == len(target) and all(t.endswith("." + s) for s, t in zip(source, target)), (list(source), list(target))
    return dict(zip(target, source.values()))


def test_builtin_torch_cells_have_unrolled_and_fused():
    """torch-rnn, lstm and gru are timed both fused and unrolled; numpy-rnn as numpy; graphed only on cuda."""
    for name in ("torch-rnn", "lstm", "gru"):
        assert available_impls(REGISTRY.cell(name), "cpu") == ["fused", "unrolled"]
        assert available_impls(REGISTRY.cell(name), "cuda") == ["fused", "unrolled", "graphed"]
    assert available_impls(REGISTRY.cell("numpy-rnn"), "cuda") == ["numpy"]


@pytest.mark.parametrize("name", UNROLLABLE)
def test_unrolled_matches_fused(name):
    """Outputs, final state and every gradient agree between the fused kernel and the step loop (float32)."""
    spec = REGISTRY.cell(name)
    torch.manual_seed(0)
    fused = build_impl(spec, "fused", 5, 7)
    torch.manual_seed(0)  # the same seed builds the same parameters, whatever the step module names them
    unrolled = build_impl(spec, "unrolled", 5, 7)
    unrolled.load_state_dict(_renamed(fused.state_dict(), unrolled.state_dict()))
    x = torch.randn(12, 3, 5, requires_grad=True)
    with torch.no_grad():
        _, probe_state = fused(x[:1], None)
    state = tuple(torch.randn_like(s) for s in probe_state) if isinstance(probe_state, tuple) else torch.randn_like(probe_state)
    y1, s1, g1 = _outputs_and_grads(fused, x, state)
    y2, s2, g2 = _outputs_and_grads(unrolled, x, state)
    torch.testing.assert_close(y2, y1, rtol=1e-5, atol=1e-5)
    for a, b in zip(s2, s1):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(g2, g1):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@cuda
@pytest.mark.parametrize("name", UNROLLABLE)
def test_graphed_matches_fused_on_cuda(name):
    """A replayed CUDA graph of the unrolled cell gives the fused kernel's outputs and parameter gradients."""
    from harness.graphs import capture
    from harness.speed import last_step_output_gradient

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    spec = REGISTRY.cell(name)
    torch.manual_seed(0)
    fused = build_impl(spec, "fused", 8, 32).cuda()
    torch.manual_seed(0)
    graphed = build_impl(spec, "graphed", 8, 32).cuda()
    graphed.load_state_dict(_renamed(fused.state_dict(), graphed.state_dict()))
    x = torch.randn(50, 4, 8, device="cuda")
    with torch.no_grad():
        grad_y = last_step_output_gradient(graphed(x, None)[0])
    run = capture(graphed, x, grad_y)
    x2 = torch.randn_like(x)
    run.x.copy_(x2)  # a replay reads whatever the static input holds now
    run.forward_backward.replay()
    torch.cuda.synchronize()
    y, _ = fused(x2, None)
    grads = torch.autograd.grad(y[-1].sum(), list(fused.parameters()))
    torch.testing.assert_close(run.y, y.detach(), rtol=1e-4, atol=1e-5)
    for a, b in zip(run.grads, grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
