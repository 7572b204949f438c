"""Fair comparisons in the tables: the rate chosen on validation only, ranks with the method's verdicts,
parameter matching and seeds that can be added, through the library and the CLI."""

import dataclasses

import pandas as pd
import pytest
import torch

from harness import training
from harness.cells import SequenceModel, build_cell
from harness.cli import main
from harness.config import Recipe
from harness.fairness import at_chosen_lr, lr_choices, task_rankings
from harness.plugins import load_plugins
from harness.results import Results, StoredRun
from harness.settings import build_config
from harness.sizing import param_count
from harness.store import ResultStore
from reports.tables import accuracy_table, sweep_table


def synthetic(rows: list[dict], **config_changes) -> Results:
    base = {"status": "ok", "error": None, "stats": None, "impl": "fused", "phase": None, "step": None,
            "batch_size": 16, "input_size": 10, "plugin": "test", "plugin_version": "1", "param_count": 1234,
            "measurement": "accuracy", "device": "cpu", "task": "copy", "seq_len": 10, "hidden_size": 16}
    frame = pd.DataFrame([{**base, **r} for r in rows])
    config = build_config(load_plugins(), cells=("all",), tasks=("all",), devices=("cpu",), measures=("speed",),
                          profile_name="smoke")
    config = dataclasses.replace(config, **config_changes)
    return Results(StoredRun(run_id=1, started_at="2026-01-01T00:00:00+00:00", status="complete",
                             argv=("rnnbench", "run"), config=config), frame)


def row(cell, seed, lr, metric, value):
    return {"item": f"train|{cell}|copy|seed{seed}|lr{lr!r}", "cell": cell, "seed": seed, "lr": lr, "metric": metric,
            "value": value}


def sweep_rows(test_loss_at):
    """gru at two rates over two seeds: validation loss 0.5 at 1e-3 and 0.2 at 1e-2; test loss from ``test_loss_at``."""
    rows = []
    for seed in (0, 1):
        for lr, val_loss in ((1e-3, 0.5), (1e-2, 0.2)):
            rows += [row("gru", seed, lr, "val_loss", val_loss), row("gru", seed, lr, "loss", test_loss_at[lr]),
                     row("gru", seed, lr, "loss_ratio", test_loss_at[lr]), row("gru", seed, lr, "accuracy", 0.5),
                     row("gru", seed, lr, "solved", 0.0), row("gru", seed, lr, "steps_run", 100)]
    return rows


def test_the_rate_is_chosen_on_validation_and_the_table_reports_test_figures_at_it():
    results = synthetic(sweep_rows({1e-3: 0.9, 1e-2: 0.3}))
    table = accuracy_table(results)
    assert table.loc[0, "lr"] == "0.01 (chosen, edge)"
    assert table.loc[0, "loss"] == "0.3 [0.3, 0.3]"  # the test loss at 1e-2, not 1e-3's 0.9
    sweep = sweep_table(results)
    assert sweep.loc[0, "val loss @ 0.001"] == "0.5" and sweep.loc[0, "val loss @ 0.01"] == "0.2"
    assert sweep.loc[0, "chosen lr"] == "0.01"


def test_planted_test_data_does_not_move_the_choice():
    """Test losses that would favour the other rate (0.01 at 1e-3, 5.0 at 1e-2) leave the choice at 1e-2:
    the choice reads validation rows only."""
    honest = lr_choices(synthetic(sweep_rows({1e-3: 0.9, 1e-2: 0.3})).rows)
    planted = lr_choices(synthetic(sweep_rows({1e-3: 0.01, 1e-2: 5.0})).rows)
    assert [c.lr for c in honest.values()] == [c.lr for c in planted.values()] == [1e-2]
    table = accuracy_table(synthetic(sweep_rows({1e-3: 0.01, 1e-2: 5.0})))
    assert table.loc[0, "lr"].startswith("0.01") and table.loc[0, "loss"].startswith("5")


def test_without_validation_rows_every_rate_stays():
    rows = [r for r in sweep_rows({1e-3: 0.9, 1e-2: 0.3}) if r["metric"] != "val_loss"]
    frame = synthetic(rows).rows
    assert lr_choices(frame) == {}
    assert len(at_chosen_lr(frame)) == len(frame)


def test_training_reads_the_test_set_once_after_its_last_decision(monkeypatch):
    """A spy on evaluate(): the test set is evaluated exactly once, after every validation evaluation,
    and planting a different test set changes nothing that training decided (curve, stop step)."""
    registry = load_plugins()
    task = registry.task("adding").factory(10)
    recipe = Recipe(lr=1e-2, batch_size=8, steps=30, eval_every=10, eval_size=32)
    seen = []
    real_evaluate = training.evaluate

    def spy(model, task_, x, target):
        seen.append(x)
        return real_evaluate(model, task_, x, target)

    monkeypatch.setattr(training, "evaluate", spy)

    def run(test_seed):
        torch.manual_seed(0)
        model = SequenceModel(build_cell(registry.cell("gru"), task.input_size, 8), 8, task.output_size)
        test = training.held_out(task, recipe, test_seed, "cpu", torch.float32)
        seen.clear()
        result = training.train(model, task, recipe, seed=0, device="cpu", test_data=test)
        return result, test[0], list(seen)

    honest, test_x, calls = run(test_seed=0)
    assert sum(x is test_x for x in calls) == 1 and calls[-1] is test_x
    planted, _, _ = run(test_seed=99)
    def decisions(result):  # what training decided, without the wall-clock times
        return [(p.step, p.loss, p.accuracy) for p in result.curve], result.steps_run

    assert decisions(planted) == decisions(honest)
    assert (planted.val_loss, planted.steps_to_solve) == (honest.val_loss, honest.steps_to_solve)
    assert planted.loss != honest.loss  # the planted test set was really used for the test figures


def test_validation_and_test_streams_differ():
    task = load_plugins().task("copy").factory(5)
    recipe = Recipe(eval_size=16)
    test = training.held_out(task, recipe, 0, "cpu", torch.float32)
    validation = training.held_out(task, recipe, 0, "cpu", torch.float32, training.VALIDATION_STREAM)
    assert not torch.equal(test[0], validation[0])
    with pytest.raises(ValueError, match="test .* or validation"):
        training.held_out(task, recipe, 0, "cpu", torch.float32, training.TRAIN_STREAM)


def test_rank_column_by_hand():
    """7 seeds. b is worse than a on every seed: the sign-flip p is 2/2^7 = 0.015625, Holm over two comparisons
    doubles it to 0.03125 < 0.05: "worse". c's differences from a are +0.1 and -0.1 alternately with one 0:
    |Σ| small, p = 1 after Holm: "≈ best". Ranked by mean: a 0.1, c ≈ 0.1143, b 0.5."""
    rows = []
    for seed in range(7):
        c_value = 0.1 + (0.1 if seed % 2 else -0.1 if seed < 6 else 0.0) + (0.1 if seed == 6 else 0.0)
        for cell, ratio in (("a", 0.1), ("b", 0.5), ("c", c_value)):
            rows += [row(cell, seed, 1e-2, "loss_ratio", ratio), row(cell, seed, 1e-2, "val_loss", ratio)]
    results = synthetic(rows)
    ranking = task_rankings(results.rows)[0].ranking
    assert [r.cell for r in ranking.cells] == ["a", "c", "b"]
    b = ranking.cells[2]
    assert b.p_value == pytest.approx(2 / 2**7) and b.p_holm == pytest.approx(2 * 2 / 2**7)
    ranks = dict(zip(*accuracy_table(results)[["cell", "rank"]].T.values))
    assert ranks["a"] == "1 (best)"
    assert ranks["b"] == "3 (worse, p_Holm 0.031)"
    assert ranks["c"].startswith("2 (≈ best, p_Holm")


def test_param_budget_ranks_cells_of_different_sizes_together():
    rows = []
    for seed in range(3):
        for cell, hidden in (("gru", 20), ("lstm", 17)):
            rows += [{**row(cell, seed, 1e-2, "loss_ratio", 0.1 * hidden), "hidden_size": hidden}]
    assert len(task_rankings(synthetic(rows).rows, per_hidden_size=True)) == 2
    assert len(task_rankings(synthetic(rows).rows, per_hidden_size=False)) == 1
    table = accuracy_table(synthetic(rows, param_budget=3000))
    assert set(table["rank"]) == {"1 (best)", "2 (≈ best, p_Holm 0.25)"}


# --- through the command line -------------------------------------------------------------------


def cli(*args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_lr_sweep_and_added_seeds_through_the_cli(tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    common = ("--profile", "smoke", "--cells", "gru", "--tasks", "adding", "--measure", "accuracy", "--db", db,
              "--out", tmp_path / "out")
    code, out, err = cli("run", *common, "--lr", "1e-3,1e-2", "--seeds", "0..1", capsys=capsys)
    assert code == 0, err
    assert "(chosen" in out and "Learning-rate sweep" in out and "val loss @ 0.001" in out
    code, out, err = cli("run", "--resume", "1", "--db", db, "--seeds", "2..3", "--lr", "3e-3", capsys=capsys)
    assert code == 0, err
    assert "ignored" not in err
    with ResultStore(db, create=False) as store:
        assert store.run(1).config.seeds == (0, 1, 2, 3)
        assert store.run(1).config.learning_rates == (1e-3, 3e-3, 1e-2)
        rows = pd.DataFrame(store.rows(1))
    measured = rows[rows["metric"] == "val_loss"]
    assert sorted(set(zip(measured["seed"], measured["lr"]))) == [(s, lr) for s in range(4) for lr in (1e-3, 3e-3, 1e-2)]
    assert len(measured) == 12  # nothing measured twice
    assert "8 ok" in err  # seeds 0-1 at the new rate and seeds 2-3 at all three; the first 4 items were kept


@pytest.mark.parametrize("value, message", [("9..5", "needs 0 <= A <= B"), ("x", "give a count"), ("0", "give a count")])
def test_bad_seeds_are_one_line(value, message, capsys):
    code, _, err = cli("run", "--profile", "smoke", "--seeds", value, capsys=capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_param_budget_through_the_cli(tmp_path, capsys):
    """Each cell's H is the size whose count (cell plus readout for training, the cell for speed) is closest to
    the budget: no H one unit up or down is closer. Every row carries its count."""
    budget = 3000
    code, _, err = cli("run", "--profile", "smoke", "--cells", "gru,lstm,numpy-rnn", "--tasks", "adding",
                       "--measure", "speed,accuracy", "--param-budget", budget, "--db", tmp_path / "r.sqlite",
                       "--out", tmp_path / "out", capsys=capsys)
    assert code == 0, err
    registry = load_plugins()
    task = registry.task("adding").factory(10)
    with ResultStore(tmp_path / "r.sqlite", create=False) as store:
        rows = pd.DataFrame(store.rows(1))
    for (cell, measurement), group in rows.groupby(["cell", "measurement"]):
        hidden, counted = int(group["hidden_size"].iloc[0]), int(group["param_count"].iloc[0])
        spec = registry.cell(cell)
        if measurement == "speed":
            count = lambda h: param_count(spec, 8, h)  # noqa: E731 (the smoke profile's speed input size)
        else:
            count = lambda h: param_count(spec, task.input_size, h, task.output_size)  # noqa: E731
        assert counted == count(hidden)
        assert abs(count(hidden) - budget) <= min(abs(count(hidden - 1) - budget), abs(count(hidden + 1) - budget))
    code, out, err = cli("report", "1", "--db", tmp_path / "r.sqlite", "--format", "md", "--out", tmp_path / "md",
                         capsys=capsys)
    text = (tmp_path / "md" / "report.md").read_text()
    assert "| params" in text


def test_the_reports_glance_names_the_cells_not_shown_to_differ(tmp_path):
    """3 seeds: the best cell, then the others as not shown to differ, with the method and its power stated."""
    from reports.html import render_html

    rows = []
    for seed in range(3):
        for cell, ratio in (("gru", 0.1), ("lstm", 0.2), ("torch-rnn", 0.9)):
            rows += [row(cell, seed, 1e-2, "loss_ratio", ratio + 0.01 * seed), row(cell, seed, 1e-2, "val_loss", ratio)]
    page = render_html(synthetic(rows), tmp_path).read_text()
    glance = page.split('id="glance"')[1].split("</section>")[0]
    assert "Best on copy (T = 10, H = 16, cpu): gru" in glance
    assert "Not shown to differ from it: lstm, torch-rnn." in glance
    assert "Holm-corrected over 2 comparisons" in glance and "smallest possible p is 0.25" in glance
