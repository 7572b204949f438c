"""The results database's schema versions: an ordered list of steps, each run once.

A database records its version in SQLite's ``PRAGMA user_version`` (0 for every database
written before versions existed). Opening one runs, in order, every step newer than its
version, each in its own transaction together with the new version number, so a step is
either wholly applied or not at all. A new database is made the same way: the version-0
tables, then every step; there is one description of the schema, not two.

To change the schema, append a :class:`Migration` to :data:`MIGRATIONS` with the next
version number; never edit a step that has shipped. A step returns notes for the user
(what it could not do), which the CLI prints as warnings.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Callable

# The tables as every database before schema versions had them (version 0).
BASE_SCHEMA = """
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


@dataclass(frozen=True)
class Migration:
    """One schema step: ``apply(conn)`` brings a database from ``version - 1`` to ``version``."""

    version: int
    summary: str
    apply: Callable[[sqlite3.Connection], list[str]]


def _task_lengths(wanted: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """Input length L of each (task, T) whose task is registered now (built-ins and installed plugins)."""
    from harness.plugins import load_plugins

    registry = load_plugins()
    lengths = {}
    for task, seq_len in wanted:
        if task in registry.tasks:
            try:
                lengths[(task, seq_len)] = int(registry.tasks[task].factory(seq_len).length)
            except Exception:  # a task that no longer accepts this T: leave the length unknown
                continue
    return lengths


def _add_length(conn: sqlite3.Connection) -> list[str]:
    """``results.length``: the steps the cell sees, beside ``seq_len``, the task's difficulty T.

    Speed rows: L = T. Training rows: the length their gradient rows stored (the horizon's
    ``stats.length``), else the registered task's length at T; otherwise left NULL.
    """
    conn.execute("ALTER TABLE results ADD COLUMN length INTEGER")
    conn.execute("UPDATE results SET length = seq_len WHERE measurement = 'speed'")
    wanted = {(t, s) for t, s in conn.execute(
        "SELECT DISTINCT task, seq_len FROM results WHERE measurement != 'speed' AND task IS NOT NULL AND seq_len IS NOT NULL")}
    if not wanted:
        return []
    lengths: dict[tuple[str, int], int] = {}
    for task, seq_len, stats in conn.execute(
            "SELECT task, seq_len, stats FROM results WHERE metric = 'horizon' AND stats IS NOT NULL"):
        length = json.loads(stats).get("length")
        if length is not None:
            lengths[(task, seq_len)] = int(length)
    missing = wanted - set(lengths)
    if missing:
        lengths.update(_task_lengths(missing))
    conn.executemany("UPDATE results SET length = ? WHERE measurement != 'speed' AND task = ? AND seq_len = ?",
                     [(length, task, seq_len) for (task, seq_len), length in lengths.items()])
    unknown = sorted(wanted - set(lengths))
    if not unknown:
        return []
    listed = ", ".join(f"{task} T={seq_len}" for task, seq_len in unknown)
    return [f"schema upgrade: the input length of {listed} is unknown (task not registered now), "
            "so those rows keep an empty 'length'"]


def _option_values(argv: list[str], option: str) -> list[str]:
    """Values of ``--option X`` / ``--option=X`` in a stored command line (legacy runs only)."""
    values = []
    for index, arg in enumerate(argv):
        if arg == option and index + 1 < len(argv):
            values.append(argv[index + 1])
        elif arg.startswith(option + "="):
            values.append(arg[len(option) + 1:])
    return values


def _add_run_options(conn: sqlite3.Connection) -> list[str]:
    """``runs.plugin_files`` (JSON list) and ``runs.out_dir``: what ``--resume`` reuses, stored
    typed instead of re-read from the command line. Older runs get them from their argv."""
    conn.execute("ALTER TABLE runs ADD COLUMN plugin_files TEXT NOT NULL DEFAULT '[]'")
    conn.execute("ALTER TABLE runs ADD COLUMN out_dir TEXT")
    for run_id, argv_text in conn.execute("SELECT run_id, argv FROM runs").fetchall():
        argv = json.loads(argv_text)
        plugin_files = list(dict.fromkeys(_option_values(argv, "--plugin")))
        out_dirs = _option_values(argv, "--out")
        conn.execute("UPDATE runs SET plugin_files = ?, out_dir = ? WHERE run_id = ?",
                     (json.dumps(plugin_files), out_dirs[-1] if out_dirs else None, run_id))
    return []


def _seconds_to_s(conn: sqlite3.Connection) -> list[str]:
    """Unit suffixes said one way: metrics ``train_seconds`` -> ``train_time_s`` and
    ``seconds_to_solve`` -> ``time_to_solve_s``; the curve's ``stats.train_seconds`` -> ``train_time_s``."""
    conn.execute("UPDATE results SET metric = 'train_time_s' WHERE metric = 'train_seconds'")
    conn.execute("UPDATE results SET metric = 'time_to_solve_s' WHERE metric = 'seconds_to_solve'")
    conn.execute("UPDATE results SET stats = replace(stats, '\"train_seconds\":', '\"train_time_s\":') "
                 "WHERE metric = 'curve_loss'")
    return []


def _add_items(conn: sqlite3.Connection) -> list[str]:
    """``items``: how each finished item was executed (host, worker process, attempt, start and end
    on the host's clock in seconds since the epoch, isolation, GPU, shipped plugin hashes) and its
    position in the run's plan (rows are read back in plan order, whatever order they arrived in), and
    ``runs.reason``: why a run ended ``failed`` or ``interrupted``. Older runs have neither."""
    conn.execute("ALTER TABLE runs ADD COLUMN reason TEXT")
    conn.execute("""
        CREATE TABLE IF NOT EXISTS items (
            run_id INTEGER NOT NULL REFERENCES runs(run_id),
            item TEXT NOT NULL,
            position INTEGER,
            status TEXT NOT NULL,
            error TEXT,
            attempt INTEGER NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL NOT NULL,
            host TEXT,
            pid INTEGER,
            worker TEXT,
            isolation TEXT,
            gpu TEXT,
            plugin_sha256 TEXT NOT NULL DEFAULT '[]',
            PRIMARY KEY (run_id, item)
        )""")
    return []


def _add_lr_and_params(conn: sqlite3.Connection) -> list[str]:
    """``results.lr`` (the rate a training row was trained at, for learning-rate sweeps) and
    ``results.param_count``. Older training rows get their run's one rate; counts stay NULL."""
    conn.execute("ALTER TABLE results ADD COLUMN lr REAL")
    conn.execute("ALTER TABLE results ADD COLUMN param_count INTEGER")
    for run_id, config_text in conn.execute("SELECT run_id, config FROM runs").fetchall():
        rate = (json.loads(config_text).get("recipe") or {}).get("lr")
        if rate is not None:
            conn.execute("UPDATE results SET lr = ? WHERE run_id = ? AND measurement != 'speed'", (rate, run_id))
    return []


def _add_run_owner(conn: sqlite3.Connection) -> list[str]:
    """``runs.owner_host``, ``owner_pid``, ``owner_token`` and ``heartbeat_at``: the process that runs
    a run and when it last showed it was alive (:mod:`harness.ownership`), so that ``--resume`` can
    tell a live run from one left ``running`` by a killed process. Older runs have no owner, which
    counts as gone."""
    for column in ("owner_host TEXT", "owner_pid INTEGER", "owner_token TEXT", "heartbeat_at TEXT"):
        conn.execute(f"ALTER TABLE runs ADD COLUMN {column}")
    return []


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "results.length beside results.seq_len", _add_length),
    Migration(2, "runs.plugin_files and runs.out_dir", _add_run_options),
    Migration(3, "metrics named with the _s suffix", _seconds_to_s),
    Migration(4, "items (how each item was executed) and runs.reason", _add_items),
    Migration(5, "results.lr and results.param_count", _add_lr_and_params),
    Migration(6, "runs.owner_host, owner_pid, owner_token and heartbeat_at", _add_run_owner),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, newer_error: Callable[[int], Exception]) -> list[str]:
    """Bring the database on ``conn`` to :data:`SCHEMA_VERSION`; return the steps' notes.

    A database newer than this rnnbench is refused (``newer_error(version)`` is raised) rather
    than written in a layout this version does not know.
    """
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise newer_error(version)
    notes: list[str] = []
    if version == 0:
        conn.executescript(BASE_SCHEMA)
    for step in MIGRATIONS:
        if step.version <= version:
            continue
        # One transaction per step, the version number included: a step is done wholly or not at
        # all. The version is read again inside it, since another process may have just done it.
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn) < step.version:
                notes += step.apply(conn)
                conn.execute(f"PRAGMA user_version = {int(step.version)}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return notes
