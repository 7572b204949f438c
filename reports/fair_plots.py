"""Figures of a fair comparison, from stored rows only:

- **fraction solved by step**: the Kaplan-Meier estimate over seeds (:mod:`harness.survival`),
  one step line per cell for each (task, T, H, device), censored seeds marked where they stopped;
- **final validation loss against learning rate**: one line per cell for each (task, T, device),
  the mean over seeds with the min-max band, the chosen rate circled.

The data builders (:func:`solve_series`, :func:`sweep_series`) return DataFrames tested on
their own; drawing reuses :mod:`reports.plots`' helpers (Agg backend, one colour per cell).
"""

from __future__ import annotations

import pandas as pd

from harness.fairness import at_chosen_lr, lr_choices, solve_curve_of
from harness.names import ACCURACY
from harness.results import TASK_CONDITION, Results, all_ok, of, per_seed
from reports.plots import Plot, _label, _png, _pyplot, safe_stem

CONDITION = list(TASK_CONDITION)


def solve_series(results: Results) -> pd.DataFrame:
    """The Kaplan-Meier step function per (task, T, H, device, cell) at the chosen rate: one row per
    point (``step``, ``fraction`` solved by then), plus ``censored`` (the stop steps of unsolved
    seeds, as a tuple, on every row) and ``seeds``."""
    rows = of(at_chosen_lr(results.rows), ACCURACY)
    out = []
    if rows.empty:
        return pd.DataFrame(columns=[*CONDITION, "cell", "step", "fraction", "censored", "seeds"])
    for key, group in rows.groupby([*CONDITION, "cell"], sort=False, dropna=False):
        seeds = [g for g in per_seed(group) if all_ok(g)]
        curve = solve_curve_of(seeds)
        if curve is None:
            continue
        for step, fraction in zip(*curve.curve_points()):
            out.append({**dict(zip([*CONDITION, "cell"], key)), "step": step, "fraction": fraction,
                        "censored": curve.censored_steps, "seeds": curve.n})
    return pd.DataFrame(out, columns=[*CONDITION, "cell", "step", "fraction", "censored", "seeds"])


def sweep_series(results: Results) -> pd.DataFrame:
    """Final validation loss against rate: one row per (task, T, H, device, cell, lr) with the
    ``mean`` over seeds, ``low``/``high`` (min, max), ``seeds`` and whether it is ``chosen``."""
    rows = of(results.rows, ACCURACY)
    columns = [*CONDITION, "cell", "lr", "mean", "low", "high", "seeds", "chosen"]
    if rows.empty or "lr" not in rows:
        return pd.DataFrame(columns=columns)
    choices = lr_choices(rows)
    validation = rows[(rows["metric"] == "val_loss") & (rows["status"] == "ok") & rows["value"].notna()]
    out = []
    for key, group in validation.groupby([*CONDITION, "cell", "lr"], sort=True, dropna=False):
        task, seq_len, hidden, device, cell, lr = key
        choice = choices.get((cell, task, seq_len, hidden, device))
        values = group["value"].astype(float)
        out.append({"task": task, "seq_len": seq_len, "hidden_size": hidden, "device": device, "cell": cell,
                    "lr": float(lr), "mean": values.mean(), "low": values.min(), "high": values.max(),
                    "seeds": len(values), "chosen": choice is not None and choice.lr == float(lr)})
    return pd.DataFrame(out, columns=columns)


def _solve_plots(results: Results, colors) -> list[Plot]:
    plt = _pyplot()
    data = solve_series(results)
    plots = []
    for (task, seq_len, hidden, device), group in data.groupby(CONDITION, sort=False, dropna=False):
        fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
        for cell, series in group.groupby("cell", sort=False):
            ax.step(series["step"], series["fraction"], where="post", color=colors[cell], label=_label(cell), linewidth=1.8)
            censored = series["censored"].iloc[0]
            if censored:
                fraction = series["fraction"].iloc[-1]
                ax.plot(list(censored), [fraction] * len(censored), linestyle="none", marker="|", markersize=12,
                        color=colors[cell])
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("training step")
        ax.set_ylabel("fraction of seeds solved (Kaplan-Meier)")
        ax.grid(True, alpha=0.3)
        ax.legend(title="cell", loc="upper left", fontsize="small")
        title = f"Fraction solved by training step — {task}, T = {int(seq_len)}, H = {int(hidden)}, {device}"
        fig.suptitle(_label(title))
        seeds = int(group["seeds"].max())
        plots.append(Plot(
            name=safe_stem("solved", task, seq_len, hidden, device), section=ACCURACY, title=title,
            caption=(f"Kaplan-Meier estimate over {seeds} seed{'s' * (seeds > 1)} at each cell's chosen learning rate "
                     "of the fraction whose validation set met the task's solved criterion by each step. A seed that "
                     "stopped unsolved is censored (a tick at the step it stopped): it counts as unsolved up to there "
                     "and says nothing after. A curve that stays at 0 never solved within the budget."),
            png=_png(fig),
        ))
    return plots


def _sweep_plots(results: Results, colors) -> list[Plot]:
    plt = _pyplot()
    data = sweep_series(results)
    if data.empty or data["lr"].nunique() < 2:
        return []
    plots = []
    for (task, seq_len, device), group in data.groupby(["task", "seq_len", "device"], sort=False, dropna=False):
        fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
        for (cell, hidden), series in group.groupby(["cell", "hidden_size"], sort=False):
            series = series.sort_values("lr")
            label = cell if group["hidden_size"].nunique() == 1 else f"{cell} (H = {int(hidden)})"
            ax.plot(series["lr"], series["mean"], color=colors[cell], marker="o", label=_label(label), linewidth=1.6)
            if (series["seeds"] > 1).any():
                ax.fill_between(series["lr"], series["low"], series["high"], color=colors[cell], alpha=0.15, linewidth=0)
            chosen = series[series["chosen"]]
            ax.plot(chosen["lr"], chosen["mean"], linestyle="none", marker="o", markersize=13, markerfacecolor="none",
                    markeredgecolor=colors[cell])
        ax.set_xscale("log")
        positive = group["low"][group["low"] > 0]
        if not positive.empty and group["high"].max() / positive.min() > 30:
            ax.set_yscale("log")
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("final validation loss")
        ax.grid(True, alpha=0.3)
        ax.legend(title="cell", fontsize="small")
        title = f"Validation loss against learning rate — {task}, T = {int(seq_len)}, {device}"
        fig.suptitle(_label(title))
        plots.append(Plot(
            name=safe_stem("sweep", task, seq_len, device), section=ACCURACY, title=title,
            caption=("Final validation loss, mean over seeds (band: min to max), at every rate of the sweep; the "
                     "circled point is the rate chosen for the accuracy table. Test data played no part."),
            png=_png(fig),
        ))
    return plots


def build_fair_plots(results: Results, colors) -> list[Plot]:
    """The sweep and solved-by-step figures, in report order."""
    return _sweep_plots(results, colors) + _solve_plots(results, colors)
