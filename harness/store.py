"""The results store: one SQLite file with runs and tidy result rows.

Rows are committed as they are measured (one transaction per finished item), so an
interrupted run keeps everything it measured and can be resumed.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

from harness.errors import UsageError

DEFAULT_DB = Path("rnnbench-results") / "results.sqlite"
DB_ENV = "RNNBENCH_DB"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    argv TEXT NOT NULL,
    config TEXT NOT NULL,
    environment TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(run_id),
    item TEXT NOT NULL,
    measurement TEXT NOT NULL,
    cell TEXT NOT NULL,
    plugin TEXT,
    plugin_version TEXT,
    backend TEXT,
    impl TEXT,
    device TEXT NOT NULL,
    task TEXT,
    batch_size INTEGER,
    seq_len INTEGER,
    input_size INTEGER,
    hidden_size INTEGER,
    seed INTEGER,
    threads INTEGER,
    phase TEXT,
    step INTEGER,
    metric TEXT,
    value REAL,
    unit TEXT,
    status TEXT NOT NULL,
    error TEXT,
    stats TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_run ON results(run_id, measurement);
"""

STATUSES = ("ok", "failed", "skipped")


@dataclass(frozen=True)
class ResultRow:
    """One tidy measurement: a single metric of one (cell, device, task, sizes, seed) item.

    ``status`` is "ok", "failed" (``error`` says why) or "skipped" (``error`` says why).
    ``stats`` holds the summary statistics and raw samples behind ``value`` where there are any.
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

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.value is not None and not isinstance(self.value, (int, float)):
            raise ValueError(f"value must be a number, got {self.value!r}")


ROW_COLUMNS = tuple(f.name for f in fields(ResultRow))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _json_default(obj):
    return str(obj)


def _clean(value):
    # SQLite stores NaN as NULL anyway; make it explicit so readers see "no value".
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def default_db_path() -> Path:
    return Path(os.environ.get(DB_ENV) or DEFAULT_DB)


class ResultStore:
    """A results database. ``ResultStore(path)`` creates the file (and its folder) if needed."""

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True):
        self.path = Path(path) if path is not None else default_db_path()
        if not create and not self.path.is_file():
            raise UsageError(f"results database not found: {str(self.path)!r}; "
                             "store a run there with 'rnnbench run', or pass --db PATH")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(self.path))
            self.conn.executescript(SCHEMA)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise UsageError(f"cannot use results database {str(self.path)!r}: {exc}") from None
        self.conn.row_factory = sqlite3.Row

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- runs --------------------------------------------------------------------------
    def start_run(self, argv: list[str], config: dict, environment: dict) -> int:
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO runs (started_at, status, argv, config, environment) VALUES (?, 'running', ?, ?, ?)",
                (_now(), json.dumps(argv), json.dumps(config, default=_json_default), json.dumps(environment, default=_json_default)),
            )
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str) -> None:
        with self.conn:
            self.conn.execute("UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?", (status, _now(), run_id))

    def reopen_run(self, run_id: int) -> None:
        with self.conn:
            self.conn.execute("UPDATE runs SET status = 'running', finished_at = NULL WHERE run_id = ?", (run_id,))

    def run(self, run_id: int) -> dict:
        row = self.conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            known = [r["run_id"] for r in self.conn.execute("SELECT run_id FROM runs ORDER BY run_id")]
            raise UsageError(f"no run {run_id} in {str(self.path)!r}; runs stored: {known[-10:] or 'none'}")
        out = dict(row)
        for key in ("argv", "config", "environment"):
            out[key] = json.loads(out[key])
        return out

    def runs(self) -> list[dict]:
        return [self.run(r["run_id"]) for r in self.conn.execute("SELECT run_id FROM runs ORDER BY run_id")]

    def latest_run_id(self) -> int:
        row = self.conn.execute("SELECT MAX(run_id) AS run_id FROM runs").fetchone()
        if row["run_id"] is None:
            raise UsageError(f"no runs stored in {str(self.path)!r} yet; start one with 'rnnbench run'")
        return int(row["run_id"])

    def resolve_run(self, ref: str | int | None) -> int:
        """``None``/"latest" -> newest run id; otherwise an existing run id."""
        if ref is None or ref == "latest":
            return self.latest_run_id()
        try:
            run_id = int(ref)
        except (TypeError, ValueError):
            raise UsageError(f"run must be a run id (an integer) or 'latest', got {ref!r}") from None
        self.run(run_id)
        return run_id

    # --- rows --------------------------------------------------------------------------
    def add_rows(self, run_id: int, rows: list[ResultRow]) -> None:
        """Insert one item's rows in a single committed transaction."""
        now = _now()
        records = []
        for row in rows:
            data = asdict(row)
            data["value"] = _clean(data["value"])
            data["stats"] = json.dumps(data["stats"], default=_json_default) if data["stats"] is not None else None
            records.append((run_id, now, *[data[c] for c in ROW_COLUMNS]))
        columns = ", ".join(("run_id", "created_at") + ROW_COLUMNS)
        marks = ", ".join("?" * (len(ROW_COLUMNS) + 2))
        with self.conn:
            self.conn.executemany(f"INSERT INTO results ({columns}) VALUES ({marks})", records)

    def completed_items(self, run_id: int) -> set[str]:
        """Items with a stored measurement (ok or skipped): what a resumed run need not redo."""
        cur = self.conn.execute(
            "SELECT DISTINCT item FROM results WHERE run_id = ? AND item NOT IN "
            "(SELECT item FROM results WHERE run_id = ? AND status = 'failed')",
            (run_id, run_id),
        )
        return {r["item"] for r in cur}

    def delete_items(self, run_id: int, items: set[str]) -> None:
        with self.conn:
            self.conn.executemany("DELETE FROM results WHERE run_id = ? AND item = ?", [(run_id, i) for i in items])

    def rows(self, run_id: int) -> list[dict]:
        cur = self.conn.execute("SELECT * FROM results WHERE run_id = ? ORDER BY id", (run_id,))
        out = []
        for r in cur:
            d = dict(r)
            d["stats"] = json.loads(d["stats"]) if d["stats"] else None
            out.append(d)
        return out
