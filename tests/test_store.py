"""The results store: committed rows survive, resumable items are known, runs are resolved by id or 'latest'."""

import sqlite3

import pytest

from harness.config import RunConfig
from harness.errors import UsageError
from harness.migrations import BASE_SCHEMA, SCHEMA_VERSION
from harness.profiles import PROFILES
from harness.store import ResultRow, ResultStore

SMOKE = PROFILES["smoke"]
CONFIG = RunConfig(cells=("lstm",), tasks=("copy",), devices=("cpu",), measures=("accuracy",), seeds=(0,),
                   task_seq_lens={"copy": (5,)}, hidden_sizes=(16,), recipe=SMOKE.recipe, speed_batch_sizes=(8,),
                   speed_seq_lens=(20,), speed_hidden_sizes=(16,), speed_input_size=8, timing=SMOKE.timing,
                   profile="smoke")


def row(item, metric="loss", value=1.0, status="ok", **extra):
    return ResultRow(item=item, measurement="accuracy", cell="lstm", device="cpu", metric=metric, value=value,
                     status=status, **extra)


def test_rows_are_committed_per_add_rows_and_survive_a_fresh_connection(tmp_path):
    """Rows are readable from a second connection while the first is still open (committed, not buffered)."""
    db = tmp_path / "sub" / "results.sqlite"
    writer = ResultStore(db)
    run_id = writer.start_run(["rnnbench", "run"], CONFIG, {"python": "3"}, plugin_files=("p.py",), out_dir="out")
    writer.add_rows(run_id, [row("a", value=0.5, stats={"samples": [1, 2]}), row("a", metric="nan", value=float("nan"))])

    with ResultStore(db) as reader:
        rows = reader.rows(run_id)
        assert [(r["item"], r["metric"], r["value"], r["status"]) for r in rows] == [
            ("a", "loss", 0.5, "ok"), ("a", "nan", None, "ok")]  # NaN is stored as "no value"
        assert rows[0]["stats"] == {"samples": [1, 2]}
        assert rows[0]["cell"] == "lstm" and rows[0]["device"] == "cpu"
        run = reader.run(run_id)
        assert run.status == "running" and run.argv == ("rnnbench", "run") and run.config == CONFIG
        assert run.plugin_files == ("p.py",) and run.out_dir == "out" and run.environment == {"python": "3"}
    # And plain sqlite3 (as pandas would read it) sees them too.
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM results WHERE run_id = ?", (run_id,)).fetchone()[0] == 2
    writer.close()


def test_completed_items_exclude_items_with_a_failed_row(tmp_path):
    """An item with any failed row is redone on resume; ok and skipped items are not."""
    with ResultStore(tmp_path / "r.sqlite") as store:
        run_id = store.start_run([], CONFIG, {})
        store.add_rows(run_id, [row("ok-item"), row("ok-item", metric="accuracy")])
        store.add_rows(run_id, [row("half-failed"), row("half-failed", metric="accuracy", value=None, status="failed",
                                                      error="DivergedError: nan")])
        store.add_rows(run_id, [row("skipped-item", value=None, status="skipped", error="not supported on cuda")])
        other = store.start_run([], CONFIG, {})
        store.add_rows(other, [row("other-run-item")])
        assert store.completed_items(run_id) == {"ok-item", "skipped-item"}
        store.delete_items(run_id, {"half-failed"})
        assert {r["item"] for r in store.rows(run_id)} == {"ok-item", "skipped-item"}


def test_finish_and_reopen_run_set_its_status(tmp_path):
    """finish_run records the final status and time; reopen_run marks it running again."""
    with ResultStore(tmp_path / "r.sqlite") as store:
        run_id = store.start_run([], CONFIG, {})
        store.finish_run(run_id, "interrupted")
        run = store.run(run_id)
        assert run.status == "interrupted" and run.finished_at
        store.reopen_run(run_id)
        run = store.run(run_id)
        assert run.status == "running" and run.finished_at is None


def test_resolve_run_latest_and_by_id(tmp_path):
    """'latest' and None give the newest run; an id gives itself; unknown ids and words are usage errors."""
    with ResultStore(tmp_path / "r.sqlite") as store:
        with pytest.raises(UsageError, match="no runs"):
            store.resolve_run("latest")
        first = store.start_run([], CONFIG, {})
        second = store.start_run([], CONFIG, {})
        assert second > first
        assert store.resolve_run("latest") == second
        assert store.resolve_run(None) == second
        assert store.resolve_run(str(first)) == first
        with pytest.raises(UsageError, match="no run 999"):
            store.resolve_run(999)
        with pytest.raises(UsageError, match="'yesterday'"):
            store.resolve_run("yesterday")


def test_result_row_rejects_an_unknown_status():
    """Only ok, failed and skipped are valid statuses."""
    with pytest.raises(ValueError, match="'broken'"):
        row("a", status="broken")


def test_opening_a_missing_database_without_create_is_a_usage_error(tmp_path):
    """Reading a database that does not exist names the path instead of creating an empty one."""
    with pytest.raises(UsageError, match="missing.sqlite"):
        ResultStore(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()


# --- schema versions ------------------------------------------------------------------------------


def old_database(path):
    """A database as rnnbench wrote it before schema versions (user_version 0), with a speed row,
    copy rows with and without a gradient horizon, and rows of a task no plugin registers."""
    conn = sqlite3.connect(path)
    conn.executescript(BASE_SCHEMA)
    argv = '["rnnbench", "run", "--plugin", "mine.py", "--out=reports/x", "--plugin", "mine.py"]'
    conn.execute("INSERT INTO runs (started_at, status, argv, config, environment) VALUES ('t', 'complete', ?, '{}', '{}')",
                 (argv,))
    rows = [("speed", None, 20, "forward_s", None), ("accuracy", "copy", 5, "train_seconds", None),
            ("accuracy", "copy", 5, "seconds_to_solve", None), ("accuracy", "copy", 5, "curve_loss", '{"train_seconds": 0.5}'),
            ("gradients", "copy", 7, "horizon", '{"length": 27}'), ("accuracy", "mystery", 9, "loss", None)]
    conn.executemany("INSERT INTO results (run_id, item, measurement, cell, device, task, seq_len, metric, status, stats, "
                     "created_at) VALUES (1, 'i', ?, 'lstm', 'cpu', ?, ?, ?, 'ok', ?, 't')", rows)
    conn.commit()
    conn.close()


def test_an_old_database_is_migrated_in_order(tmp_path):
    """Opening a version-0 file adds `length` (speed: T; copy: T + 20 from the registered task or the stored
    horizon; an unknown task: empty, with a note), stores the run's --plugin/--out, renames the `_seconds` metrics."""
    db = tmp_path / "old.sqlite"
    old_database(db)
    with ResultStore(db) as store:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        lengths = {(r["task"], r["seq_len"]): r["length"] for r in store.rows(1)}
        assert lengths == {(None, 20): 20, ("copy", 5): 25, ("copy", 7): 27, ("mystery", 9): None}
        assert len(store.notes) == 1 and "mystery T=9" in store.notes[0] and "length" in store.notes[0]
        metrics = {r["metric"]: r["stats"] for r in store.rows(1)}
        assert "train_time_s" in metrics and "time_to_solve_s" in metrics and "train_seconds" not in metrics
        assert metrics["curve_loss"] == {"train_time_s": 0.5}
        assert (store.conn.execute("SELECT plugin_files, out_dir FROM runs").fetchone()[:]) == ('["mine.py"]', "reports/x")
    with ResultStore(db) as again:
        assert again.notes == []  # every step ran once


def test_a_new_database_has_the_latest_version(tmp_path):
    with ResultStore(tmp_path / "new.sqlite") as store:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert store.notes == []


def test_a_database_from_a_newer_rnnbench_is_refused(tmp_path):
    """A schema version above what this rnnbench knows is one clear line, and the file is left alone."""
    db = tmp_path / "future.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(UsageError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this rnnbench reads"):
        ResultStore(db)
