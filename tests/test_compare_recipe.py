"""compare knows the recipe: configuration differences listed above the tables, verdicts withheld
where the recipe differs (unless --force), accuracy rows at each run's chosen rate; load_results
of several runs with the recipe as columns."""

import dataclasses

import pytest

import harness
from harness.cli import main
from harness.results import ResultRow
from harness.run_diff import config_differences
from harness.store import ResultStore


def accuracy_rows(cell, lr, loss_ratio, seeds=(0, 1)):
    rows = []
    for seed in seeds:
        base = dict(item=f"train|{cell}|copy|seed{seed}|lr{lr!r}", measurement="accuracy", cell=cell, device="cpu",
                    task="copy", seq_len=10, hidden_size=16, seed=seed, lr=lr, plugin="rnnbench:builtin",
                    plugin_version="0.1.0")
        rows += [ResultRow(**base, metric="loss_ratio", value=loss_ratio, unit="ratio"),
                 ResultRow(**base, metric="val_loss", value=loss_ratio, unit="loss"),
                 ResultRow(**base, metric="solved", value=0.0, unit="bool")]
    return rows


def store_run(store, config, rows, environment=None):
    run_id = store.start_run(["rnnbench", "run"], config, environment or {"rnnbench": "0.1.0", "speed_method": 3})
    store.add_rows(run_id, rows)
    store.finish_run(run_id, "complete")
    return run_id


def cli(*args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_differences_are_listed_and_accuracy_verdicts_withheld(tmp_path, run_config, capsys):
    """Run B trained 500 steps at a swept 1e-3,1e-2 (chosen: 1e-2, lower validation loss) where A trained
    1000 steps at 1e-2: both differences are printed above the tables, the accuracy differences are
    withheld, and --force shows them (0.2 - 0.5 = -0.3, each side at its own chosen rate)."""
    db = tmp_path / "r.sqlite"
    config_a = run_config()
    config_a = dataclasses.replace(config_a, recipe=dataclasses.replace(config_a.recipe, lr=1e-2, steps=1000))
    config_b = dataclasses.replace(config_a, recipe=dataclasses.replace(config_a.recipe, steps=500), lrs=(1e-3, 1e-2))
    with ResultStore(db) as store:
        store_run(store, config_a, accuracy_rows("gru", 1e-2, 0.5))
        store_run(store, config_b, accuracy_rows("gru", 1e-3, 0.9) + accuracy_rows("gru", 1e-2, 0.2),
                  {"rnnbench": "0.2.0", "speed_method": 3})
        differences = config_differences(store.run(1), store.run(2))
    assert [d.line() for d in differences] == [
        "recipe steps: 1000 (A) vs 500 (B)",
        "learning rates: 0.01 (A) vs 0.001, 0.01 (B)",
        "rnnbench version: 0.1.0 (A) vs 0.2.0 (B)",
    ]
    assert [d.affects for d in differences] == ["accuracy", "accuracy", "stated"]
    code, out, _ = cli("compare", "1", "2", "--db", db, capsys=capsys)
    assert code == 0
    header = out.split("Accuracy:")[0]
    assert "recipe steps: 1000 (A) vs 500 (B)  [accuracy, gradients]" in header
    assert "rnnbench version: 0.1.0 (A) vs 0.2.0 (B)" in header
    assert "Pass --force to see them anyway" in header
    gru = next(line for line in out.splitlines() if line.startswith("gru "))
    assert "withheld" in gru and "-0.3" not in gru
    code, out, _ = cli("compare", "1", "2", "--db", db, "--force", capsys=capsys)
    gru = next(line for line in out.splitlines() if line.startswith("gru "))
    assert "withheld" not in gru and "-0.3" in gru and "0.01" in gru


def test_identical_configurations_say_so(tmp_path, run_config, capsys):
    db = tmp_path / "r.sqlite"
    with ResultStore(db) as store:
        for _ in range(2):
            store_run(store, run_config(), accuracy_rows("gru", 1e-3, 0.5))
    code, out, _ = cli("compare", "1", "2", "--db", db, capsys=capsys)
    assert code == 0 and "configurations agree" in out and "withheld" not in out
    assert "+0" in next(line for line in out.splitlines() if line.startswith("gru "))


def test_another_training_implementation_is_stated_not_withheld(tmp_path, run_config, capsys):
    """Run A trained lru with its step form (--train-impl lru=step), B with its default scan: the forms
    compute one function (rnnbench check), so the difference is said and verdicts stay. A run that
    names the default (--train-impl lru=scan) trained the same way as one that does not: no difference."""
    db = tmp_path / "r.sqlite"

    def lru_rows(impl, loss_ratio):
        return [dataclasses.replace(r, impl=impl) for r in accuracy_rows("lru", 1e-3, loss_ratio)]

    with ResultStore(db) as store:
        store_run(store, dataclasses.replace(run_config(), train_impls={"lru": "step"}), lru_rows("step", 0.5))
        store_run(store, run_config(), lru_rows("scan", 0.4))
        store_run(store, dataclasses.replace(run_config(), train_impls={"lru": "scan"}), lru_rows("scan", 0.4))
    code, out, _ = cli("compare", "1", "2", "--db", db, capsys=capsys)
    assert code == 0 and "configurations agree" not in out
    assert "cell lru trained with: step (A) vs scan (B)" in out
    assert "withheld" not in next(line for line in out.splitlines() if line.startswith("lru "))
    code, out, _ = cli("compare", "2", "3", "--db", db, capsys=capsys)
    assert code == 0 and "configurations agree" in out


def test_an_edited_plugin_file_is_not_paired_with_its_earlier_self(tmp_path, run_config, capsys):
    db = tmp_path / "r.sqlite"
    with ResultStore(db) as store:
        for digest in ("sha256:aaaa", "sha256:bbbb"):
            rows = [dataclasses.replace(r, plugin="file:mycell.py", plugin_version=digest)
                    for r in accuracy_rows("mycell", 1e-3, 0.5)]
            store_run(store, run_config(), rows)
    code, out, _ = cli("compare", "1", "2", "--db", db, capsys=capsys)
    assert "cell mycell code: file:mycell.py sha256:aaaa (A) vs file:mycell.py sha256:bbbb (B)" in out
    assert "differences withheld: the cell's code differs" in out


def test_load_results_of_several_runs_with_the_recipe_as_columns(tmp_path, run_config):
    db = tmp_path / "r.sqlite"
    config_a = run_config()
    config_b = dataclasses.replace(config_a, recipe=dataclasses.replace(config_a.recipe, steps=77), lrs=(1e-3, 1e-2))
    with ResultStore(db) as store:
        store_run(store, config_a, accuracy_rows("gru", config_a.recipe.lr, 0.5))
        store_run(store, config_b, accuracy_rows("gru", 1e-3, 0.9) + accuracy_rows("gru", 1e-2, 0.2))
    every = harness.load_results(db, run="all")
    assert sorted(every["run_id"].unique()) == [1, 2]
    assert set(every[every.run_id == 2]["steps"]) == {77}
    assert set(every[every.run_id == 1]["steps"]) == {config_a.recipe.steps}
    chosen = every[(every.run_id == 2) & every.lr_chosen.astype(bool)]
    assert set(chosen["lr"]) == {1e-2}  # chosen on validation: 0.2 < 0.9
    listed = harness.load_results(db, run=[2, 1])
    assert list(dict.fromkeys(listed["run_id"])) == [2, 1]
    assert (harness.load_results(db)["run_id"] == 2).all()
    with pytest.raises(harness.errors.UsageError, match="no run 9"):
        harness.load_results(db, run=[1, 9])


# --- timings whose verdict is withheld ------------------------------------------------------------------------

def timing_rows(cell, factor, *, plugin_version="0.1.0", impl="fused"):
    """Both timings of one speed condition: 10 repeats, 1.00 .. 1.09 ms times ``factor`` (B at 1.5: a clear change)."""
    samples = [factor * (1.00 + i / 100) / 1000 for i in range(10)]
    stats = {"samples": samples, "median": (samples[4] + samples[5]) / 2, "n": len(samples)}
    base = dict(item=f"speed|{cell}|{impl}|cpu", measurement="speed", cell=cell, device="cpu", impl=impl, batch_size=8,
                seq_len=20, input_size=8, hidden_size=16, threads=1, plugin="file:cells.py", plugin_version=plugin_version)
    return [ResultRow(**base, metric=metric, value=stats["median"], unit="s", stats=stats)
            for metric in ("forward_s", "forward_backward_s")]


def test_withheld_timings_are_counted_as_withheld_not_as_not_significant(tmp_path, run_config, capsys):
    """Run B stacked its cells 2 deep (--layers 2) and took 1.5x as long: all 4 timings are withheld, and the summary
    says so instead of calling them 4 not significant; the layers line names every table it withholds. --force
    gives the verdicts: 4 slower."""
    db = tmp_path / "r.sqlite"
    with ResultStore(db) as store:
        for layers, factor in ((1, 1.0), (2, 1.5)):
            store_run(store, run_config(layers=layers), timing_rows("gru", factor) + timing_rows("lstm", factor))
    code, out, _ = cli("compare", "1", "2", "--db", db, capsys=capsys)
    assert code == 0
    assert "  layers: 1 (A) vs 2 (B)  [speed, accuracy, gradients]" in out.splitlines()
    assert "(speed, accuracy, gradients) are withheld" in out
    summary = next(line for line in out.splitlines() if line.startswith("geometric mean"))
    assert summary.endswith("; 0 slower, 0 faster, 0 not significant, 4 withheld (the model differs (layers))")
    code, out, _ = cli("compare", "1", "2", "--db", db, "--force", capsys=capsys)
    summary = next(line for line in out.splitlines() if line.startswith("geometric mean"))
    assert summary.endswith("; 4 slower, 0 faster, 0 not significant")


def test_an_edited_cell_file_withholds_its_timings_and_says_which_tables(tmp_path, run_config, capsys):
    """mycell's file changed between the runs (its content hash), gru's did not: mycell's 2 timings are withheld
    (not 'not significant'), gru's 2 judged; the code line names the tables whose rows of mycell it withholds."""
    db = tmp_path / "r.sqlite"
    with ResultStore(db) as store:
        for digest, factor in (("sha256:aaaa", 1.0), ("sha256:bbbb", 1.5)):
            store_run(store, run_config(), timing_rows("mycell", factor, plugin_version=digest) + timing_rows("gru", 1.0))
    code, out, _ = cli("compare", "1", "2", "--db", db, capsys=capsys)
    assert ("  cell mycell code: file:cells.py sha256:aaaa (A) vs file:cells.py sha256:bbbb (B)  "
            "[speed, accuracy, gradients]") in out.splitlines()
    summary = next(line for line in out.splitlines() if line.startswith("geometric mean"))
    assert summary.endswith("; 0 slower, 0 faster, 2 not significant, 2 withheld (the cell's code differs)")


def test_timings_withheld_for_two_reasons_are_counted_per_reason():
    """Threads differ (timing method) and mycell's code changed: mycell's 2 timings are withheld for its code, gru's
    2 for the timing method; the summary counts each reason."""
    from harness.compare import compare_rows
    from harness.run_diff import Difference

    rows_a = timing_rows("mycell", 1.0, plugin_version="sha256:aaaa") + timing_rows("gru", 1.0)
    rows_b = timing_rows("mycell", 1.5, plugin_version="sha256:bbbb") + timing_rows("gru", 1.5)
    comparison = compare_rows([r.__dict__ for r in rows_a], [r.__dict__ for r in rows_b],
                              differences=(Difference("threads", "1", "2", "speed"),))
    assert comparison.summary().endswith("; 0 slower, 0 faster, 0 not significant, 4 withheld (2: the cell's code "
                                         "differs; 2: timing method differs (threads))")
    assert [s.withheld for s in comparison.speed] == ["the cell's code differs"] * 2 + ["timing method differs (threads)"] * 2


@pytest.mark.parametrize("side_a, message", [
    ("1,1", "run 1 is named twice in side A; name each run of a side once"),
    ("latest,3", "latest and 3 are both run 3 in side A; name each run of a side once"),
])
def test_a_run_named_twice_in_a_side_is_refused(tmp_path, run_config, capsys, side_a, message):
    """'1,1' pools one run, not two: refused in one line (exit 2) rather than quietly counted once, which would
    turn a pooled comparison into a one-run-a-side one with another kind of verdict."""
    db = tmp_path / "r.sqlite"
    with ResultStore(db) as store:
        for _ in range(3):
            store_run(store, run_config(), timing_rows("gru", 1.0))
    code, out, err = cli("compare", side_a, "2", "--db", db, capsys=capsys)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"rnnbench: error: {message} (pooled runs must be different runs)"]
