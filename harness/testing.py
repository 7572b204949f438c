"""Conformance checks for cell plugins: what ``rnnbench check NAME`` runs, importable for pytest.

A plugin's own test suite needs one line per cell::

    from harness.testing import assert_conforms, assert_equivalent

    def test_mycell_conforms():
        assert_conforms("mycell")  # AssertionError naming every failed check

    def test_mycell_scan_equals_its_step():
        assert_equivalent("mycell")  # every alternative implementation against the reference

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
``implementations``     every alternative implementation (``scan``, ``fused``, ...) equals the
                        reference (the plain recurrence) with the same parameters: outputs,
                        final state and every gradient, in float64 at T = 200 (tolerance 1e-10)
                        and in float32 at T = 4096 (1e-4 outputs and state, 1e-3 gradients);
                        a NaN or inf on either side fails; see :func:`assert_equivalent`
                        and :mod:`harness.equivalence`
``cuda``                torch backend on a machine with a GPU: outputs, state and gradients
                        stay on the GPU and match the CPU
``training``            100 Adam steps of the harness's own training loop on a one-step echo
                        task (:mod:`harness.echo`) lower the held-out loss by a quarter

When ``build`` or ``shapes`` fails the later checks are skipped: they would only repeat
the same error. Each check runs on one CPU thread and under ``torch.random.fork_rng``,
so the caller's random state and thread count are left as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch.random import fork_rng

from harness.checks import CHECK_NAMES, CHECKS, FAIL, PASS, SKIP, numeric_gradient, raise_failures
from harness.equivalence import (FLOAT32, FLOAT64, Gaps, Setting, compare_impls, implementation_gaps, nothing_to_compare,
                                 warm_state)
from harness.errors import CellContractError, UnknownCellError
from harness.impls import impl_table
from harness.names import SEQUENCE, TORCH
from harness.plugins import CellSpec, PluginInfo, Registry, load_plugins

__all__ = ["CHECK_NAMES", "CheckResult", "Gaps", "Setting", "assert_conforms", "assert_equivalent", "implementation_gaps",
           "iter_checks", "make_spec", "numeric_gradient", "resolve", "run_checks", "summary", "warm_state", "PASS", "FAIL", "SKIP"]


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


def make_spec(name: str, factory: Callable[[int, int], Any], *, backend: str = TORCH, form: str = SEQUENCE,
              **impls) -> CellSpec:
    """A :class:`CellSpec` for a factory that no plugin registered, e.g. to check a cell under
    development: ``run_checks(make_spec("draft", Draft, form="step"))``. ``impls``: ``impl``,
    ``alternatives``, ``reference``, ``defaults`` or ``unroll``, as ``register`` takes them."""
    table = impl_table(backend=backend, form=form, **impls)
    return CellSpec(name, factory, backend, form, "", PluginInfo(name, "file", "unregistered", "local"), table)


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
    return raise_failures("cell", spec.name, list(iter_checks(spec)))


def assert_equivalent(cell: str | CellSpec, impls=None, *, settings=(FLOAT64, FLOAT32), **lookup) -> list[Gaps]:
    """Check that every alternative implementation of ``cell`` (or those named in ``impls``)
    computes the reference's function with the same parameters: outputs, final state and the
    gradients of every parameter and of the input, in float64 at short T with a tight tolerance
    and in float32 at T = 4096 (the ``implementations`` line of ``rnnbench check``; the settings
    and tolerances are :data:`harness.equivalence.FLOAT64` and ``FLOAT32``).

    Raises ``AssertionError`` naming each implementation, setting and quantity that is off, and by
    how much, or that holds NaN or inf on either side (the count, the alternative's or the
    reference's: a reference that is not finite checks nothing, even where both match), or saying that the cell has a single implementation (a test calling this would
    otherwise pass on nothing); returns the measured :class:`Gaps`. To compare two modules of
    your own that share their parameters, see :func:`implementation_gaps`.

    :param lookup: ``registry``, ``plugin_files`` or ``autoload``, used to find a cell by name.
    """
    spec = resolve(cell, **lookup)
    unknown = [name for name in (impls or ()) if name not in spec.impls.names]
    if unknown:
        raise AssertionError(f"cell {spec.name!r} has no implementation {', '.join(map(repr, unknown))}; "
                             f"it has: {', '.join(spec.impls.names)}")
    single = nothing_to_compare(spec)
    if single:  # a test of nothing would pass: say so (alternatives= left out or misspelt?)
        raise AssertionError(f"cell {spec.name!r} has {single}. "
                             "Alternatives are registered with register(..., alternatives={name: factory})")
    found = compare_impls(spec, impls, settings)
    failed = [f"  {g.impl} vs {g.reference} in {g.setting.describe()}: {'; '.join(g.failures)}" for g in found if g.failures]
    if failed:
        raise AssertionError(f"cell {spec.name!r}: an implementation computes something else than its reference:\n"
                             + "\n".join(failed))
    return found


def iter_checks(spec: CellSpec) -> Iterator[CheckResult]:
    """Yield each check's result as soon as it is known (the CLI prints them as they come)."""
    blocked_by = None
    for name, check in CHECKS:
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
        with fork_rng(devices=[]):
            outcome = check(spec)
    except CellContractError as failure:  # what the check saw: expected vs actual
        return CheckResult(name, FAIL, str(failure))
    except Exception as exc:  # the cell's own error: say where it came from
        return CheckResult(name, FAIL, f"{type(exc).__name__}: {exc}")
    finally:
        torch.set_num_threads(threads)
    status, message = outcome if isinstance(outcome, tuple) else (PASS, outcome)
    return CheckResult(name, status, message)
