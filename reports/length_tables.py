"""Two tables about trained models beyond their test set: accuracy at other lengths
(``--eval-lengths``, :mod:`harness.lengths`) and the text each one generated
(:mod:`harness.samples`), both at each cell's chosen learning rate.
"""

from __future__ import annotations

import math

import pandas as pd

from harness.fairness import lr_choices, seed_interval
from harness.names import ACCURACY, LENGTH, SAMPLE
from harness.results import Results, as_int, of

LENGTH_COLUMNS = ["cell", "task", "trained T", "H", "device", "T", "L", "seeds", "accuracy", "loss/baseline", "note"]
SAMPLE_COLUMNS = ["cell", "task", "T", "H", "device", "seed", "prompt", "sample"]


def _fmt(value, digits: int = 3) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}g}"


def _mean(values: list[float], metric: str) -> str:
    """Mean over seeds with its 95% t interval clipped to ``metric``'s range (one seed: the value alone)."""
    found = seed_interval(values, metric)
    if found is None:
        return "—"
    if not found.has_interval:
        return _fmt(found.mean)
    return f"{_fmt(found.mean)} [{_fmt(found.low)}, {_fmt(found.high)}]"


def trained_seq_len(row) -> int | None:
    """The T a row's model was trained at: ``stats["trained_seq_len"]`` for length rows, else ``seq_len``."""
    stats = row["stats"] if isinstance(row["stats"], dict) else {}
    return as_int(stats.get("trained_seq_len", row["seq_len"]))


def at_chosen_lr(rows: pd.DataFrame, measurement: str) -> pd.DataFrame:
    """The rows of ``measurement`` whose model was trained at its condition's chosen rate
    (chosen on validation loss by :func:`harness.fairness.lr_choices`), with a ``trained_T`` column."""
    found = of(rows, measurement)
    if found.empty:
        return found.assign(trained_T=pd.Series(dtype=object))
    found = found.assign(trained_T=[trained_seq_len(r) for _, r in found.iterrows()])
    choices = lr_choices(rows)
    keep = []
    for _, row in found.iterrows():
        key = (row["cell"], row["task"], row["trained_T"], as_int(row["hidden_size"]), row["device"])
        choice = choices.get(key)
        lr = row["lr"]
        keep.append(choice is None or choice.lr is None or lr is None or pd.isna(lr)
                    or math.isclose(float(lr), choice.lr, rel_tol=1e-12))
    return found[keep]


def _accuracy_at_trained_length(rows: pd.DataFrame) -> dict[tuple, tuple[list[float], list[float], int]]:
    """(cell, task, T, H, device) -> test accuracies, loss ratios and length at the trained T."""
    from harness.fairness import at_chosen_lr as chosen_accuracy

    found = of(chosen_accuracy(rows), ACCURACY)
    out: dict[tuple, tuple[list[float], list[float], int]] = {}
    for _, row in found[(found["status"] == "ok") & found["metric"].isin(["accuracy", "loss_ratio"])].iterrows():
        key = (row["cell"], row["task"], as_int(row["seq_len"]), as_int(row["hidden_size"]), row["device"])
        accuracies, ratios, _ = out.setdefault(key, ([], [], as_int(row["length"])))
        (accuracies if row["metric"] == "accuracy" else ratios).append(float(row["value"]))
    return out


def length_table(results: Results) -> pd.DataFrame:
    """Per trained model and evaluated T: mean accuracy and loss / that T's baseline over seeds.
    The first line of each model is its test set at the trained T (from the accuracy rows)."""
    rows = at_chosen_lr(results.rows, LENGTH)
    if rows.empty:
        return pd.DataFrame(columns=LENGTH_COLUMNS)
    trained = _accuracy_at_trained_length(results.rows)
    out = []
    keys = ["cell", "task", "trained_T", "hidden_size", "device"]
    for (cell, task, trained_t, hidden, device), group in rows.groupby(keys, sort=False, dropna=False):
        hidden = as_int(hidden)
        accuracies, ratios, length = trained.get((cell, task, trained_t, hidden, device), ([], [], None))
        common = {"cell": cell, "task": task, "trained T": trained_t, "H": hidden, "device": device}
        out.append({**common, "T": f"{trained_t} (trained)", "L": length if length is not None else "—",
                    "seeds": len(accuracies), "accuracy": _mean(accuracies, "accuracy"), "loss/baseline": _mean(ratios, "loss_ratio"), "note": ""})
        for seq_len, at_length in sorted(group.groupby("seq_len", dropna=False), key=lambda kv: kv[0]):
            out.append({**common, **_at_length(at_length), "T": as_int(seq_len)})
    return pd.DataFrame(out, columns=LENGTH_COLUMNS)


def _at_length(group: pd.DataFrame) -> dict:
    ok = group[group["status"] == "ok"]
    per_seed = {seed: g for seed, g in ok.groupby("seed")}
    accuracies, ratios = [], []
    for g in per_seed.values():
        found = dict(zip(g["metric"], g["value"]))
        if "length_accuracy" in found:
            accuracies.append(float(found["length_accuracy"]))
        if "length_loss" in found and found.get("length_baseline"):
            ratios.append(float(found["length_loss"]) / float(found["length_baseline"]))
    bad = group[group["status"] != "ok"]
    note = "" if bad.empty else (("" if bad.iloc[0]["status"] == "skipped" else "FAILED: ") + str(bad.iloc[0]["error"]))
    length = ok["length"].dropna()
    return {"L": as_int(length.iloc[0]) if len(length) else "—", "seeds": len(per_seed),
            "accuracy": _mean(accuracies, "length_accuracy"), "loss/baseline": _mean(ratios, "loss_ratio"), "note": note}


def _one_line(text: str) -> str:
    """A generated text on one table line: newlines shown as ↵ and pipes as │, so that no table
    format breaks (the stored text is exact)."""
    return text.replace("\r", "").replace("\n", "↵").replace("|", "│")


def samples_table(results: Results) -> pd.DataFrame:
    """The continuation of the same prompt by every trained cell, same sampling seed, side by side."""
    rows = at_chosen_lr(results.rows, SAMPLE)
    out = []
    for _, row in rows.iterrows():
        stats = row["stats"] if isinstance(row["stats"], dict) else {}
        if row["status"] != "ok":
            sample = str(row["error"])
        else:
            sample = _one_line(stats.get("text", ""))
        out.append({"cell": row["cell"], "task": row["task"], "T": as_int(row["seq_len"]),
                    "H": as_int(row["hidden_size"]), "device": row["device"], "seed": as_int(row["seed"]),
                    "prompt": _one_line(stats.get("prompt", "")), "sample": sample})
    return pd.DataFrame(out, columns=SAMPLE_COLUMNS)


LENGTH_TITLE = ("Length generalisation: accuracy of each trained model at longer sequences (T: the task's length, "
                "L: the steps the cell sees; mean [95% t interval, clipped to the possible range])")
SAMPLE_TITLE = "Text samples: each trained cell continues the same prompt (same sampling seed)"
