"""The three comparison tables (speed, accuracy, gradient decay), built from stored rows only.

Each builder takes the tidy rows of one run (a pandas DataFrame, as ``ResultStore.rows``
returns them) and gives a DataFrame of display strings, one row per
cell x task x device (x sizes), ready for tabulate.
"""

from __future__ import annotations

import functools
import math

import pandas as pd

from harness.fairness import (INTERVAL_METHOD, at_chosen_lr, lr_choices, rank_text, seed_interval, solve_curve_of,
                              solved_proportion, task_rankings, with_recipe_columns)
from harness.names import ACCURACY, GRADIENTS, LENGTH, SAMPLE, SPEED
from harness.results import TRAIN_CONDITION, Results, all_ok, as_int, of, per_seed, problem, stats, value

SWEEP = "sweep"  # the learning-rate sweep's table, shown after the accuracy table
from harness.stats import UNSTABLE_IQR_RATIO, Summary
from reports.length_tables import LENGTH_TITLE, SAMPLE_TITLE, length_table, samples_table


def fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, (int,)) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e6):
        return f"{int(value)}"
    return f"{value:.{digits}g}"


def fmt_seconds(value) -> str:
    """Seconds in one fixed format on every device, so rows compare at a glance."""
    return "—" if value is None else f"{value:.3e}"


def _status_note(group: pd.DataFrame) -> str | None:
    """What a table's note column says about an item that was not measured."""
    found = problem(group)
    if found is None:
        return None
    status, error = found
    return error if status == "skipped" else f"FAILED: {error}"


SPEED_COLUMNS = ["cell", "impl", "device", "B", "T", "I", "H", "params", "fwd s", "fwd IQR", "fwd+bwd s", "fwd+bwd IQR", "repeats",
                 "steps/s", "peak mem MiB", "threads", "note"]


def _unstable(stats: dict) -> bool:
    """IQR above UNSTABLE_IQR_RATIO of the median: within a round where rounds were spread over the run (their
    pooled repeats also hold the machine's drift between rounds, which the verdicts deal with), else overall."""
    if stats.get("round_iqr_ratio") is not None:
        return stats["round_iqr_ratio"] > UNSTABLE_IQR_RATIO
    return Summary(tuple(stats["samples"])).unstable


def speed_table(results: Results) -> pd.DataFrame:
    rows = results.of(SPEED)
    out = []
    for _, group in rows.groupby("item", sort=False):
        first = group.iloc[0]
        note = _status_note(group)
        fwd, fb = stats(group, "forward_s"), stats(group, "forward_backward_s")
        unstable = [name for name, s in (("fwd", fwd), ("fwd+bwd", fb)) if s and _unstable(s)]
        if unstable and note is None:
            note = f"unstable: IQR > {UNSTABLE_IQR_RATIO:.0%} of median ({', '.join(unstable)})"
        if fb and fb.get("rounds_planned") and len(fb.get("round_minima") or ()) < fb["rounds_planned"] and note is None:
            note = f"{len(fb['round_minima'])} of {fb['rounds_planned']} timing rounds (an interrupted run: --resume)"
        peak = value(group, "peak_memory_bytes")
        out.append({
            "cell": first["cell"], "impl": first["impl"] or "—", "device": first["device"],
            "B": first["batch_size"], "T": first["seq_len"], "I": first["input_size"], "H": first["hidden_size"],
            "params": fmt(_first(group, "param_count")), "fwd s": fmt_seconds(fwd["median"]) if fwd else "—", "fwd IQR": fmt_seconds(fwd["iqr"]) if fwd else "—",
            "fwd+bwd s": fmt_seconds(fb["median"]) if fb else "—", "fwd+bwd IQR": fmt_seconds(fb["iqr"]) if fb else "—",
            "repeats": fb["n"] if fb else "—",
            "steps/s": fmt(value(group, "steps_per_s"), 3),
            "peak mem MiB": fmt(peak / 2**20, 3) if peak is not None else "—",
            "threads": first["threads"], "note": note or "",
        })
    return pd.DataFrame(out, columns=SPEED_COLUMNS)


ACCURACY_COLUMNS = ["cell", "impl", "task", "T", "H", "params", "device", "lr", "seeds", "loss", "loss/baseline", "accuracy", "solved",
                    "steps to solve", "train s", "rank", "note"]


def _interval(values: list[float], metric: str | None, digits: int = 3) -> str:
    """Mean over seeds with its 95% t interval clipped to ``metric``'s range, "0.2 [0.0516, 0.348]"; one seed:
    the value alone."""
    found = seed_interval(values, metric)
    if found is None:
        return "—"
    if not found.has_interval:
        return fmt(found.mean, digits)
    return f"{fmt(found.mean, digits)} [{fmt(found.low, digits)}, {fmt(found.high, digits)}]"


def _log_interval(values: list[float], digits: int = 3) -> str:
    """Geometric mean over seeds with a 95% t interval computed on ln (for ratios that span decades)."""
    positive = [math.log(v) for v in values if v is not None and v > 0 and math.isfinite(v)]
    found = seed_interval(positive)
    if found is None:
        return "—"
    if not found.has_interval:
        return fmt(math.exp(found.mean), digits)
    return f"{fmt(math.exp(found.mean), digits)} [{fmt(math.exp(found.low), 2)}, {fmt(math.exp(found.high), 2)}]"


def _groups(rows: pd.DataFrame):
    """(condition, rate) -> rows: the accuracy or gradient rows at each condition's chosen rate."""
    rows = with_recipe_columns(rows)
    rows = rows.assign(lr=rows["lr"].astype(object).where(rows["lr"].notna(), None))
    return rows.groupby([*TRAIN_CONDITION, "lr"], sort=False, dropna=False)


def _first(group: pd.DataFrame, column: str):
    found = group[column].dropna() if column in group else ()
    return found.iloc[0] if len(found) else None


def _lr_text(lr, choice) -> str:
    if lr is None or (isinstance(lr, float) and math.isnan(lr)):
        return "—"
    if choice is None or len(choice.scores) < 2:
        return f"{lr:g}"
    return f"{lr:g} (chosen{', edge' if choice.at_grid_edge else ''})"


def accuracy_table(results: Results) -> pd.DataFrame:
    """Test figures at each (cell, task, T, H, device)'s chosen rate: means with 95% t intervals,
    solved k/n with Wilson intervals, Kaplan-Meier median steps to solve, rank within the task."""
    rows = results.of(ACCURACY)
    if rows.empty:
        return pd.DataFrame(columns=ACCURACY_COLUMNS)
    choices = lr_choices(rows)
    per_hidden = getattr(results.run.config, "param_budget", None) is None
    rankings = {(r.task, r.seq_len, r.device, r.hidden_size): r.ranking
                for r in task_rankings(rows, per_hidden_size=per_hidden)}
    out = []
    for (cell, task, seq_len, hidden, device, lr), group in _groups(at_chosen_lr(rows, choices)):
        seeds = per_seed(group)
        ok_seeds = [g for g in seeds if all_ok(g)]
        notes = [n for g in seeds if (n := _status_note(g))]
        choice = choices.get((cell, task, seq_len, hidden, device))
        if choice is not None and choice.lr is None:
            notes.insert(0, choice.note)
        solved = solved_proportion([value(g, "solved") for g in ok_seeds])
        curve = solve_curve_of(ok_seeds)
        ranking = rankings.get((task, as_int(seq_len), device, as_int(hidden) if per_hidden else None))
        out.append({
            "cell": cell, "impl": _first(group, "impl") or "—", "task": task, "T": seq_len, "H": hidden,
            "params": fmt(_first(group, "param_count")),
            "device": device, "lr": _lr_text(lr, choice), "seeds": len(seeds),
            "loss": _interval([value(g, "loss") for g in ok_seeds], "loss"),
            "loss/baseline": _interval([value(g, "loss_ratio") for g in ok_seeds], "loss_ratio"),
            "accuracy": _interval([value(g, "accuracy") for g in ok_seeds], "accuracy"),
            "solved": solved.text() if solved else "—",
            "steps to solve": curve.text() if curve else "—",
            "train s": _interval([value(g, "train_time_s") for g in ok_seeds], "train_time_s"),
            "rank": rank_text(ranking, cell) if ranking and len(ranking.cells) > 1 else "—",
            "note": "; ".join(dict.fromkeys(notes)),
        })
    return pd.DataFrame(out, columns=ACCURACY_COLUMNS)


SWEEP_COLUMNS = ["cell", "task", "T", "H", "device", "chosen lr", "note"]


def sweep_table(results: Results) -> pd.DataFrame:
    """The whole learning-rate sweep: mean validation loss over seeds at every rate tried, and
    why the rate was chosen. Empty when the run trained at a single rate."""
    choices = lr_choices(results.of(ACCURACY))
    rates = sorted({score.lr for choice in choices.values() for score in choice.scores})
    if len(rates) < 2:
        return pd.DataFrame(columns=SWEEP_COLUMNS)
    out = []
    for (cell, task, seq_len, hidden, device), choice in choices.items():
        row = {"cell": cell, "task": task, "T": seq_len, "H": hidden, "device": device}
        by_rate = {score.lr: score for score in choice.scores}
        for rate in rates:
            score = by_rate.get(rate)
            text = "—" if score is None else fmt(score.mean_val_loss, 3)
            if score is not None and score.n_failed:
                text += f" ({score.n_failed} failed)"
            row[f"val loss @ {rate:g}"] = text
        row["chosen lr"] = "none" if choice.lr is None else f"{choice.lr:g}"
        row["note"] = choice.note
        out.append(row)
    columns = SWEEP_COLUMNS[:5] + [f"val loss @ {rate:g}" for rate in rates] + SWEEP_COLUMNS[5:]
    return pd.DataFrame(out, columns=columns)


GRADIENT_COLUMNS = ["cell", "impl", "task", "T", "H", "params", "device", "lr", "decay/step init", "decay/step trained",
                    "first/last init", "first/last trained", "horizon init", "horizon trained", "note"]


def _horizon(groups: list[pd.DataFrame], phase: str) -> str:
    values, censored_at = [], None
    for g in groups:
        sel = g[(g["metric"] == "horizon") & (g["phase"] == phase)]
        if sel.empty:
            continue
        found, found_stats = sel.iloc[0]["value"], sel.iloc[0]["stats"] or {}
        if found is None or pd.isna(found):
            censored_at = found_stats.get("length")
        else:
            values.append(float(found))
    if censored_at is not None and not values:
        return f"> {censored_at}"
    text = _interval(values, "horizon", 4)
    return text + (f" (some > {censored_at})" if censored_at is not None else "")


def gradient_table(results: Results) -> pd.DataFrame:
    """Gradient decay at each condition's chosen rate (chosen on the accuracy rows' validation loss)."""
    rows = results.rows
    if rows.empty:
        return pd.DataFrame(columns=GRADIENT_COLUMNS)
    choices = lr_choices(rows)
    out = []
    for (cell, task, seq_len, hidden, device, lr), group in _groups(of(at_chosen_lr(rows, choices), GRADIENTS)):
        seeds = per_seed(group)
        ok = [g for g in seeds if all_ok(g)]
        notes = [n for g in seeds if (n := _status_note(g))]
        out.append({
            "cell": cell, "impl": _first(group, "impl") or "—", "task": task, "T": seq_len, "H": hidden,
            "params": fmt(_first(group, "param_count")),
            "device": device, "lr": _lr_text(lr, choices.get((cell, task, seq_len, hidden, device))),
            "decay/step init": _interval([value(g, "decay_rate", "init") for g in ok], "decay_rate"),
            "decay/step trained": _interval([value(g, "decay_rate", "trained") for g in ok], "decay_rate"),
            "first/last init": _log_interval([value(g, "first_last_ratio", "init") for g in ok]),
            "first/last trained": _log_interval([value(g, "first_last_ratio", "trained") for g in ok]),
            "horizon init": _horizon(ok, "init"),
            "horizon trained": _horizon(ok, "trained"),
            "note": "; ".join(dict.fromkeys(notes)),
        })
    return pd.DataFrame(out, columns=GRADIENT_COLUMNS)


LAYERS = "layers"


def run_layers(results: Results) -> int:
    """How many layers deep the run stacked every cell (``--layers``; 1 for runs stored before it existed)."""
    return int(getattr(results.run.config, "layers", 1) or 1)


def with_layers(table: pd.DataFrame, layers: int) -> pd.DataFrame:
    """The table with a ``layers`` column right after ``H`` when the cells were stacked (``layers != 1``).

    A one-layer run (the default) shows no such column: its tables read as before. A stacked
    run shows it on every row, beside the hidden size and the parameter count it explains (H is
    each layer's width, params count every layer), so a row copied out of the table, or read
    beside a one-layer run's, still says what was measured.
    """
    if layers == 1 or "H" not in table:
        return table
    return table.assign(**{LAYERS: [layers] * len(table)})[_after_h(list(table.columns))]


def _after_h(columns: list[str]) -> list[str]:
    at = columns.index("H") + 1
    return columns[:at] + [LAYERS] + columns[at:]


def _showing_layers(build):
    """``build`` (results -> table) with the run's layer count shown (:func:`with_layers`)."""
    @functools.wraps(build)
    def build_with_layers(results: Results) -> pd.DataFrame:
        return with_layers(build(results), run_layers(results))

    return build_with_layers


_BUILDERS = {
    SPEED: ("Speed: seconds per batch (median over repeats, IQR), forward and forward+backward", speed_table),
    ACCURACY: ("Accuracy: test-set metrics after training at the chosen learning rate "
               f"(mean [{INTERVAL_METHOD}])", accuracy_table),
    SWEEP: ("Learning-rate sweep: final validation loss, mean over seeds, at every rate tried", sweep_table),
    GRADIENTS: ("Gradient decay: ||dL/ds_t|| of the last-step loss vs distance from the loss "
                f"(mean [{INTERVAL_METHOD}])", gradient_table),
    LENGTH: (LENGTH_TITLE, length_table),
    SAMPLE: (SAMPLE_TITLE, samples_table),
}
# What every report renders (key -> (title, build)): each table shows the layer count the same way.
TABLES = {key: (title, _showing_layers(build)) for key, (title, build) in _BUILDERS.items()}


def drop_empty_note(frame: pd.DataFrame) -> pd.DataFrame:
    if "note" in frame and not frame["note"].astype(bool).any():
        return frame.drop(columns="note")
    return frame
