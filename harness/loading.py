"""What :func:`harness.load_results` returns: the tidy rows of one run, several runs or all of them,
each row with the recipe it was trained under as columns, so that rows of runs with different
recipes can be told apart (and grouped) in pandas without opening the runs' records.
"""

from __future__ import annotations

import pandas as pd

from harness.results import ROW_COLUMNS

# Recipe values added as columns (the run's; ``lr`` and ``batch_size`` are already per row).
RECIPE_COLUMNS = ("optimizer", "steps", "clip_norm", "eval_every", "eval_size")
RUN_COLUMNS = ("profile", "param_budget", "lr_chosen")


def _run_ids(store, run) -> list[int]:
    """``None``/"latest" -> the newest; "all" -> every run; an id; or a list of ids/"latest"."""
    if isinstance(run, str) and run == "all":
        return [stored.run_id for stored in store.runs()]
    if isinstance(run, (list, tuple)):
        return list(dict.fromkeys(store.resolve_run(r) for r in run))
    return [store.resolve_run(run)]


def _with_recipe(rows: pd.DataFrame, stored) -> pd.DataFrame:
    from harness.fairness import at_chosen_lr

    recipe = stored.config.recipe
    training = rows["measurement"] != "speed"
    values = {name: [getattr(recipe, name) if train else None for train in training] for name in RECIPE_COLUMNS}
    chosen_ids = set(at_chosen_lr(rows)["id"]) if not rows.empty else set()
    values["profile"] = stored.config.profile
    values["param_budget"] = stored.config.param_budget
    # lr_chosen: the row is at its condition's chosen learning rate (always, without a sweep); None for speed rows
    values["lr_chosen"] = [bool(row_id in chosen_ids) if train else None for row_id, train in zip(rows["id"], training)]
    return rows.assign(**values)


def load_rows(store, run=None) -> pd.DataFrame:
    """The rows of ``run`` (see :func:`harness.load_results`), with recipe columns."""
    columns = ["id", "run_id", *ROW_COLUMNS, "created_at", *RECIPE_COLUMNS, *RUN_COLUMNS]
    frames = []
    for run_id in _run_ids(store, run):
        rows = pd.DataFrame(store.rows(run_id), columns=["id", "run_id", *ROW_COLUMNS, "created_at"])
        frames.append(_with_recipe(rows, store.run(run_id)))
    frames = [frame for frame in frames if not frame.empty]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
