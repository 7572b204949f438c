"""Cell contracts: the state helpers, the NumPy adapter, step unrolling and building a cell.

A *cell* maps an input sequence and a recurrent state to outputs and the next state,
time-major like ``torch.nn.RNN``::

    y, state = cell(x, state)        # x: (T, B, I), y: (T, B, H); state None means zeros

The state is a tensor or a tuple of tensors (LSTM: ``(h, c)``) of any shape the cell
likes; the harness treats it as opaque except that it measures its norm and feeds it
back. Two backends:

* ``torch``: an ``nn.Module`` in sequence form (above) or step form
  ``(x_t: (B, I), state) -> (h_t: (B, H), state)``, which :class:`Unrolled` loops over T.
* ``numpy``: an object with ``params: dict[str, ndarray]``, ``forward(x, state) ->
  (y, state, cache)`` and ``backward(cache, dy, dstate) -> (dx, dstate0, grads)``, BPTT by
  hand. :class:`NumpyCell` adapts it into a ``torch.autograd.Function`` so that one
  training loop, one optimizer and one gradient probe serve both backends.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np
import torch
from torch import nn

from harness.errors import CellContractError, NotSupportedError
from harness.names import CUDA, GRAPHED, NUMPY_BACKEND, STEP

State = Union[torch.Tensor, tuple]


def map_state(fn, state: State, *, leaf_type: type | tuple = torch.Tensor, path: str = "state"):
    """``fn`` applied to every tensor of a state, nesting kept (tuples stay tuples, lists lists):
    the one walk over a state's structure that every helper below and the contract check use.

    ``leaf_type`` is what counts as a tensor (``numpy.ndarray`` for a NumPy cell's raw state).
    Raises :class:`CellContractError` naming the part (``state[1]``) that is neither a leaf nor
    a tuple or list: a dict or a str would otherwise be walked wrongly or without end.
    """
    if isinstance(state, leaf_type):
        return fn(state)
    if isinstance(state, (tuple, list)):
        parts = [map_state(fn, part, leaf_type=leaf_type, path=f"{path}[{i}]") for i, part in enumerate(state)]
        return tuple(parts) if isinstance(state, tuple) else parts
    raise CellContractError(f"{path} is a {type(state).__name__}; a state is a tensor or a tuple of tensors, e.g. (h, c)")


def flatten_state(state: State | None, *, leaf_type: type | tuple = torch.Tensor) -> tuple:
    """The tensors of a state, in order (``()`` for ``None``)."""
    leaves: list = []
    if state is not None:
        map_state(leaves.append, state, leaf_type=leaf_type)
    return tuple(leaves)


def state_structure(state: State | None) -> Any:
    """A state's nesting and shapes, e.g. ``((1, 2, 5), (1, 2, 5))`` for an LSTM: what the contract
    check compares before and after a state is fed back."""
    return None if state is None else map_state(lambda tensor: tuple(tensor.shape), state)


class Unrolled(nn.Module):
    """Runs a step cell ``(x_t, state) -> (h_t, state)`` over a whole sequence.

    A step cell may split its work in two to let the harness hoist what depends on the
    input alone out of the time loop: ``precompute(x: (T, B, I)) -> (T, B, ...)`` (e.g.
    ``W x_t + b`` for every step in one matrix product) and ``recur(pre_t, state) ->
    (h_t, state)`` for the rest. When both exist, the loop calls ``recur``.
    """

    def __init__(self, step: nn.Module):
        super().__init__()
        self.step = step

    def forward(self, x: torch.Tensor, state: State | None = None):
        precompute, recur = getattr(self.step, "precompute", None), getattr(self.step, "recur", None)
        if precompute is not None and recur is not None:
            inputs, step = precompute(x), recur
        else:
            inputs, step = x, self.step
        outputs = []
        for x_t in inputs.unbind(0):
            h_t, state = step(x_t, state)
            outputs.append(h_t)
        return torch.stack(outputs), state


class _NumpyCellFunction(torch.autograd.Function):
    """Forward and backward delegated to a NumPy cell; tensors cross as zero-copy views."""

    @staticmethod
    def forward(ctx, cell, names, layout, x, n_state, *tensors):
        state_tensors, param_tensors = tensors[:n_state], tensors[n_state:]
        cell.params = {n: p.detach().numpy() for n, p in zip(names, param_tensors)}
        state_np = None
        if n_state:
            arrays = tuple(s.detach().contiguous().numpy() for s in state_tensors)
            state_np = arrays if layout["state_in_tuple"] else arrays[0]
        y, state_out, cache = cell.forward(x.detach().contiguous().numpy(), state_np)
        out_tuple = isinstance(state_out, tuple)
        layout["state_out_tuple"] = out_tuple
        out_arrays = state_out if out_tuple else (state_out,)
        ctx.cell, ctx.names, ctx.cache, ctx.n_state = cell, names, cache, n_state
        ctx.out_tuple, ctx.n_state_out = out_tuple, len(out_arrays)
        ctx.x_dtype = x.dtype
        # y is a zero-copy view of what backward reads (the hidden states); saving it lets
        # autograd's version counter reject an in-place change to y instead of silently
        # corrupting the gradients, at no cost.
        y_tensor = torch.from_numpy(np.ascontiguousarray(y))
        ctx.save_for_backward(y_tensor, *param_tensors)
        return (y_tensor,) + tuple(torch.from_numpy(np.array(a, copy=True)) for a in out_arrays)

    @staticmethod
    def backward(ctx, dy, *dstate):
        _, *params = ctx.saved_tensors  # unpacking checks that y was not modified in place
        cell = ctx.cell
        cell.params = {n: p.detach().numpy() for n, p in zip(ctx.names, params)}
        dstate_np = tuple(d.contiguous().numpy() for d in dstate)
        dstate_arg = dstate_np if ctx.out_tuple else dstate_np[0]
        cell.needs_input_grad = bool(ctx.needs_input_grad[3])  # a cell may then skip dx
        dx, dstate0, grads = cell.backward(ctx.cache, dy.contiguous().numpy(), dstate_arg)
        missing = [n for n in ctx.names if n not in grads]
        if missing:
            raise CellContractError(f"numpy cell backward returned no gradient for parameter(s) {missing}")
        dstate0_arrays: tuple = ()
        if ctx.n_state:
            dstate0_arrays = dstate0 if isinstance(dstate0, tuple) else (dstate0,)
        grad_params = tuple(torch.from_numpy(np.asarray(grads[n], dtype=p.detach().numpy().dtype)) for n, p in zip(ctx.names, params))
        return (
            None,
            None,
            None,
            None if dx is None else torch.from_numpy(np.asarray(dx)).to(ctx.x_dtype),
            None,
            *(torch.from_numpy(np.asarray(d)) for d in dstate0_arrays),
            *grad_params,
        )


class NumpyCell(nn.Module):
    """Adapts a NumPy cell (hand-written BPTT) into a torch module with autograd.

    The cell's ``params`` become ``nn.Parameter`` s; before each forward and backward the
    cell sees the current parameter values as NumPy views (no copy), so any torch
    optimizer trains it. CPU only.
    """

    def __init__(self, cell: Any):
        super().__init__()
        for attr in ("params", "forward", "backward"):
            if not hasattr(cell, attr):
                raise CellContractError(f"numpy cell {type(cell).__name__} has no {attr!r}; a numpy cell needs params, forward and backward")
        self.cell = cell
        self.param_names = tuple(cell.params)
        for name, value in cell.params.items():
            self.register_parameter(name, nn.Parameter(torch.tensor(np.asarray(value), dtype=torch.float32)))

    def release_buffers(self) -> None:
        """Let the NumPy cell drop buffers it keeps between calls, if it keeps any (see
        :func:`harness.speed.measure_speed`: peak memory then counts them)."""
        release = getattr(self.cell, "release_buffers", None)
        if callable(release):
            release()

    def forward(self, x: torch.Tensor, state: State | None = None):
        if x.device.type != "cpu":
            raise NotSupportedError(f"numpy cells run on cpu only, not on {x.device.type}")
        state_tensors = flatten_state(state)
        layout = {"state_in_tuple": not isinstance(state, torch.Tensor)}
        params = [getattr(self, n) for n in self.param_names]
        y, *state_out = _NumpyCellFunction.apply(self.cell, self.param_names, layout, x, len(state_tensors), *state_tensors, *params)
        return y, tuple(state_out) if layout["state_out_tuple"] else state_out[0]


def build_cell(spec, input_size: int, hidden_size: int) -> nn.Module:
    """Build a cell's primary implementation (what its factory builds) as a sequence-form ``nn.Module``."""
    obj = spec.factory(input_size, hidden_size)
    if spec.backend == NUMPY_BACKEND:
        return NumpyCell(obj)
    if not isinstance(obj, nn.Module):
        raise CellContractError(f"cell {spec.name!r}: factory returned {type(obj).__name__}, expected a torch.nn.Module")
    return Unrolled(obj) if spec.form == STEP else obj


def available_impls(spec, device: str) -> list[str]:
    """Implementations the speed table compares for this cell on this device: every one it
    registered (:mod:`harness.impls`; the primary first), and ``graphed`` on CUDA when it has a
    step form to loop."""
    impls = list(spec.impls.names)
    if spec.impls.looped is not None and torch.device(device).type == CUDA:
        impls.append(GRAPHED)
    return impls


def unknown_impl_message(spec, impl: str, *, training: bool = False) -> str:
    """One line: the cell has no implementation ``impl``; here is what it has."""
    names = list(spec.impls.names)
    if not training and spec.impls.looped is not None:
        names.append(f"{GRAPHED} (cuda)")
    if training and impl == GRAPHED:
        return f"cell {spec.name!r}: {GRAPHED!r} is timed, not trained (a CUDA graph replays one fixed shape); it trains with: {', '.join(names)}"
    return f"cell {spec.name!r} has no implementation {impl!r}; it has: {', '.join(names)}"


def _as_sequence(module, form: str, spec, impl: str) -> nn.Module:
    if not isinstance(module, nn.Module):
        raise CellContractError(f"cell {spec.name!r}: implementation {impl!r} is a {type(module).__name__}, expected a torch.nn.Module")
    return Unrolled(module) if form == STEP else module


def derive_impl(spec, impl: str, primary: nn.Module) -> nn.Module:
    """Implementation ``impl`` of the cell whose primary module (as :func:`build_cell` returned it)
    is ``primary``, sharing its parameters; ``graphed`` is the looped form the speed measurement captures."""
    if impl == GRAPHED and spec.impls.looped is not None:
        impl = spec.impls.looped
    if impl == spec.impls.primary:
        return primary
    alternative = spec.impls.alternative(impl)
    if alternative is None:
        raise NotSupportedError(unknown_impl_message(spec, impl))
    raw = primary.step if isinstance(primary, Unrolled) else primary  # a step-form primary: derive from the step
    return _as_sequence(alternative.derive(raw), alternative.form, spec, impl)


def build_impl(spec, impl: str, input_size: int, hidden_size: int) -> nn.Module:
    """Build the cell as ``impl`` runs it, as a sequence-form module: its primary module, or an
    alternative derived from a freshly built one (same parameters as :func:`build_cell` under the
    same seed)."""
    if impl not in spec.impls.names and not (impl == GRAPHED and spec.impls.looped is not None):
        raise NotSupportedError(unknown_impl_message(spec, impl))
    return derive_impl(spec, impl, build_cell(spec, input_size, hidden_size))


def build_impls(spec, input_size: int, hidden_size: int) -> dict[str, nn.Module]:
    """Every registered implementation of one built cell, all sharing the primary's parameters:
    what the equivalence check compares."""
    primary = build_cell(spec, input_size, hidden_size)
    return {impl: derive_impl(spec, impl, primary) for impl in spec.impls.names}


class SequenceModel(nn.Module):
    """A cell plus the linear readout the harness adds to every cell, so only cells differ."""

    def __init__(self, cell: nn.Module, hidden_size: int, output_size: int):
        super().__init__()
        self.cell = cell
        self.readout = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor, state: State | None = None):
        y, state = self.cell(x, state)
        return self.readout(y), state
