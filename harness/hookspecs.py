"""Hook specifications: how a plugin adds cells, tasks and reporters to rnnbench.

Each hook receives a ``register`` callback; a plugin calls it once per object it adds.
Implementations are marked with :data:`hookimpl` and may be plain modules::

    from harness import hookimpl

    @hookimpl
    def register_cells(register):
        register("mycell", build_mycell, backend="torch", summary="my new cell")
"""

from __future__ import annotations

import pluggy

PROJECT = "rnnbench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_cells(register):
    """Register recurrent cells.

    Call ``register(name, factory, *, backend="torch", form="sequence", summary="", impl=None,
    alternatives=None, reference=None, defaults=None, unroll=None)`` once per cell.

    :param register: the callback. ``name`` is the cell's unique name (lower case,
        used on the command line). ``factory(input_size, hidden_size)`` builds one
        cell: its *primary* implementation. ``backend`` is ``"torch"`` (an ``nn.Module``) or
        ``"numpy"`` (an object with ``params``, ``forward`` and ``backward``; see
        ``harness.cells``). ``form`` is ``"sequence"`` for a module whose
        ``forward(x: (T, B, I), state)`` returns ``(y: (T, B, H), state)``, or ``"step"`` for a
        module whose ``forward(x_t: (B, I), state)`` returns ``(h_t: (B, H), state)``; the
        harness unrolls step cells. ``summary`` is one line shown by ``rnnbench cells``.

        Several implementations of the one function (see ``harness.impls``): ``impl`` names
        the primary one as rows label it (``"fused"``, ``"scan"``, ``"step"``, ...; default
        ``"module"`` for a sequence form, ``"unrolled"`` for a step form, ``"numpy"`` for a
        NumPy cell). ``alternatives`` maps further names to ``derive(module)``, which returns
        a module sharing the built primary's parameters and computing the same function: a
        step form, or a sequence form when given as ``harness.Alternative(derive,
        form="sequence")``; torch cells only. ``reference`` names the plain recurrence every
        other implementation is verified against by ``rnnbench check`` (default: the first
        step-form alternative, else the primary). ``defaults`` maps a device type (``"cpu"``,
        ``"cuda"``) to the implementation training uses there (default: the primary). Each
        implementation is a row of the speed table; on CUDA the harness adds ``"graphed"``,
        the step loop captured in a CUDA graph. ``unroll(module)`` is the older spelling of
        ``alternatives={"unrolled": unroll}``.
    """


@hookspec
def register_tasks(register):
    """Register synthetic tasks.

    Call ``register(name, factory, *, summary="")`` once per task.

    :param register: the callback. ``factory(seq_len)`` returns a task object that
        follows :class:`harness.tasks.Task`: it generates seeded batches and knows its
        loss, metrics, analytic baseline and "solved" criterion.
    """


@hookspec
def register_reporters(register):
    """Register report renderers.

    Call ``register(name, render, *, suffix, summary="")`` once per format.

    :param register: the callback. ``render(results, out_dir) -> pathlib.Path`` writes
        a report for a :class:`harness.results.Results` (a stored run's record and its
        tidy rows) into ``out_dir`` and returns the path of the main file. ``suffix`` is
        its file extension, e.g. ``".md"``.
    """
