"""The results database as a file: open it, make sure it is an intact rnnbench database, and turn
every SQLite failure into one line that says what is wrong with the file.

- Read commands open the file read-only and refuse an empty or foreign file instead of writing
  tables into it; an rnnbench database from an older version is the one thing they upgrade.
- ``run`` opens it for writing, and first checks that it is writable and that its pages are
  intact (``PRAGMA quick_check``): rows are never added to a damaged file.
- Every database of this version has the tables and columns a fresh one has; a missing table
  or renamed column is reported as damage, never recreated (a recreated ``runs`` table would
  hand out old run ids again, mixing old rows into new runs).
- Lock contention (another process writing, or holding a transaction open) is waited out:
  SQLite's busy timeout, then retries up to :func:`lock_wait_s` in all.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from harness.errors import StoreError
from harness.migrations import SCHEMA_VERSION, migrate

# SQLite's own wait for a lock, per statement; the store retries on top of it.
BUSY_TIMEOUT_S = 5.0
LOCK_WAIT_ENV = "RNNBENCH_DB_LOCK_WAIT_S"
DEFAULT_LOCK_WAIT_S = 600.0
TABLES = ("runs", "results")


def lock_wait_s() -> float:
    """How long, in all, a store operation waits for a lock held by another process."""
    try:
        return max(0.0, float(os.environ.get(LOCK_WAIT_ENV, DEFAULT_LOCK_WAIT_S)))
    except ValueError:
        return DEFAULT_LOCK_WAIT_S


def is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def describe_error(path: Path, exc: sqlite3.Error) -> str:
    """One line for a failure of SQLite on the file at ``path``."""
    text = str(exc)
    lower = text.lower()
    where = f"results database {str(path)!r}"
    if is_busy(exc):
        return (f"{where} stayed locked by another process for more than {lock_wait_s():.0f} s ({text}); "
                f"finished items are kept; try again later, or set {LOCK_WAIT_ENV} to wait longer")
    if "readonly" in lower or "read-only" in lower:
        return f"{where} is read-only ({text}); give a writable file with --db, or make this one writable"
    if "not a database" in lower:
        return (f"{where} is not an SQLite database, or its header is damaged ({text}); "
                "choose another file with --db")
    if "malformed" in lower or "corrupt" in lower or "encrypted" in lower:
        return (f"{where} is damaged ({text}); rnnbench will not read or add to it: "
                "restore a copy, or store new runs in another file with --db")
    if "no such table" in lower or "no such column" in lower or "has no column" in lower:
        return (f"{where} is damaged: its tables do not match rnnbench's schema ({text}); "
                "restore a copy, or store new runs in another file with --db")
    return f"cannot use {where}: {text}"


def connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    """A connection in autocommit mode (the store opens its own transactions)."""
    if read_only:
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    else:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def retrying(path: Path, work: Callable[[], object], notify: Callable[[str], None] | None = None):
    """``work()``, retried while the database is locked by another process (up to
    :func:`lock_wait_s` in all); any SQLite failure becomes one :class:`StoreError` line."""
    deadline = time.monotonic() + lock_wait_s()
    told = False
    while True:
        try:
            return work()
        except sqlite3.Error as exc:
            if is_busy(exc) and time.monotonic() < deadline:
                if notify and not told:
                    notify(f"results database {str(path)!r} is locked by another process; waiting for it "
                           f"(up to {lock_wait_s():.0f} s, {LOCK_WAIT_ENV})")
                    told = True
                time.sleep(0.2)
                continue
            raise StoreError(describe_error(path, exc)) from None


def transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], object]):
    """``work(conn)`` in one immediate transaction: wholly committed or wholly rolled back
    (on any exception, Ctrl-C included, or a COMMIT that could not get its lock)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    return result


@functools.lru_cache(maxsize=1)
def expected_columns() -> dict[str, tuple[str, ...]]:
    """The columns of each table in a database of :data:`SCHEMA_VERSION`, read from a fresh one."""
    conn = sqlite3.connect(":memory:")
    try:
        migrate(conn, lambda version: AssertionError(version))
        tables = sorted(t for t in _tables(conn) if not t.startswith("sqlite_"))
        return {table: tuple(r[1] for r in conn.execute(f"PRAGMA table_info({table})")) for table in tables}
    finally:
        conn.close()


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _is_fresh(conn: sqlite3.Connection) -> bool:
    """No tables and no version: a new or empty (0-byte) file."""
    return not _tables(conn) and int(conn.execute("PRAGMA user_version").fetchone()[0]) == 0


def _check_ours(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version of an rnnbench database; :class:`StoreError` for anything else."""
    where = f"results database {str(path)!r}"
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    tables = _tables(conn)
    if version > SCHEMA_VERSION:
        raise StoreError(f"{where} has schema version {version}, newer than this rnnbench reads "
                         f"(up to {SCHEMA_VERSION}); upgrade rnnbench to read it")
    if version < 0:
        raise StoreError(f"{where} has an unknown schema version {version} (rnnbench writes 0 to {SCHEMA_VERSION}); "
                         "it is not an rnnbench database, or it is damaged")
    present = [t for t in TABLES if t in tables]
    if not present:
        others = ", ".join(sorted(t for t in tables if not t.startswith("sqlite_"))) or "none"
        raise StoreError(f"{where} is not an rnnbench results database (its tables: {others}); "
                         "choose another file with --db")
    if len(present) < len(TABLES):
        missing = next(t for t in TABLES if t not in tables)
        raise StoreError(f"{where} is damaged: its {missing!r} table is missing, so stored rows could not be told "
                         "apart from new ones; restore a copy, or store new runs in another file with --db")
    return version


def _check_columns(conn: sqlite3.Connection, path: Path) -> None:
    tables = _tables(conn)
    for table, columns in expected_columns().items():
        if table not in tables:
            raise StoreError(f"results database {str(path)!r} is damaged: its {table!r} table is missing; restore a "
                             "copy, or store new runs in another file with --db")
        present = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        missing = [c for c in columns if c not in present]
        if missing:
            raise StoreError(f"results database {str(path)!r} is damaged: table {table!r} has no column "
                             f"{', '.join(repr(c) for c in missing)} (renamed or dropped); restore a copy, "
                             "or store new runs in another file with --db")


def _check_pages(conn: sqlite3.Connection, path: Path) -> None:
    problems = [r[0] for r in conn.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise StoreError(f"results database {str(path)!r} is damaged ({problems[0]}); rnnbench will not add "
                         "to it: restore a copy, or store new runs in another file with --db")


def _check_writable(conn: sqlite3.Connection, path: Path) -> None:
    # Rewriting the version number is the smallest real write; SQLite refuses it on a read-only file.
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    transaction(conn, lambda c: c.execute(f"PRAGMA user_version = {version}"))


def _migrate(conn: sqlite3.Connection, path: Path, newer_error) -> list[str]:
    """:func:`harness.migrations.migrate`; a stored value a step cannot read is damage, one line."""
    try:
        return migrate(conn, newer_error)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise StoreError(f"results database {str(path)!r} is damaged: bringing it up to schema version "
                         f"{SCHEMA_VERSION} met a value it cannot read ({type(exc).__name__}: {exc}); "
                         "restore a copy of the file") from None


def open_for_writing(path: Path, newer_error) -> tuple[sqlite3.Connection, list[str]]:
    """A connection to an intact, writable, up-to-date rnnbench database at ``path`` (created if new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path, read_only=False)
    try:
        if not _is_fresh(conn):
            _check_ours(conn, path)
            _check_pages(conn, path)
        _check_writable(conn, path)
        notes = _migrate(conn, path, newer_error)
        _check_columns(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn, notes


def open_for_reading(path: Path, newer_error) -> tuple[sqlite3.Connection, list[str]]:
    """A connection to the existing rnnbench database at ``path``. It is opened read-only; only
    a database of an older rnnbench is opened for writing, to bring its schema up to date."""
    where = f"results database {str(path)!r}"
    conn = connect(path, read_only=True)
    try:
        if _is_fresh(conn):
            raise StoreError(f"{where} is empty: it holds no rnnbench runs; store one there with "
                             "'rnnbench run --db PATH'")
        version = _check_ours(conn, path)
        notes: list[str] = []
        if version < SCHEMA_VERSION:
            conn.close()
            conn = connect(path, read_only=False)
            try:
                notes = _migrate(conn, path, newer_error)
            except sqlite3.Error as exc:
                if is_busy(exc):
                    raise
                raise StoreError(f"{where} was written by an older rnnbench (schema version {version}); reading it "
                                 f"needs a one-time upgrade to version {SCHEMA_VERSION}, which failed ({exc}): make "
                                 "the file writable once, or read a writable copy") from None
        _check_columns(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn, notes
