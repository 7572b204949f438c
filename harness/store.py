"""The results store: one SQLite file with runs and tidy result rows.

Rows are committed as they are measured (one transaction per finished item), so an
interrupted run keeps everything it measured and can be resumed. The tables and their
versions are in :mod:`harness.migrations`; opening a database brings it up to date, and
:mod:`harness.dbfile` refuses a file that is damaged, foreign or (for ``run``) read-only.

A run records its owner (:mod:`harness.ownership`): ``--resume`` refuses a run whose process
is alive and takes over one whose process is gone; a process whose run was taken over gets
:class:`harness.errors.RunTakenOverError` at its next write instead of writing beside the new
owner. Every SQLite failure reaches the caller as one :class:`harness.errors.StoreError` line.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from harness import dbfile
from harness.config import RunConfig
from harness.errors import RunInUseError, RunTakenOverError, StoreError, UsageError
from harness.migrations import SCHEMA_VERSION
from harness.names import SQLITE_INT_MAX
from harness.ownership import Heartbeat, Owner, new_token, now_iso, this_host
from harness.results import ROW_COLUMNS, ResultRow, StoredRun, merge_speed_passes

DEFAULT_DB = Path("rnnbench-results") / "results.sqlite"
# The items table: one record per finished item, written by the driver with the item's rows.
ITEM_COLUMNS = ("run_id", "item", "position", "status", "error", "attempt", "started_at", "ended_at", "host", "pid", "worker",
                "isolation", "gpu", "plugin_sha256")
DB_ENV = "RNNBENCH_DB"


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
    """A results database.

    ``ResultStore(path)`` opens it for writing, creating the file (and its folder) if needed;
    ``create=False`` opens an existing one for reading and never writes into it (except to bring
    an older rnnbench's database up to date); ``create=False, write=True`` opens an existing one
    for writing (``--resume``). ``notify`` receives warnings (a lock being waited for, a run
    taken over from a dead process).
    """

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True, write: bool | None = None,
                 notify: Callable[[str], None] | None = None):
        self.path = Path(path) if path is not None else default_db_path()
        self.notify = notify
        # The runs this store started or resumed: their owner tokens and heartbeat threads.
        self._tokens: dict[int, str] = {}
        self._heartbeats: dict[int, Heartbeat] = {}
        if not create and not self.path.is_file():
            raise UsageError(f"results database not found: {str(self.path)!r}; "
                             "store a run there with 'rnnbench run', or pass --db PATH")
        opener = dbfile.open_for_writing if (create if write is None else write) else dbfile.open_for_reading
        try:
            # Notes from bringing an older database up to date (what could not be filled in).
            self.conn, self.notes = self._retry(lambda: opener(self.path, self._newer_error))
        except OSError as exc:
            raise UsageError(f"cannot use results database {str(self.path)!r}: {exc}") from None

    def _newer_error(self, version: int) -> StoreError:
        return StoreError(f"results database {str(self.path)!r} has schema version {version}, newer than this "
                          f"rnnbench reads (up to {SCHEMA_VERSION}); upgrade rnnbench to read it")

    def _retry(self, work):
        return dbfile.retrying(self.path, work, self.notify)

    def _write(self, work: Callable[[sqlite3.Connection], object]):
        """``work(conn)`` in one committed transaction, retried while another process holds the lock."""
        return self._retry(lambda: dbfile.transaction(self.conn, work))

    def _read(self, sql: str, params=()) -> list[sqlite3.Row]:
        return self._retry(lambda: self.conn.execute(sql, params).fetchall())

    def close(self) -> None:
        for run_id in list(self._heartbeats):
            self._stop_heartbeat(run_id)
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- runs --------------------------------------------------------------------------
    def start_run(self, argv: list[str], config: RunConfig, environment: dict, *, plugin_files=(),
                  out_dir: str | None = None) -> int:
        """Record a new run as running, owned by this process; ``plugin_files`` and ``out_dir``
        are kept for ``--resume``. Its id is above every id the file has used, even by rows."""
        token = new_token()
        record = (json.dumps(argv), json.dumps(asdict(config), default=_json_default),
                  json.dumps(environment, default=_json_default), json.dumps([str(p) for p in plugin_files]),
                  None if out_dir is None else str(out_dir))

        def insert(conn):
            used = conn.execute(
                "SELECT MAX(IFNULL((SELECT MAX(run_id) FROM runs), 0), IFNULL((SELECT MAX(run_id) FROM results), 0), "
                "IFNULL((SELECT seq FROM sqlite_sequence WHERE name = 'runs'), 0))").fetchone()[0]
            now = now_iso()
            conn.execute(
                "INSERT INTO runs (run_id, started_at, status, argv, config, environment, plugin_files, out_dir, "
                "owner_host, owner_pid, owner_token, heartbeat_at) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (int(used) + 1, now, *record, this_host(), os.getpid(), token, now))
            return int(used) + 1

        run_id = self._write(insert)
        self._own(run_id, token)
        return run_id

    def update_config(self, run_id: int, config: RunConfig) -> None:
        """Store a grown configuration for a resumed run (seeds or learning rates added)."""
        def update(conn):
            self._check_owner(conn, run_id)
            conn.execute("UPDATE runs SET config = ? WHERE run_id = ?",
                         (json.dumps(asdict(config), default=_json_default), run_id))

        self._write(update)

    def reopen_run(self, run_id: int) -> None:
        """Claim a stored run for ``--resume``: refused (:class:`RunInUseError`) while its owner is
        alive; a gone owner is taken over, with a warning that says why it counts as gone."""
        token = new_token()

        def claim(conn):
            gone = self._refuse_live_owner(conn, run_id)
            now = now_iso()
            conn.execute("UPDATE runs SET status = 'running', finished_at = NULL, reason = NULL, owner_host = ?, "
                         "owner_pid = ?, owner_token = ?, heartbeat_at = ? WHERE run_id = ?",
                         (this_host(), os.getpid(), token, now, run_id))
            return gone

        gone = self._write(claim)
        self._own(run_id, token)
        if gone and self.notify:
            self.notify(f"run {run_id} was left running but its owner is gone ({gone}); taking it over")

    def check_resumable(self, run_id: int) -> None:
        """Refuse (:class:`RunInUseError`) early, before workers start, a run whose owner is alive;
        :meth:`reopen_run` checks again as it claims the run."""
        self._retry(lambda: self._refuse_live_owner(self.conn, run_id))

    def _refuse_live_owner(self, conn: sqlite3.Connection, run_id: int) -> str | None:
        """Why the owner of a ``running`` run counts as gone (None for a run that is not running);
        :class:`RunInUseError` when it is alive."""
        row = conn.execute("SELECT status, owner_host, owner_pid, heartbeat_at FROM runs WHERE run_id = ?",
                           (run_id,)).fetchone()
        if row is None:
            raise UsageError(f"no run {run_id} in {str(self.path)!r}")
        if row["status"] != "running":
            return None
        owner = Owner(row["owner_host"], row["owner_pid"], row["heartbeat_at"])
        gone = owner.gone_because()
        if gone is None:
            age_s = owner.heartbeat_age_s() or 0.0
            raise RunInUseError(
                f"run {run_id} is still running ({owner.describe()}, heartbeat {age_s:.0f} s ago); resuming "
                "it now would measure its items twice: wait for it to end, or stop it and resume then")
        return gone

    def finish_run(self, run_id: int, status: str, reason: str | None = None) -> None:
        """Mark a run ``complete``, ``failed`` or ``interrupted``, with ``reason`` (why it stopped).
        A run another process has taken over is left to that process."""
        self._write(lambda conn: conn.execute(
            "UPDATE runs SET status = ?, finished_at = ?, reason = ? WHERE run_id = ? AND (? IS NULL OR owner_token = ?)",
            (status, now_iso(), reason, run_id, self._tokens.get(run_id), self._tokens.get(run_id))))
        self._stop_heartbeat(run_id)

    def _own(self, run_id: int, token: str) -> None:
        """This store now runs ``run_id``: from here until :meth:`finish_run` or :meth:`close`, a
        heartbeat every :data:`harness.ownership.HEARTBEAT_S` (a thread, so that it goes on while
        a long item runs) shows other processes that the run is not dead."""
        self._stop_heartbeat(run_id)
        self._tokens[run_id] = token
        self._heartbeats[run_id] = Heartbeat(self.path, run_id, token).start()

    def _stop_heartbeat(self, run_id: int) -> None:
        heartbeat = self._heartbeats.pop(run_id, None)
        if heartbeat is not None:
            heartbeat.stop()

    def _check_owner(self, conn: sqlite3.Connection, run_id: int) -> None:
        token = self._tokens.get(run_id)
        if token is None:  # a run this store did not start or resume (tests, tools)
            return
        row = conn.execute("SELECT owner_token, owner_host, owner_pid FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None or row["owner_token"] != token:
            other = "" if row is None else f" by {Owner(row['owner_host'], row['owner_pid'], None).describe()}"
            raise RunTakenOverError(f"run {run_id} was taken over{other}, which judged this process gone "
                                    "(no heartbeat); this process stops so that no item is stored twice")

    def set_execution(self, run_id: int, execution: dict) -> None:
        """Store how the run was executed (``environment["execution"]``: executor, workers, cluster,
        hosts and GPUs used), replacing what an earlier session of the run stored."""
        def update(conn):
            self._check_owner(conn, run_id)
            row = conn.execute("SELECT environment FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            environment = json.loads(row["environment"]) if row is not None else {}
            environment["execution"] = execution
            conn.execute("UPDATE runs SET environment = ? WHERE run_id = ?",
                         (json.dumps(environment, default=_json_default), run_id))

        self._write(update)

    def run(self, run_id: int) -> StoredRun:
        # An id past SQLite's 64-bit integers names no run (sqlite3 would raise OverflowError).
        fits = -SQLITE_INT_MAX - 1 <= run_id <= SQLITE_INT_MAX
        rows = self._read("SELECT * FROM runs WHERE run_id = ?", (run_id,)) if fits else []
        if not rows:
            known = [r["run_id"] for r in self._read("SELECT run_id FROM runs ORDER BY run_id")]
            shown = "none" if not known else str(known) if len(known) <= 10 else f"{len(known)}, the newest {known[-10:]}"
            raise UsageError(f"no run {run_id} in {str(self.path)!r}; runs stored: {shown}")
        return self._stored_run(rows[0])

    def _stored_run(self, row: sqlite3.Row) -> StoredRun:
        try:
            return StoredRun(
                run_id=int(row["run_id"]), started_at=row["started_at"], finished_at=row["finished_at"],
                status=row["status"], argv=tuple(json.loads(row["argv"])),
                config=RunConfig.from_dict(json.loads(row["config"])), environment=json.loads(row["environment"]),
                plugin_files=tuple(json.loads(row["plugin_files"])), out_dir=row["out_dir"], reason=row["reason"],
                owner_host=row["owner_host"], owner_pid=row["owner_pid"], heartbeat_at=row["heartbeat_at"],
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StoreError(f"results database {str(self.path)!r} is damaged: the record of run {row['run_id']} "
                             f"cannot be read ({type(exc).__name__}: {exc}); restore a copy of the file") from None

    def runs(self) -> list[StoredRun]:
        return [self._stored_run(r) for r in self._read("SELECT * FROM runs ORDER BY run_id")]

    def latest_run_id(self) -> int:
        row = self._read("SELECT MAX(run_id) AS run_id FROM runs")[0]
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
        item's record in the ``items`` table (keys :data:`ITEM_COLUMNS` but ``run_id``), when given.
        Refused (:class:`RunTakenOverError`) once another process has taken the run over."""
        now = now_iso()
        records = []
        for row in rows:
            data = asdict(row)
            data["value"] = _clean(data["value"])
            data["stats"] = json.dumps(data["stats"], default=_json_default) if data["stats"] is not None else None
            records.append((run_id, now, *[data[c] for c in ROW_COLUMNS]))
        columns = ", ".join(("run_id", "created_at") + ROW_COLUMNS)
        marks = ", ".join("?" * (len(ROW_COLUMNS) + 2))

        def insert(conn):
            self._check_owner(conn, run_id)
            conn.executemany(f"INSERT INTO results ({columns}) VALUES ({marks})", records)
            if execution is not None:
                record = {**execution, "plugin_sha256": json.dumps(list(execution.get("plugin_sha256") or ()))}
                names = ITEM_COLUMNS[1:]
                conn.execute(f"INSERT OR REPLACE INTO items ({', '.join(ITEM_COLUMNS)}) "
                             f"VALUES ({', '.join('?' * len(ITEM_COLUMNS))})",
                             (run_id, *[record.get(n) for n in names]))

        self._write(insert)

    def items(self, run_id: int) -> list[dict]:
        """How each stored item of a run was executed (the ``items`` table), in the order they finished."""
        rows = self._read("SELECT * FROM items WHERE run_id = ? ORDER BY ended_at", (run_id,))
        try:
            return [{**dict(r), "plugin_sha256": json.loads(r["plugin_sha256"])} for r in rows]
        except ValueError as exc:
            raise StoreError(f"results database {str(self.path)!r} is damaged: an item record of run {run_id} "
                             f"cannot be read ({exc}); restore a copy of the file") from None

    def stored_items(self, run_id: int) -> set[str]:
        """Items with any stored row, failed ones included: what ``--resume`` skips unless told to retry failures."""
        return {r["item"] for r in self._read("SELECT DISTINCT item FROM results WHERE run_id = ?", (run_id,))}

    def completed_items(self, run_id: int) -> set[str]:
        """Items with a stored measurement (ok or skipped): what a resumed run need not redo."""
        rows = self._read(
            "SELECT DISTINCT item FROM results WHERE run_id = ? AND item NOT IN "
            "(SELECT item FROM results WHERE run_id = ? AND status = 'failed')",
            (run_id, run_id),
        )
        return {r["item"] for r in rows}

    def delete_items(self, run_id: int, items: set[str]) -> None:
        def delete(conn):
            self._check_owner(conn, run_id)
            conn.executemany("DELETE FROM results WHERE run_id = ? AND item = ?", [(run_id, i) for i in items])
            conn.executemany("DELETE FROM items WHERE run_id = ? AND item = ?", [(run_id, i) for i in items])

        self._write(delete)

    def rows(self, run_id: int) -> list[dict]:
        """The run's rows in plan order, each spread speed condition's passes merged into one item's rows
        (:func:`harness.results.merge_speed_passes`)."""
        out = []
        # In plan order (items.position), whatever order parallel workers finished in; then as stored.
        for r in self._read("SELECT results.* FROM results LEFT JOIN items ON items.run_id = results.run_id "
                            "AND items.item = results.item WHERE results.run_id = ? ORDER BY items.position, "
                            "results.id", (run_id,)):
            d = dict(r)
            try:
                d["stats"] = json.loads(d["stats"]) if d["stats"] else None
            except ValueError as exc:
                raise StoreError(f"results database {str(self.path)!r} is damaged: row {d['id']} of run {run_id} "
                                 f"cannot be read ({exc}); restore a copy of the file") from None
            out.append(d)
        return merge_speed_passes(out)
