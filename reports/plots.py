"""The report's figures, drawn from stored rows only (no re-measuring, nothing kept in memory).

Three kinds, each a :class:`Plot` holding PNG bytes plus the words a reader needs:

- gradient norm against distance from the loss (log scale), one line per cell, with the
  initialisation and trained panels side by side on a shared axis;
- learning curves, held-out loss / baseline against training step, one figure per task,
  one line per cell, the spread over seeds shaded;
- speed against sequence length per device, median with IQR error bars (a bar chart when
  the run timed a single length).

The data builders (``gradient_series``, ``learning_series``, ``speed_series``) return plain
DataFrames and are tested on their own; matplotlib is imported only when a figure is drawn,
with the non-interactive Agg backend, so ``rnnbench run`` does not pay for it at start-up.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from harness.fairness import at_chosen_lr
from harness.names import ACCURACY, GRADIENTS, SPEED
from harness.names import FUSED, GRAPHED, LOOPED_IMPLEMENTATIONS, MODULE, NUMPY, PARALLEL, SCAN, STEP_IMPL, UNROLLED
from harness.results import TASK_CONDITION, Results, ok_values

# solid: a whole-sequence implementation; dashed: a Python step loop; dotted: that loop graphed
IMPL_STYLES = {FUSED: "-", MODULE: "-", NUMPY: "-", SCAN: "-", PARALLEL: "-", UNROLLED: "--", STEP_IMPL: "--", GRAPHED: ":"}
IMPL_MARKERS = {FUSED: "o", MODULE: "o", NUMPY: "o", SCAN: "o", PARALLEL: "o", UNROLLED: "s", STEP_IMPL: "s", GRAPHED: "^"}
DPI = 100


@dataclass(frozen=True)
class Plot:
    """One rendered figure. ``name`` is a file-safe stem; ``section`` the table it illustrates."""

    name: str
    section: str
    title: str
    caption: str
    png: bytes


# --- data ---------------------------------------------------------------------------------


def _spread(table: pd.DataFrame, geometric: bool = False) -> pd.DataFrame:
    """Mean (geometric for log-scale quantities), min and max across the columns (seeds) of ``table``."""
    values = table.to_numpy(dtype=float)
    if geometric:
        # A norm that underflowed to 0 has no place on a log scale, and a mean over the other seeds
        # would jump up where it happens: the line stops there instead (the band still shows the rest).
        values = np.where(values > 0, values, np.nan)
        centre = np.exp(np.mean(np.log(values), axis=1))
    else:
        centre = np.nanmean(values, axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanmin(values, axis=1), np.nanmax(values, axis=1)
    return pd.DataFrame({"mean": centre, "low": low, "high": high, "seeds": np.sum(~np.isnan(values), axis=1)},
                        index=table.index)


TRAIN_CONDITION = list(TASK_CONDITION)


def gradient_series(results: Results) -> pd.DataFrame:
    """Gradient norms over seeds, one row per (task, T, H, device, phase, cell, distance).

    Columns: the condition, ``phase`` ("init"/"trained"), ``cell``, ``distance`` (steps from
    the loss), ``mean`` (geometric mean over seeds: the norms span decades), ``low``, ``high``, ``seeds``.
    """
    rows = ok_values(results.rows, GRADIENTS, ["grad_norm"])
    parts = []
    for key, group in rows.groupby(TRAIN_CONDITION + ["phase", "cell"], sort=False, dropna=False):
        table = group.pivot_table(index="step", columns="seed", values="value", aggfunc="first", dropna=False)
        spread = _spread(table, geometric=True).rename_axis("distance").reset_index()
        for name, value in zip(TRAIN_CONDITION + ["phase", "cell"], key):
            spread[name] = value
        parts.append(spread)
    columns = TRAIN_CONDITION + ["phase", "cell", "distance", "mean", "low", "high", "seeds"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def learning_series(results: Results, metric: str = "loss_ratio") -> pd.DataFrame:
    """Learning curves over seeds, one row per (task, T, H, device, cell, training step).

    ``metric`` is "loss_ratio" (held-out loss / the task's memoryless baseline) or "accuracy".
    A seed that stopped early because it solved the task keeps its last value at later steps,
    so the mean is over the same seeds at every step.
    """
    rows = results.rows
    curve = ok_values(rows, ACCURACY, ["curve_loss" if metric == "loss_ratio" else "curve_accuracy"])
    if metric == "loss_ratio" and not curve.empty:
        baselines = ok_values(rows, ACCURACY, ["baseline"]).set_index("item")["value"]
        curve = curve.assign(value=curve["value"] / curve["item"].map(baselines))
        curve = curve[curve["value"].notna()]
    parts = []
    for key, group in curve.groupby(TRAIN_CONDITION + ["cell"], sort=False, dropna=False):
        table = group.pivot_table(index="step", columns="seed", values="value", aggfunc="first", dropna=False)
        spread = _spread(table.sort_index().ffill()).rename_axis("step").reset_index()
        for name, value in zip(TRAIN_CONDITION + ["cell"], key):
            spread[name] = value
        parts.append(spread)
    columns = TRAIN_CONDITION + ["cell", "step", "mean", "low", "high", "seeds"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def speed_series(results: Results) -> pd.DataFrame:
    """Median and quartiles of the seconds per batch, one row per speed item and timing metric."""
    rows = ok_values(results.rows, SPEED, ["forward_s", "forward_backward_s"])
    out = []
    for row in rows.itertuples():
        stats = row.stats if isinstance(row.stats, dict) else {}
        out.append({"device": row.device, "cell": row.cell, "impl": row.impl or "—", "batch_size": row.batch_size,
                    "input_size": row.input_size, "hidden_size": row.hidden_size, "seq_len": row.seq_len,
                    "metric": row.metric, "median": float(row.value), "q1": stats.get("q1", row.value),
                    "q3": stats.get("q3", row.value)})
    columns = ["device", "cell", "impl", "batch_size", "input_size", "hidden_size", "seq_len", "metric", "median", "q1", "q3"]
    return pd.DataFrame(out, columns=columns)


# --- drawing ------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _null_locator():
    from matplotlib.ticker import NullLocator

    return NullLocator()


def _label(text) -> str:
    """Plugin-supplied text as a literal label: no mathtext ($), not hidden from the legend (_)."""
    text = str(text).replace("$", r"\$")
    return "\u200b" + text if text.startswith("_") else text


def safe_stem(*parts) -> str:
    return re.sub(r"[^a-z0-9]+", "-", "-".join(str(p) for p in parts).lower()).strip("-") or "plot"


def cell_colors(results: Results) -> dict[str, tuple]:
    """One colour per cell, the same in every figure of a report."""
    plt = _pyplot()
    cells = list(dict.fromkeys(results.rows["cell"])) if not results.rows.empty else []
    palette = plt.get_cmap("tab10" if len(cells) <= 10 else "tab20")
    return {cell: palette(i % palette.N) for i, cell in enumerate(cells)}


def _png(fig) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def _condition_text(task, seq_len, hidden, device) -> str:
    return f"{task}, T = {int(seq_len)}, H = {int(hidden)}, {device}"


def _gradient_plots(results: Results, colors) -> list[Plot]:
    plt = _pyplot()
    data = gradient_series(results)
    plots = []
    for (task, seq_len, hidden, device), group in data.groupby(TRAIN_CONDITION, sort=False, dropna=False):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True, layout="constrained")
        for ax, phase, heading in zip(axes, ("init", "trained"), ("at initialisation", "after training")):
            for cell, series in group[group["phase"] == phase].groupby("cell", sort=False):
                ax.plot(series["distance"], series["mean"], color=colors[cell], label=_label(cell), linewidth=1.6)
                if (series["seeds"] > 1).any():
                    ax.fill_between(series["distance"], series["low"], series["high"], color=colors[cell], alpha=0.18, linewidth=0)
            ax.set_yscale("log", nonpositive="mask")
            ax.yaxis.set_minor_locator(_null_locator())  # decades are enough, and minor ticks cost layout time
            ax.set_title(heading)
            ax.set_xlabel("distance from the loss (time steps)")
            ax.grid(True, which="major", alpha=0.3)
        axes[0].set_ylabel(r"gradient norm $\|\partial L / \partial s_t\|$ (log scale)")
        handles, labels = axes[0].get_legend_handles_labels()
        if not handles:
            handles, labels = axes[1].get_legend_handles_labels()
        fig.legend(handles, labels, title="cell", loc="outside right upper")
        title = f"Gradient decay — {_condition_text(task, seq_len, hidden, device)}"
        fig.suptitle(_label(title))
        seeds = int(group["seeds"].max())
        underflow = bool((group["seeds"] < seeds).any())
        plots.append(Plot(
            name=safe_stem("gradients", task, seq_len, hidden, device), section=GRADIENTS, title=title,
            caption=("Norm of the gradient of the last step's loss with respect to the recurrent state t steps "
                     "earlier. A line that falls steeply means the cell cannot learn from that far back; flatter is "
                     "better for long dependencies. Left: untrained weights; right: the same cells after training."
                     + (f" Geometric mean over {seeds} seeds; the band spans min to max." if seeds > 1 else "")
                     + (" A line stops where a seed's norm underflowed to zero (below float32's range)."
                        if underflow else "")),
            png=_png(fig),
        ))
    return plots


def _learning_plots(results: Results, colors) -> list[Plot]:
    plt = _pyplot()
    ratios, accuracies = learning_series(results, "loss_ratio"), learning_series(results, "accuracy")
    plots = []
    for (task, seq_len, hidden, device), group in ratios.groupby(TRAIN_CONDITION, sort=False, dropna=False):
        acc_group = accuracies[(accuracies["task"] == task) & (accuracies["seq_len"] == seq_len)
                               & (accuracies["hidden_size"] == hidden) & (accuracies["device"] == device)]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
        for ax, data in zip(axes, (group, acc_group)):
            for cell, series in data.groupby("cell", sort=False):
                ax.plot(series["step"], series["mean"], color=colors[cell], label=_label(cell), linewidth=1.6, marker=".")
                if (series["seeds"] > 1).any():
                    ax.fill_between(series["step"], series["low"], series["high"], color=colors[cell], alpha=0.18, linewidth=0)
            ax.set_xlabel("training step")
            ax.grid(True, alpha=0.3)
        axes[0].axhline(1.0, color="black", linestyle="--", linewidth=1, label="memoryless baseline")
        positive = group["low"][group["low"] > 0]
        if not positive.empty and group["high"].max() / positive.min() > 30:
            axes[0].set_yscale("log")
        axes[0].set_ylabel("validation loss / baseline (1 = memoryless)")
        axes[0].set_title("loss relative to the baseline (lower is better)")
        axes[1].set_ylabel("validation accuracy (fraction)")
        axes[1].set_ylim(-0.02, 1.02)
        axes[1].set_title("accuracy (higher is better)")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, title="cell", loc="outside right upper")
        title = f"Learning curves — {_condition_text(task, seq_len, hidden, device)}"
        fig.suptitle(_label(title))
        seeds = int(group["seeds"].max())
        plots.append(Plot(
            name=safe_stem("learning", task, seq_len, hidden, device), section=ACCURACY, title=title,
            caption=("Validation loss divided by the task's memoryless baseline (left) and validation accuracy (right) "
                     "during training, at each cell's chosen learning rate. Below the dashed line the cell uses what "
                     "it remembers."
                     + (f" Mean over {seeds} seeds, the band spans min to max; a seed that stopped early because it "
                        "solved the task keeps its last value." if seeds > 1 else "")),
            png=_png(fig),
        ))
    return plots


def _speed_axes(ax, panel: pd.DataFrame, colors, by_length: bool) -> None:
    series_keys = list(dict.fromkeys(zip(panel["cell"], panel["impl"])))
    if by_length:
        for cell, impl in series_keys:
            s = panel[(panel["cell"] == cell) & (panel["impl"] == impl)].sort_values("seq_len")
            ax.errorbar(s["seq_len"], s["median"], yerr=[s["median"] - s["q1"], s["q3"] - s["median"]],
                        color=colors[cell], linestyle=IMPL_STYLES.get(impl, "-."), marker=IMPL_MARKERS.get(impl, "D"),
                        capsize=3, label=_label(f"{cell} · {impl}"))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T (time steps, log scale)")
        ax.yaxis.set_major_formatter(_seconds_formatter())
        ax.grid(True, which="both", alpha=0.3)
        return
    positions = np.arange(len(series_keys))
    for pos, (cell, impl) in zip(positions, series_keys):
        s = panel[(panel["cell"] == cell) & (panel["impl"] == impl)].iloc[0]
        ax.barh(pos, s["median"], xerr=[[s["median"] - s["q1"]], [s["q3"] - s["median"]]], color=colors[cell],
                hatch="//" if impl in LOOPED_IMPLEMENTATIONS else None, edgecolor="white", capsize=3,
                label=_label(f"{cell} · {impl}"))
    ax.set_yticks(positions, [_label(f"{c} · {i}") for c, i in series_keys])
    ax.invert_yaxis()
    ax.set_xlabel("time per batch (median; error bar: IQR)")
    ax.xaxis.set_major_locator(_ticker().MaxNLocator(5))
    ax.xaxis.set_major_formatter(_seconds_formatter())
    ax.grid(True, axis="x", alpha=0.3)


def _ticker():
    import matplotlib.ticker

    return matplotlib.ticker


def _seconds_formatter():
    """Seconds with SI prefixes (250 µs, 1.5 ms): readable at any scale, one unit everywhere."""
    return _ticker().EngFormatter(unit="s", places=None)


def _speed_plots(results: Results, colors) -> list[Plot]:
    plt = _pyplot()
    data = speed_series(results)
    plots = []
    metrics = (("forward_s", "forward"), ("forward_backward_s", "forward + backward"))
    for device, by_device in data.groupby("device", sort=False):
        sizes = list(dict.fromkeys(zip(by_device["batch_size"], by_device["input_size"], by_device["hidden_size"])))
        by_length = by_device["seq_len"].nunique() > 1
        n_series = len(set(zip(by_device["cell"], by_device["impl"])))
        height = (3.6 if by_length else max(2.4, 0.32 * n_series + 1.2)) * len(sizes) + 0.6
        fig, axes = plt.subplots(len(sizes), 2, figsize=(11, height), squeeze=False, layout="constrained")
        for row_axes, (batch, inputs, hidden) in zip(axes, sizes):
            panel_rows = by_device[(by_device["batch_size"] == batch) & (by_device["input_size"] == inputs)
                                   & (by_device["hidden_size"] == hidden)]
            for ax, (metric, heading) in zip(row_axes, metrics):
                _speed_axes(ax, panel_rows[panel_rows["metric"] == metric], colors, by_length)
                ax.set_title(f"{heading}: B = {batch}, I = {inputs}, H = {hidden}"
                             + ("" if by_length else f", T = {int(panel_rows['seq_len'].iloc[0])}"))
                if by_length:
                    ax.set_ylabel("seconds per batch (median, log scale)")
            if not by_length:
                row_axes[1].tick_params(labelleft=False)
        if by_length:
            handles, labels = axes[0][0].get_legend_handles_labels()
            fig.legend(handles, labels, title="cell · implementation", loc="outside right upper")
        title = f"Speed on {device}" + (" against sequence length" if by_length else "")
        fig.suptitle(_label(title))
        plots.append(Plot(
            name=safe_stem("speed", device), section=SPEED, title=title,
            caption=("Seconds per batch, median over the repeated calls; the error bars span the interquartile "
                     "range (25th to 75th percentile). Lower is faster. 'fused' is the library kernel, 'unrolled' "
                     "a Python loop over time steps, 'numpy' hand-written NumPy with backpropagation through time, "
                     "'step' a modern cell's plain recurrence one step at a time, 'scan' its (chunked) scan over "
                     "time, 'parallel' a parallel or chunkwise-parallel form, 'graphed' a step loop replayed from "
                     "a CUDA graph, 'module' a sequence-level module that names no implementation."),
            png=_png(fig),
        ))
    return plots


def build_plots(results: Results) -> list[Plot]:
    """Every figure the run's rows allow, in report order: speed, learning curves, gradient decay."""
    if results.rows.empty:
        return []
    from reports.fair_plots import build_fair_plots
    from reports.length_plots import length_plots

    colors = cell_colors(results)
    # Learning curves and gradient profiles are drawn at each cell's chosen learning rate.
    chosen = replace(results, rows=at_chosen_lr(results.rows))
    plots = (_speed_plots(results, colors) + _learning_plots(chosen, colors) + build_fair_plots(results, colors)
             + _gradient_plots(chosen, colors) + length_plots(results, colors))
    # Names become file names: two conditions that differ only in punctuation must not overwrite each other.
    seen: dict[str, int] = {}
    unique = []
    for plot in plots:
        seen[plot.name] = seen.get(plot.name, 0) + 1
        unique.append(plot if seen[plot.name] == 1 else replace(plot, name=f"{plot.name}-{seen[plot.name]}"))
    return unique
