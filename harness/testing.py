"""Conformance checks for cell plugins: what ``rnnbench check NAME`` runs, importable for pytest.

A plugin's own test suite needs one line per cell::

    from harness.testing import assert_conforms

    def test_mycell_conforms():
        assert_conforms("mycell")  # AssertionError naming every failed check

``run_checks(cell)`` returns one :class:`CheckResult` per check, in this order:

``build``               the factory builds the cell at several (input, hidden) sizes
``shapes``              y is (T, B, H) and finite; the state is a tensor or tuple of tensors
                        whose structure survives being fed back (also at T = B = 1)
``zero-state``          an explicit all-zero state gives the same outputs as ``None``
``pieces``              running a sequence in pieces, carrying the state, equals running it
                        whole (float64)
``determinism``         two builds under one ``torch.manual_seed`` are identical, and so are
                        two calls with the same input
``gradients``           every parameter, the input and the initial state get finite gradients
``finite-differences``  NumPy backend: the hand-written backward equals central finite
                        differences in float64
``cuda``                torch backend on a machine with a GPU: outputs, state and gradients
                        stay on the GPU and match the CPU
``training``            a few dozen Adam steps on a one-step echo task lower the loss

When ``build`` or ``shapes`` fails the later checks are skipped: they would only repeat
the same error. Each check runs on one CPU thread and under ``torch.random.fork_rng``,
so the caller's random state and thread count are left as they were.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from harness.cells import SequenceModel, build_cell, check_contract, flatten_state, map_state, state_structure
from harness.errors import RnnbenchError, UnknownCellError
from harness.plugins import CellSpec, PluginInfo, Registry, load_plugins

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
CHECK_NAMES = (
    "build", "shapes", "zero-state", "pieces", "determinism", "gradients", "finite-differences", "cuda", "training",
)
BUILD_SIZES = ((1, 1), (3, 5), (8, 16))  # (input_size, hidden_size)
SEQUENCE_SHAPES = ((3, 2), (1, 1))  # (seq_len, batch)
SEED = 0

_NEW_TENSORS_HINT = "create new tensors from the input, e.g. x.new_zeros(batch, hidden_size), so they follow its dtype and device"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: ``status`` is PASS, FAIL or SKIP; ``message`` says what was
    seen (expected vs actual on failure)."""

    name: str
    status: str
    message: str

    def __post_init__(self):
        if self.status not in (PASS, FAIL, SKIP):
            raise ValueError(f"status must be PASS, FAIL or SKIP, got {self.status!r}")

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def line(self) -> str:
        return f"{self.status}  {self.name:<18}  {self.message}"


class _Fail(Exception):
    """Raised inside a check with the message its FAIL line shows."""


def make_spec(name: str, factory: Callable[[int, int], Any], *, backend: str = "torch", form: str = "sequence") -> CellSpec:
    """A :class:`CellSpec` for a factory that no plugin registered, e.g. to check a cell under
    development: ``run_checks(make_spec("draft", Draft, form="step"))``."""
    return CellSpec(name, factory, backend, form, "", PluginInfo(name, "file", "unregistered", "local"))


def resolve(cell: str | CellSpec, *, registry: Registry | None = None, plugin_files=(), autoload: bool | None = None) -> CellSpec:
    """The spec of ``cell``: a :class:`CellSpec` as given, or a name looked up in ``registry``
    (default: ``load_plugins(plugin_files, autoload=autoload)``)."""
    if isinstance(cell, CellSpec):
        return cell
    if registry is None:
        registry = load_plugins(plugin_files, autoload=autoload)
    if cell not in registry.cells and registry.errors:
        # The plugin that should have registered it may be among those that failed: say so.
        error = UnknownCellError(cell, list(registry.cells))
        error.args = (f"{error}; errors while loading plugins: {'; '.join(registry.errors)}",)
        raise error
    return registry.cell(cell)


def run_checks(cell: str | CellSpec, **lookup) -> list[CheckResult]:
    """Run every check on ``cell`` (a name or a :class:`CellSpec`); see the module docstring.

    :param lookup: ``registry``, ``plugin_files`` or ``autoload``, used to find a cell by name.
    """
    return list(iter_checks(resolve(cell, **lookup)))


def assert_conforms(cell: str | CellSpec, **lookup) -> list[CheckResult]:
    """Run the checks and raise ``AssertionError`` listing every failure; return the results."""
    spec = resolve(cell, **lookup)
    results = list(iter_checks(spec))
    failures = [r for r in results if r.failed]
    if failures:
        lines = "\n".join("  " + r.line() for r in failures)
        raise AssertionError(f"cell {spec.name!r} failed {len(failures)} of {len(results)} checks:\n{lines}")
    return results


def iter_checks(spec: CellSpec) -> Iterator[CheckResult]:
    """Yield each check's result as soon as it is known (the CLI prints them as they come)."""
    blocked_by = None
    for name, check in _CHECKS:
        if blocked_by is not None:
            yield CheckResult(name, SKIP, f"skipped until {blocked_by!r} passes")
            continue
        result = _run_one(name, check, spec)
        if result.failed and name in ("build", "shapes"):
            blocked_by = name
        yield result


def summary(results: list[CheckResult]) -> str:
    counts = {status: sum(r.status == status for r in results) for status in (PASS, FAIL, SKIP)}
    return f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped"


def _run_one(name: str, check, spec: CellSpec) -> CheckResult:
    threads = torch.get_num_threads()
    # One thread, as `rnnbench run` uses by default: tiny tensors gain nothing from more, and
    # on a busy machine spinning OpenMP threads can make a check 20 times slower.
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            outcome = check(spec)
    except _Fail as failure:
        return CheckResult(name, FAIL, str(failure))
    except Exception as exc:  # the cell's own error: say where it came from
        return CheckResult(name, FAIL, f"{type(exc).__name__}: {exc}")
    finally:
        torch.set_num_threads(threads)
    status, message = outcome if isinstance(outcome, tuple) else (PASS, outcome)
    return CheckResult(name, status, message)


# --- helpers ---------------------------------------------------------------------------------

def _build(spec: CellSpec, input_size: int, hidden_size: int, seed: int = SEED) -> nn.Module:
    torch.manual_seed(seed)
    return build_cell(spec, input_size, hidden_size)


def _call(cell: nn.Module, x: torch.Tensor, state, what: str, hint: str = ""):
    """``cell(x, state)`` with a FAIL message that names the call (and ``hint``) when it raises."""
    try:
        out = cell(x, state)
    except RnnbenchError:
        raise
    except Exception as exc:
        raise _Fail(f"{what} raised {type(exc).__name__}: {exc}" + (f"; {hint}" if hint else "")) from None
    if not (isinstance(out, tuple) and len(out) == 2):
        got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
        raise _Fail(f"forward must return (output, state), got {got}")
    return out


def _validate_state(state, where: str) -> None:
    def walk(part, path):
        if isinstance(part, torch.Tensor):
            return
        if isinstance(part, (tuple, list)):
            for i, sub in enumerate(part):
                walk(sub, f"{path}[{i}]")
            return
        raise _Fail(f"{where}: state{path} is a {type(part).__name__}; a state is a tensor or a tuple of tensors, e.g. (h, c)")

    walk(state, "")
    if not flatten_state(state):
        raise _Fail(f"{where}: the returned state holds no tensors")


def _inputs(seq_len: int, batch: int, input_size: int, dtype=torch.float32, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(seq_len, batch, input_size, generator=gen, dtype=dtype)


def _random_state_like(state, seed: int = 2):
    gen = torch.Generator().manual_seed(seed)
    return map_state(lambda t: 0.5 * torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device), state)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def _form_hint(spec: CellSpec) -> str:
    """What the cell's registration promises, for messages about calls that went wrong."""
    if spec.backend == "numpy":
        return "numpy backend: forward(x: (T, B, I), state) -> (y: (T, B, H), state, cache)"
    if spec.form == "step":
        return "registered with form='step': forward(x_t: (B, I), state) -> (h_t: (B, H), state), state None at the first step"
    return ("registered with form='sequence': forward(x: (T, B, I), state) -> (y: (T, B, H), state); "
            "a cell written as one step needs form='step'")


# --- the checks --------------------------------------------------------------------------------

def check_build(spec: CellSpec) -> str:
    for input_size, hidden_size in BUILD_SIZES:
        try:
            cell = _build(spec, input_size, hidden_size)
        except RnnbenchError as exc:
            raise _Fail(str(exc)) from None
        except Exception as exc:
            raise _Fail(f"factory({input_size}, {hidden_size}) raised {type(exc).__name__}: {exc}") from None
        if not list(cell.parameters()):
            hint = "put its arrays in the params dict" if spec.backend == "numpy" else "wrap weights in nn.Parameter or use nn.Linear"
            raise _Fail(f"factory({input_size}, {hidden_size}) built a cell with no trainable parameters: {hint}")
    sizes = ", ".join(f"({i}, {h})" for i, h in BUILD_SIZES)
    return f"builds at (I, H) = {sizes}"


def check_shapes(spec: CellSpec) -> str:
    shown = ""
    for input_size, hidden_size in BUILD_SIZES:
        cell = _build(spec, input_size, hidden_size)
        for seq_len, batch in SEQUENCE_SHAPES:
            x = _inputs(seq_len, batch, input_size)
            where = f"I={input_size}, H={hidden_size}, x of shape (T, B, I) = {tuple(x.shape)}"
            with torch.no_grad():
                y, state = _call(cell, x, None, f"cell(x, None) with {where}", _form_hint(spec))
                expected = (seq_len, batch, hidden_size)
                if not isinstance(y, torch.Tensor):
                    raise _Fail(f"{where}: output is a {type(y).__name__}, expected a tensor of shape (T, B, H) = {expected}")
                if tuple(y.shape) != expected:
                    if spec.form == "step" and y.dim() == 3:
                        raise _Fail(f"{where}: the step returned h_t of shape {tuple(y.shape[1:])}, expected (B, H) = {expected[1:]}")
                    raise _Fail(f"{where}: output has shape {tuple(y.shape)}, expected (T, B, H) = {expected} ({_form_hint(spec)})")
                if y.dtype != x.dtype:
                    raise _Fail(f"{where}: output has dtype {y.dtype} for a {x.dtype} input; {_NEW_TENSORS_HINT}")
                if not torch.isfinite(y).all():
                    raise _Fail(f"{where}: output holds NaN or inf for a standard-normal input")
                _validate_state(state, where)
                for i, part in enumerate(flatten_state(state)):
                    if not torch.isfinite(part).all():
                        raise _Fail(f"{where}: state tensor {i} holds NaN or inf")
                    if part.dtype != x.dtype:
                        raise _Fail(f"{where}: state tensor {i} has dtype {part.dtype} for a {x.dtype} input; {_NEW_TENSORS_HINT}")
                structure = state_structure(state)
                _, state2 = _call(cell, x, state, f"{where}: feeding back the state it returned, of shapes {structure},")
                _validate_state(state2, f"{where}, state fed back")
                if state_structure(state2) != structure:
                    raise _Fail(f"{where}: the state changed structure when fed back: {structure} -> {state_structure(state2)}; "
                                "a cell must accept the state it returns and return the same shapes")
            check_contract(cell, input_size, hidden_size, torch.device("cpu"), name=spec.name)
            if (input_size, hidden_size, seq_len) == (3, 5, 3):
                shown = f"state {structure} for B={batch}, H={hidden_size}"
    return f"y (T, B, H) at {len(BUILD_SIZES) * len(SEQUENCE_SHAPES)} sizes; {shown}"


def check_zero_state(spec: CellSpec) -> str:
    cell = _build(spec, 3, 5)
    x = _inputs(4, 2, 3)
    with torch.no_grad():
        y_none, state = _call(cell, x, None, "cell(x, None)")
        y_zero, _ = _call(cell, x, map_state(torch.zeros_like, state), "cell(x, zeros)")
    diff = _max_diff(y_zero, y_none)
    if not torch.allclose(y_zero, y_none, rtol=1e-5, atol=1e-6):
        raise _Fail(f"an explicit all-zero state gives outputs that differ from state=None by up to {diff:.3g}: None must mean zeros")
    return "an all-zero state gives the same outputs as None"


def check_pieces(spec: CellSpec) -> str:
    cell = _build(spec, 4, 5)
    try:
        cell = cell.double()
    except Exception as exc:
        raise _Fail(f"cell.double() raised {type(exc).__name__}: {exc}") from None
    prefix, x = _inputs(3, 3, 4, torch.float64, seed=3), _inputs(9, 3, 4, torch.float64, seed=4)
    splits = [(0, 4), (4, 5), (5, 9)]
    with torch.no_grad():
        _, start = _call(cell, prefix, None, "in float64, cell(x, None)", _NEW_TENSORS_HINT)
        if any(t.dtype != torch.float64 for t in flatten_state(start)):
            raise _Fail(f"in float64 the state has dtypes {[t.dtype for t in flatten_state(start)]}; {_NEW_TENSORS_HINT}")
        y_whole, s_whole = _call(cell, x, start, "in float64, cell(x, state)", _NEW_TENSORS_HINT)
        pieces, state = [], start
        for lo, hi in splits:
            y, state = _call(cell, x[lo:hi], state, f"cell(x[{lo}:{hi}], state)")
            pieces.append(y)
    y_pieces = torch.cat(pieces)
    if not torch.allclose(y_pieces, y_whole, rtol=1e-9, atol=1e-12):
        bad = (y_pieces - y_whole).abs().flatten(1).max(dim=1).values
        first = int(torch.nonzero(bad > 1e-12 + 1e-9 * y_whole.abs().max())[0])
        raise _Fail(f"running x[0:4], x[4:5], x[5:9] with the state carried differs from running x whole, from step {first} "
                    f"on (up to {float(bad.max()):.3g}): the returned state must hold everything the cell remembers")
    for i, (a, b) in enumerate(zip(flatten_state(state), flatten_state(s_whole))):
        if not torch.allclose(a, b, rtol=1e-9, atol=1e-12):
            raise _Fail(f"final state tensor {i} after the pieces differs from the whole run's by up to {_max_diff(a, b):.3g}")
    return "x[0:4], x[4:5], x[5:9] with the state carried equal x whole (float64, nonzero initial state)"


def check_determinism(spec: CellSpec) -> str:
    first, second = _build(spec, 3, 5), _build(spec, 3, 5)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        if not torch.equal(a, b):
            raise _Fail(f"two builds under torch.manual_seed({SEED}) differ in {name!r}: draw initial values from torch's "
                        "generator (nn.init, torch.empty(...).uniform_()), not numpy.random or random")
    x = _inputs(5, 2, 3)
    with torch.no_grad():
        y1, _ = _call(first, x, None, "cell(x, None)")
        y2, _ = _call(first, x, None, "cell(x, None) again")
    if not torch.allclose(y1, y2, rtol=1e-6, atol=1e-7):
        raise _Fail(f"two calls with the same input differ by up to {_max_diff(y1, y2):.3g}: forward must not keep "
                    "state between calls or draw random numbers")
    return f"same parameters under torch.manual_seed({SEED}); same outputs for the same input"


def check_gradients(spec: CellSpec) -> str:
    cell = _build(spec, 3, 5)
    x = _inputs(6, 3, 3).requires_grad_()
    with torch.no_grad():
        _, probe = _call(cell, x, None, "cell(x, None)")
    state0 = map_state(lambda t: t.requires_grad_(), _random_state_like(probe))
    y, state = _call(cell, x, state0, "cell(x, state)")
    gen = torch.Generator().manual_seed(5)
    outputs = [y, *flatten_state(state)]
    # The gradient of sum(output * random) for every output, handed to backward directly:
    # a cell must leave it unchanged, because the speed measurement reuses one between calls.
    # Outputs that do not require grad (a detached state part) get none, as a loss gives them none.
    handed = [torch.randn(out.shape, generator=gen) for out in outputs]
    pairs = [(out, g) for out, g in zip(outputs, handed) if out.requires_grad]
    if not pairs:
        raise _Fail("no output requires grad: the cell detaches its outputs, or computes them without autograd")
    handed = [g for _, g in pairs]
    kept = [g.clone() for g in handed]
    torch.autograd.backward([out for out, _ in pairs], handed)
    if not all(torch.equal(a, b) for a, b in zip(handed, kept)):
        raise _Fail("backward changed the gradient it was handed for the outputs in place: treat incoming gradients "
                    "as read-only (copy before modifying)")
    names = []
    for name, param in cell.named_parameters():
        names.append(name)
        if param.grad is None:
            raise _Fail(f"parameter {name!r} got no gradient: it is unused in forward, or reached only through "
                        ".detach(), .data or .numpy()")
        bad = int((~torch.isfinite(param.grad)).sum())
        if bad:
            raise _Fail(f"parameter {name!r} has {bad} non-finite gradient entries of {param.numel()} (NaN or inf)")
    for what, tensor in [("the input x", x)] + [(f"initial state tensor {i}", t) for i, t in enumerate(flatten_state(state0))]:
        if tensor.grad is None:
            raise _Fail(f"{what} got no gradient: the cell does not use it, or detaches it")
        if not torch.isfinite(tensor.grad).all():
            raise _Fail(f"{what} has a NaN or inf gradient")
    listed = ", ".join(names) if len(names) <= 6 else ", ".join(names[:6]) + ", ..."
    return f"finite gradients for all {len(names)} parameters ({listed}), the input and the initial state"


def check_finite_differences(spec: CellSpec):
    if spec.backend != "numpy":
        return SKIP, "torch backend: autograd computes the backward"
    torch.manual_seed(SEED)
    raw = spec.factory(3, 4)
    raw.params = {name: np.array(value, dtype=np.float64) for name, value in raw.params.items()}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 2, 3))
    _, probe, _ = raw.forward(x, None)
    state0 = _np_map(lambda a: 0.5 * rng.normal(size=np.shape(a)), probe)
    weight_y = rng.normal(size=(4, 2, 4))
    weight_state = _np_map(lambda a: rng.normal(size=np.shape(a)), probe)

    def loss() -> float:
        y, state, _ = raw.forward(x, state0)
        return float((y * weight_y).sum()) + sum(float((s * w).sum()) for s, w in zip(_np_flat(state), _np_flat(weight_state)))

    _, _, cache = raw.forward(x, state0)
    raw.needs_input_grad = True
    dx, dstate0, grads = raw.backward(cache, weight_y, weight_state)
    arrays = {f"params[{name!r}]": (raw.params[name], grads.get(name)) for name in raw.params}
    arrays["dx"] = (x, dx)
    for i, (s, d) in enumerate(zip(_np_flat(state0), _np_flat(dstate0) if dstate0 is not None else [None] * 99)):
        arrays[f"dstate0[{i}]" if isinstance(state0, tuple) else "dstate0"] = (s, d)
    checked = 0
    for name, (array, analytic) in arrays.items():
        if analytic is None:
            raise _Fail(f"backward returned no gradient for {name}")
        analytic = np.asarray(analytic)
        if analytic.shape != array.shape:
            raise _Fail(f"backward's {name} has shape {analytic.shape}, expected {array.shape}")
        flat_indices = rng.permutation(array.size)[:12]  # a sample keeps the check fast at any size
        for flat in flat_indices:
            index = np.unravel_index(flat, array.shape)
            numeric = _central_difference(loss, array, index)
            if not math.isclose(analytic[index], numeric, rel_tol=1e-5, abs_tol=1e-7):
                raise _Fail(f"{name} at index {tuple(int(i) for i in index)}: backward gives {analytic[index]:.6g}, "
                            f"central finite differences give {numeric:.6g}")
            checked += 1
    return f"backward equals central differences at {checked} sampled entries of {', '.join(arrays)} (float64)"


def numeric_gradient(loss: Callable[[], float], array: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of ``loss()`` with respect to every entry of ``array``
    (perturbed in place and restored): the reference a NumPy cell's hand-written backward
    is checked against. Use float64 arrays."""
    numeric = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        numeric[index] = _central_difference(loss, array, index, eps)
    return numeric


def _central_difference(loss: Callable[[], float], array: np.ndarray, index, eps: float = 1e-6) -> float:
    saved = array[index]
    array[index] = saved + eps
    plus = loss()
    array[index] = saved - eps
    minus = loss()
    array[index] = saved
    return (plus - minus) / (2 * eps)


def _np_flat(state) -> list:
    if state is None:
        return []
    if isinstance(state, (tuple, list)):
        return [a for part in state for a in _np_flat(part)]
    return [state]


def _np_map(fn, state):
    if isinstance(state, (tuple, list)):
        return tuple(_np_map(fn, part) for part in state)
    return fn(state)


def check_cuda(spec: CellSpec):
    if spec.backend == "numpy":
        return SKIP, "numpy cells run on the CPU only"
    if not torch.cuda.is_available():
        return SKIP, f"no CUDA GPU available to torch {torch.__version__}"
    cpu_cell = _build(spec, 3, 5)
    cuda_cell = copy.deepcopy(cpu_cell).cuda()
    x = _inputs(6, 3, 3)
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # compare float32 with float32
    try:
        x_cuda = x.cuda().requires_grad_()
        y, state = _call(cuda_cell, x_cuda, None, "on cuda, cell(x, None)", _NEW_TENSORS_HINT + ", or register them as buffers")
        for what, tensor in [("output", y)] + [(f"state tensor {i}", t) for i, t in enumerate(flatten_state(state))]:
            if tensor.device.type != "cuda":
                raise _Fail(f"on cuda, the {what} is on {tensor.device}; {_NEW_TENSORS_HINT}")
        _call(cuda_cell, x_cuda, state, "on cuda, feeding the state back")
        y.sum().backward()
        for name, param in cuda_cell.named_parameters():
            if param.grad is None or param.grad.device.type != "cuda" or not torch.isfinite(param.grad).all():
                raise _Fail(f"on cuda, parameter {name!r} has no finite gradient on the GPU")
        with torch.no_grad():
            y_cpu, _ = _call(cpu_cell, x, None, "cell(x, None) on cpu")
        diff = _max_diff(y.detach().cpu(), y_cpu)
        if not torch.allclose(y.detach().cpu(), y_cpu, rtol=1e-4, atol=1e-5):
            raise _Fail(f"outputs on cuda differ from cpu by up to {diff:.3g} (float32, TF32 off)")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    return f"output, state and gradients on {torch.cuda.get_device_name()}; outputs match cpu within {diff:.1g}"


ECHO_STEPS, ECHO_HIDDEN, ECHO_LR = 100, 16, 1e-2


def echo_batch(batch: int, gen: torch.Generator, seq_len: int = 10, input_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """The training check's task: x ~ N(0, 1) of shape (T, B, I); the target at step t is
    x_{t-1}[0] (zero at t = 0), so the cell must carry one step of memory."""
    x = torch.randn(seq_len, batch, input_size, generator=gen)
    target = torch.zeros(seq_len, batch, 1)
    target[1:] = x[:-1, :, :1]
    return x, target


def check_training(spec: CellSpec) -> str:
    cell = _build(spec, 2, ECHO_HIDDEN)
    model = SequenceModel(cell, ECHO_HIDDEN, 1)
    gen = torch.Generator().manual_seed(7)
    eval_x, eval_target = echo_batch(256, gen)
    optimizer = torch.optim.Adam(model.parameters(), lr=ECHO_LR)

    def held_out_loss() -> float:
        with torch.no_grad():
            return float(nn.functional.mse_loss(model(eval_x)[0], eval_target))

    before = held_out_loss()
    for step in range(1, ECHO_STEPS + 1):
        x, target = echo_batch(32, gen)
        loss = nn.functional.mse_loss(model(x)[0], target)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if not math.isfinite(loss.item()):
            raise _Fail(f"training loss became {loss.item()} at step {step}")
    after = held_out_loss()
    if not after < 0.75 * before:
        raise _Fail(f"{ECHO_STEPS} Adam steps (lr {ECHO_LR:g}) on the echo task took the held-out loss from {before:.4f} "
                    f"to {after:.4f}; expected below {0.75 * before:.4f}. Do gradients reach the parameters that matter?")
    return f"{ECHO_STEPS} Adam steps on a one-step echo task: held-out MSE {before:.3f} -> {after:.3f}"


_CHECKS = (
    ("build", check_build),
    ("shapes", check_shapes),
    ("zero-state", check_zero_state),
    ("pieces", check_pieces),
    ("determinism", check_determinism),
    ("gradients", check_gradients),
    ("finite-differences", check_finite_differences),
    ("cuda", check_cuda),
    ("training", check_training),
)
assert tuple(name for name, _ in _CHECKS) == CHECK_NAMES
