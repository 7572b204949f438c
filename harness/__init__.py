"""rnnbench's library: plugin contracts, measurements, results store and CLI.

Plugin authors need only :data:`hookimpl`::

    from harness import hookimpl

Analysts need only :func:`load_results`::

    import harness
    rows = harness.load_results("rnnbench-results/results.sqlite")   # the newest run
    rows[rows.metric == "forward_backward_s"].groupby("cell").value.median()
"""

from harness.hookspecs import hookimpl

__all__ = ["hookimpl", "load_results"]


def load_results(db=None, run=None):
    """The tidy result rows of one stored run as a pandas DataFrame.

    :param db: path of the results database; default ``$RNNBENCH_DB`` or
        ``rnnbench-results/results.sqlite``. It must exist.
    :param run: a run id, or ``None``/``"latest"`` for the newest run.
    :returns: one row per measurement with the columns of :class:`harness.store.ResultRow`
        plus ``run_id``, ``id`` and ``created_at``; ``value`` is in ``unit``, and ``stats``
        holds a dict (summary statistics and raw samples) or None.
    :raises harness.errors.UsageError: the database or the run does not exist.
    """
    # Imported here so that ``import harness`` (every plugin does it) stays light.
    import pandas as pd

    from harness.results import ROW_COLUMNS
    from harness.store import ResultStore

    with ResultStore(db, create=False) as store:
        rows = store.rows(store.resolve_run(run))
    return pd.DataFrame(rows, columns=["id", "run_id", *ROW_COLUMNS, "created_at"])
