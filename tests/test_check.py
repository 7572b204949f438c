"""`rnnbench check` and harness.testing: every built-in cell passes; broken cells fail with a useful message."""

import re

import numpy as np
import pytest
import torch
from torch import nn

from harness.errors import UnknownCellError
from harness.testing import CHECK_NAMES, CheckResult, assert_conforms, make_spec, run_checks
from plugins.numpy_rnn import NumpyTanhRNN


def statuses(results) -> dict[str, str]:
    return {r.name: r.status for r in results}


def failure(results) -> CheckResult:
    failed = [r for r in results if r.status == "FAIL"]
    assert failed, [r.line() for r in results]
    return failed[0]


def test_every_registered_cell_passes_every_check(registry, cell_name):
    """Each registered cell passes all checks; finite differences run for NumPy cells only; cuda only with a GPU."""
    results = run_checks(cell_name, registry=registry)
    assert [r.name for r in results] == list(CHECK_NAMES)
    assert not [r.line() for r in results if r.status == "FAIL"]
    numpy_backend = registry.cell(cell_name).backend == "numpy"
    assert statuses(results)["finite-differences"] == ("PASS" if numpy_backend else "SKIP")
    expected_cuda = "PASS" if torch.cuda.is_available() and not numpy_backend else "SKIP"
    assert statuses(results)["cuda"] == expected_cuda
    several = len(registry.cell(cell_name).impls.names) > 1
    assert statuses(results)["implementations"] == ("PASS" if several else "SKIP")


# --- deliberately broken cells -----------------------------------------------------------------

class GrowingState(nn.Module):
    """Step cell whose state grows by H columns each time it is fed back."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.cell = nn.RNNCell(input_size, hidden_size)
        self.hidden_size = hidden_size

    def forward(self, x_t, state=None):
        h = self.cell(x_t, None if state is None else state[:, : self.hidden_size])
        return h, (h if state is None else torch.cat([h, state], dim=1))


class NanGradient(nn.Module):
    """Finite outputs, NaN gradients: sqrt of a negative number in the branch torch.where discards."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.cell = nn.RNNCell(input_size, hidden_size)

    def forward(self, x_t, state=None):
        h = self.cell(x_t, state)
        h = h + torch.where(h > 100, torch.sqrt(h - 100), torch.zeros_like(h))
        return h, h


class DictState(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size)

    def forward(self, x, state=None):
        y, h = self.rnn(x, None if state is None else state["h"])
        return y, {"h": h}


class Float32Zeros(nn.Module):
    """Creates its zero state with torch.zeros: fine in float32 on a CPU, wrong in float64 or on a GPU."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.cell = nn.RNNCell(input_size, hidden_size)
        self.hidden_size = hidden_size

    def forward(self, x_t, state=None):
        h = self.cell(x_t, torch.zeros(x_t.shape[0], self.hidden_size) if state is None else state)
        return h, h


class NumpyRandomInit(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.cell = nn.RNNCell(input_size, hidden_size)
        self.extra = nn.Parameter(torch.from_numpy(np.random.randn(hidden_size).astype(np.float32)))

    def forward(self, x_t, state=None):
        h = self.cell(x_t, state) + self.extra
        return h, h


class IgnoresState(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size)

    def forward(self, x, state=None):
        return self.rnn(x)


class PlainTensorWeights(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.weight = torch.randn(hidden_size, input_size)  # not an nn.Parameter

    def forward(self, x_t, state=None):
        h = torch.tanh(x_t @ self.weight.T)
        return h, h


class UnusedParameter(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.cell = nn.RNNCell(input_size, hidden_size)
        self.forgotten = nn.Linear(hidden_size, hidden_size)

    def forward(self, x_t, state=None):
        h = self.cell(x_t, state)
        return h, h


class WrongBackward(NumpyTanhRNN):
    """A NumPy cell whose backward is off by 1% for U."""

    def backward(self, cache, dy, dstate):
        dx, dh0, grads = super().backward(cache, dy, dstate)
        return dx, dh0, {**grads, "U": grads["U"] * 1.01}


class Scribbler(NumpyTanhRNN):
    """A NumPy cell whose backward scales the output gradient it is handed, in place."""

    def backward(self, cache, dy, dstate):
        dy *= 1.0 + 1e-3
        return super().backward(cache, dy, dstate)


class Frozen(nn.Module):
    """Uses its input, state and parameter, with finite gradients, yet its output never depends on the input."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(hidden_size))

    def forward(self, x, state=None):
        h = x.new_zeros(x.shape[1], self.scale.shape[0]) if state is None else state
        h = h + 0.0 * self.scale * x.sum()
        return h.expand(x.shape[0], *h.shape), h


class NanInFloat64(nn.Module):
    """Finite in float32 (every check but pieces runs there); in float64 a branch divides 0 by 0."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.cell = nn.RNNCell(input_size, hidden_size)

    def forward(self, x_t, state=None):
        h = self.cell(x_t, state)
        if x_t.dtype == torch.float64:
            h = h * (x_t.new_zeros(()) / 0.0)
        return h, h


class NormalisesState(nn.Module):
    """Normalises the state it is given: NaN (0 / 0) for an explicit all-zero state, not for None."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.cell = nn.RNNCell(input_size, hidden_size)

    def forward(self, x_t, state=None):
        h = self.cell(x_t, None if state is None else state / state.norm(dim=-1, keepdim=True))
        return h, h


BROKEN = {
    "growing-state": (make_spec("growing-state", GrowingState, form="step"), "shapes",
                      r"x of shape \(T, B, I\) = \(3, 2, 1\): the state changed structure when fed back: \(2, 3\) -> \(2, 6\)"),
    "wrong-output": (make_spec("wrong-output", lambda i, h: nn.GRU(i, h + 1)), "shapes",
                     r"output has shape \(3, 2, 2\), expected \(T, B, H\) = \(3, 2, 1\)"),
    "dict-state": (make_spec("dict-state", DictState), "shapes", r"state is a dict; a state is a tensor or a tuple"),
    "nan-gradient": (make_spec("nan-gradient", NanGradient, form="step"), "gradients",
                     r"parameter 'step\.cell\.weight_ih' has \d+ non-finite gradient entries"),
    "float32-zeros": (make_spec("float32-zeros", Float32Zeros, form="step"), "pieces",
                      r"in float64, cell\(x, None\) raised RuntimeError.*x\.new_zeros"),
    "numpy-random": (make_spec("numpy-random", NumpyRandomInit, form="step"), "determinism",
                     r"two builds under torch\.manual_seed\(0\) differ in 'step\.extra'.*numpy\.random"),
    # a NaN is never close to anything: the message says which tensor holds how many, not "differs by up to nan"
    "nan-in-float64": (make_spec("nan-in-float64", NanInFloat64, form="step"), "pieces",
                       r"in float64 with a nonzero initial state: the output of x whole holds 135 non-finite values "
                       r"\(NaN/inf\) of 135"),
    "normalises-state": (make_spec("normalises-state", NormalisesState, form="step"), "zero-state",
                         r"the output of cell\(x, zeros\) holds 40 non-finite values \(NaN/inf\) of 40"),
    "ignores-state": (make_spec("ignores-state", IgnoresState), "pieces", r"differs from running x whole, from step 4 on"),
    "plain-tensors": (make_spec("plain-tensors", PlainTensorWeights, form="step"), "build",
                      r"no trainable parameters: wrap weights in nn\.Parameter"),
    "unused-parameter": (make_spec("unused-parameter", UnusedParameter, form="step"), "gradients",
                         r"parameter 'step\.forgotten\.weight' got no gradient"),
    "wrong-backward": (make_spec("wrong-backward", WrongBackward, backend="numpy"), "finite-differences",
                       r"params\['U'\] at index \(\d+, \d+\): backward gives .*, central finite differences give"),
    "scribbler": (make_spec("scribbler", Scribbler, backend="numpy"), "gradients",
                  r"backward changed the gradient it was handed for the outputs in place"),
    "frozen": (make_spec("frozen", Frozen), "training", r"took the held-out loss from .* to .*; expected below"),
    "step-registered-as-sequence": (make_spec("step-as-sequence", GrowingState), "shapes",
                                    r"raised ValueError: RNNCell: Expected input to be 1D or 2D.*registered with form='sequence'.*needs form='step'"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_cell_fails_the_right_check_with_an_actionable_message(name):
    """The first failing check is the one that names the bug, and its message says what was expected."""
    spec, check, message = BROKEN[name]
    first = failure(run_checks(spec))
    assert first.name == check, first.line()
    assert re.search(message, first.message), first.message


def test_checks_after_a_failed_shapes_check_are_skipped_with_the_reason():
    """When shapes fails, every later check is SKIP 'until shapes passes' rather than a cascade of errors."""
    results = run_checks(BROKEN["growing-state"][0])
    after = results[[r.name for r in results].index("shapes") + 1 :]
    assert after and all(r.status == "SKIP" and "'shapes'" in r.message for r in after)


def test_assert_conforms_lists_every_failure():
    """assert_conforms raises AssertionError naming the cell and each failing check's line."""
    with pytest.raises(AssertionError) as info:
        assert_conforms(BROKEN["nan-gradient"][0])
    text = str(info.value)
    failed = 3 if torch.cuda.is_available() else 2  # on a GPU the cuda check sees the NaN gradients too
    assert f"cell 'nan-gradient' failed {failed} of 10 checks" in text
    assert "FAIL  gradients" in text and "FAIL  training" in text


class DetachedState(nn.Module):
    """A GRU whose returned state is detached (truncated BPTT between calls): legitimate."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size)

    def forward(self, x, state=None):
        y, h = self.gru(x, None if state is None else state.unsqueeze(0))
        return y, h[0].detach()


def test_a_cell_returning_a_detached_state_passes_the_gradients_check():
    """Outputs that do not require grad get no output gradient, as a loss would give them none."""
    results = {r.name: r for r in run_checks(make_spec("detached-state", DetachedState))}
    assert results["gradients"].status == "PASS", results["gradients"].line()


def test_assert_conforms_returns_the_results_of_a_good_cell():
    results = assert_conforms(make_spec("gru-draft", lambda i, h: nn.GRU(i, h)))
    assert [r.name for r in results] == list(CHECK_NAMES)


def test_checks_leave_the_callers_random_state_alone():
    """Every check runs under fork_rng: the caller's next random number is what it would have been."""
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run_checks(make_spec("gru-draft", lambda i, h: nn.GRU(i, h)))
    torch.testing.assert_close(torch.rand(3), expected)


def test_check_result_rejects_an_unknown_status():
    with pytest.raises(ValueError, match="'OK'"):
        CheckResult("build", "OK", "")


def test_unknown_cell_names_the_plugin_errors_that_may_explain_it(write_plugin):
    """Looking up a cell whose plugin failed to import says so, beside the list of available cells."""
    path = write_plugin("typo_cell", "import torch\nraise ImportError('no module named mycelllib')\n")
    with pytest.raises(UnknownCellError) as info:
        run_checks("typo", plugin_files=[path], autoload=False)
    assert "unknown cell 'typo'" in str(info.value)
    assert "no module named mycelllib" in str(info.value)


# --- the command line -----------------------------------------------------------------------

BROKEN_PLUGIN = """
    import torch
    from torch import nn

    from harness import hookimpl


    class NanGradient(nn.Module):
        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.cell = nn.RNNCell(input_size, hidden_size)

        def forward(self, x_t, state=None):
            h = self.cell(x_t, state)
            return h + torch.where(h > 100, torch.sqrt(h - 100), torch.zeros_like(h)), h


    @hookimpl
    def register_cells(register):
        register("nangrad", NanGradient, form="step")
        register("goodgru", lambda i, h: nn.GRU(i, h))
"""


def test_cli_check_prints_one_line_per_check_and_exits_1_on_failure(rnnbench, write_plugin):
    """`rnnbench check A,B --plugin F`: a header per cell, a PASS/FAIL/SKIP line per check, a summary; exit 1."""
    plugin = write_plugin("nangrad_plugin", BROKEN_PLUGIN)
    result = rnnbench("check", "nangrad,goodgru", "--plugin", plugin)
    assert result.code == 1
    assert "Traceback" not in result.err
    lines = result.out.splitlines()
    assert lines[0] == f"nangrad (torch backend, step form) from nangrad_plugin (file:{plugin.resolve()})"
    check_lines = [line.strip() for line in lines if line.startswith("  ")]
    assert len(check_lines) == 2 * len(CHECK_NAMES)
    assert all(line.split()[0] in ("PASS", "FAIL", "SKIP") for line in check_lines)
    assert [line.split()[1] for line in check_lines[: len(CHECK_NAMES)]] == list(CHECK_NAMES)
    assert any(line.startswith("FAIL  gradients") and "non-finite" in line for line in check_lines)
    expected = "5 passed, 3 failed, 2 skipped" if torch.cuda.is_available() else "5 passed, 2 failed, 3 skipped"
    assert f"nangrad: {expected}" in lines
    assert any(line.startswith("goodgru: ") and " 0 failed" in line for line in lines)


def test_cli_check_exits_0_when_every_check_passes(rnnbench):
    result = rnnbench("check", "numpy-lstm")
    assert result.code == 0, result.out
    assert "numpy-lstm: 8 passed, 0 failed, 2 skipped" in result.out
    assert "PASS  finite-differences" in result.out


def test_cli_check_of_an_unknown_cell_is_a_usage_error(rnnbench):
    result = rnnbench("check", "nosuchcell")
    assert result.code == 2
    assert "unknown cell or task 'nosuchcell'" in result.err and "lstm" in result.err and "parity" in result.err
    assert "Traceback" not in result.err
