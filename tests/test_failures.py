"""A failing cell is stored as failed and the sweep goes on; Ctrl-C keeps what was measured and can be resumed."""

import os
import signal

import pytest

import harness.runner as runner
from harness.store import ResultStore

BAD_CELLS_PLUGIN = """
    import torch
    from torch import nn

    from harness import hookimpl


    class RaisingCell(nn.Module):
        '''Crashes on every forward call.'''

        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.rnn = nn.RNN(input_size, hidden_size)

        def forward(self, x, state=None):
            raise RuntimeError("badcell forward exploded")


    class NanCell(nn.Module):
        '''Outputs NaN from the first call.'''

        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.rnn = nn.RNN(input_size, hidden_size)

        def forward(self, x, state=None):
            y, h = self.rnn(x, state)
            return y * float("nan"), h


    class DivergingCell(nn.Module):
        '''Fine under no_grad (contract check, evaluation); NaN once autograd is on, so training diverges.'''

        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.rnn = nn.RNN(input_size, hidden_size)

        def forward(self, x, state=None):
            y, h = self.rnn(x, state)
            return (y * float("nan"), h) if torch.is_grad_enabled() else (y, h)


    @hookimpl
    def register_cells(register):
        register("badcell", RaisingCell)
        register("nancell", NanCell)
        register("divcell", DivergingCell)
"""


@pytest.fixture
def bad_run(rnnbench, write_plugin, tmp_path):
    plugin = write_plugin("bad_cells", BAD_CELLS_PLUGIN)
    db = tmp_path / "results.sqlite"
    result = rnnbench("run", "--plugin", plugin, "--cells", "lstm,badcell,nancell,divcell", "--profile", "smoke",
                      "--device", "cpu", "--measure", "accuracy,gradients", "--db", db, "--out", tmp_path / "out")
    with ResultStore(db) as store:
        run_id = store.resolve_run("latest")
        return result, store.run(run_id), store.rows(run_id)


def test_failing_cells_are_stored_as_failed_and_the_run_goes_on(bad_run):
    """Raising, NaN and diverging cells give failed rows with their error; lstm is still measured; exit 1."""
    result, run, rows = bad_run
    assert result.code == 1
    assert "Traceback" not in result.err
    assert run.status == "failed"
    failed = {(r["cell"], r["task"], r["measurement"]): r["error"] for r in rows if r["status"] == "failed"}
    bad = ("badcell", "nancell", "divcell")
    assert set(failed) == {(c, t, m) for c in bad for t in ("copy", "adding") for m in ("accuracy", "gradients")}
    for (cell, _, _), error in failed.items():
        assert error, cell
        if cell == "badcell":
            assert error == "RuntimeError: badcell forward exploded"
        if cell == "divcell":
            assert error.startswith("DivergedError:") and "nan" in error
    lstm = [r for r in rows if r["cell"] == "lstm"]
    assert lstm and all(r["status"] == "ok" for r in lstm)
    assert {(r["task"], r["measurement"]) for r in lstm} == {(t, m) for t in ("copy", "adding") for m in ("accuracy", "gradients")}
    assert not [r for r in rows if r["cell"] in bad and r["status"] == "ok"]


def test_failed_cells_show_as_failed_in_the_tables(bad_run):
    """Every table row of a failed cell says FAILED with the error; lstm's rows do not."""
    result, _, _ = bad_run
    lines = result.out.splitlines()
    for cell in ("badcell", "nancell", "divcell"):
        rows = [line for line in lines if line.startswith(cell + " ")]
        assert len(rows) == 4  # 2 tasks x (accuracy, gradient decay)
        assert all("FAILED" in line for line in rows)
    assert any("FAILED: RuntimeError: badcell forward exploded" in line for line in lines)
    lstm_rows = [line for line in lines if line.startswith("lstm ")]
    assert len(lstm_rows) == 4 and not any("FAILED" in line for line in lstm_rows)
    assert "2 ok, 6 failed" in result.err  # items: lstm x 2 tasks ok, 3 bad cells x 2 tasks failed


def test_ctrl_c_keeps_finished_items_and_resume_completes_the_run(rnnbench, tmp_path, monkeypatch):
    """Ctrl-C on the second item: exit 130, first item stored, run 'interrupted'; --resume measures only the rest."""
    measured = []
    real_speed_rows = runner._speed_rows

    def interrupt_second_item(item, config, threads):
        measured.append(item.key)
        if len(measured) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: a KeyboardInterrupt raised by a cell fails its item
        return real_speed_rows(item, config, threads)

    monkeypatch.setattr(runner, "_speed_rows", interrupt_second_item)
    db, out = tmp_path / "results.sqlite", tmp_path / "out"
    first = rnnbench("run", "--cells", "lstm,gru", "--measure", "speed", "--profile", "smoke", "--device", "cpu",
                     "--db", db, "--out", out)
    assert first.code == 130
    assert "Traceback" not in first.err
    first_item = measured[0]
    with ResultStore(db) as store:
        run_id = store.resolve_run("latest")
        assert store.run(run_id).status == "interrupted"
        kept = store.rows(run_id)
    assert f"--resume {run_id}" in first.err
    assert kept and {r["item"] for r in kept} == {first_item} and all(r["status"] == "ok" for r in kept)

    def record(item, config, threads):
        measured.append(item.key)
        return real_speed_rows(item, config, threads)

    measured.clear()
    monkeypatch.setattr(runner, "_speed_rows", record)
    resumed = rnnbench("run", "--resume", run_id, "--db", db, "--out", out)
    assert resumed.code == 0, resumed.err
    with ResultStore(db) as store:
        assert store.resolve_run("latest") == run_id  # resumed in place, no new run
        assert store.run(run_id).status == "complete"
        rows = store.rows(run_id)
    items = {r["item"] for r in rows}
    assert first_item not in measured  # not measured again
    assert sorted(measured) == sorted(items - {first_item})  # everything else measured exactly once
    assert {r["cell"] for r in rows} == {"lstm", "gru"}
    assert [r for r in rows if r["item"] == first_item] == kept  # the first item's rows are untouched
    assert all(r["status"] == "ok" for r in rows)


def test_divergence_in_training_keeps_the_init_gradient_profile(rnnbench, tmp_path, monkeypatch):
    """When training diverges, the init gradient rows measured before it are kept; accuracy and trained rows fail."""
    from harness.errors import DivergedError

    def diverge(*args, **kwargs):
        raise DivergedError("training loss became nan at step 3")

    monkeypatch.setattr(runner, "train", diverge)
    db = tmp_path / "r.sqlite"
    result = rnnbench("run", "--cells", "lstm", "--tasks", "adding", "--profile", "smoke", "--device", "cpu",
                      "--measure", "accuracy,gradients", "--db", db, "--out", tmp_path / "out")
    assert result.code == 1
    with ResultStore(db) as store:
        rows = store.rows(store.resolve_run("latest"))
    init = [r for r in rows if r["measurement"] == "gradients" and r["phase"] == "init"]
    assert init and all(r["status"] == "ok" for r in init)
    failed = {r["measurement"]: r["error"] for r in rows if r["status"] == "failed"}
    assert failed == {"accuracy": "DivergedError: training loss became nan at step 3",
                      "gradients": "DivergedError: training loss became nan at step 3"}
    assert not [r for r in rows if r["phase"] == "trained"]
