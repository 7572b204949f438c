"""Several implementations of one cell: what a plugin registers and how the harness names them.

A cell is one mathematical function. Its plugin may register several implementations of it —
the plain recurrence one step at a time, a parallel scan, a fused kernel — each under a name
(:data:`harness.names.IMPLEMENTATIONS` lists the well-known ones; any name following
:data:`harness.names.NAME_PATTERN` will do)::

    register("mingru", MinGRUScan, impl="scan", alternatives={"step": step_form}, reference="step")

* the *primary* implementation is what ``factory(input_size, hidden_size)`` builds, labelled
  ``impl`` (default ``module`` for a sequence-form torch module, ``unrolled`` for a step form,
  ``numpy`` for a NumPy cell);
* each *alternative* is derived from a built primary: ``derive(module)`` returns a module that
  shares ``module``'s parameters (not copies) and computes the same function, in step form
  (a plain callable, or ``Alternative(derive, form="step")``) or in sequence form
  (``Alternative(derive, form="sequence")``);
* the *reference* is the implementation the others are verified against (``rnnbench check``,
  :func:`harness.testing.assert_equivalent`): the plain recurrence. Default: the first step-form
  alternative, else the primary;
* ``defaults`` maps a device type (``"cpu"``, ``"cuda"``) to the implementation training uses
  there; the primary elsewhere.

The older ``unroll=step_class`` is the alternative ``{"unrolled": step_class}``. On CUDA the
harness adds ``graphed`` for timing: the step loop of the looped implementation (the reference
when it is a step form) captured once in a CUDA graph.

This module imports no torch, so plugins (``from harness import Alternative``) stay light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from harness.names import (CUDA, FORMS, GRAPHED, MODULE, NAME_PATTERN, NAME_RULE, NUMPY, NUMPY_BACKEND, STEP,
                           UNROLLED)

DEVICE_TYPES = ("cpu", CUDA)


@dataclass(frozen=True)
class Alternative:
    """An implementation derived from the cell's primary module.

    ``derive(module) -> nn.Module`` must reuse ``module``'s parameters (assign them, do not copy
    them), so that every implementation of one built cell is the same function of the same
    numbers. ``form``: ``"step"`` (``(x_t: (B, I), state) -> (h_t: (B, H), state)``, looped by
    the harness) or ``"sequence"`` (``(x: (T, B, I), state) -> (y: (T, B, H), state)``).
    """

    derive: Callable[[Any], Any]
    form: str = STEP


@dataclass(frozen=True)
class ImplTable:
    """A registered cell's implementations: the primary one, its alternatives, which is the
    reference, and which one training uses on each device type."""

    primary: str
    primary_form: str
    reference: str
    alternatives: tuple[tuple[str, Alternative], ...] = ()
    defaults: tuple[tuple[str, str], ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every registered implementation, the primary first (``graphed`` is the harness's, not listed)."""
        return (self.primary, *(name for name, _ in self.alternatives))

    def alternative(self, name: str) -> Alternative | None:
        return dict(self.alternatives).get(name)

    def form(self, name: str) -> str:
        """``step`` or ``sequence``: how implementation ``name`` is called."""
        if name == self.primary:
            return self.primary_form
        return dict(self.alternatives)[name].form

    @property
    def looped(self) -> str | None:
        """The step-form implementation that ``graphed`` captures: the reference when it is one,
        else the first step form registered; None when the cell has no step form."""
        steps = [name for name in self.names if self.form(name) == STEP]
        if not steps:
            return None
        return self.reference if self.reference in steps else steps[0]

    def default_for(self, device: str) -> str:
        """What training uses on ``device`` ("cpu", "cuda" or "cuda:1")."""
        return dict(self.defaults).get(device.split(":")[0], self.primary)


def impl_table(*, backend: str, form: str, impl: str | None = None, alternatives: dict | None = None,
               unroll: Callable | None = None, reference: str | None = None,
               defaults: dict | None = None) -> ImplTable:
    """The :class:`ImplTable` of one ``register(...)`` call; raises ``ValueError`` with the one line
    that says what was wrong and what is allowed (the plugin loader reports it and skips the cell)."""
    primary = impl or (NUMPY if backend == NUMPY_BACKEND else UNROLLED if form == STEP else MODULE)
    alternatives = dict(alternatives or {})
    if unroll is not None:
        if UNROLLED in alternatives:
            raise ValueError("gives both unroll= and alternatives={'unrolled': ...}; unroll=f is short for the latter")
        alternatives[UNROLLED] = unroll
    table = tuple((name, _alternative(name, value)) for name, value in alternatives.items())
    for name in (primary, *alternatives):
        _check_name(name)
    if primary in alternatives:
        raise ValueError(f"names its primary implementation {primary!r} again among its alternatives")
    if table and backend == NUMPY_BACKEND:
        raise ValueError("is a numpy cell with alternatives; a numpy cell has one implementation, its hand-written BPTT")
    names = (primary, *alternatives)
    steps = [name for name, alt in table if alt.form == STEP]
    reference = reference if reference is not None else (steps[0] if steps else primary)
    if reference not in names:
        raise ValueError(f"names reference {reference!r}, which is not one of its implementations: {', '.join(names)}")
    default_pairs = tuple((defaults or {}).items())
    for device, name in default_pairs:
        if device not in DEVICE_TYPES:
            raise ValueError(f"has a default for device {device!r}; allowed: {', '.join(DEVICE_TYPES)}")
        if name not in names:
            raise ValueError(f"defaults to {name!r} on {device}, which is not one of its implementations: {', '.join(names)}")
    return ImplTable(primary, form, reference, table, default_pairs)


def _alternative(name: str, value) -> Alternative:
    if isinstance(value, Alternative):
        if value.form not in FORMS:
            raise ValueError(f"alternative {name!r} has form {value.form!r}; allowed: {', '.join(FORMS)}")
        if not callable(value.derive):
            raise ValueError(f"alternative {name!r}: derive is not callable")
        return value
    if not callable(value):
        raise ValueError(f"alternative {name!r} is a {type(value).__name__}; give derive(module) -> module, "
                         "or harness.Alternative(derive, form=...)")
    return Alternative(value, STEP)


def _check_name(name) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"has an implementation named {name!r}; {NAME_RULE}")
    if name == GRAPHED:
        raise ValueError(f"registers an implementation named {GRAPHED!r}; the harness derives that one on CUDA")
