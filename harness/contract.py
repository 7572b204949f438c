"""The cell contract, checked in one place.

``rnnbench run`` checks every cell with :func:`check_contract` on a tiny sequence before
timing or training it; ``rnnbench check`` reports the same checks as its ``shapes``
(:func:`check_outputs`) and ``zero-state`` (:func:`check_zero_state`) lines, at more sizes.
A broken cell raises :class:`~harness.errors.CellContractError` with expected and actual
values. The contract (see :mod:`harness.cells`):

- ``cell(x: (T, B, I), state)`` returns ``(y, state)``; ``y`` is a finite tensor of shape
  ``(T, B, H)`` and the dtype of ``x``;
- the state is a tensor or a (nested) tuple of tensors, finite and of the dtype of ``x``;
  fed back, it is accepted and comes back with the same structure and shapes;
- ``state=None`` means zeros: an explicit all-zero state gives the same outputs, within
  :data:`ZERO_STATE_RTOL` and :data:`ZERO_STATE_ATOL` (float32 rounding of a reordered sum,
  not a different function).
"""

from __future__ import annotations

import torch

from harness.cells import flatten_state, map_state, state_structure
from harness.errors import CellContractError, RnnbenchError
from harness.names import NUMPY_BACKEND, STEP

ZERO_STATE_RTOL, ZERO_STATE_ATOL = 1e-5, 1e-6
CONTRACT_SEQ_LEN, CONTRACT_BATCH = 3, 2  # the tiny sequence `rnnbench run` checks each cell on
NEW_TENSORS_HINT = ("create new tensors from the input, e.g. x.new_zeros(batch, hidden_size), so they follow its "
                    "dtype and device")


def count_nonfinite(tensor: torch.Tensor) -> int:
    """How many entries of ``tensor`` are NaN or ±inf."""
    return int((~torch.isfinite(tensor.detach())).sum())


def nonfinite_values(count: int) -> str:
    """``"3 non-finite values (NaN/inf)"``: the phrase every check uses for a count of them."""
    return f"{count} non-finite value{'' if count == 1 else 's'} (NaN/inf)"


def require_finite(where: str, tensors) -> None:
    """Raise :class:`CellContractError` naming the first of ``tensors`` (``[(name, tensor), ...]``)
    that holds NaN or inf: two tensors holding them are never 'close', and a difference of them
    (NaN) says nothing, so a comparison checks finiteness first."""
    for name, tensor in tensors:
        count = count_nonfinite(tensor)
        if count:
            raise CellContractError(f"{where}: {name} holds {nonfinite_values(count)} of {tensor.numel()}")


def form_hint(spec) -> str:
    """What a cell's registration promises, for messages about calls that went wrong."""
    if spec is None:
        return ""
    if spec.backend == NUMPY_BACKEND:
        return "numpy backend: forward(x: (T, B, I), state) -> (y: (T, B, H), state, cache)"
    if spec.form == STEP:
        return "registered with form='step': forward(x_t: (B, I), state) -> (h_t: (B, H), state), state None at the first step"
    return ("registered with form='sequence': forward(x: (T, B, I), state) -> (y: (T, B, H), state); "
            "a cell written as one step needs form='step'")


def call(cell, x: torch.Tensor, state, what: str, hint: str = "", *, explain: bool = False):
    """``cell(x, state)``, checked to return ``(y, state)``.

    ``explain``: an exception the cell raises becomes a :class:`CellContractError` that names
    the call (``what``) and ``hint``; otherwise it propagates as the cell raised it (a run
    stores it as the item's error).
    """
    try:
        out = cell(x, state)
    except RnnbenchError:
        raise
    except Exception as exc:
        if not explain:
            raise
        raise CellContractError(f"{what} raised {type(exc).__name__}: {exc}" + (f"; {hint}" if hint else "")) from None
    if not (isinstance(out, tuple) and len(out) == 2):
        got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
        raise CellContractError(f"forward must return (output, state), got {got}")
    return out


def check_state(state, x: torch.Tensor, where: str) -> None:
    """A state is tensors (checked by the one state walker), at least one, finite, of x's dtype."""
    try:
        parts = flatten_state(state)
    except CellContractError as exc:
        raise CellContractError(f"{where}: {exc}") from None
    if not parts:
        raise CellContractError(f"{where}: the returned state holds no tensors")
    for i, part in enumerate(parts):
        if not torch.isfinite(part).all():
            raise CellContractError(f"{where}: state tensor {i} holds NaN or inf")
        if part.dtype != x.dtype:
            raise CellContractError(f"{where}: state tensor {i} has dtype {part.dtype} for a {x.dtype} input; {NEW_TENSORS_HINT}")


def check_outputs(cell, x: torch.Tensor, hidden_size: int, where: str, *, spec=None, explain: bool = False):
    """Shapes, dtypes and finiteness of ``cell(x, None)``, then of the state fed back; returns the
    state's structure. ``x``: (T, B, I); ``where`` prefixes every message."""
    seq_len, batch = x.shape[0], x.shape[1]
    expected = (seq_len, batch, hidden_size)
    hint = form_hint(spec)
    with torch.no_grad():
        y, state = call(cell, x, None, f"cell(x, None) with {where}", hint, explain=explain)
        if not isinstance(y, torch.Tensor):
            raise CellContractError(f"{where}: output is a {type(y).__name__}, expected a tensor of shape (T, B, H) = {expected}")
        if tuple(y.shape) != expected:
            if spec is not None and spec.form == STEP and y.dim() == 3:
                raise CellContractError(f"{where}: the step returned h_t of shape {tuple(y.shape[1:])}, "
                                        f"expected (B, H) = {expected[1:]}")
            raise CellContractError(f"{where}: output has shape {tuple(y.shape)}, expected (T, B, H) = {expected}"
                                    + (f" ({hint})" if hint else ""))
        if y.dtype != x.dtype:
            raise CellContractError(f"{where}: output has dtype {y.dtype} for a {x.dtype} input; {NEW_TENSORS_HINT}")
        if not torch.isfinite(y).all():
            raise CellContractError(f"{where}: output holds NaN or inf for a standard-normal input")
        check_state(state, x, where)
        structure = state_structure(state)
        _, fed_back = call(cell, x, state, f"{where}: feeding back the state it returned, of shapes {structure},",
                           explain=explain)
        check_state(fed_back, x, f"{where}, state fed back")
        if state_structure(fed_back) != structure:
            raise CellContractError(f"{where}: the state changed structure when fed back: {structure} -> "
                                    f"{state_structure(fed_back)}; a cell must accept the state it returns and return "
                                    "the same shapes")
    return structure


def check_zero_state(cell, x: torch.Tensor, where: str, *, explain: bool = False) -> None:
    """``state=None`` means zeros: an explicit all-zero state gives the same outputs (see the module docstring)."""
    with torch.no_grad():
        y_none, state = call(cell, x, None, "cell(x, None)", explain=explain)
        y_zero, _ = call(cell, x, map_state(torch.zeros_like, state), "cell(x, zeros)", explain=explain)
    require_finite(where, [("the output of cell(x, None)", y_none), ("the output of cell(x, zeros)", y_zero)])
    if not torch.allclose(y_zero, y_none, rtol=ZERO_STATE_RTOL, atol=ZERO_STATE_ATOL):
        diff = float((y_zero.double() - y_none.double()).abs().max())
        raise CellContractError(f"{where}: an explicit all-zero state gives outputs that differ from state=None by up "
                                f"to {diff:.3g}: None must mean zeros")


def check_contract(cell, input_size: int, hidden_size: int, device, dtype=torch.float32, name: str = "cell",
                   spec=None) -> None:
    """Every contract check on a tiny sequence (T=3, B=2) on ``device``; raises :class:`CellContractError`."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(CONTRACT_SEQ_LEN, CONTRACT_BATCH, input_size, generator=gen, dtype=dtype).to(device)
    where = f"cell {name!r}"
    check_outputs(cell, x, hidden_size, where, spec=spec)
    check_zero_state(cell, x, where)
