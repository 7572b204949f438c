"""The results store: committed rows survive, resumable items are known, runs are resolved by id or 'latest'."""

import sqlite3

import pytest

from harness.errors import UsageError
from harness.store import ResultRow, ResultStore


def row(item, metric="loss", value=1.0, status="ok", **extra):
    return ResultRow(item=item, measurement="accuracy", cell="lstm", device="cpu", metric=metric, value=value,
                     status=status, **extra)


def test_rows_are_committed_per_add_rows_and_survive_a_fresh_connection(tmp_path):
    """Rows are readable from a second connection while the first is still open (committed, not buffered)."""
    db = tmp_path / "sub" / "results.sqlite"
    writer = ResultStore(db)
    run_id = writer.start_run(["rnnbench", "run"], {"profile": "smoke"}, {"python": "3"})
    writer.add_rows(run_id, [row("a", value=0.5, stats={"samples": [1, 2]}), row("a", metric="nan", value=float("nan"))])

    with ResultStore(db) as reader:
        rows = reader.rows(run_id)
        assert [(r["item"], r["metric"], r["value"], r["status"]) for r in rows] == [
            ("a", "loss", 0.5, "ok"), ("a", "nan", None, "ok")]  # NaN is stored as "no value"
        assert rows[0]["stats"] == {"samples": [1, 2]}
        assert rows[0]["cell"] == "lstm" and rows[0]["device"] == "cpu"
        run = reader.run(run_id)
        assert run["status"] == "running" and run["argv"] == ["rnnbench", "run"] and run["config"] == {"profile": "smoke"}
    # And plain sqlite3 (as pandas would read it) sees them too.
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM results WHERE run_id = ?", (run_id,)).fetchone()[0] == 2
    writer.close()


def test_completed_items_exclude_items_with_a_failed_row(tmp_path):
    """An item with any failed row is redone on resume; ok and skipped items are not."""
    with ResultStore(tmp_path / "r.sqlite") as store:
        run_id = store.start_run([], {}, {})
        store.add_rows(run_id, [row("ok-item"), row("ok-item", metric="accuracy")])
        store.add_rows(run_id, [row("half-failed"), row("half-failed", metric="accuracy", value=None, status="failed",
                                                      error="DivergedError: nan")])
        store.add_rows(run_id, [row("skipped-item", value=None, status="skipped", error="not supported on cuda")])
        other = store.start_run([], {}, {})
        store.add_rows(other, [row("other-run-item")])
        assert store.completed_items(run_id) == {"ok-item", "skipped-item"}
        store.delete_items(run_id, {"half-failed"})
        assert {r["item"] for r in store.rows(run_id)} == {"ok-item", "skipped-item"}


def test_finish_and_reopen_run_set_its_status(tmp_path):
    """finish_run records the final status and time; reopen_run marks it running again."""
    with ResultStore(tmp_path / "r.sqlite") as store:
        run_id = store.start_run([], {}, {})
        store.finish_run(run_id, "interrupted")
        run = store.run(run_id)
        assert run["status"] == "interrupted" and run["finished_at"]
        store.reopen_run(run_id)
        run = store.run(run_id)
        assert run["status"] == "running" and run["finished_at"] is None


def test_resolve_run_latest_and_by_id(tmp_path):
    """'latest' and None give the newest run; an id gives itself; unknown ids and words are usage errors."""
    with ResultStore(tmp_path / "r.sqlite") as store:
        with pytest.raises(UsageError, match="no runs"):
            store.resolve_run("latest")
        first = store.start_run([], {}, {})
        second = store.start_run([], {}, {})
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
