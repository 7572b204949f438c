"""`--layers N` is shown wherever the hidden size and the parameter count are: what `rnnbench run`,
every report, `rnnbench runs` and `rnnbench compare` print for a 2-layer smoke run beside a 1-layer one.

A one-layer run (the default) prints no layers column; a stacked run prints one beside H on every
table, a sentence saying how the cells were stacked, and ``layers`` on every CSV/JSON row."""

from __future__ import annotations

import csv
import json
import re
from types import SimpleNamespace

import io
from contextlib import redirect_stderr, redirect_stdout

import pytest

from harness.cli import main
from harness.runner import build_model_cell
from harness.run_diff import config_differences, withheld_reason
from harness.store import ResultStore
from reports.tables import TABLES

CELLS = ("lstm", "mamba")
STACKED_SENTENCE = ("every cell stacked 2 layers deep (--layers 2), pre-norm and residual, the first layer the cell "
                    "alone; H is each layer's width, and params count every layer and its layer norm")


def run_captured(argv) -> SimpleNamespace:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return SimpleNamespace(code=code, out=out.getvalue(), err=err.getvalue())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run 1: lstm and mamba stacked 2 deep; run 2: lstm alone, one layer, printed as JSON; then every report of run 1."""
    tmp = tmp_path_factory.mktemp("layers")
    db = tmp / "r.sqlite"
    common = ["--profile", "smoke", "--device", "cpu", "--tasks", "adding", "--steps", "3", "--db", db]
    stacked = run_captured(["run", "--cells", ",".join(CELLS), "--layers", "2", *common, "--out", tmp / "run1"])
    single = run_captured(["run", "--cells", "lstm", "--measure", "speed,accuracy", "--json", *common,
                           "--out", tmp / "run2"])
    report = run_captured(["report", "1", "--format", "html,md,csv,json", "--out", tmp / "out", "--db", db])
    listed = run_captured(["runs", "--db", db])
    compared = run_captured(["compare", "2", "1", "--db", db])
    for result in (stacked, single, report, listed, compared):
        assert result.code == 0, result.err
    with ResultStore(db, create=False) as store:
        rows = store.rows(1)
    return SimpleNamespace(stacked=stacked, single=single, report=report, listed=listed, compared=compared,
                           out=tmp / "out", rows=rows, db=db)


def columns_of(table: str) -> list[dict[str, str]]:
    """A tabulate "simple" table (header, dashes, rows) as one dict per row, cut at the dashes' columns."""
    header, rule, *lines = table.splitlines()
    spans = [m.span() for m in re.finditer(r"-+", rule)]
    names = [header[a:b].strip() for a, b in spans]
    return [{name: line[a:b if i < len(spans) - 1 else None].strip() for i, (name, (a, b)) in enumerate(zip(names, spans))}
            for line in lines if line.strip()]


def printed_tables(stdout: str) -> dict[str, list[dict[str, str]]]:
    """{table key: rows} for each table `rnnbench run` printed."""
    found = {}
    for block in stdout.strip().split("\n\n"):
        title, *rest = block.strip().splitlines()
        for key, (table_title, _) in TABLES.items():
            if title == table_title:
                found[key] = columns_of("\n".join(line for line in rest if not line.startswith("Note: ")))
    return found


def lstm_params(input_size: int, hidden_size: int, output_size: int | None = None) -> int:
    """A 2-layer LSTM stack by hand: 4H(I + H + 2), then 4H(2H + 2) and a layer norm's 2H, then the readout."""
    h = hidden_size
    readout = 0 if output_size is None else h * output_size + output_size
    return 4 * h * (input_size + h + 2) + 4 * h * (2 * h + 2) + 2 * h + readout


def built_params(registry, cell: str, input_size: int, hidden_size: int) -> int:
    spec = registry.cell(cell)
    return sum(p.numel() for p in build_model_cell(spec, spec.default_impl("cpu"), input_size, hidden_size, 2).parameters())


def test_run_prints_how_the_cells_were_stacked_and_a_layers_column_beside_h(runs):
    out = runs.stacked.out
    assert f"Layers: {STACKED_SENTENCE}." in out.splitlines()
    tables = printed_tables(out)
    assert set(tables) == {"speed", "accuracy", "gradients"}
    for key, rows in tables.items():
        names = list(rows[0])
        assert names[names.index("H"):names.index("H") + 3] == ["H", "layers", "params"], (key, names)
        assert {row["layers"] for row in rows} == {"2"}
        assert {row["cell"] for row in rows} == set(CELLS)


def test_the_printed_parameter_counts_are_the_stacked_models(runs, registry):
    """params on every row: the 2-layer stack (plus the readout, for training rows), by hand for the LSTM and
    against the built module for Mamba, and as stored."""
    stored = {(r["measurement"], r["cell"]): r for r in runs.rows if r["metric"] in ("forward_s", "loss")}
    task = registry.task("adding").factory(10)
    for key, rows in printed_tables(runs.stacked.out).items():
        for row in rows:
            found = stored[("speed" if key == "speed" else "accuracy", row["cell"])]
            sizes = (int(found["input_size"]), int(found["hidden_size"]))
            output = None if key == "speed" else task.output_size
            expected = (lstm_params(*sizes, output) if row["cell"] == "lstm"
                        else built_params(registry, row["cell"], *sizes) + (0 if output is None else sizes[1] * output + output))
            assert int(row["params"]) == expected == found["param_count"], (key, row)


def test_a_one_layer_run_prints_no_layers_column(runs):
    single = run_captured(["report", "2", "--format", "md", "--out", runs.db.parent / "single", "--db", runs.db])
    markdown = (runs.db.parent / "single" / "report.md").read_text()
    assert single.code == 0 and "| H " in markdown and "| params " in markdown
    assert "| layers " not in markdown and "- layers:" not in markdown


def test_markdown_says_how_the_cells_were_stacked_and_shows_the_column(runs):
    markdown = (runs.out / "report.md").read_text()
    assert f"- layers: {STACKED_SENTENCE}" in markdown.splitlines()
    headers = [line for line in markdown.splitlines() if line.startswith("| cell ")]
    assert len(headers) == 3 and all(re.search(r"\| H +\| layers +\| params +\|", line) for line in headers)


def test_html_names_the_layers_in_the_environment_and_every_tables_caption(runs):
    page = (runs.out / "report.html").read_text()
    assert f"<dt>layers</dt><dd>{STACKED_SENTENCE.replace(chr(39), '&#x27;')}</dd>" in page
    # one value in every row: moved out of the table into its caption, as H is
    assert len(re.findall(r"hidden H \d+, layers 2", page)) == 3 and "<th scope=\"col\">layers</th>" not in page


def test_csv_and_json_rows_carry_the_layer_count(runs):
    with (runs.out / "results.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    names = reader.fieldnames
    assert names[names.index("hidden_size") + 1] == "layers"
    assert len(rows) == len(runs.rows) and {r["layers"] for r in rows} == {"2"}
    document = json.loads((runs.out / "results.json").read_text())
    assert document["format"] == "rnnbench-results/4" and document["run"]["config"]["layers"] == 2
    assert {r["layers"] for r in document["rows"]} == {2}


def test_the_json_flag_prints_the_layer_count_on_every_row(runs):
    rows = json.loads(runs.single.out)
    assert rows and {r["layers"] for r in rows} == {1}
    assert list(rows[0])[list(rows[0]).index("hidden_size") + 1] == "layers"


def test_runs_lists_the_layers_once_a_run_is_stacked(runs):
    rows = columns_of(runs.listed.out.strip("\n"))
    assert [(row["id"], row["layers"]) for row in rows] == [("1", "2"), ("2", "1")]
    names = list(rows[0])
    assert names[names.index("tasks") + 1] == "layers"


def test_compare_lists_the_layers_and_withholds_every_verdict(runs):
    out = runs.compared.out
    assert "  layers: 1 (A) vs 2 (B)  [speed, accuracy, gradients]" in out.splitlines()
    assert "(speed, accuracy, gradients) are withheld" in out
    speed = columns_of(out.split("come from the rounds (see the verdict line)\n")[1].split("\n\n")[0])
    assert speed and {row["verdict"] for row in speed} == {"withheld: the model differs (layers)"}
    assert "differences withheld: the model differs (layers)" in out.split("Accuracy:")[1]
    forced = run_captured(["compare", "2", "1", "--force", "--db", runs.db])
    assert "withheld" not in forced.out and "--force: verdicts are given" in forced.out


def test_a_layers_difference_withholds_both_kinds_of_verdict(run_config):
    one, two = (SimpleNamespace(config=run_config(layers=n), speed_method=3, environment={}) for n in (1, 2))
    (difference,) = config_differences(one, two)
    assert (difference.line(), difference.affects, difference.withholds) == (
        "layers: 1 (A) vs 2 (B)", "model", ("speed", "accuracy", "gradients"))
    assert withheld_reason([difference], "speed") == withheld_reason([difference], "accuracy") == \
        "the model differs (layers)"
    assert config_differences(one, one) == []

