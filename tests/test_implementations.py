"""Several implementations of one cell: registration, what each run builds, and the equivalence
check that `rnnbench check` and harness.testing.assert_equivalent run against the reference."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from harness import Alternative
from harness.cells import Unrolled, available_impls, build_impl, build_impls
from harness.equivalence import FLOAT32, FLOAT64
from harness.errors import NotSupportedError
from harness.plugins import load_plugins
from harness.scan import linear_scan
from harness.testing import assert_equivalent, implementation_gaps, make_spec, warm_state
from plugins.mingru import MinGRU, MinGRUScan, step_form

REGISTRY = load_plugins(autoload=False)
MODERN = {"mingru": "scan", "minlstm": "scan", "lru": "scan", "mamba": "scan", "mlstm": "parallel"}

# A plugin file whose scan computes something else: its gate and candidate trade places.
SWAPPED_PLUGIN = '''
import torch
from torch import nn
from harness import hookimpl
from harness.scan import linear_scan


class Step(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.linear = nn.Linear(input_size, 2 * hidden_size)

    def forward(self, x_t, state=None):
        h = x_t.new_zeros(x_t.shape[0], self.hidden_size) if state is None else state
        gate, candidate = self.linear(x_t).chunk(2, dim=-1)
        h = torch.lerp(h, candidate, torch.sigmoid(gate))
        return h, h


class SwappedScan(nn.Module):
    def __init__(self, step):
        super().__init__()
        self.linear = step.linear

    def forward(self, x, state=None):
        candidate, gate = self.linear(x).chunk(2, dim=-1)  # wrong: the two halves swapped
        h = linear_scan(torch.sigmoid(-gate), torch.sigmoid(gate) * candidate, state)
        return h, h[-1]


@hookimpl
def register_cells(register):
    register("swapped", Step, form="step", impl="step", alternatives={"scan": SwappedScan}, reference="step")
'''
SWAPPED_PLUGIN = SWAPPED_PLUGIN.replace('alternatives={"scan": SwappedScan}',
                                        'alternatives={"scan": Alternative(SwappedScan, form="sequence")}')
SWAPPED_PLUGIN = SWAPPED_PLUGIN.replace("from harness import hookimpl", "from harness import Alternative, hookimpl")


@pytest.mark.parametrize("name, fast", MODERN.items())
def test_modern_cells_have_step_as_reference_and_a_fast_primary(name, fast):
    spec = REGISTRY.cell(name)
    assert spec.impls.names == (fast, "step") and spec.reference_impl == "step"
    assert spec.default_impl("cpu") == spec.default_impl("cuda") == fast
    assert available_impls(spec, "cuda") == [fast, "step", "graphed"]


@pytest.mark.parametrize("name", ["lstm", "gru", "torch-rnn"])
def test_torch_cells_keep_fused_and_unrolled(name):
    spec = REGISTRY.cell(name)
    assert spec.impls.names == ("fused", "unrolled") and spec.reference_impl == "unrolled"
    assert available_impls(spec, "cuda") == ["fused", "unrolled", "graphed"]


def test_a_step_only_cell_is_its_own_reference_and_is_graphed_on_cuda():
    spec = REGISTRY.cell("slstm")
    assert spec.impls.names == ("step",) and spec.reference_impl == "step"
    assert available_impls(spec, "cpu") == ["step"] and available_impls(spec, "cuda") == ["step", "graphed"]
    assert isinstance(build_impl(spec, "graphed", 3, 4), Unrolled)


def test_assert_equivalent_compares_at_both_settings():
    """float64 T=200 within 1e-10 and float32 T=4096 within 1e-4 (values) and 1e-3 (gradients); every
    built-in cell goes through the same comparison as the `implementations` line of tests/test_check.py."""
    name = "mingru"
    gaps = assert_equivalent(name, registry=REGISTRY)
    assert {(g.setting.dtype, g.setting.seq_len) for g in gaps} == {(torch.float64, 200), (torch.float32, 4096)}
    for g in gaps:
        assert g.impl != g.reference == REGISTRY.cell(name).reference_impl
        assert g.worst < (1e-10 if g.setting is FLOAT64 else 1e-3), g


def test_implementations_of_one_build_share_its_parameters():
    torch.manual_seed(0)
    modules = build_impls(REGISTRY.cell("lru"), 3, 4)
    scan_params = {id(p) for p in modules["scan"].parameters()}
    assert scan_params and scan_params == {id(p) for p in modules["step"].parameters()}
    torch.manual_seed(0)
    again = build_impl(REGISTRY.cell("lru"), "step", 3, 4)
    for a, b in zip(modules["step"].parameters(), again.parameters()):
        assert torch.equal(a, b)  # build_impl under one seed builds the same numbers


def test_a_scan_with_two_gates_swapped_fails_rnnbench_check(rnnbench, write_plugin):
    plugin = write_plugin("swapped_plugin", SWAPPED_PLUGIN)
    result = rnnbench("check", "swapped", "--plugin", plugin)
    assert result.code == 1
    line = next(line.strip() for line in result.out.splitlines() if "implementations" in line)
    assert line.startswith("FAIL  implementations") and "scan differs from step (the reference)" in line.replace(
        "(reference)", "(the reference)"), line
    assert "float64 T=200" in line and "off by" in line
    others = [line.split()[:2] for line in result.out.splitlines() if line.startswith("  FAIL")]
    assert others == [["FAIL", "implementations"]]  # the step form alone is a fine cell


def test_assert_equivalent_names_the_implementation_and_the_quantity(write_plugin):
    plugin = write_plugin("swapped_plugin", SWAPPED_PLUGIN)
    with pytest.raises(AssertionError, match=r"scan vs step in float64 T=200 .*outputs off by") as failure:
        assert_equivalent("swapped", plugin_files=[plugin], autoload=False)
    assert "float32 T=4096" in str(failure.value)
    with pytest.raises(AssertionError, match="has no implementation 'fused'; it has: step, scan"):
        assert_equivalent("swapped", ["fused"], plugin_files=[plugin], autoload=False)


def test_implementation_gaps_of_two_modules_sharing_parameters():
    torch.manual_seed(0)
    scan = MinGRUScan(3, 5).double()
    x = torch.randn(30, 2, 3, dtype=torch.float64)
    gaps = implementation_gaps(scan, Unrolled(step_form(scan)), x, warm_state(scan, 2, 3))
    assert gaps.worst < 1e-12 and [name for name, _ in gaps.grads] == ["grad linear.weight", "grad linear.bias", "grad x"]
    with pytest.raises(ValueError, match="share no parameters"):
        implementation_gaps(Unrolled(MinGRU(3, 5).double()), scan, x)


def test_the_legacy_unroll_argument_registers_an_unrolled_reference():
    spec = make_spec("legacy", MinGRUScan, unroll=step_form)
    assert spec.impls.names == ("module", "unrolled") and spec.reference_impl == "unrolled"
    assert spec.unroll is step_form
    assert_equivalent(spec, settings=(FLOAT64,))


def test_a_sequence_form_alternative_and_a_device_default():
    spec = make_spec("two", MinGRU, form="step", impl="step", defaults={"cpu": "scan"},
                     alternatives={"scan": Alternative(lambda step: _ScanOf(step), form="sequence")})
    assert spec.default_impl("cpu") == "scan" and spec.default_impl("cuda:0") == "step"
    assert spec.reference_impl == "step"  # the step form, though the alternative is listed first by default
    assert isinstance(build_impl(spec, "scan", 3, 4), _ScanOf)
    assert_equivalent(spec, settings=(FLOAT64,))
    with pytest.raises(NotSupportedError, match="cell 'two' has no implementation 'fused'; it has: step, scan, graphed"):
        build_impl(spec, "fused", 3, 4)


class _ScanOf(nn.Module):
    """A sequence form derived from a MinGRU step module: its own scan over the step's layer."""

    def __init__(self, step):
        super().__init__()
        self.linear = step.linear  # shared

    def forward(self, x, state=None):
        gate, candidate = self.linear(x).chunk(2, dim=-1)
        h = linear_scan(torch.sigmoid(-gate), torch.sigmoid(gate) * candidate, state)
        return h, h[-1]


@pytest.mark.parametrize("options, message", [
    (dict(alternatives={"step": step_form}, reference="scan"), "names reference 'scan', which is not one of its implementations: module, step"),
    (dict(alternatives={"graphed": step_form}), "the harness derives that one on CUDA"),
    (dict(alternatives={"Step!": step_form}), "has an implementation named 'Step!'; names are lower-case"),
    (dict(impl="step", alternatives={"step": step_form}), "names its primary implementation 'step' again"),
    (dict(alternatives={"step": 3}), "alternative 'step' is a int"),
    (dict(alternatives={"step": Alternative(step_form, form="loop")}), "has form 'loop'; allowed: sequence, step"),
    (dict(defaults={"tpu": "module"}), "has a default for device 'tpu'; allowed: cpu, cuda"),
    (dict(defaults={"cuda": "scan"}), "defaults to 'scan' on cuda, which is not one of its implementations: module"),
    (dict(unroll=step_form, alternatives={"unrolled": step_form}), "gives both unroll= and alternatives"),
])
def test_a_bad_registration_is_one_line_naming_the_plugin_and_cell(write_plugin, options, message):
    source = (f"from harness import hookimpl, Alternative\nfrom plugins.mingru import MinGRUScan, step_form\n"
              f"@hookimpl\ndef register_cells(register):\n    register('bad', MinGRUScan, **{options!r})\n")
    source = source.replace(repr(step_form), "step_form")
    source = source.replace("Alternative(derive=step_form, form='loop')", "Alternative(step_form, form='loop')")
    registry = load_plugins([write_plugin("bad_impls", source)], autoload=False)
    assert "bad" not in registry.cells
    assert len(registry.errors) == 1 and "cell 'bad'" in registry.errors[0] and message in registry.errors[0], registry.errors


def _train(rnnbench, tmp_path, *options):
    from harness.store import ResultStore

    db = tmp_path / "r.sqlite"
    result = rnnbench("run", "--measure", "accuracy", "--profile", "smoke", "--steps", "3", "--device", "cpu",
                      "--tasks", "adding", "--db", db, "--out", tmp_path / "out", *options)
    if result.code != 0:
        return result, []
    with ResultStore(db) as store:
        return result, store.rows(store.resolve_run("latest"))


def test_training_uses_the_default_implementation_and_stores_it(rnnbench, tmp_path):
    result, rows = _train(rnnbench, tmp_path, "--cells", "lstm,mingru,numpy-rnn")
    assert result.code == 0, result.err
    assert {(r["cell"], r["impl"]) for r in rows} == {("lstm", "fused"), ("mingru", "scan"), ("numpy-rnn", "numpy")}
    table = result.out.split("Accuracy")[1].splitlines()
    assert any(line.split()[:2] == ["mingru", "scan"] for line in table), result.out  # shown beside the cell


def test_train_impl_picks_another_per_cell_or_for_all(rnnbench, tmp_path):
    result, rows = _train(rnnbench, tmp_path, "--cells", "lstm,mingru", "--train-impl", "mingru=step,lstm=unrolled")
    assert result.code == 0, result.err
    assert {(r["cell"], r["impl"]) for r in rows} == {("lstm", "unrolled"), ("mingru", "step")}
    assert all(r["item"].endswith(f"|impl={r['impl']}") for r in rows)  # another implementation, another item
    result, rows = _train(rnnbench, tmp_path, "--cells", "mingru,lru", "--train-impl", "step")
    assert result.code == 0, result.err
    assert {r["impl"] for r in rows} == {"step"}


def test_a_plain_train_impl_applies_to_the_cells_that_have_it(rnnbench, tmp_path):
    """--train-impl step with lstm selected too: mingru trains with its step form, lstm (whose step form
    is 'unrolled') with its default, and the run says so, as --impl does for the speed table."""
    result, rows = _train(rnnbench, tmp_path, "--cells", "lstm,mingru", "--train-impl", "step")
    assert result.code == 0, result.err
    assert {(r["cell"], r["impl"]) for r in rows} == {("lstm", "fused"), ("mingru", "step")}
    assert "rnnbench: warning: --train-impl step: lstm trains with its default, fused (it has fused, unrolled)" in result.err.splitlines()
    # a cell that a CELL=NAME entry chose for is not left at its default: no warning about it
    result, rows = _train(rnnbench, tmp_path, "--cells", "lstm,mingru", "--train-impl", "step,lstm=unrolled")
    assert result.code == 0, result.err
    assert {(r["cell"], r["impl"]) for r in rows} == {("lstm", "unrolled"), ("mingru", "step")}
    assert "warning" not in result.err
    # several cells left at their default: one line naming them all
    result, rows = _train(rnnbench, tmp_path, "--cells", "lstm,gru,mingru", "--train-impl", "step")
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if "warning" in line]
    assert warnings == ["rnnbench: warning: --train-impl step: 2 cells train with their default: "
                        "lstm with fused (it has fused, unrolled); gru with fused (it has fused, unrolled)"]


def test_a_plain_train_impl_warns_only_when_something_trains():
    """A speed-only run trains nothing, so no cell is left at a default to train with: no warning."""
    from harness.settings import build_config, train_impl_left_out

    def warning(measures):
        config = build_config(REGISTRY, cells=("lstm", "gru", "mingru"), tasks=("adding",), devices=("cpu",),
                              measures=measures, profile_name="smoke", train_impls=("step",))
        return train_impl_left_out(REGISTRY, config, ("step",))
    assert warning(("speed",)) is None
    assert warning(("speed", "accuracy")) == ("--train-impl step: 2 cells train with their default: "
                                              "lstm with fused (it has fused, unrolled); gru with fused (it has fused, unrolled)")


@pytest.mark.parametrize("options, shown", [
    (["--cells", "lstm,gru", "--train-impl", "scan"], "--train-impl scan: no selected cell has an implementation 'scan' to train with; they have: fused, unrolled"),
    (["--cells", "lstm", "--train-impl", "scan"], "--train-impl scan: cell 'lstm' has no implementation 'scan'; it has: fused, unrolled"),
    (["--cells", "lstm,mingru", "--train-impl", "lstm=scan"], "--train-impl lstm=scan: cell 'lstm' has no implementation 'scan'; it has: fused, unrolled"),
    (["--cells", "mingru", "--train-impl", "lstm=fused"], "--train-impl lstm=fused: cell 'lstm' is not selected; selected: mingru"),
    (["--cells", "lstm", "--train-impl", "graphed"], "'graphed' is timed, not trained"),
    (["--cells", "lstm,gru", "--train-impl", "graphed"], "'graphed' is timed, not trained"),
    (["--cells", "mingru", "--train-impl", "step,scan"], "--train-impl step,scan: cell 'mingru' has both; choose one for it with mingru=scan or mingru=step"),
])
def test_a_bad_train_impl_is_one_line_and_exit_2(rnnbench, tmp_path, options, shown):
    result, _ = _train(rnnbench, tmp_path, *options)
    assert result.code == 2 and result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and shown in lines[0], result.err


def test_assert_equivalent_refuses_a_cell_with_nothing_to_compare():
    # a test of a cell whose alternatives were left out would otherwise pass on nothing
    with pytest.raises(AssertionError, match=r"cell 'slstm' has one implementation \(step\); nothing to compare"):
        assert_equivalent("slstm", registry=REGISTRY)


@pytest.mark.parametrize("name", ["mingru", "minlstm", "lru", "mamba", "mlstm"])
def test_the_equivalence_settings_cross_block_and_chunk_boundaries(name):
    """A carry between blocks is where a fast form goes wrong: at one of the two settings at least,
    the built-in fast form runs over several of its blocks (or chunks). Ragged last blocks are
    tested in tests/test_fused_scans.py."""
    from plugins.gated_scan import default_block_len
    from plugins.mlstm import MLSTM
    from plugins.selective_scan import auto_chunk_size

    def steps_per_block(setting):
        if name in ("mingru", "minlstm", "lru"):  # fused CPU scans: blocks of 2^17 / (B·H) steps
            return default_block_len(torch.zeros(1, device="cpu"), setting.batch_size * setting.hidden_size)
        if name == "mamba":
            return auto_chunk_size(setting.batch_size, 2 * setting.hidden_size, 16)
        return MLSTM(setting.input_size, setting.hidden_size).chunk_size

    crossed = [s for s in (FLOAT64, FLOAT32) if s.seq_len > steps_per_block(s)]
    assert crossed, f"{name}: no setting runs over more than one block"


# --- non-finite values: a NaN or inf fails the comparison, on either side --------------------------

class _NanFrom(nn.Module):
    """``module``'s outputs with NaN added from step ``step`` on, and so in the final state: a form
    that overflows late in the sequence. Adding leaves the gradients as ``module``'s (d(y + c)/dy = 1)."""

    def __init__(self, module, step: int):
        super().__init__()
        self.module, self.step = module, step

    def forward(self, x, state=None):
        y, _ = self.module(x, state)
        late = torch.arange(y.shape[0], device=y.device).view(-1, 1, 1) >= self.step
        y = y + torch.where(late, float("nan"), 0.0).to(y.dtype)
        return y, y[-1]


class _InfInGradient(torch.autograd.Function):
    """The identity, whose backward puts +inf in the first entry of the gradient: an adjoint that overflows."""

    @staticmethod
    def forward(ctx, tensor):
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        grad.view(-1)[0] = float("inf")
        return grad


class _InfGradScan(_ScanOf):
    """The right scan, whose gradient of linear.weight (the primary's step.linear.weight) holds one +inf."""

    def forward(self, x, state=None):
        projected = torch.nn.functional.linear(x, _InfInGradient.apply(self.linear.weight), self.linear.bias)
        gate, candidate = projected.chunk(2, dim=-1)
        h = linear_scan(torch.sigmoid(-gate), torch.sigmoid(gate) * candidate, state)
        return h, h[-1]


def _mingru_spec(name, **alternatives):
    """minGRU's step as the primary and the reference unless ``reference=`` says otherwise."""
    reference = alternatives.pop("reference", "step")
    forms = {impl: Alternative(derive, form="sequence") for impl, derive in alternatives.items()}
    return make_spec(name, MinGRU, form="step", impl="step", alternatives=forms, reference=reference)


NAN_FROM = 100  # of FLOAT64's T = 200 steps; B = 2, H = 8: 100 · 2 · 8 = 1600 NaN outputs, 16 in the state


def test_a_fast_form_returning_nan_after_some_step_fails_assert_equivalent():
    spec = _mingru_spec("nan-scan", scan=lambda step: _NanFrom(_ScanOf(step), NAN_FROM))
    with pytest.raises(AssertionError) as failure:
        assert_equivalent(spec, settings=(FLOAT64,))
    setting, found = str(failure.value).splitlines()[1].split(": ", 1)
    assert setting == "  scan vs step in float64 T=200 B=2 I=3 H=8, tolerance 1e-10 (outputs, state) and 1e-10 (gradients)"
    # the gradients are finite and the reference's: only what is wrong is named
    assert found == ("outputs of 'scan' have 1600 non-finite values (NaN/inf) where the reference 'step' has none; "
                     "state[0] of 'scan' has 16 non-finite values (NaN/inf) where the reference 'step' has none")


def test_a_reference_returning_nan_fails_whatever_the_alternative_holds():
    nan_loop = lambda step: _NanFrom(Unrolled(step), NAN_FROM)  # noqa: E731
    spec = _mingru_spec("nan-reference", loop=nan_loop, scan=_ScanOf, reference="loop")
    with pytest.raises(AssertionError, match=r"scan vs loop in float64 .*: outputs of the reference 'loop' have 1600 "
                       r"non-finite values \(NaN/inf\) where 'scan' has none"):
        assert_equivalent(spec, ["scan"], settings=(FLOAT64,))
    # NaN on both sides, at the same places: still a failure, naming the reference
    spec = _mingru_spec("nan-both", loop=nan_loop, scan=lambda step: _NanFrom(_ScanOf(step), NAN_FROM), reference="loop")
    with pytest.raises(AssertionError, match=r"outputs of the reference 'loop' have 1600 non-finite values \(NaN/inf\), "
                       r"and 'scan' at the same places: a reference that is not finite checks nothing"):
        assert_equivalent(spec, ["scan"], settings=(FLOAT64,))


def test_an_inf_in_a_parameter_gradient_fails_and_names_the_parameter():
    spec = _mingru_spec("inf-grad", scan=_InfGradScan)
    with pytest.raises(AssertionError) as failure:
        assert_equivalent(spec, settings=(FLOAT64,))
    found = str(failure.value).splitlines()[1].split(": ", 1)[1]  # what follows the setting
    assert found == "grad step.linear.weight of 'scan' has 1 non-finite value (NaN/inf) where the reference 'step' has none"


def test_implementation_gaps_records_what_is_not_finite():
    torch.manual_seed(0)
    step = MinGRU(3, 8).double()
    x = torch.randn(30, 2, 3, dtype=torch.float64)
    gaps = implementation_gaps(_NanFrom(_ScanOf(step), 20), Unrolled(step), x, warm_state(Unrolled(step), 2, 3),
                               names=("scan", "step"))
    assert [(f.what, f.in_impl, f.in_reference, f.same_places) for f in gaps.nonfinite] == [
        ("outputs", 10 * 2 * 8, 0, False), ("state[0]", 2 * 8, 0, False)]
    assert gaps.outputs == gaps.worst == float("inf") and gaps.worst_grad[1] < 1e-12
    clean = implementation_gaps(_ScanOf(step), Unrolled(step), x, warm_state(Unrolled(step), 2, 3))
    assert clean.nonfinite == () and not clean.failures


# minGRU's closed form h_t = P_t (h_0 + Σ_s b_s / P_s), P_t = Π a: in float32 P_t underflows to 0
# within a few hundred steps, b / P becomes inf and P · inf NaN; in float64 at T = 200 it is exact.
CLOSED_FORM_PLUGIN = SWAPPED_PLUGIN.replace('''        candidate, gate = self.linear(x).chunk(2, dim=-1)  # wrong: the two halves swapped
        h = linear_scan(torch.sigmoid(-gate), torch.sigmoid(gate) * candidate, state)''', '''        gate, candidate = self.linear(x).chunk(2, dim=-1)
        a, b = torch.sigmoid(-gate), torch.sigmoid(gate) * candidate
        products = torch.cumprod(a, dim=0)
        h0 = b.new_zeros(b.shape[1:]) if state is None else state
        h = products * (h0 + torch.cumsum(b / products, dim=0))''').replace('"swapped"', '"closed-form"')


def test_a_fast_form_that_overflows_in_float32_fails_rnnbench_check(rnnbench, write_plugin):
    plugin = write_plugin("closed_form_plugin", CLOSED_FORM_PLUGIN)
    result = rnnbench("check", "closed-form", "--plugin", plugin)
    assert result.code == 1
    line = next(line.strip() for line in result.out.splitlines() if "implementations" in line)
    status, check, message = line.split(None, 2)
    assert (status, check) == ("FAIL", "implementations") and message.startswith(
        "scan differs from step (the reference) in float32 T=4096"), line  # float64 at T = 200 passes
    assert re.search(r": outputs of 'scan' have \d+ non-finite values \(NaN/inf\) where the reference 'step' has none", line), line
    assert "closed-form: " in result.out and "1 failed" in result.out
