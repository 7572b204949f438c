"""mingru, minlstm and lru: known values by hand, scan form == step form, and the LRU's exact gradient decay.

Every cell here is registered as its scan module (``scan`` in the speed table) with a ``step``
alternative that builds the step module on the same parameters, the reference. The
equivalence check compares outputs, final state and the gradients of every parameter, the
input and the initial state, in float64 at short T (tight) and in float32 at T = 4096
(``F32_RTOL`` of the largest magnitude of each compared tensor); a version with two gates
swapped must fail it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.cells import SequenceModel, Unrolled, available_impls, flatten_state
from harness.gradients import gradient_profile, probe_steps
from harness.plugins import load_plugins
from harness.scan import linear_scan
from plugins.lru import LRU, LRUStep
from plugins.mingru import MinGRUScan, step_form
from plugins.minlstm import MinLSTM, MinLSTMStep, coefficients

F64 = torch.float64
F32_RTOL = 1e-4  # relative to the largest magnitude of each compared tensor, float32, T = 4096
SCAN_CELLS = ("mingru", "minlstm", "lru")
REGISTRY = load_plugins(autoload=False)


def _forms(name: str, input_size: int, hidden_size: int, seed: int = 0):
    spec = REGISTRY.cell(name)
    torch.manual_seed(seed)
    scan = spec.factory(input_size, hidden_size)
    return scan, Unrolled(spec.unroll(scan))


def _run(module, x, state, weights):
    """Outputs, final state and gradients of a fixed random functional of both w.r.t. params, x, state."""
    x = x.detach().requires_grad_()
    state = state.detach().requires_grad_()
    y, final = module(x, state)
    loss = (y * weights[0]).sum() + (final * weights[1]).sum()
    params = [p for p in module.parameters()]
    grads = torch.autograd.grad(loss, params + [x, state])
    names = [n for n, _ in module.named_parameters()] + ["input", "initial state"]
    return {"output": y.detach(), "final state": final.detach(), **{f"grad {n}": g for n, g in zip(names, grads)}}


def _normalised_names(result: dict) -> dict:
    # the step module reaches the parameters through step.cell. / step.; compare by the last part
    return {k.replace("step.cell.", "").replace("step.", ""): v for k, v in result.items()}


def assert_forms_agree(scan, step, x, state, rtol, atol_scale=None):
    """Every compared tensor within ``rtol · max|reference|`` (normwise, so a vanishing entry
    does not demand an impossible relative accuracy); ``step`` is the reference."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        y_probe, s_probe = step(x[:1], state)
    weights = (torch.randn(y_probe.shape[1:], generator=gen, dtype=x.dtype) / x.shape[0],
               torch.randn(s_probe.shape, generator=gen, dtype=x.dtype))
    got = _normalised_names(_run(scan, x, state, weights))
    want = _normalised_names(_run(step, x, state, weights))
    assert got.keys() == want.keys()
    for key in want:
        scale = want[key].abs().max().item()
        err = (got[key] - want[key]).abs().max().item()
        assert err <= rtol * scale, f"{key}: max error {err:.3g} > {rtol:g} x max |value| {scale:.3g}"


def _state_like(module, x, seed):
    with torch.no_grad():
        _, probe = module(x[:1], None)
    return torch.randn(probe.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)


@pytest.mark.parametrize("name", SCAN_CELLS)
def test_registered_as_scan_with_step_form(name):
    spec = REGISTRY.cell(name)
    assert spec.form == "sequence" and spec.unroll is not None
    assert available_impls(spec, "cpu") == ["scan", "step"] and spec.reference_impl == "step"
    scan, unrolled = _forms(name, 3, 4)
    shared = {id(p) for p in scan.parameters()}
    assert {id(p) for p in unrolled.parameters()} == shared, "the step form must use the scan's own parameters"


@pytest.mark.parametrize("name", SCAN_CELLS)
def test_scan_equals_step_float64(name):
    scan, step = _forms(name, 3, 5)
    scan, step = scan.double(), step.double()
    x = torch.randn(37, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    assert_forms_agree(scan, step, x, _state_like(scan, x, 3), rtol=1e-11)


@pytest.mark.parametrize("name", SCAN_CELLS)
def test_scan_equals_step_float32_at_4096(name):
    scan, step = _forms(name, 3, 8)
    x = torch.randn(4096, 2, 3, generator=torch.Generator().manual_seed(4))
    assert_forms_agree(scan, step, x, _state_like(scan, x, 5), rtol=F32_RTOL)


class _SwappedMinLSTM(MinLSTM):
    """The forget and input gates swapped: a different function that a weak check might pass."""

    def forward(self, x, state=None):
        size = self.hidden_size
        w, b = self.linear.weight, self.linear.bias
        order = torch.cat([torch.arange(size, 2 * size), torch.arange(size), torch.arange(2 * size, 3 * size)])
        keep, write = coefficients(torch.nn.functional.linear(x, w[order], b[order]))
        h = linear_scan(keep, write, state)
        return h, h[-1]


class _SwappedMinGRUScan(MinGRUScan):
    """1 - z and z swapped."""

    def forward(self, x, state=None):
        gate, candidate = self.linear(x).chunk(2, dim=-1)
        h = linear_scan(torch.sigmoid(gate), torch.sigmoid(-gate) * candidate, state)
        return h, h[-1]


class _ConjugateLRU(LRU):
    """The scan runs with conj(λ) (the phase turns the other way); the step form keeps λ."""

    def forward(self, x, state=None):
        h0 = None if state is None else torch.view_as_complex(state.contiguous())
        h = linear_scan(self.decay().conj(), self.input_term(x), h0)
        return self.readout(h) + torch.nn.functional.linear(x, self.D), torch.view_as_real(h[-1])


@pytest.mark.parametrize("broken, step_form_of", [
    (_SwappedMinLSTM, MinLSTMStep), (_SwappedMinGRUScan, step_form), (_ConjugateLRU, LRUStep)])
def test_equivalence_check_has_teeth(broken, step_form_of):
    torch.manual_seed(0)
    scan = broken(3, 5).double()
    step = Unrolled(step_form_of(scan))
    x = torch.randn(20, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(6))
    with pytest.raises(AssertionError, match="max error"):
        assert_forms_agree(scan, step, x, _state_like(scan, x, 7), rtol=1e-4)


def _known_minlstm(input_size, hidden_size):
    cell = MinLSTM(input_size, hidden_size).double()
    with torch.no_grad():
        cell.linear.weight.zero_()
        cell.linear.bias.zero_()
        cell.linear.weight[2, 0] = 1.0  # h̃ = x; f = i = σ(0) = 1/2, so f' = i' = 1/2
    return cell


def test_minlstm_known_values():
    """f' = i' = 1/2 and h̃ = x: h = (x1/2, (h1 + x2)/2, ...) = (1, 2.5, 1.25) for x = (2, 4, 0)."""
    cell = _known_minlstm(1, 1)
    x = torch.tensor([2.0, 4.0, 0.0], dtype=F64).view(3, 1, 1)
    want = torch.tensor([1.0, 2.5, 1.25], dtype=F64).view(3, 1, 1)
    for form in (cell, Unrolled(MinLSTMStep(cell))):
        y, h = form(x, None)
        torch.testing.assert_close(y, want, rtol=0, atol=1e-15)
        torch.testing.assert_close(h, want[-1], rtol=0, atol=1e-15)


def test_minlstm_follows_its_equations():
    """A hand loop of the paper's equations, the gates normalised by plain division."""
    torch.manual_seed(0)
    cell = MinLSTM(3, 4, forget_bias=1.5).double()
    weight, bias = cell.linear.weight.detach(), cell.linear.bias.detach()
    x = torch.randn(6, 2, 3, dtype=F64)
    h = torch.randn(2, 4, dtype=F64)
    forms = [cell(x, h)[0], Unrolled(MinLSTMStep(cell))(x, h)[0]]
    for t in range(6):
        f = torch.sigmoid(x[t] @ weight[:4].T + bias[:4])
        i = torch.sigmoid(x[t] @ weight[4:8].T + bias[4:8])
        candidate = x[t] @ weight[8:].T + bias[8:]
        h = f / (f + i) * h + i / (f + i) * candidate
        for y in forms:
            torch.testing.assert_close(y[t].detach(), h)


def test_minlstm_forget_bias_moves_only_the_forget_gate():
    torch.manual_seed(0)
    plain = MinLSTM(2, 3)
    torch.manual_seed(0)
    biased = MinLSTM(2, 3, forget_bias=2.0)
    torch.testing.assert_close(biased.linear.bias - plain.linear.bias, torch.tensor([2.0] * 3 + [0.0] * 6))


def test_mingru_step_form_follows_its_equations():
    torch.manual_seed(0)
    scan = MinGRUScan(3, 4).double()
    weight, bias = scan.linear.weight.detach(), scan.linear.bias.detach()
    x = torch.randn(5, 2, 3, dtype=F64)
    h = torch.randn(2, 4, dtype=F64)
    forms = [scan(x, h)[0], Unrolled(step_form(scan))(x, h)[0]]
    for t in range(5):
        z = torch.sigmoid(x[t] @ weight[:4].T + bias[:4])
        h = (1 - z) * h + z * (x[t] @ weight[4:].T + bias[4:])
        for y in forms:
            torch.testing.assert_close(y[t].detach(), h)


def _set_lru(cell: LRU, radius, phase, gamma=None):
    with torch.no_grad():
        cell.nu_log.copy_(torch.log(-torch.log(torch.as_tensor(radius, dtype=F64))))
        cell.theta_log.copy_(torch.log(torch.as_tensor(phase, dtype=F64)))
        if gamma is not None:
            cell.gamma_log.copy_(torch.log(torch.as_tensor(gamma, dtype=F64)))


def test_lru_known_values():
    """λ = 0.5 i, γ = B = 1, D = 0: h = (1, 0.5i, -0.25) for x = (1, 0, 0); C = 1 reads Re h, C = i reads -Im h."""
    cell = LRU(1, 1).double()
    _set_lru(cell, [0.5], [math.pi / 2], gamma=[1.0])
    with torch.no_grad():
        for p in (cell.B_im, cell.C_im, cell.D):
            p.zero_()
        cell.B_re.fill_(1.0)
        cell.C_re.fill_(1.0)
    x = torch.tensor([1.0, 0.0, 0.0], dtype=F64).view(3, 1, 1)
    step = Unrolled(LRUStep(cell))
    for form in (cell, step):
        y, state = form(x, None)
        torch.testing.assert_close(y.view(3), torch.tensor([1.0, 0.0, -0.25], dtype=F64), rtol=0, atol=1e-15)
        torch.testing.assert_close(state.view(2), torch.tensor([-0.25, 0.0], dtype=F64), rtol=0, atol=1e-15)
    with torch.no_grad():
        cell.C_re.zero_()
        cell.C_im.fill_(1.0)  # Re(i h) = -Im h
    for form in (cell, step):
        torch.testing.assert_close(form(x, None)[0].view(3), torch.tensor([0.0, -0.5, 0.0], dtype=F64), rtol=0, atol=1e-15)


def test_lru_follows_its_equations():
    """A hand loop in complex arithmetic, λ = exp(-exp(ν) + i exp(θ)), from a nonzero state."""
    torch.manual_seed(0)
    cell = LRU(3, 4).double()
    lam = torch.exp(-torch.exp(cell.nu_log) + 1j * torch.exp(cell.theta_log)).detach()
    gamma = torch.exp(cell.gamma_log).detach()
    B = torch.complex(cell.B_re, cell.B_im).detach()
    C = torch.complex(cell.C_re, cell.C_im).detach()
    x = torch.randn(7, 2, 3, dtype=F64)
    state = torch.randn(2, 4, 2, dtype=F64)
    h = torch.complex(state[..., 0], state[..., 1])
    forms = [cell(x, state), Unrolled(LRUStep(cell))(x, state)]
    for t in range(7):
        h = lam * h + gamma * (x[t].to(torch.complex128) @ B.T)
        y = (h @ C.T).real + x[t] @ cell.D.detach().T
        for out, _ in forms:
            torch.testing.assert_close(out[t].detach(), y)
    for _, final in forms:
        torch.testing.assert_close(final.detach(), torch.view_as_real(h))


def test_lru_initialisation_on_the_ring():
    torch.manual_seed(0)
    cell = LRU(2, 2000, r_min=0.4, r_max=0.8, max_phase=math.pi / 4)
    radius = cell.decay().abs().detach()
    assert radius.min() >= 0.4 - 1e-6 and radius.max() <= 0.8 + 1e-6
    # uniform on the ring's area: |λ|² uniform on [r_min², r_max²], mean (0.16 + 0.64) / 2
    assert abs((radius**2).mean().item() - 0.40) < 0.01
    phase = torch.exp(cell.theta_log).detach()
    assert phase.min() >= 0 and phase.max() <= math.pi / 4 + 1e-6
    torch.testing.assert_close(torch.exp(cell.gamma_log).detach(), torch.sqrt(1 - radius**2), rtol=1e-5, atol=1e-6)


def test_lru_rejects_a_ring_outside_the_unit_disc():
    with pytest.raises(ValueError, match="0 <= r_min <= r_max < 1"):
        LRU(2, 3, r_min=0.5, r_max=1.2)


@pytest.mark.parametrize("radius", [0.9, 0.97])
def test_lru_gradient_probe_decays_by_ln_r_per_step(radius):
    """With every |λ| = r, ||dL/ds_t|| = r^(T-t) ||dL/ds_T||: the probe's decay rate is exactly ln r."""
    torch.manual_seed(0)
    cell = LRU(2, 6).double()
    _set_lru(cell, [radius] * 6, torch.rand(6, dtype=F64) * 2 * math.pi)
    task = REGISTRY.task("adding").factory(40)
    model = SequenceModel(cell, 6, task.output_size).double()
    batch = task.sample(3, np.random.default_rng(0))
    x, target = torch.as_tensor(batch.x, dtype=F64), torch.as_tensor(batch.target, dtype=F64)
    profile = gradient_profile(model, task, x, target, probe_steps(task.length))
    assert profile.decay_rate == pytest.approx(math.log(radius), abs=1e-9)
    ratios = np.array(profile.norms[1:]) / np.array(profile.norms[:-1])
    np.testing.assert_allclose(ratios, radius, rtol=1e-9)


@pytest.mark.parametrize("name", SCAN_CELLS)
def test_state_is_real_and_carried(name):
    """The harness measures state norms as real tensors and feeds states back: both forms carry them."""
    scan, step = _forms(name, 3, 4)
    x = torch.randn(10, 2, 3)
    _, state = scan(x, None)
    assert all(not t.is_complex() for t in flatten_state(state))
    whole = scan(x, None)[0]
    first, mid = step(x[:6], None)
    second, _ = scan(x[6:], mid)
    torch.testing.assert_close(torch.cat([first, second]), whole, rtol=1e-5, atol=1e-6)


def test_lru_step_form_copies_after_a_forward():
    """The step form keeps λ from its last precompute; a deepcopy (as the gradient probe makes) still works."""
    import copy

    scan, step = _forms("lru", 2, 3)
    x = torch.randn(4, 1, 2)
    y, _ = step(x, None)
    clone = copy.deepcopy(step)
    torch.testing.assert_close(clone(x, None)[0], y)
