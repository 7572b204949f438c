"""CSV and JSON reports: the run's tidy rows, one measurement per row, each with its unit.

CSV (``results.csv``) is for spreadsheets and R/pandas: one header line, then a row per
stored measurement; the spread of timed repeats is flattened into ``q1``, ``q3`` and
``n_samples`` and the full statistics (raw samples included) are kept as JSON text in ``stats``.
JSON (``results.json``) holds the run's metadata and the same rows with ``stats`` as objects.
Missing values are empty in CSV and ``null`` in JSON; ``value`` is always in ``unit``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from harness import hookimpl
from harness.results import Results
from reports.tables import run_layers

# 2: the ``length`` column (steps the cell sees, beside the difficulty ``seq_len``); metrics
# ``train_time_s`` and ``time_to_solve_s`` (were ``train_seconds`` and ``seconds_to_solve``).
# 3: ``lr`` (the rate a training row was trained at) and ``param_count``.
# 4: ``layers`` (``--layers N``: how deep every cell was stacked; 1 for the cell alone).
FORMAT_VERSION = "rnnbench-results/4"
COLUMNS = ("run_id", "measurement", "cell", "impl", "device", "task", "batch_size", "seq_len", "length", "input_size",
           "hidden_size", "layers", "param_count", "seed", "lr", "phase", "step", "metric", "value", "unit", "status",
           "error", "backend", "plugin", "plugin_version", "threads", "item", "created_at")
INTEGER_COLUMNS = {"run_id", "batch_size", "seq_len", "length", "input_size", "hidden_size", "layers", "param_count",
                   "seed", "step", "threads"}


def _plain(column: str, value):
    """pandas turns missing integers into NaN floats; give back ints and None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if column in INTEGER_COLUMNS:
        return int(value)
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value


def with_layer_count(rows, layers: int):
    """The rows with a ``layers`` column after ``hidden_size``: every row of a run shares its layer
    count, but a row read on its own (or beside another run's) must still say how deep its model was."""
    if "layers" in rows:
        return rows
    at = list(rows.columns).index("hidden_size") + 1 if "hidden_size" in rows else len(rows.columns)
    rows = rows.copy()
    rows.insert(at, "layers", layers)
    return rows


def tidy_records(results: Results) -> list[dict]:
    """The run's rows as plain dicts: the columns of :data:`COLUMNS`, then ``stats`` (a dict or None).
    ``layers`` is the run's (every row of a run shares it; the database keeps it once, in the run's
    configuration), written on every row so that rows of several runs concatenated stay readable."""
    records = []
    for row in with_layer_count(results.rows, run_layers(results)).to_dict(orient="records"):
        record = {column: _plain(column, row.get(column)) for column in COLUMNS}
        stats = row.get("stats")
        record["stats"] = stats if isinstance(stats, dict) else None
        records.append(record)
    return records


def render_csv(results: Results, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*COLUMNS, "q1", "q3", "n_samples", "stats"])
        for record in tidy_records(results):
            stats = record["stats"] or {}
            writer.writerow([
                *("" if record[c] is None else record[c] for c in COLUMNS),
                stats.get("q1", ""), stats.get("q3", ""), stats.get("n", ""),
                json.dumps(stats, default=str) if stats else "",
            ])
    return path


def _finite(value):
    """JSON has no NaN or infinity: store them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def render_json(results: Results, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {"format": FORMAT_VERSION, "run": results.run.as_dict(), "rows": tidy_records(results)}
    path = out_dir / "results.json"
    path.write_text(json.dumps(_finite(document), indent=1, default=str, allow_nan=False), encoding="utf-8")
    return path


@hookimpl
def register_reporters(register):
    register("csv", render_csv, suffix=".csv", summary="CSV: the tidy rows, one measurement per line, with units")
    register("json", render_json, suffix=".json", summary="JSON: run metadata and the tidy rows, with units")
