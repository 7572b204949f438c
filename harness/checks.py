"""The conformance checks behind ``rnnbench check`` (run them through :mod:`harness.testing`).

Each check takes a :class:`~harness.plugins.CellSpec` and returns the message of its PASS
line, or ``(SKIP, why)``; it raises :class:`~harness.errors.CellContractError` with the
message of its FAIL line. :data:`CHECKS` lists them in the order they run; the module
docstring of :mod:`harness.testing` says what each one checks.
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from harness.cells import SequenceModel, build_cell, flatten_state, map_state
from harness.config import Recipe
from harness.contract import NEW_TENSORS_HINT, call, check_outputs, require_finite
from harness.contract import check_zero_state as check_contract_zero_state
from harness.echo import EchoTask
from harness.equivalence import compare_impls, nothing_to_compare
from harness.errors import CellContractError, DivergedError, RnnbenchError
from harness.names import NUMPY_BACKEND
from harness.plugins import CellSpec
from harness.training import train

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
BUILD_SIZES = ((1, 1), (3, 5), (8, 16))  # (input_size, hidden_size)
SEQUENCE_SHAPES = ((3, 2), (1, 1))  # (seq_len, batch)
SEED = 0


def _call(cell: nn.Module, x: torch.Tensor, state, what: str, hint: str = ""):
    """``cell(x, state)``; an exception the cell raises fails the check with ``what`` and ``hint``."""
    return call(cell, x, state, what, hint, explain=True)


# --- helpers ---------------------------------------------------------------------------------

def _build(spec: CellSpec, input_size: int, hidden_size: int, seed: int = SEED) -> nn.Module:
    torch.manual_seed(seed)
    return build_cell(spec, input_size, hidden_size)


def _inputs(seq_len: int, batch: int, input_size: int, dtype=torch.float32, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(seq_len, batch, input_size, generator=gen, dtype=dtype)


def _random_state_like(state, seed: int = 2):
    gen = torch.Generator().manual_seed(seed)
    return map_state(lambda t: 0.5 * torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device), state)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


# --- the checks --------------------------------------------------------------------------------

def check_build(spec: CellSpec) -> str:
    for input_size, hidden_size in BUILD_SIZES:
        try:
            cell = _build(spec, input_size, hidden_size)
        except RnnbenchError as exc:
            raise CellContractError(str(exc)) from None
        except Exception as exc:
            raise CellContractError(f"factory({input_size}, {hidden_size}) raised {type(exc).__name__}: {exc}") from None
        if not list(cell.parameters()):
            hint = "put its arrays in the params dict" if spec.backend == NUMPY_BACKEND else "wrap weights in nn.Parameter or use nn.Linear"
            raise CellContractError(f"factory({input_size}, {hidden_size}) built a cell with no trainable parameters: {hint}")
    sizes = ", ".join(f"({i}, {h})" for i, h in BUILD_SIZES)
    return f"builds at (I, H) = {sizes}"


def check_shapes(spec: CellSpec) -> str:
    shown = ""
    for input_size, hidden_size in BUILD_SIZES:
        cell = _build(spec, input_size, hidden_size)
        for seq_len, batch in SEQUENCE_SHAPES:
            x = _inputs(seq_len, batch, input_size)
            where = f"I={input_size}, H={hidden_size}, x of shape (T, B, I) = {tuple(x.shape)}"
            structure = check_outputs(cell, x, hidden_size, where, spec=spec, explain=True)
            if (input_size, hidden_size, seq_len) == (3, 5, 3):
                shown = f"state {structure} for B={batch}, H={hidden_size}"
    return f"y (T, B, H) at {len(BUILD_SIZES) * len(SEQUENCE_SHAPES)} sizes; {shown}"


def check_zero_state(spec: CellSpec) -> str:
    check_contract_zero_state(_build(spec, 3, 5), _inputs(4, 2, 3), "I=3, H=5, T=4, B=2", explain=True)
    return "an all-zero state gives the same outputs as None"


def check_pieces(spec: CellSpec) -> str:
    cell = _build(spec, 4, 5)
    try:
        cell = cell.double()
    except Exception as exc:
        raise CellContractError(f"cell.double() raised {type(exc).__name__}: {exc}") from None
    prefix, x = _inputs(3, 3, 4, torch.float64, seed=3), _inputs(9, 3, 4, torch.float64, seed=4)
    splits = [(0, 4), (4, 5), (5, 9)]
    with torch.no_grad():
        _, start = _call(cell, prefix, None, "in float64, cell(x, None)", NEW_TENSORS_HINT)
        if any(t.dtype != torch.float64 for t in flatten_state(start)):
            raise CellContractError(f"in float64 the state has dtypes {[t.dtype for t in flatten_state(start)]}; {NEW_TENSORS_HINT}")
        y_whole, s_whole = _call(cell, x, start, "in float64, cell(x, state)", NEW_TENSORS_HINT)
        pieces, state = [], start
        for lo, hi in splits:
            y, state = _call(cell, x[lo:hi], state, f"cell(x[{lo}:{hi}], state)")
            pieces.append(y)
    y_pieces = torch.cat(pieces)
    require_finite("in float64 with a nonzero initial state", [
        ("the output of x whole", y_whole), ("the output of x[0:4], x[4:5], x[5:9] with the state carried", y_pieces),
        *[(f"final state tensor {i} of x whole", t) for i, t in enumerate(flatten_state(s_whole))],
        *[(f"final state tensor {i} after the pieces", t) for i, t in enumerate(flatten_state(state))]])
    if not torch.allclose(y_pieces, y_whole, rtol=1e-9, atol=1e-12):
        bad = (y_pieces - y_whole).abs().flatten(1).max(dim=1).values
        first = int(torch.nonzero(bad > 1e-12 + 1e-9 * y_whole.abs().max())[0])
        raise CellContractError(f"running x[0:4], x[4:5], x[5:9] with the state carried differs from running x whole, from step {first} "
                    f"on (up to {float(bad.max()):.3g}): the returned state must hold everything the cell remembers")
    for i, (a, b) in enumerate(zip(flatten_state(state), flatten_state(s_whole))):
        if not torch.allclose(a, b, rtol=1e-9, atol=1e-12):
            raise CellContractError(f"final state tensor {i} after the pieces differs from the whole run's by up to {_max_diff(a, b):.3g}")
    return "x[0:4], x[4:5], x[5:9] with the state carried equal x whole (float64, nonzero initial state)"


def check_determinism(spec: CellSpec) -> str:
    first, second = _build(spec, 3, 5), _build(spec, 3, 5)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        if not torch.equal(a, b):
            raise CellContractError(f"two builds under torch.manual_seed({SEED}) differ in {name!r}: draw initial values from torch's "
                        "generator (nn.init, torch.empty(...).uniform_()), not numpy.random or random")
    x = _inputs(5, 2, 3)
    with torch.no_grad():
        y1, _ = _call(first, x, None, "cell(x, None)")
        y2, _ = _call(first, x, None, "cell(x, None) again")
    require_finite("cell(x, None) called twice", [("the first output", y1), ("the second output", y2)])
    if not torch.allclose(y1, y2, rtol=1e-6, atol=1e-7):
        raise CellContractError(f"two calls with the same input differ by up to {_max_diff(y1, y2):.3g}: forward must not keep "
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
        raise CellContractError("no output requires grad: the cell detaches its outputs, or computes them without autograd")
    handed = [g for _, g in pairs]
    kept = [g.clone() for g in handed]
    torch.autograd.backward([out for out, _ in pairs], handed)
    if not all(torch.equal(a, b) for a, b in zip(handed, kept)):
        raise CellContractError("backward changed the gradient it was handed for the outputs in place: treat incoming gradients "
                    "as read-only (copy before modifying)")
    names = []
    for name, param in cell.named_parameters():
        names.append(name)
        if param.grad is None:
            raise CellContractError(f"parameter {name!r} got no gradient: it is unused in forward, or reached only through "
                        ".detach(), .data or .numpy()")
        bad = int((~torch.isfinite(param.grad)).sum())
        if bad:
            raise CellContractError(f"parameter {name!r} has {bad} non-finite gradient entries of {param.numel()} (NaN or inf)")
    for what, tensor in [("the input x", x)] + [(f"initial state tensor {i}", t) for i, t in enumerate(flatten_state(state0))]:
        if tensor.grad is None:
            raise CellContractError(f"{what} got no gradient: the cell does not use it, or detaches it")
        if not torch.isfinite(tensor.grad).all():
            raise CellContractError(f"{what} has a NaN or inf gradient")
    listed = ", ".join(names) if len(names) <= 6 else ", ".join(names[:6]) + ", ..."
    return f"finite gradients for all {len(names)} parameters ({listed}), the input and the initial state"


def check_finite_differences(spec: CellSpec):
    if spec.backend != NUMPY_BACKEND:
        return SKIP, "torch backend: autograd computes the backward"
    torch.manual_seed(SEED)
    raw = spec.factory(3, 4)
    raw.params = {name: np.array(value, dtype=np.float64) for name, value in raw.params.items()}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 2, 3))
    _, probe, _ = raw.forward(x, None)
    state0 = map_state(lambda a: 0.5 * rng.normal(size=np.shape(a)), probe, leaf_type=np.ndarray)
    weight_y = rng.normal(size=(4, 2, 4))
    weight_state = map_state(lambda a: rng.normal(size=np.shape(a)), probe, leaf_type=np.ndarray)

    def loss() -> float:
        y, state, _ = raw.forward(x, state0)
        return float((y * weight_y).sum()) + sum(float((s * w).sum()) for s, w in zip(_arrays(state), _arrays(weight_state)))

    _, _, cache = raw.forward(x, state0)
    raw.needs_input_grad = True
    dx, dstate0, grads = raw.backward(cache, weight_y, weight_state)
    arrays = {f"params[{name!r}]": (raw.params[name], grads.get(name)) for name in raw.params}
    arrays["dx"] = (x, dx)
    for i, (s, d) in enumerate(zip(_arrays(state0), _arrays(dstate0) if dstate0 is not None else [None] * 99)):
        arrays[f"dstate0[{i}]" if isinstance(state0, tuple) else "dstate0"] = (s, d)
    checked = 0
    for name, (array, analytic) in arrays.items():
        if analytic is None:
            raise CellContractError(f"backward returned no gradient for {name}")
        analytic = np.asarray(analytic)
        if analytic.shape != array.shape:
            raise CellContractError(f"backward's {name} has shape {analytic.shape}, expected {array.shape}")
        flat_indices = rng.permutation(array.size)[:12]  # a sample keeps the check fast at any size
        for flat in flat_indices:
            index = np.unravel_index(flat, array.shape)
            numeric = _central_difference(loss, array, index)
            if not math.isclose(analytic[index], numeric, rel_tol=1e-5, abs_tol=1e-7):
                raise CellContractError(f"{name} at index {tuple(int(i) for i in index)}: backward gives {analytic[index]:.6g}, "
                            f"central finite differences give {numeric:.6g}")
            checked += 1
    return f"backward equals central differences at {checked} sampled entries of {', '.join(arrays)} (float64)"


def _arrays(state) -> tuple:
    """The arrays of a NumPy cell's raw state, in order."""
    return flatten_state(state, leaf_type=np.ndarray)


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


def check_cuda(spec: CellSpec):
    if spec.backend == NUMPY_BACKEND:
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
        y, state = _call(cuda_cell, x_cuda, None, "on cuda, cell(x, None)", NEW_TENSORS_HINT + ", or register them as buffers")
        for what, tensor in [("output", y)] + [(f"state tensor {i}", t) for i, t in enumerate(flatten_state(state))]:
            if tensor.device.type != "cuda":
                raise CellContractError(f"on cuda, the {what} is on {tensor.device}; {NEW_TENSORS_HINT}")
        _call(cuda_cell, x_cuda, state, "on cuda, feeding the state back")
        y.sum().backward()
        for name, param in cuda_cell.named_parameters():
            if param.grad is None or param.grad.device.type != "cuda" or not torch.isfinite(param.grad).all():
                raise CellContractError(f"on cuda, parameter {name!r} has no finite gradient on the GPU")
        with torch.no_grad():
            y_cpu, _ = _call(cpu_cell, x, None, "cell(x, None) on cpu")
        require_finite("on cuda and cpu", [("the output on cuda", y), ("the output on cpu", y_cpu)])
        diff = _max_diff(y.detach().cpu(), y_cpu)
        if not torch.allclose(y.detach().cpu(), y_cpu, rtol=1e-4, atol=1e-5):
            raise CellContractError(f"outputs on cuda differ from cpu by up to {diff:.3g} (float32, TF32 off)")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    return f"output, state and gradients on {torch.cuda.get_device_name()}; outputs match cpu within {diff:.1g}"


ECHO_RECIPE = Recipe(optimizer="adam", lr=1e-2, clip_norm=1.0, batch_size=32, steps=100, eval_every=100, eval_size=256)
ECHO_HIDDEN = 16


def check_training(spec: CellSpec) -> str:
    """A few dozen Adam steps of :func:`harness.training.train` (the loop every run uses) on
    :class:`harness.echo.EchoTask` must lower the held-out loss by a quarter."""
    task = EchoTask(10)
    model = SequenceModel(_build(spec, task.input_size, ECHO_HIDDEN), ECHO_HIDDEN, task.output_size)
    recipe = ECHO_RECIPE
    try:
        result = train(model, task, recipe, seed=7, device="cpu")
    except DivergedError as exc:
        raise CellContractError(str(exc)) from None
    before, after = result.curve[0].loss, result.loss
    if not after < 0.75 * before:
        raise CellContractError(
            f"{recipe.steps} Adam steps (lr {recipe.lr:g}) on the echo task took the held-out loss from {before:.4f} "
            f"to {after:.4f}; expected below {0.75 * before:.4f}. Do gradients reach the parameters that matter?")
    return f"{recipe.steps} Adam steps on a one-step echo task: held-out MSE {before:.3f} -> {after:.3f}"


def check_implementations(spec: CellSpec):
    """Every alternative implementation equals the reference (:mod:`harness.equivalence`)."""
    reference = spec.impls.reference
    alternatives = [name for name in spec.impls.names if name != reference]
    single = nothing_to_compare(spec)
    if single:
        return SKIP, single
    found = compare_impls(spec)
    for gaps in found:
        if gaps.failures:
            raise CellContractError(f"{gaps.impl} differs from {reference} (the reference) in {gaps.setting.describe()}: "
                                    + "; ".join(gaps.failures[:3]) + ("; ..." if len(gaps.failures) > 3 else ""))
    lines = [f"{name}: " + ", ".join(g.line() for g in found if g.impl == name) for name in alternatives]
    return f"equal to {reference} (reference) — " + "; ".join(lines)


CHECKS = (
    ("build", check_build),
    ("shapes", check_shapes),
    ("zero-state", check_zero_state),
    ("pieces", check_pieces),
    ("determinism", check_determinism),
    ("gradients", check_gradients),
    ("finite-differences", check_finite_differences),
    ("implementations", check_implementations),
    ("cuda", check_cuda),
    ("training", check_training),
)
CHECK_NAMES = tuple(name for name, _ in CHECKS)


def raise_failures(kind: str, name: str, results: list) -> list:
    """``results`` unchanged when every check passed or skipped; otherwise ``AssertionError``
    listing each failed check (what ``assert_conforms`` and ``assert_task_conforms`` raise)."""
    failures = [r for r in results if r.failed]
    if failures:
        lines = "\n".join("  " + r.line() for r in failures)
        raise AssertionError(f"{kind} {name!r} failed {len(failures)} of {len(results)} checks:\n{lines}")
    return results
