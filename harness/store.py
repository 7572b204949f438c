"""The results store: one SQLite file with runs and tidy result rows.

Rows are committed as they are measured (one transaction per finished item), so an
interrupted run keeps everything it measured and can be resumed. The tables and their
versions are in :mod:`harness.migrations`; opening a database brings it up to date.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from harness.config import RunConfig
from harness.errors import UsageError
from harness.migrations import SCHEMA_VERSION, migrate
from harness.results import ROW_COLUMNS, ResultRow, StoredRun

DEFAULT_DB = Path("rnnbench-results") / "results.sqlite"
# The items table: one record per finished item, written by the driver with the item's rows.
ITEM_COLUMNS = ("run_id", "item", "position", "status", "error", "attempt", "started_at", "ended_at", "host", "pid", "worker",
                "isolation", "gpu", "plugin_sha256")
DB_ENV = "RNNBENCH_DB"

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
            # Notes from bringing an older database up to date (what could not be filled in).
            self.notes: list[str] = migrate(self.conn, self._newer_error)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise UsageError(f"cannot use results database {str(self.path)!r}: {exc}") from None
        self.conn.row_factory = sqlite3.Row

    def _newer_error(self, version: int) -> UsageError:
        return UsageError(f"results database {str(self.path)!r} has schema version {version}, newer than this "
                          f"rnnbench reads (up to {SCHEMA_VERSION}); upgrade rnnbench to read it")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- runs --------------------------------------------------------------------------
    def start_run(self, argv: list[str], config: RunConfig, environment: dict, *, plugin_files=(),
                  out_dir: str | None = None) -> int:
        """Record a new run as running; ``plugin_files`` and ``out_dir`` are kept for ``--resume``."""
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO runs (started_at, status, argv, config, environment, plugin_files, out_dir) "
                "VALUES (?, 'running', ?, ?, ?, ?, ?)",
                (_now(), json.dumps(argv), json.dumps(asdict(config), default=_json_default),
                 json.dumps(environment, default=_json_default), json.dumps([str(p) for p in plugin_files]),
                 None if out_dir is None else str(out_dir)),
            )
        return int(cur.lastrowid)

    def update_config(self, run_id: int, config: RunConfig) -> None:
        """Store a grown configuration for a resumed run (seeds or learning rates added)."""
        with self.conn:
            self.conn.execute("UPDATE runs SET config = ? WHERE run_id = ?",
                              (json.dumps(asdict(config), default=_json_default), run_id))

    def finish_run(self, run_id: int, status: str, reason: str | None = None) -> None:
        """Mark a run ended: ``complete``, ``failed`` or ``interrupted``; ``reason`` says why it did not complete."""
        with self.conn:
            self.conn.execute("UPDATE runs SET status = ?, finished_at = ?, reason = ? WHERE run_id = ?",
                              (status, _now(), reason, run_id))

    def reopen_run(self, run_id: int) -> None:
        with self.conn:
            self.conn.execute("UPDATE runs SET status = 'running', finished_at = NULL, reason = NULL WHERE run_id = ?",
                              (run_id,))

    def set_execution(self, run_id: int, execution: dict) -> None:
        """Store how the run was executed (``environment["execution"]``: executor, workers, cluster,
        hosts and GPUs used), replacing what an earlier session of the run stored."""
        row = self.conn.execute("SELECT environment FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        environment = json.loads(row["environment"]) if row is not None else {}
        environment["execution"] = execution
        with self.conn:
            self.conn.execute("UPDATE runs SET environment = ? WHERE run_id = ?",
                              (json.dumps(environment, default=_json_default), run_id))

    def run(self, run_id: int) -> StoredRun:
        row = self.conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            known = [r["run_id"] for r in self.conn.execute("SELECT run_id FROM runs ORDER BY run_id")]
            raise UsageError(f"no run {run_id} in {str(self.path)!r}; runs stored: {known[-10:] or 'none'}")
        return StoredRun(
            run_id=int(row["run_id"]), started_at=row["started_at"], finished_at=row["finished_at"], status=row["status"],
            argv=tuple(json.loads(row["argv"])), config=RunConfig.from_dict(json.loads(row["config"])),
            environment=json.loads(row["environment"]), plugin_files=tuple(json.loads(row["plugin_files"])),
            out_dir=row["out_dir"], reason=row["reason"],
        )

    def runs(self) -> list[StoredRun]:
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
    def add_rows(self, run_id: int, rows: list[ResultRow], execution: dict | None = None) -> None:
        """Insert one item's rows in a single committed transaction, with ``execution``, the
        item's record in the ``items`` table (keys :data:`ITEM_COLUMNS` but ``run_id``), when given."""
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
            if execution is not None:
                record = {**execution, "plugin_sha256": json.dumps(list(execution.get("plugin_sha256") or ()))}
                names = ITEM_COLUMNS[1:]
                self.conn.execute(f"INSERT OR REPLACE INTO items ({', '.join(ITEM_COLUMNS)}) "
                                  f"VALUES ({', '.join('?' * len(ITEM_COLUMNS))})",
                                  (run_id, *[record.get(n) for n in names]))

    def items(self, run_id: int) -> list[dict]:
        """How each stored item of a run was executed (the ``items`` table), in the order they finished."""
        cur = self.conn.execute("SELECT * FROM items WHERE run_id = ? ORDER BY ended_at", (run_id,))
        return [{**dict(r), "plugin_sha256": json.loads(r["plugin_sha256"])} for r in cur]

    def stored_items(self, run_id: int) -> set[str]:
        """Items with any stored row, failed ones included: what ``--resume`` skips unless told to retry failures."""
        return {r["item"] for r in self.conn.execute("SELECT DISTINCT item FROM results WHERE run_id = ?", (run_id,))}

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
            self.conn.executemany("DELETE FROM items WHERE run_id = ? AND item = ?", [(run_id, i) for i in items])

    def rows(self, run_id: int) -> list[dict]:
        # In plan order (items.position), whatever order parallel workers finished in; then as stored.
        cur = self.conn.execute("SELECT results.* FROM results LEFT JOIN items ON items.run_id = results.run_id "
                                "AND items.item = results.item WHERE results.run_id = ? ORDER BY items.position, "
                                "results.id", (run_id,))
        out = []
        for r in cur:
            d = dict(r)
            d["stats"] = json.loads(d["stats"]) if d["stats"] else None
            out.append(d)
        return out
