"""rnnbench's library: plugin contracts, measurements, results store and CLI.

Plugin authors need only :data:`hookimpl` (and :class:`Alternative`, for a cell with an
implementation in sequence form beside its primary one; see :mod:`harness.impls`)::

    from harness import hookimpl

Analysts need only :func:`load_results`::

    import harness
    rows = harness.load_results("rnnbench-results/results.sqlite")   # the newest run
    rows[rows.metric == "forward_backward_s"].groupby("cell").value.median()
"""

from harness.hookspecs import hookimpl
from harness.impls import Alternative

__all__ = ["Alternative", "hookimpl", "load_results"]


def load_results(db=None, run=None):
    """The tidy result rows of one or several stored runs as a pandas DataFrame.

    :param db: path of the results database; default ``$RNNBENCH_DB`` or
        ``rnnbench-results/results.sqlite``. It must exist.
    :param run: a run id, ``None``/``"latest"`` for the newest run, ``"all"`` for every run,
        or a list of run ids.
    :returns: one row per measurement with the columns of :class:`harness.results.ResultRow`
        (``lr`` and ``batch_size`` per row among them) plus ``run_id``, ``id`` and ``created_at``,
        the run's recipe (``optimizer``, ``steps``, ``clip_norm``, ``eval_every``, ``eval_size``;
        None on speed rows), ``profile``, ``param_budget``, and ``lr_chosen`` (the row is at the rate
        chosen on validation for its cell and task; None on speed rows). ``value`` is in ``unit``,
        and ``stats`` holds a dict (summary statistics and raw samples) or None.
    :raises harness.errors.UsageError: the database or a run does not exist.

    Example: the test loss of every run at each cell's chosen rate, with the recipe beside it::

        rows = harness.load_results(db, run="all")
        rows[(rows.metric == "loss") & rows.lr_chosen].groupby(["run_id", "cell", "lr", "steps"]).value.mean()
    """
    # Imported here so that ``import harness`` (every plugin does it) stays light.
    from harness.loading import load_rows
    from harness.store import ResultStore

    with ResultStore(db, create=False) as store:
        return load_rows(store, run)
