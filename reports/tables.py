"""The three comparison tables (speed, accuracy, gradient decay), built from stored rows only.

Each builder takes the tidy rows of one run (a pandas DataFrame, as ``ResultStore.rows``
returns them) and gives a DataFrame of display strings, one row per
cell x task x device (x sizes), ready for tabulate.
"""

from __future__ import annotations

import math

import pandas as pd

from harness.names import ACCURACY, GRADIENTS, SPEED
from harness.results import TRAIN_CONDITION, Results, all_ok, per_seed, problem, stats, value
from harness.stats import UNSTABLE_IQR_RATIO, Summary


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


SPEED_COLUMNS = ["cell", "impl", "device", "B", "T", "I", "H", "fwd s", "fwd IQR", "fwd+bwd s", "fwd+bwd IQR", "repeats",
                 "steps/s", "peak mem MiB", "threads", "note"]


def speed_table(results: Results) -> pd.DataFrame:
    rows = results.of(SPEED)
    out = []
    for _, group in rows.groupby("item", sort=False):
        first = group.iloc[0]
        note = _status_note(group)
        fwd, fb = stats(group, "forward_s"), stats(group, "forward_backward_s")
        unstable = [name for name, s in (("fwd", fwd), ("fwd+bwd", fb)) if s and Summary(tuple(s["samples"])).unstable]
        if unstable and note is None:
            note = f"unstable: IQR > {UNSTABLE_IQR_RATIO:.0%} of median ({', '.join(unstable)})"
        peak = value(group, "peak_memory_bytes")
        out.append({
            "cell": first["cell"], "impl": first["impl"] or "—", "device": first["device"],
            "B": first["batch_size"], "T": first["seq_len"], "I": first["input_size"], "H": first["hidden_size"],
            "fwd s": fmt_seconds(fwd["median"]) if fwd else "—", "fwd IQR": fmt_seconds(fwd["iqr"]) if fwd else "—",
            "fwd+bwd s": fmt_seconds(fb["median"]) if fb else "—", "fwd+bwd IQR": fmt_seconds(fb["iqr"]) if fb else "—",
            "repeats": fb["n"] if fb else "—",
            "steps/s": fmt(value(group, "steps_per_s"), 3),
            "peak mem MiB": fmt(peak / 2**20, 3) if peak is not None else "—",
            "threads": first["threads"], "note": note or "",
        })
    return pd.DataFrame(out, columns=SPEED_COLUMNS)


ACCURACY_COLUMNS = ["cell", "task", "T", "H", "device", "seeds", "loss", "loss/baseline", "accuracy", "solved", "steps to solve",
                    "s to solve", "train s", "note"]


def _mean_std(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return fmt(mean, digits)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f"{fmt(mean, digits)} ± {fmt(std, 2)}"


def _by_condition(rows: pd.DataFrame):
    return rows.groupby(list(TRAIN_CONDITION), sort=False, dropna=False)


def accuracy_table(results: Results) -> pd.DataFrame:
    rows = results.of(ACCURACY)
    out = []
    for (cell, task, seq_len, hidden, device), group in _by_condition(rows):
        seeds = per_seed(group)
        ok_seeds = [g for g in seeds if all_ok(g)]
        notes = [n for g in seeds if (n := _status_note(g))]
        solved = [g for g in ok_seeds if value(g, "solved")]
        out.append({
            "cell": cell, "task": task, "T": seq_len, "H": hidden, "device": device, "seeds": len(seeds),
            "loss": _mean_std([value(g, "loss") for g in ok_seeds]),
            "loss/baseline": _mean_std([value(g, "loss_ratio") for g in ok_seeds]),
            "accuracy": _mean_std([value(g, "accuracy") for g in ok_seeds]),
            "solved": f"{len(solved)}/{len(seeds)}",
            "steps to solve": _mean_std([value(g, "steps_to_solve") for g in solved], 4),
            "s to solve": _mean_std([value(g, "time_to_solve_s") for g in solved]),
            "train s": _mean_std([value(g, "train_time_s") for g in ok_seeds]),
            "note": "; ".join(dict.fromkeys(notes)),
        })
    return pd.DataFrame(out, columns=ACCURACY_COLUMNS)


GRADIENT_COLUMNS = ["cell", "task", "T", "H", "device", "decay/step init", "decay/step trained", "first/last init",
                    "first/last trained", "horizon init", "horizon trained", "note"]


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
    text = _mean_std(values, 4)
    return text + (f" (some > {censored_at})" if censored_at is not None else "")


def gradient_table(results: Results) -> pd.DataFrame:
    rows = results.of(GRADIENTS)
    out = []
    for (cell, task, seq_len, hidden, device), group in _by_condition(rows):
        seeds = per_seed(group)
        ok = [g for g in seeds if all_ok(g)]
        notes = [n for g in seeds if (n := _status_note(g))]
        out.append({
            "cell": cell, "task": task, "T": seq_len, "H": hidden, "device": device,
            "decay/step init": _mean_std([value(g, "decay_rate", "init") for g in ok]),
            "decay/step trained": _mean_std([value(g, "decay_rate", "trained") for g in ok]),
            "first/last init": _mean_std([value(g, "first_last_ratio", "init") for g in ok]),
            "first/last trained": _mean_std([value(g, "first_last_ratio", "trained") for g in ok]),
            "horizon init": _horizon(ok, "init"),
            "horizon trained": _horizon(ok, "trained"),
            "note": "; ".join(dict.fromkeys(notes)),
        })
    return pd.DataFrame(out, columns=GRADIENT_COLUMNS)


TABLES = {
    SPEED: ("Speed: seconds per batch (median over repeats, IQR), forward and forward+backward", speed_table),
    ACCURACY: ("Accuracy: held-out metrics after training (mean ± std over seeds)", accuracy_table),
    GRADIENTS: ("Gradient decay: ||dL/ds_t|| of the last-step loss vs distance from the loss", gradient_table),
}


def drop_empty_note(frame: pd.DataFrame) -> pd.DataFrame:
    if "note" in frame and not frame["note"].astype(bool).any():
        return frame.drop(columns="note")
    return frame
