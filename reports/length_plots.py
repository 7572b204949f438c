"""The length-generalisation figure: accuracy against evaluated length T, one line per cell,
one figure per trained condition (task, trained T, H, device), drawn from stored rows only."""

from __future__ import annotations

import pandas as pd

from harness.names import ACCURACY, LENGTH
from harness.results import Results, as_int, of
from reports.length_tables import at_chosen_lr


def length_series(results: Results) -> pd.DataFrame:
    """Columns task, trained_T, hidden_size, device, cell, seq_len, mean, low, high, seeds: accuracy
    over seeds (low/high: min and max) at the trained T (test set) and at each evaluated T."""
    from harness.fairness import at_chosen_lr as chosen_accuracy

    columns = ["task", "trained_T", "hidden_size", "device", "cell", "seq_len", "mean", "low", "high", "seeds"]
    longer = at_chosen_lr(results.rows, LENGTH)
    longer = longer[(longer["status"] == "ok") & (longer["metric"] == "length_accuracy")]
    if longer.empty:
        return pd.DataFrame(columns=columns)
    trained = of(chosen_accuracy(results.rows), ACCURACY)
    trained = trained[(trained["status"] == "ok") & (trained["metric"] == "accuracy")]
    trained = trained.assign(trained_T=trained["seq_len"].map(as_int))
    # Only the conditions that were evaluated at other lengths get a figure.
    evaluated = set(zip(longer["cell"], longer["task"], longer["trained_T"], longer["hidden_size"], longer["device"]))
    trained = trained[[key in evaluated for key in zip(trained["cell"], trained["task"], trained["trained_T"],
                                                        trained["hidden_size"], trained["device"])]]
    both = pd.concat([trained, longer], ignore_index=True)
    both = both.assign(seq_len=both["seq_len"].map(as_int), value=both["value"].astype(float))
    grouped = both.groupby(columns[:6], sort=False)["value"]
    table = grouped.agg(["mean", "min", "max", "count"]).reset_index()
    table = table.rename(columns={"min": "low", "max": "high", "count": "seeds"})
    return table.sort_values(["task", "trained_T", "cell", "seq_len"], kind="stable")[columns]


def length_plots(results: Results, colors) -> list:
    from reports.plots import Plot, _label, _png, _pyplot, safe_stem

    series = length_series(results)
    if series.empty:
        return []
    plt = _pyplot()
    plots = []
    for (task, trained_t, hidden, device), group in series.groupby(["task", "trained_T", "hidden_size", "device"],
                                                                    sort=False):
        fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
        for cell, line in group.groupby("cell", sort=False):
            ax.plot(line["seq_len"], line["mean"], color=colors[cell], marker="o", linewidth=1.6, label=_label(cell))
            if (line["seeds"] > 1).any():
                ax.fill_between(line["seq_len"], line["low"], line["high"], color=colors[cell], alpha=0.18, linewidth=0)
        ax.axvline(trained_t, color="black", linestyle="--", linewidth=1, label=f"trained at T = {trained_t}")
        ax.set_xscale("log", base=2)
        lengths = sorted(group["seq_len"].unique())
        ax.set_xticks(lengths, [str(t) for t in lengths])  # the lengths evaluated, not powers of two
        ax.minorticks_off()
        ax.set_xlabel("evaluated length T (log scale)")
        ax.set_ylabel("held-out accuracy (fraction)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(title="cell", loc="best")
        title = f"Length generalisation — {task}, trained at T = {trained_t}, H = {as_int(hidden)}, {device}"
        fig.suptitle(_label(title))
        seeds = int(group["seeds"].max())
        plots.append(Plot(
            name=safe_stem("length", task, trained_t, hidden, device), section=LENGTH, title=title,
            caption=("Held-out accuracy of each model trained at the dashed length, evaluated unchanged at longer "
                     "sequences of the same task, at each cell's chosen learning rate."
                     + (f" Mean over {seeds} seeds, the band spans min to max." if seeds > 1 else "")),
            png=_png(fig),
        ))
    return plots
