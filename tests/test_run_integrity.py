"""A run's numbers do not depend on incidental choices, and every way a run can stop or be
misconfigured leaves the user a clear, correct path."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import runner
from harness.cells import SequenceModel, build_cell
from harness.compare import compare_rows
from harness.gradients import gradient_profile, measure_profile, probe_steps
from harness.plugins import load_plugins
from harness.store import ResultStore
from harness.training import Recipe, held_out

SMOKE = ("--profile", "smoke", "--device", "cpu")


def _metric(rows, cell, metric):
    return [r["value"] for r in rows if r["cell"] == cell and r["metric"] == metric]


def test_measuring_gradients_does_not_change_the_accuracy_of_a_seeded_run(rnnbench, tmp_path):
    """Same seed, same recipe: accuracy rows are identical whether or not gradients are measured too."""
    values = []
    for measures in ("accuracy", "accuracy,gradients"):
        db = tmp_path / f"{measures}.sqlite"
        assert rnnbench("run", "--cells", "lstm,mingru", "--tasks", "adding", "--measure", measures, *SMOKE,
                        "--db", db, "--out", tmp_path / "out").code == 0
        with ResultStore(db) as store:
            rows = store.rows(store.resolve_run("latest"))
        values.append([(_metric(rows, c, "loss"), _metric(rows, c, "accuracy")) for c in ("lstm", "mingru")])
    assert values[0] == values[1]


def test_gradient_probe_runs_in_float64_so_long_sequences_do_not_underflow():
    """At T=400 an LSTM's init gradient falls far below float32's range (~1e-45); the probe still sees every norm."""
    registry = load_plugins(autoload=False)
    task = registry.task("adding").factory(400)
    torch.manual_seed(0)
    model = SequenceModel(build_cell(registry.cell("lstm"), 2, 16), 16, 1)
    x, target = held_out(task, Recipe(eval_size=8), 0, "cpu", torch.float32)
    probes = probe_steps(task.length)
    profile, dtype = measure_profile(model, task, x, target, probes)
    assert dtype == "float64"
    assert min(profile.norms) > 0 and min(profile.norms) < 1e-60
    float32 = gradient_profile(model, task, x, target, probes)
    assert min(float32.norms) < 1e-40  # float32 hits its floor (or zero) instead


def test_gradient_probe_falls_back_to_float32_for_cells_that_cannot_run_in_float64(write_plugin):
    """A cell hard-wired to float32 is still probed, and the dtype says so."""
    path = write_plugin("f32only", """
        import torch
        from harness import hookimpl

        class F32(torch.nn.Module):
            def __init__(self, i, h):
                super().__init__()
                self.rnn = torch.nn.RNN(i, h)
            def forward(self, x, state=None):
                if x.dtype != torch.float32:
                    raise TypeError("float32 only")
                return self.rnn(x, state)

        @hookimpl
        def register_cells(register):
            register("f32only", F32)
    """)
    registry = load_plugins([path], autoload=False)
    task = registry.task("adding").factory(10)
    model = SequenceModel(build_cell(registry.cell("f32only"), 2, 4), 4, 1)
    x, target = held_out(task, Recipe(eval_size=4), 0, "cpu", torch.float32)
    profile, dtype = measure_profile(model, task, x, target, probe_steps(task.length))
    assert dtype == "float32" and len(profile.norms) == 10


def test_hidden_size_sweep_rows_are_told_apart_by_h(rnnbench, tmp_path):
    """With --hidden-size 8,16 the accuracy and gradient tables carry H, one row per size."""
    result = rnnbench("run", "--cells", "lstm", "--tasks", "adding", "--measure", "accuracy,gradients",
                      "--hidden-size", "8,16", *SMOKE, "--db", tmp_path / "r.sqlite", "--out", tmp_path / "out")
    assert result.code == 0
    rows = [line.split() for line in result.out.splitlines() if line.startswith("lstm ")]
    assert sorted(r[4] for r in rows) == ["16", "16", "8", "8"]  # cell impl task T H ...


def test_fail_above_finer_than_five_percent_can_trip():
    """A clean 3% slowdown is 'significant' once the gate asks for 1%: the gate lowers the minimum change."""
    rng = np.random.default_rng(0)

    def rows(center):
        samples = list(center + rng.normal(0, 0.002, 20))
        return [dict(item="speed|c", measurement="speed", cell="c", impl="fused", device="cpu", batch_size=1,
                     seq_len=1, input_size=1, hidden_size=1, task=None, seed=None, phase=None, step=None,
                     metric="forward_backward_s", value=float(np.median(samples)), unit="s", status="ok", error=None,
                     stats={"samples": samples, "median": float(np.median(samples))})]

    a, b = rows(1.0), rows(1.03)
    assert not compare_rows(a, b).regressions(0.01)  # the default 5% minimum hides it
    assert compare_rows(a, b, min_change=0.01).regressions(0.01)


@pytest.mark.parametrize("args,shown", [
    (["--impl", "graphed", "--cells", "lstm"], ["--impl graphed", "available", "fused", "unrolled"]),
    (["--threads", "1,2"], ["--threads", "one number"]),
    (["--seeds", "0"], ["--seeds", "'0'"]),
])
def test_options_that_would_silently_do_nothing_are_refused(rnnbench, tmp_path, args, shown):
    """An --impl no selected cell has on this device, or a list where one number goes: exit 2, one line."""
    result = rnnbench("run", "--measure", "speed", *SMOKE, "--db", tmp_path / "r.sqlite", *args)
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    for text in shown:
        assert text in result.err
    assert not (tmp_path / "r.sqlite").exists()


def test_a_cell_name_two_plugins_register_is_refused_by_name(rnnbench, write_plugin, tmp_path):
    """--cells lstm with a plugin that also registers 'lstm': exit 2 naming both plugins, nothing measured."""
    path = write_plugin("dup", """
        import torch
        from harness import hookimpl

        @hookimpl
        def register_cells(register):
            register("lstm", lambda i, h: torch.nn.LSTM(i, h))
    """)
    result = rnnbench("run", "--plugin", path, "--cells", "lstm", *SMOKE, "--db", tmp_path / "r.sqlite")
    assert result.code == 2
    assert "'lstm' is registered by more than one plugin" in result.err
    assert "rnnbench" in result.err and "dup" in result.err
    assert not (tmp_path / "r.sqlite").exists()


def test_cell_names_must_be_command_line_safe(write_plugin):
    """Names with spaces, capitals or separators are refused at registration with the rule."""
    path = write_plugin("badnames", """
        import torch
        from harness import hookimpl

        @hookimpl
        def register_cells(register):
            register("Bad Name!", lambda i, h: torch.nn.RNN(i, h))
            register("a|b", lambda i, h: torch.nn.RNN(i, h))
            register("good-name_2.0", lambda i, h: torch.nn.RNN(i, h))
    """)
    registry = load_plugins([path], autoload=False)
    assert "good-name_2.0" in registry.cells
    assert "Bad Name!" not in registry.cells and "a|b" not in registry.cells
    assert sum("lower-case letters" in e for e in registry.errors) == 2


def test_resume_restores_plugin_files_and_report_folder(rnnbench, write_plugin, tmp_path, monkeypatch):
    """A run with --plugin and --out, interrupted, resumes with just --resume and --db; other options are named as ignored."""
    path = write_plugin("stepcell", """
        import torch
        from harness import hookimpl

        class Step(torch.nn.Module):
            def __init__(self, i, h):
                super().__init__()
                self.cell = torch.nn.RNNCell(i, h)
            def forward(self, x_t, state=None):
                h = self.cell(x_t, state)
                return h, h

        @hookimpl
        def register_cells(register):
            register("stepcell", Step, form="step")
    """)
    real = runner._speed_rows
    calls = []

    def interrupt_second(item, config, threads):
        calls.append(item.key)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C
        return real(item, config, threads)

    monkeypatch.setattr(runner, "_speed_rows", interrupt_second)
    db, out = tmp_path / "r.sqlite", tmp_path / "myreport"
    first = rnnbench("run", "--plugin", path, "--cells", "stepcell,lstm", "--measure", "speed", *SMOKE,
                     "--db", db, "--out", out)
    assert first.code == 130
    assert f"rnnbench run --resume 1 --db {db}" in first.err
    monkeypatch.setattr(runner, "_speed_rows", real)
    (out / "report.md").unlink()
    resumed = rnnbench("run", "--resume", "1", "--db", db, "--cells", "gru")
    assert resumed.code == 0, resumed.err
    assert "ignored: --cells" in resumed.err
    assert (out / "report.md").is_file()
    with ResultStore(db) as store:
        assert {r["cell"] for r in store.rows(1)} == {"stepcell", "lstm"}


def test_sigterm_marks_the_run_interrupted_and_keeps_its_rows(tmp_path):
    """SIGTERM (a scheduler's stop) is handled like Ctrl-C: exit 130, finished items kept, status 'interrupted'."""
    db = tmp_path / "r.sqlite"
    env = {**os.environ, "RNNBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--cells", "lstm", "--tasks", "adding",
                             "--measure", "speed,accuracy", *SMOKE, "--steps", "100000", "--db", str(db),
                             "--out", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=Path(__file__).resolve().parent.parent)
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.3)
        try:
            with sqlite3.connect(db) as conn:
                if conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] > 0:
                    break
        except sqlite3.Error:
            pass
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    with ResultStore(db) as store:
        assert store.run(1).status == "interrupted"
        assert {r["measurement"] for r in store.rows(1)} == {"speed"}
