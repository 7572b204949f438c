"""The fair-comparison summaries every accuracy figure goes through, read from stored rows.

- :func:`lr_choices`: per (cell, task, T, H, device), the learning rate chosen on the
  *validation* loss (metric ``val_loss``) by :func:`harness.selection.select_lr`. Only
  ``val_loss`` rows are handed to it: the test rows (``loss``, ``accuracy``, ``solved``...)
  never reach the choice.
- :func:`at_chosen_lr`: the accuracy and gradient rows of each condition at its chosen rate,
  so that tables report test figures at that rate; conditions without a choice (no
  validation rows, e.g. a gradients-only run) keep every rate.
- :func:`seed_interval`, :func:`solved_proportion`, :func:`solve_curve_of`: a mean over seeds
  with its 95% Student t interval (clipped to the metric's possible range when every seed lies
  in it, :mod:`harness.metric_ranges`), k/n solved with its Wilson interval, and the Kaplan-Meier
  curve of steps to solve (unsolved seeds censored at the step they stopped).
- :func:`task_rankings`: per task, cells ranked on test loss / baseline at their chosen rate,
  each compared with the best by a paired sign-flip test, Holm-corrected
  (:func:`harness.ranking.rank_cells`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from harness.intervals import MeanInterval, Proportion, clipped, t_interval, wilson_interval
from harness.metric_ranges import metric_range
from harness.names import ACCURACY, GRADIENTS
from harness.ranking import Ranking, rank_cells
from harness.results import TRAIN_CONDITION, all_ok, per_seed, value
from harness.selection import LrChoice, select_lr
from harness.survival import SolveCurve, kaplan_meier

RANK_METRIC = "loss_ratio"  # test loss / memoryless baseline: comparable across tasks, lower is better
INTERVAL_METHOD = "95% Student t interval over seeds, clipped to the possible range"
EXTRA_COLUMNS = ("lr", "param_count")


def with_recipe_columns(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with ``lr`` and ``param_count`` columns (None where rows came from before they existed)."""
    missing = {column: None for column in EXTRA_COLUMNS if column not in rows}
    return rows.assign(**missing) if missing else rows


def _key(values) -> tuple:
    return tuple(None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values)


def lr_choices(rows: pd.DataFrame) -> dict[tuple, LrChoice]:
    """The rate chosen per condition (``TRAIN_CONDITION`` key) from validation losses alone.

    A condition counts every rate it has a training row for as tried, so a rate whose seeds all
    failed (no ``val_loss`` row) is tried and failed, not forgotten.
    """
    rows = with_recipe_columns(rows)
    train = rows[(rows["measurement"] == ACCURACY) & rows["lr"].notna()] if not rows.empty else rows
    choices: dict[tuple, LrChoice] = {}
    if train.empty:
        return choices
    for key, group in train.groupby(list(TRAIN_CONDITION), sort=False, dropna=False):
        validation = group[(group["metric"] == "val_loss") & (group["status"] == "ok")]
        if validation.empty:
            continue
        losses: dict[float, dict[int, float]] = {}
        for row in validation.itertuples():
            losses.setdefault(float(row.lr), {})[int(row.seed)] = (math.nan if row.value is None or pd.isna(row.value)
                                                                   else float(row.value))
        choices[_key(key)] = select_lr(losses, sorted({float(lr) for lr in group["lr"]}))
    return choices


def at_chosen_lr(rows: pd.DataFrame, choices: dict[tuple, LrChoice] | None = None) -> pd.DataFrame:
    """Accuracy and gradient rows at the chosen rate of their condition (others untouched)."""
    rows = with_recipe_columns(rows)
    if rows.empty:
        return rows
    choices = lr_choices(rows) if choices is None else choices
    if not choices:
        return rows
    keys = [_key(values) for values in rows[list(TRAIN_CONDITION)].itertuples(index=False)]
    keep = []
    for key, measurement, lr in zip(keys, rows["measurement"], rows["lr"]):
        choice = choices.get(key)
        if measurement not in (ACCURACY, GRADIENTS) or choice is None:
            keep.append(True)
        elif choice.lr is None:  # every rate failed: show them all, as failed
            keep.append(True)
        else:
            keep.append(lr is not None and not pd.isna(lr) and math.isclose(float(lr), choice.lr, rel_tol=1e-12))
    return rows[keep]


def seed_interval(values, metric: str | None = None) -> MeanInterval | None:
    """Mean over seeds with its 95% t interval, clipped to the range ``metric`` can take
    (:data:`harness.metric_ranges.METRIC_RANGES`; None or an unlisted metric: not clipped) when every
    seed's value lies in it (:func:`harness.intervals.clipped`); None when no seed has a value."""
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return clipped(t_interval(values), *metric_range(metric), values=values) if values else None


def solved_proportion(solved_flags) -> Proportion | None:
    """k of n seeds solved, with the 95% Wilson interval; None for no seeds."""
    flags = [bool(flag) for flag in solved_flags]
    return wilson_interval(sum(flags), len(flags)) if flags else None


def solve_curve_of(seeds: list[pd.DataFrame]) -> SolveCurve | None:
    """Kaplan-Meier curve over the finished seeds: an event at ``steps_to_solve`` (the step the
    validation set was solved), or censored at ``steps_run`` (where training stopped unsolved)."""
    steps, solved = [], []
    for group in seeds:
        to_solve, ran = value(group, "steps_to_solve"), value(group, "steps_run")
        if to_solve is not None:
            steps.append(int(to_solve))
            solved.append(True)
        elif ran is not None:
            steps.append(int(ran))
            solved.append(False)
    return kaplan_meier(steps, solved) if steps else None


@dataclass(frozen=True)
class TaskRanking:
    """The ranking of the cells on one (task, T, device[, H]); ``group`` names it for a reader."""

    task: str
    seq_len: int
    device: str
    hidden_size: int | None  # None when cells were sized by a parameter budget (their H differ)
    ranking: Ranking

    @property
    def group(self) -> str:
        size = "" if self.hidden_size is None else f", H = {self.hidden_size}"
        return f"{self.task} (T = {self.seq_len}{size}, {self.device})"


def task_rankings(rows: pd.DataFrame, *, per_hidden_size: bool = True) -> list[TaskRanking]:
    """Cells ranked per task on test loss / baseline at their chosen rate, seeds paired.

    ``per_hidden_size``: rank within each H (a run that sweeps H); False when a parameter
    budget sized each cell, so cells of different H meet in one ranking. Seeds that failed are
    left out of the pairing (a cell with no finished seed is not ranked).
    """
    chosen = at_chosen_lr(rows)
    accuracy = chosen[(chosen["measurement"] == ACCURACY)] if not chosen.empty else chosen
    if accuracy.empty:
        return []
    group_keys = ["task", "seq_len", "device"] + (["hidden_size"] if per_hidden_size else [])
    out = []
    for key, group in accuracy.groupby(group_keys, sort=False, dropna=False):
        by_cell: dict[str, dict[int, float]] = {}
        for cell, cell_rows in group.groupby("cell", sort=False):
            for seed_rows in per_seed(cell_rows):
                found = value(seed_rows, RANK_METRIC) if all_ok(seed_rows) else None
                if found is not None and math.isfinite(found):
                    by_cell.setdefault(cell, {})[int(seed_rows["seed"].iloc[0])] = found
        if not by_cell:
            continue
        ranking = rank_cells(by_cell, lower_is_better=True, metric="test loss / baseline")
        task, seq_len, device = key[0], int(key[1]), key[2]
        hidden = int(key[3]) if per_hidden_size and key[3] is not None and not pd.isna(key[3]) else None
        out.append(TaskRanking(task, seq_len, device, hidden, ranking))
    return out


def rank_text(ranking: Ranking, cell: str) -> str:
    """What the accuracy table's rank column says: "1 (best)", "2 (≈ best, p_Holm 1)", "3 (worse, p_Holm 0.02)"."""
    for place in ranking.cells:
        if place.cell == cell:
            if place.p_holm is None:
                return f"{place.rank} (best)"
            word = "≈ best" if place.verdict != "worse than best" else "worse"
            return f"{place.rank} ({word}, p_Holm {place.p_holm:.2g})"
    return "—"
