"""The command line as a user types it: what it prints, what it stores, how it refuses bad input."""

import importlib.metadata
import io
import json
import math
import os
import sqlite3
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.store import ResultStore
import torch

from harness.cells import available_impls
from harness.cli import main
from harness.plugins import load_plugins
from harness.profiles import PROFILES
from tasks.adding import AddingTask
from tasks.copy import CopyTask

SMOKE = PROFILES["smoke"]
_BUILTINS = load_plugins()  # conftest has already switched entry-point autoload off
CELL_NAMES, TASK_NAMES = list(_BUILTINS.cells), list(_BUILTINS.tasks)
SMOKE_TASKS = list(SMOKE.tasks)  # what a run without --tasks trains: copy and adding
# (cell, implementation) pairs the speed table times on a CPU, e.g. ("lstm", "fused"), ("lstm", "unrolled").
SPEED_IMPLS = [(c.name, impl) for c in _BUILTINS.cells.values() for impl in available_impls(c, "cpu")]
TITLES = {"speed": "Speed", "accuracy": "Accuracy", "gradients": "Gradient decay"}


def run_captured(argv: list[str]) -> SimpleNamespace:
    """main(argv) with stdout and stderr captured, for module-scoped fixtures (capsys is per test)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return SimpleNamespace(code=code, out=out.getvalue(), err=err.getvalue())


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One `rnnbench run --cells all --profile smoke` shared by the tests below (a few seconds)."""
    tmp = tmp_path_factory.mktemp("smoke")
    db, out_dir = tmp / "results.sqlite", tmp / "report"
    argv = ["run", "--cells", "all", "--profile", "smoke", "--device", "cpu", "--db", str(db), "--out", str(out_dir)]
    result = run_captured(argv)
    result.argv, result.db, result.out_dir = argv, db, out_dir
    return result


def query(db: Path, sql: str, *args) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, args).fetchall()


def table_sections(stdout: str) -> dict[str, list[str]]:
    """{title word: data lines} for each table printed (title, header, rule, then one line per row)."""
    sections = {}
    for block in stdout.strip().split("\n\n"):
        lines = block.strip().splitlines()
        for key, title in TITLES.items():
            if lines and lines[0].startswith(title):
                sections[key] = [line for line in lines[3:] if not line.startswith("Note: ")]
    return sections


def test_smoke_run_succeeds_without_noise(smoke):
    """The smoke run exits 0, reports where its results went, and prints no traceback."""
    assert smoke.code == 0, smoke.err
    assert "Traceback" not in smoke.err
    assert "0 failed" in smoke.err
    assert str(smoke.db) in smoke.err


def test_smoke_run_prints_three_tables_with_a_row_per_cell(smoke):
    """stdout holds the Speed, Accuracy and Gradient decay tables: a row per cell (and implementation, for speed)."""
    sections = table_sections(smoke.out)
    assert set(sections) == set(TITLES)
    assert sorted(line.split()[:2] for line in sections["speed"]) == sorted(list(pair) for pair in SPEED_IMPLS)
    assert {line.split()[0] for line in sections["speed"]} == set(CELL_NAMES)
    defaults = {c.name: c.default_impl("cpu") for c in _BUILTINS.cells.values()}
    for key in ("accuracy", "gradients"):  # cell, the implementation it trained with, task
        rows = [line.split()[:3] for line in sections[key]]
        assert sorted(rows) == sorted([cell, defaults[cell], task] for cell in CELL_NAMES for task in SMOKE_TASKS)
    assert "FAILED" not in smoke.out
    assert "Note: Peak memory measured as cpu: cpu peak RSS rise" in smoke.out
    assert "Note: One seed: no interval is shown" in smoke.out


def test_smoke_run_stores_every_cell_and_measurement(smoke):
    """The database holds ok rows for every cell x measurement, every cell x task, and the run is complete."""
    (run,) = query(smoke.db, "SELECT * FROM runs")
    assert run["status"] == "complete"
    assert json.loads(run["argv"]) == ["rnnbench", *smoke.argv]
    assert query(smoke.db, "SELECT COUNT(*) AS n FROM results WHERE status != 'ok'")[0]["n"] == 0
    stored = {(r["cell"], r["measurement"]) for r in query(smoke.db, "SELECT DISTINCT cell, measurement FROM results")}
    assert stored == {(c, m) for c in CELL_NAMES for m in TITLES}
    timed = {(r["cell"], r["impl"]) for r in query(smoke.db, "SELECT DISTINCT cell, impl FROM results WHERE measurement = 'speed'")}
    assert timed == set(SPEED_IMPLS)
    trained = {(r["cell"], r["task"]) for r in query(smoke.db, "SELECT DISTINCT cell, task FROM results WHERE task IS NOT NULL")}
    assert trained == {(c, t) for c in CELL_NAMES for t in SMOKE_TASKS}
    version = importlib.metadata.version("rnnbench")
    for r in query(smoke.db, "SELECT DISTINCT cell, plugin, plugin_version, device, threads FROM results"):
        plugin = f"rnnbench:{_BUILTINS.cell(r['cell']).plugin.name}"  # which built-in module registered the cell
        assert (r["plugin"], r["plugin_version"], r["device"], r["threads"]) == (plugin, version, "cpu", 1)


def test_smoke_run_stores_known_values(smoke):
    """Stored baselines are the analytic ones, loss_ratio = loss/baseline, and speed throughput = B*T / median."""
    baselines = {"copy": CopyTask(SMOKE.seq_lens_for("copy")[0]).baseline,
                 "adding": AddingTask(SMOKE.seq_lens_for("adding")[0]).baseline}
    assert baselines["copy"] == pytest.approx(10 * math.log(8) / (5 + 20))
    for cell in CELL_NAMES:
        for task, baseline in baselines.items():
            values = {r["metric"]: r["value"] for r in query(
                smoke.db, "SELECT metric, value FROM results WHERE cell = ? AND task = ? AND measurement = 'accuracy' "
                          "AND phase IS NULL", cell, task)}
            assert values["baseline"] == pytest.approx(baseline)
            assert values["loss_ratio"] == pytest.approx(values["loss"] / baseline)
            assert 0 <= values["accuracy"] <= 1
            assert values["steps_run"] == SMOKE.recipe.steps
    tokens = SMOKE.speed_batch_sizes[0] * SMOKE.speed_seq_lens[0]
    for cell, impl in SPEED_IMPLS:
        speed = {r["metric"]: r for r in query(
            smoke.db, "SELECT * FROM results WHERE cell = ? AND impl = ? AND measurement = 'speed'", cell, impl)}
        fb = json.loads(speed["forward_backward_s"]["stats"])
        assert fb["n"] >= SMOKE.timing.min_repeats and fb["median"] == speed["forward_backward_s"]["value"] > 0
        assert speed["steps_per_s"]["value"] == pytest.approx(tokens / fb["median"])
        assert speed["forward_s"]["unit"] == "s"
        assert (speed["forward_s"]["batch_size"], speed["forward_s"]["seq_len"]) == (SMOKE.speed_batch_sizes[0],
                                                                                   SMOKE.speed_seq_lens[0])


def test_tasks_default_to_the_profiles_and_all_means_every_task_at_a_length_it_accepts():
    """Without --tasks a run trains copy and adding; --tasks all plans every task, each not named by the profile
    at its own default T when it has one (digits: 64), else at the profile's default lengths."""
    from harness.settings import build_config

    def planned(tasks, profile):
        config = build_config(_BUILTINS, cells=["lstm"], tasks=tasks, devices=["cpu"], measures=("accuracy",),
                              profile_name=profile)
        return config.task_seq_lens

    assert planned(None, "default") == {"copy": (10,), "adding": (50,)}
    every = planned(["all"], "default")
    assert list(every) == TASK_NAMES
    for name, lengths in every.items():
        own = getattr(_BUILTINS.task(name).factory, "default_seq_len", None)
        expected = PROFILES["default"].task_seq_lens.get(name) or ((own,) if own else PROFILES["default"].default_seq_lens)
        assert lengths == expected, name
    assert every["digits"] == (64,) and every["associative-recall"] == (64,)


def test_smoke_run_stores_one_gradient_norm_per_step(smoke):
    """Gradient rows hold ||dL/ds|| at distances 1..L for each phase, positive and finite."""
    lengths = {"copy": CopyTask(SMOKE.seq_lens_for("copy")[0]).length, "adding": SMOKE.seq_lens_for("adding")[0]}
    for cell in CELL_NAMES:
        for task, length in lengths.items():
            for phase in ("init", "trained"):
                rows = query(smoke.db, "SELECT step, value FROM results WHERE cell = ? AND task = ? AND phase = ? "
                                       "AND metric = 'grad_norm' ORDER BY step", cell, task, phase)
                assert [r["step"] for r in rows] == list(range(1, length + 1))
                assert all(r["value"] > 0 and math.isfinite(r["value"]) for r in rows)


def test_smoke_run_writes_the_markdown_report(smoke):
    """OUT/report.md exists and holds the three tables with every cell."""
    report = (smoke.out_dir / "report.md").read_text()
    assert "status **complete**" in report
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    assert [h.split(":")[0] for h in headings] == [f"## {title}" for title in TITLES.values()]
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    for cell in CELL_NAMES:
        n_impls = sum(c == cell for c, _ in SPEED_IMPLS)
        assert sum(line.startswith(f"| {cell} ") for line in rows) == n_impls + 2 * len(SMOKE_TASKS)


@pytest.fixture(scope="module")
def json_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("json")
    db = tmp / "results.sqlite"
    result = run_captured(["run", "--cells", "lstm,numpy-rnn", "--tasks", "adding", "--measure", "speed,accuracy",
                           "--profile", "smoke", "--device", "cpu", "--db", str(db), "--out", str(tmp / "out"), "--json"])
    result.db = db
    return result


def test_json_flag_prints_the_run_rows_as_json(json_run):
    """--json prints only JSON on stdout: one record per stored row, no tables."""
    assert json_run.code == 0, json_run.err
    records = json.loads(json_run.out)
    stored = query(json_run.db, "SELECT id, cell, measurement, metric FROM results ORDER BY id")
    assert [(r["id"], r["cell"], r["measurement"], r["metric"]) for r in records] == [tuple(s) for s in stored]
    assert {r["cell"] for r in records} == {"lstm", "numpy-rnn"}
    assert all(r["status"] == "ok" for r in records)


def test_json_output_is_strict_json(json_run):
    """--json output parses under strict JSON rules: missing values are null, never NaN."""

    def refuse(constant):
        raise ValueError(f"non-JSON constant {constant}")

    json.loads(json_run.out, parse_constant=refuse)


BAD_INPUT = [
    (["--cells", "nope"], ["'nope'", *CELL_NAMES]),
    (["--cells", "lstm,nope"], ["'nope'", *CELL_NAMES]),
    (["--tasks", "nope"], ["'nope'", *TASK_NAMES]),
    (["--hidden-size", "0"], ["--hidden-size", "'0'"]),
    (["--hidden-size", "abc"], ["--hidden-size", "'abc'"]),
    (["--seq-len", "10,-3"], ["--seq-len", "'-3'"]),
    (["--measure", "speedy"], ["'speedy'", "speed", "accuracy", "gradients"]),
    (["--profile", "nope"], ["'nope'", "smoke", "default", "paper"]),
    (["--impl", "jit"], ["--impl jit", "fused", "unrolled", "scan", "step"]),
    (["--tasks", "adding", "--seq-len", "1"], ["--seq-len 1", "'adding'", ">= 2"]),
]


@pytest.mark.parametrize("args,shown", BAD_INPUT, ids=[" ".join(args) for args, _ in BAD_INPUT])
def test_bad_input_is_one_clear_line_and_exit_2(rnnbench, tmp_path, args, shown):
    """A user mistake exits 2 with one stderr line that shows the bad value and the choices, no traceback."""
    result = rnnbench("run", "--profile", "smoke", "--device", "cpu", "--db", tmp_path / "r.sqlite",
                      "--out", tmp_path / "out", *args)
    assert result.code == 2
    assert result.out == ""
    assert "Traceback" not in result.err
    assert not (tmp_path / "r.sqlite").exists(), "a rejected command must not leave a database behind"
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("rnnbench: error:")
    for text in shown:
        assert text in lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_usage_error(rnnbench, tmp_path):
    """--device cuda on a CPU-only machine exits 2 with one line saying so."""
    result = rnnbench("run", "--device", "cuda", "--profile", "smoke", "--db", tmp_path / "r.sqlite")
    assert result.code == 2
    assert "Traceback" not in result.err
    assert result.err.strip().count("\n") == 0
    assert "cuda" in result.err and "cpu" in result.err


def test_resume_of_an_unknown_run_is_a_usage_error(rnnbench, tmp_path):
    """--resume with a run id the database does not hold exits 2 and names the id."""
    result = rnnbench("run", "--resume", "42", "--db", tmp_path / "r.sqlite")
    assert result.code == 2
    assert "results database not found" in result.err and "Traceback" not in result.err
    ResultStore(tmp_path / "r.sqlite").close()
    result = rnnbench("run", "--resume", "42", "--db", tmp_path / "r.sqlite")
    assert result.code == 2
    assert "no run 42" in result.err and "Traceback" not in result.err


def test_version_flag(rnnbench):
    """--version prints the installed distribution's version and exits 0."""
    result = rnnbench("--version")
    assert result.code == 0
    assert importlib.metadata.version("rnnbench") in result.out


def test_cells_and_tasks_commands_list_what_is_registered(rnnbench, write_plugin):
    """`rnnbench cells --plugin f.py` lists built-in cells and the file's cell; `tasks` lists every task."""
    path = write_plugin("extra_plugin", """
        from torch import nn
        from harness import hookimpl

        @hookimpl
        def register_cells(register):
            register("extra-gru", lambda i, h: nn.GRU(i, h), summary="a second GRU")
    """)
    result = rnnbench("cells", "--plugin", path)
    assert result.code == 0 and result.err == ""
    listed = {line.split()[0]: line for line in result.out.splitlines()[2:]}
    assert set(listed) == {*CELL_NAMES, "extra-gru"}
    assert "numpy" in listed["numpy-rnn"] and str(path.resolve()) in listed["extra-gru"]
    tasks = rnnbench("tasks")
    assert tasks.code == 0
    task_table = tasks.out.split("\n\n")[0]  # then each task's options (tests/test_task_options.py)
    assert {line.split()[0] for line in task_table.splitlines()[2:]} == set(TASK_NAMES)


def test_plugins_command_fails_when_a_plugin_is_broken(rnnbench, write_plugin):
    """`rnnbench plugins` with a broken plugin file warns naming it and exits 1."""
    path = write_plugin("broken_plugin", "import not_a_module_anywhere\n")
    result = rnnbench("plugins", "--plugin", path)
    assert result.code == 1
    assert "broken_plugin" in result.err and "ModuleNotFoundError" in result.err
    assert "lstm" in result.out


def test_installed_console_script_runs():
    """The `rnnbench` console script installed with the package starts and lists the built-in cells."""
    script = Path(sys.executable).parent / "rnnbench"
    assert script.is_file(), f"console script not installed beside {sys.executable}"
    done = subprocess.run([str(script), "cells"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RNNBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    for cell in CELL_NAMES:
        assert cell in done.stdout


def test_impl_says_which_cells_it_leaves_out_of_the_speed_table(rnnbench, tmp_path):
    """--impl step times mingru's step form; lstm has none (its step form is 'unrolled'), and the run says so."""
    result = rnnbench("run", "--profile", "smoke", "--device", "cpu", "--cells", "mingru,lstm", "--measure", "speed",
                      "--impl", "step", "--db", tmp_path / "r.sqlite", "--out", tmp_path / "out")
    assert result.code == 0, result.err
    assert ("rnnbench: warning: --impl step: not in the speed table: lstm on cpu (it has fused, unrolled)"
            in result.err.splitlines())
    speed_rows = [line.split()[:2] for line in result.out.splitlines() if line.startswith(("mingru ", "lstm "))]
    assert speed_rows == [["mingru", "step"]]
