"""The three comparison tables (speed, accuracy, gradient decay), built from stored rows only.

Each builder takes the tidy rows of one run (a pandas DataFrame, as ``ResultStore.rows``
returns them) and gives a DataFrame of display strings, one row per
cell x task x device (x sizes), ready for tabulate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from harness.stats import UNSTABLE_IQR_RATIO, Summary
from harness.store import ROW_COLUMNS


@dataclass(frozen=True)
class Results:
    """One stored run: its metadata and its tidy rows."""

    run: dict
    rows: pd.DataFrame

    @classmethod
    def from_store(cls, store, run_id: int) -> "Results":
        rows = store.rows(run_id)
        # A run without rows still has the columns, so that every table and plot comes out empty.
        frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["id", "run_id", *ROW_COLUMNS, "created_at"])
        return cls(store.run(run_id), frame)

    def of(self, measurement: str) -> pd.DataFrame:
        if self.rows.empty:
            return self.rows
        return self.rows[self.rows["measurement"] == measurement]


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
    bad = group[group["status"] != "ok"]
    if bad.empty:
        return None
    row = bad.iloc[0]
    return str(row["error"]) if row["status"] == "skipped" else f"FAILED: {row['error']}"


def _value(group: pd.DataFrame, metric: str, phase=None):
    sel = group[group["metric"] == metric]
    if phase is not None:
        sel = sel[sel["phase"] == phase]
    if sel.empty:
        return None
    value = sel.iloc[0]["value"]
    return None if value is None or pd.isna(value) else float(value)


def _stats(group: pd.DataFrame, metric: str) -> dict | None:
    sel = group[group["metric"] == metric]
    if sel.empty:
        return None
    stats = sel.iloc[0]["stats"]
    return stats if isinstance(stats, dict) else None


SPEED_COLUMNS = ["cell", "impl", "device", "B", "T", "I", "H", "fwd s", "fwd IQR", "fwd+bwd s", "fwd+bwd IQR", "repeats",
                 "steps/s", "peak mem MiB", "threads", "note"]


def speed_table(results: Results) -> pd.DataFrame:
    rows = results.of("speed")
    out = []
    for _, group in rows.groupby("item", sort=False):
        first = group.iloc[0]
        note = _status_note(group)
        fwd, fb = _stats(group, "forward_s"), _stats(group, "forward_backward_s")
        unstable = [name for name, s in (("fwd", fwd), ("fwd+bwd", fb)) if s and Summary(tuple(s["samples"])).unstable]
        if unstable and note is None:
            note = f"unstable: IQR > {UNSTABLE_IQR_RATIO:.0%} of median ({', '.join(unstable)})"
        peak = _value(group, "peak_memory_bytes")
        out.append({
            "cell": first["cell"], "impl": first["impl"] or "—", "device": first["device"],
            "B": first["batch_size"], "T": first["seq_len"], "I": first["input_size"], "H": first["hidden_size"],
            "fwd s": fmt_seconds(fwd["median"]) if fwd else "—", "fwd IQR": fmt_seconds(fwd["iqr"]) if fwd else "—",
            "fwd+bwd s": fmt_seconds(fb["median"]) if fb else "—", "fwd+bwd IQR": fmt_seconds(fb["iqr"]) if fb else "—",
            "repeats": fb["n"] if fb else "—",
            "steps/s": fmt(_value(group, "steps_per_s"), 3),
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
    keys = ["cell", "task", "seq_len", "hidden_size", "device"]
    return rows.groupby(keys, sort=False, dropna=False)


def accuracy_table(results: Results) -> pd.DataFrame:
    rows = results.of("accuracy")
    out = []
    for (cell, task, seq_len, hidden, device), group in _by_condition(rows):
        per_seed = list(group.groupby("seed", sort=True, dropna=False))
        ok_seeds = [g for _, g in per_seed if (g["status"] == "ok").all()]
        notes = [n for _, g in per_seed if (n := _status_note(g))]
        solved = [g for g in ok_seeds if _value(g, "solved")]
        out.append({
            "cell": cell, "task": task, "T": seq_len, "H": hidden, "device": device, "seeds": len(per_seed),
            "loss": _mean_std([_value(g, "loss") for g in ok_seeds]),
            "loss/baseline": _mean_std([_value(g, "loss_ratio") for g in ok_seeds]),
            "accuracy": _mean_std([_value(g, "accuracy") for g in ok_seeds]),
            "solved": f"{len(solved)}/{len(per_seed)}",
            "steps to solve": _mean_std([_value(g, "steps_to_solve") for g in solved], 4),
            "s to solve": _mean_std([_value(g, "seconds_to_solve") for g in solved]),
            "train s": _mean_std([_value(g, "train_seconds") for g in ok_seeds]),
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
        value, stats = sel.iloc[0]["value"], sel.iloc[0]["stats"] or {}
        if value is None or pd.isna(value):
            censored_at = stats.get("length")
        else:
            values.append(float(value))
    if censored_at is not None and not values:
        return f"> {censored_at}"
    text = _mean_std(values, 4)
    return text + (f" (some > {censored_at})" if censored_at is not None else "")


def gradient_table(results: Results) -> pd.DataFrame:
    rows = results.of("gradients")
    out = []
    for (cell, task, seq_len, hidden, device), group in _by_condition(rows):
        per_seed = [g for _, g in group.groupby("seed", sort=True, dropna=False)]
        ok = [g for g in per_seed if (g["status"] == "ok").all()]
        notes = [n for g in per_seed if (n := _status_note(g))]
        out.append({
            "cell": cell, "task": task, "T": seq_len, "H": hidden, "device": device,
            "decay/step init": _mean_std([_value(g, "decay_rate", "init") for g in ok]),
            "decay/step trained": _mean_std([_value(g, "decay_rate", "trained") for g in ok]),
            "first/last init": _mean_std([_value(g, "first_last_ratio", "init") for g in ok]),
            "first/last trained": _mean_std([_value(g, "first_last_ratio", "trained") for g in ok]),
            "horizon init": _horizon(ok, "init"),
            "horizon trained": _horizon(ok, "trained"),
            "note": "; ".join(dict.fromkeys(notes)),
        })
    return pd.DataFrame(out, columns=GRADIENT_COLUMNS)


TABLES = {
    "speed": ("Speed: seconds per batch (median over repeats, IQR), forward and forward+backward", speed_table),
    "accuracy": ("Accuracy: held-out metrics after training (mean ± std over seeds)", accuracy_table),
    "gradients": ("Gradient decay: ||dL/ds_t|| of the last-step loss vs distance from the loss", gradient_table),
}


def drop_empty_note(frame: pd.DataFrame) -> pd.DataFrame:
    if "note" in frame and not frame["note"].astype(bool).any():
        return frame.drop(columns="note")
    return frame
