"""The records of the results store and reading them back: a run (:class:`StoredRun`), a row
(:class:`ResultRow`), one run with its rows (:class:`Results`, what every reporter receives) and the helpers that pick and group rows, shared by ``rnnbench compare``
and every table, plot and report.

Rows are the tidy rows of :class:`harness.store.ResultRow` as a pandas DataFrame, one metric
of one item per row. A *condition* is what two runs, or two seeds, are matched on:
:data:`SPEED_CONDITION` for speed rows, :data:`TRAIN_CONDITION` for accuracy and gradient rows.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields

import pandas as pd

from harness.config import RunConfig
from harness.stats import Summary

SPEED_CONDITION = ("cell", "impl", "device", "batch_size", "seq_len", "input_size", "hidden_size")
TASK_CONDITION = ("task", "seq_len", "hidden_size", "device")
TRAIN_CONDITION = ("cell", *TASK_CONDITION)


@dataclass(frozen=True)
class StoredRun:
    """One stored run's record: when and how it was started and what it measured.

    ``config`` is the typed configuration the run measured; ``environment`` the machine and
    software fingerprint (:func:`harness.env.fingerprint`, free-form keys); ``plugin_files``
    and ``out_dir`` are the ``--plugin`` files and ``--out`` folder it was started with, which
    ``rnnbench run --resume`` reuses. ``reason`` says why a run ended failed or interrupted;
    ``owner_host``/``owner_pid`` is the process that runs (or last ran) it, and ``heartbeat_at``
    when that process last showed it was alive (:mod:`harness.ownership`). Times are ISO 8601
    UTC strings.
    """

    run_id: int
    started_at: str
    status: str
    argv: tuple[str, ...]
    config: RunConfig
    environment: dict = field(default_factory=dict)
    finished_at: str | None = None
    plugin_files: tuple[str, ...] = ()
    out_dir: str | None = None
    reason: str | None = None  # why a run ended failed or interrupted
    owner_host: str | None = None
    owner_pid: int | None = None
    heartbeat_at: str | None = None

    @property
    def execution(self) -> dict:
        """How the run was executed (``environment["execution"]``): executor, workers, cluster, hosts, GPUs;
        empty for runs stored before rnnbench recorded it (they ran in-process)."""
        return dict(self.environment.get("execution") or {})

    @property
    def recipe(self):
        """The training recipe every cell of the run shared (:class:`harness.config.Recipe`)."""
        return self.config.recipe

    @property
    def speed_method(self) -> int:
        """:data:`harness.speed.SPEED_METHOD` the run was timed with (1 before it was recorded)."""
        return int(self.environment.get("speed_method", 1))

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(self.environment.get("devices") or self.config.devices)

    def as_dict(self) -> dict:
        """The record as JSON-ready data (the JSON report's ``run``)."""
        return {"run_id": self.run_id, "started_at": self.started_at, "finished_at": self.finished_at,
                "status": self.status, "argv": list(self.argv), "config": asdict(self.config),
                "environment": self.environment, "plugin_files": list(self.plugin_files), "out_dir": self.out_dir,
                "reason": self.reason, "owner_host": self.owner_host, "owner_pid": self.owner_pid,
                "heartbeat_at": self.heartbeat_at}


STATUSES = ("ok", "failed", "skipped")


@dataclass(frozen=True)
class ResultRow:
    """One tidy measurement: a single metric of one (cell, device, task, sizes, seed) item.

    ``status`` is "ok", "failed" (``error`` says why) or "skipped" (``error`` says why).
    ``stats`` holds the summary statistics and raw samples behind ``value`` where there are any.
    ``seq_len`` is the difficulty T (a task's parameter; for speed rows the sequence length) and
    ``length`` the number of steps the cell sees: equal for speed rows, ``task.length`` for
    training rows (copy: T + 20). ``lr``: the learning rate a training row was trained at (None
    for speed rows). ``param_count``: parameters of what the row measured — the cell alone for
    speed rows, cell plus linear readout for training rows (:mod:`harness.sizing`).
    """

    item: str
    measurement: str
    cell: str
    device: str
    status: str = "ok"
    plugin: str | None = None
    plugin_version: str | None = None
    backend: str | None = None
    impl: str | None = None
    task: str | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    length: int | None = None
    input_size: int | None = None
    hidden_size: int | None = None
    seed: int | None = None
    threads: int | None = None
    phase: str | None = None
    step: int | None = None
    metric: str | None = None
    value: float | None = None
    unit: str | None = None
    error: str | None = None
    stats: dict | None = None
    lr: float | None = None
    param_count: int | None = None

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.value is not None and not isinstance(self.value, (int, float)):
            raise ValueError(f"value must be a number, got {self.value!r}")


ROW_COLUMNS = tuple(f.name for f in fields(ResultRow))


# --- speed rounds spread over passes (TimingConfig.spread) ------------------------------------
PASS_KEY = re.compile(r"^(?P<base>.+)\|round(?P<index>\d+)of(?P<total>\d+)$")
TIMED_METRICS = ("forward_s", "forward_backward_s")


def pass_suffix(round_index: int, rounds: int) -> str:
    """What a pass of a spread speed item adds to its key: "|round2of5" for round_index 1 of 5."""
    return f"|round{round_index + 1}of{rounds}"


def merge_speed_passes(rows: list[dict]) -> list[dict]:
    """Stored rows as a reader wants them: the passes of each spread speed condition
    ("speed|...|round2of5") merged into the rows of one item ("speed|...").

    Timings: every pass's repeats pooled (median, quartiles, ... of the pool) and each pass's
    round median and minimum listed in round order; throughput from the pooled forward+backward
    median; peak memory from the first pass, the one that measures it. A condition with a failed
    or skipped pass is that pass's row (the first such), under the merged key. Other rows pass
    through; each merged condition takes the place of its first stored pass.
    """
    out: list = []  # rows, and each merged condition's base key where its first pass stood
    passes: dict[str, list[tuple[int, int, dict]]] = {}  # base key -> (round, rounds planned, row) per stored row
    for row in rows:
        found = PASS_KEY.match(row.get("item") or "") if row.get("measurement") == "speed" else None
        if found is None:
            out.append(row)
            continue
        base = found["base"]
        if base not in passes:
            passes[base] = []
            out.append(base)  # a placeholder, in plan order
        passes[base].append((int(found["index"]), int(found["total"]), row))
    merged: list[dict] = []
    for entry in out:
        merged += _merged_condition(entry, passes[entry]) if isinstance(entry, str) else [entry]
    return merged


def _merged_condition(base: str, stored: list[tuple[int, int, dict]]) -> list[dict]:
    """One condition's rows from its stored passes, (round, rounds planned, row) each."""
    stored = sorted(stored, key=lambda p: (p[0], p[2].get("id") or 0))
    planned = stored[0][1]
    passes = [(index, row) for index, _, row in stored]
    problems = [(index, row) for index, row in passes if row.get("status") != "ok"]
    if problems:
        index, row = problems[0]
        return [{**row, "item": base, "error": f"round {index}: {row.get('error')}"}]
    for field_name in ("plugin_version", "threads"):
        seen = {str(row.get(field_name)) for _, row in passes}
        if len(seen) > 1:  # e.g. a plugin file edited between an interrupted run and its --resume
            return [{**passes[0][1], "item": base, "status": "failed", "metric": None, "value": None, "stats": None,
                     "error": f"its timing rounds ran with different {field_name} ({', '.join(sorted(seen))}); "
                              "measure it again in a new run"}]
    by_metric: dict[str, list[dict]] = {}
    for _, row in passes:
        by_metric.setdefault(row.get("metric"), []).append(row)
    out = []
    for metric, found in by_metric.items():
        first = {**found[0], "item": base, "created_at": found[-1].get("created_at", found[0].get("created_at"))}
        if metric in TIMED_METRICS:
            own = [row.get("stats") or {} for row in found]
            pooled = Summary(tuple(x for stats in own for x in stats.get("samples") or ()))
            ratios = [stats["iqr"] / stats["median"] for stats in own if stats.get("median")]
            stats = {**own[0], **pooled.as_dict(),
                     "round_medians": [m for stats in own for m in stats.get("round_medians") or ()],
                     "round_minima": [m for stats in own for m in stats.get("round_minima") or ()],
                     # stability within a round (the pooled IQR also holds the drift between rounds)
                     "round_iqr_ratio": float(sorted(ratios)[len(ratios) // 2]) if ratios else None,
                     "rounds_planned": planned}
            first.update(value=pooled.median, stats=stats)
        out.append(first)
    fb = next((row for row in out if row.get("metric") == "forward_backward_s"), None)
    for row in out:
        if row.get("metric") == "steps_per_s" and fb is not None and fb.get("batch_size") and fb.get("seq_len"):
            row["value"] = fb["batch_size"] * fb["seq_len"] / fb["value"]
    return out


# --- rows ------------------------------------------------------------------------------------


def rows_frame(rows) -> pd.DataFrame:
    """Stored rows (dicts as ``ResultStore.rows`` gives them, or a DataFrame) as a DataFrame that
    has every column even when there are no rows, so that every table and plot comes out empty."""
    if isinstance(rows, pd.DataFrame):
        return rows
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["id", "run_id", *ROW_COLUMNS, "created_at"])


@dataclass(frozen=True)
class Results:
    """One stored run as a reporter receives it: its record and its tidy rows."""

    run: StoredRun
    rows: pd.DataFrame

    @classmethod
    def from_store(cls, store, run_id: int) -> "Results":
        return cls(store.run(run_id), rows_frame(store.rows(run_id)))

    def of(self, measurement: str) -> pd.DataFrame:
        return of(self.rows, measurement)


def of(rows: pd.DataFrame, measurement: str) -> pd.DataFrame:
    """The rows of one measurement ("speed", "accuracy" or "gradients")."""
    return rows if rows.empty else rows[rows["measurement"] == measurement]


def ok_values(rows: pd.DataFrame, measurement: str, metrics) -> pd.DataFrame:
    """Measured values only: rows of ``measurement`` with status ok, a metric in ``metrics`` and a value."""
    if rows.empty:
        return rows
    sel = rows[(rows["measurement"] == measurement) & (rows["status"] == "ok") & rows["metric"].isin(list(metrics))]
    return sel[sel["value"].notna()]


def as_int(value) -> int | None:
    """A size read back through pandas (a float, NaN for missing) as an int or None."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


def conditions(rows: pd.DataFrame, measurement: str, keys: tuple[str, ...]) -> dict[tuple, pd.DataFrame]:
    """The rows of ``measurement`` grouped by the columns ``keys``, in first-seen order; missing
    values in a key become None, so that keys from two runs compare equal."""
    rows = of(rows, measurement)
    if rows.empty:
        return {}
    rows = rows.assign(**{k: rows[k].astype(object).where(rows[k].notna(), None) for k in keys})
    return {key: group for key, group in rows.groupby(list(keys), sort=False, dropna=False)}


def per_seed(group: pd.DataFrame) -> list[pd.DataFrame]:
    """One condition's rows split by seed, seeds in increasing order."""
    return [g for _, g in group.groupby("seed", sort=True, dropna=False)]


def all_ok(group: pd.DataFrame) -> bool:
    return bool((group["status"] == "ok").all())


def problem(group: pd.DataFrame) -> tuple[str, str] | None:
    """``(status, error)`` of the first row that is not ok (failed or skipped), or None."""
    bad = group[group["status"] != "ok"]
    if bad.empty:
        return None
    row = bad.iloc[0]
    return str(row["status"]), str(row["error"])


def value(group: pd.DataFrame, metric: str, phase: str | None = None) -> float | None:
    """The value of ``metric`` (in ``phase`` when given) in one item's rows, or None."""
    sel = group[group["metric"] == metric]
    if phase is not None:
        sel = sel[sel["phase"] == phase]
    if sel.empty:
        return None
    found = sel.iloc[0]["value"]
    return None if found is None or pd.isna(found) else float(found)


def stats(group: pd.DataFrame, metric: str) -> dict | None:
    """The stored statistics of ``metric`` (median, quartiles, samples...) in one item's rows, or None."""
    sel = group[group["metric"] == metric]
    if sel.empty:
        return None
    found = sel.iloc[0]["stats"]
    return found if isinstance(found, dict) else None


def samples(group: pd.DataFrame, metric: str) -> list[float]:
    """The repeated measurements behind ``metric`` (the value alone when none were stored)."""
    found = stats(group, metric)
    if found and found.get("samples"):
        return [float(s) for s in found["samples"]]
    single = value(group, metric)
    return [] if single is None else [single]


def seed_values(group: pd.DataFrame, metric: str, phase: str | None) -> list[float]:
    """Per-seed values of ``metric`` in ``phase`` (None: rows without a phase), ok rows only."""
    sel = group[(group["metric"] == metric) & (group["status"] == "ok")]
    sel = sel[sel["phase"].isna()] if phase is None else sel[sel["phase"] == phase]
    return [float(v) for v in sel["value"] if v is not None and not pd.isna(v)]
