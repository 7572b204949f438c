"""Cell contracts, the NumPy adapter, step unrolling and the contract check.

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

State = Union[torch.Tensor, tuple]


def flatten_state(state: State | None) -> tuple[torch.Tensor, ...]:
    """The tensors of a state, in order (``()`` for ``None``)."""
    if state is None:
        return ()
    if isinstance(state, torch.Tensor):
        return (state,)
    if isinstance(state, (tuple, list)):
        out: list[torch.Tensor] = []
        for part in state:
            out.extend(flatten_state(part))
        return tuple(out)
    raise CellContractError(f"state must be a tensor or a tuple of tensors, got {type(state).__name__}")


def state_structure(state: State | None) -> Any:
    """A hashable description of a state's nesting and shapes, for contract checks."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return tuple(state.shape)
    if not isinstance(state, (tuple, list)):  # a dict or a str would otherwise recurse without end
        raise CellContractError(f"state must be a tensor or a tuple of tensors, got {type(state).__name__}")
    return tuple(state_structure(s) for s in state)


def map_state(fn, state: State) -> State:
    if isinstance(state, torch.Tensor):
        return fn(state)
    return type(state)(map_state(fn, s) for s in state) if isinstance(state, tuple) else [map_state(fn, s) for s in state]


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
    """Build a cell from its registration as a sequence-form ``nn.Module``."""
    obj = spec.factory(input_size, hidden_size)
    if spec.backend == "numpy":
        return NumpyCell(obj)
    if not isinstance(obj, nn.Module):
        raise CellContractError(f"cell {spec.name!r}: factory returned {type(obj).__name__}, expected a torch.nn.Module")
    return Unrolled(obj) if spec.form == "step" else obj


def primary_impl(spec, module: nn.Module | None = None) -> str:
    """The name of the implementation a cell runs by default.

    ``numpy`` for NumPy cells, ``unrolled`` for step cells, ``fused`` for torch's own
    RNN/LSTM/GRU kernels (cuDNN, oneDNN) and ``module`` for any other sequence module.
    Pass the built ``module`` when there is one; otherwise a small one is built with the
    random generator's state saved and restored, so labelling never changes a seeded run.
    """
    if spec.backend == "numpy":
        return "numpy"
    if spec.form == "step":
        return "unrolled"
    if module is None:
        with torch.random.fork_rng(devices=[]):
            try:
                module = spec.factory(4, 4)
            except Exception:
                return "module"
    return "fused" if isinstance(module, nn.RNNBase) else "module"


def available_impls(spec, device: str) -> list[str]:
    """Implementations the speed table compares for this cell on this device."""
    primary = primary_impl(spec)
    impls = [primary]
    if primary in ("fused", "module") and spec.unroll is not None:
        impls.append("unrolled")
    if "unrolled" in impls and torch.device(device).type == "cuda":
        impls.append("graphed")
    return impls


def build_impl(spec, impl: str, input_size: int, hidden_size: int) -> nn.Module:
    """Build the cell as ``impl`` runs it. ``graphed`` builds the unrolled module that the
    speed measurement captures in a CUDA graph."""
    if impl in ("unrolled", "graphed") and spec.form == "sequence" and spec.backend == "torch":
        if spec.unroll is None:
            raise NotSupportedError(f"cell {spec.name!r} registers no step form, so it has no {impl!r} implementation")
        return Unrolled(spec.unroll(spec.factory(input_size, hidden_size)))
    return build_cell(spec, input_size, hidden_size)


def check_contract(cell: nn.Module, input_size: int, hidden_size: int, device: torch.device, dtype=torch.float32, name: str = "cell") -> None:
    """Run a tiny sequence and raise :class:`CellContractError` naming expected vs actual shapes.

    Checks: output shape (T, B, H); the returned state is tensors; feeding the state back
    works and keeps its structure; an explicit all-zero state equals ``None``.
    """
    seq_len, batch = 3, 2
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(seq_len, batch, input_size, generator=gen, dtype=dtype).to(device)
    with torch.no_grad():
        out = cell(x, None)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise CellContractError(f"cell {name!r}: forward must return (y, state), got {type(out).__name__}")
        y, state = out
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != (seq_len, batch, hidden_size):
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise CellContractError(f"cell {name!r}: output y has shape {got}, expected (T, B, H) = {(seq_len, batch, hidden_size)}")
        if not torch.isfinite(y).all():
            raise CellContractError(f"cell {name!r}: outputs contain NaN or inf on a small random input (T={seq_len}, B={batch})")
        structure = state_structure(state)
        if not flatten_state(state):
            raise CellContractError(f"cell {name!r}: returned no state tensors")
        y2, state2 = cell(x, state)
        if state_structure(state2) != structure:
            raise CellContractError(f"cell {name!r}: state structure changed when fed back: {structure} -> {state_structure(state2)}")
        zeros = map_state(torch.zeros_like, state)
        y_zero, _ = cell(x, zeros)
        if not torch.allclose(y_zero, y, rtol=1e-4, atol=1e-5):
            raise CellContractError(f"cell {name!r}: an all-zero initial state gives different outputs from state=None")


class SequenceModel(nn.Module):
    """A cell plus the linear readout the harness adds to every cell, so only cells differ."""

    def __init__(self, cell: nn.Module, hidden_size: int, output_size: int):
        super().__init__()
        self.cell = cell
        self.readout = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor, state: State | None = None):
        y, state = self.cell(x, state)
        return self.readout(y), state
