"""`rnnbench report` and `rnnbench runs`: every format rendered from the database alone, and load_results."""

import base64
import csv
import io
import json
import math
from contextlib import redirect_stderr, redirect_stdout
from html.parser import HTMLParser
from types import SimpleNamespace

import pandas as pd
import pytest

import harness
from harness.cli import main
from harness.errors import UsageError
from harness.plugins import load_plugins
from harness.profiles import PROFILES
from harness.store import ResultStore
from reports.plots import build_plots, gradient_series, learning_series, speed_series
from harness.results import Results, StoredRun
from harness.settings import build_config
from reports.tables import accuracy_table

CELLS = list(load_plugins().cells)
TASKS = list(PROFILES["smoke"].tasks)  # what the smoke run below trains (no --tasks given)
N_PLOTS = 1 + 3 * len(TASKS)  # speed on cpu, then learning curves, fraction solved and gradient decay per task (one rate: no sweep plot)


def run_captured(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return SimpleNamespace(code=code, out=out.getvalue(), err=err.getvalue())


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke run of every cell on every task, then all four reports of it (a few seconds)."""
    tmp = tmp_path_factory.mktemp("report")
    db = tmp / "results.sqlite"
    run = run_captured(["run", "--cells", "all", "--profile", "smoke", "--device", "cpu", "--db", db, "--out", tmp / "run"])
    assert run.code == 0, run.err
    # the database alone, moved elsewhere, is all a report needs
    moved = tmp / "copied" / "results.sqlite"
    moved.parent.mkdir()
    moved.write_bytes(db.read_bytes())
    db.unlink()
    report = run_captured(["report", "latest", "--format", "html,md,csv,json", "--out", tmp / "out", "--db", moved])
    return SimpleNamespace(db=moved, out=tmp / "out", report=report)


def test_report_writes_every_format(smoke):
    assert smoke.report.code == 0, smoke.report.err
    assert smoke.report.out.splitlines() == [str(smoke.out / name) for name in
                                             ("report.html", "report.md", "results.csv", "results.json")]
    assert smoke.report.err == ""


class Collector(HTMLParser):
    """Every tag with its attributes, and the text, of an HTML document."""

    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> Collector:
    collector = Collector()
    collector.feed(html)
    return collector


URL_ATTRIBUTES = ("src", "href", "srcset", "action", "poster", "data", "formaction", "background")


def external_references(page: Collector) -> list[str]:
    """src/href-like attribute values that would make a browser fetch something: all but data: URIs and #anchors."""
    return [f"<{tag} {name}={value!r}>" for tag, attrs in page.tags for name, value in attrs.items()
            if name in URL_ATTRIBUTES and not (value or "").startswith(("data:", "#"))]


def test_html_is_self_contained(smoke):
    html = (smoke.out / "report.html").read_text()
    page = parse(html)
    assert external_references(page) == []
    tags = [tag for tag, _ in page.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    assert "url(" not in html and "@import" not in html
    images = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    assert len(images) == N_PLOTS
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")


def test_html_reads_without_a_glossary(smoke):
    """Environment block, a section per table with a caption, every cell named, every plot captioned."""
    page = parse((smoke.out / "report.html").read_text())
    text = " ".join(page.text)
    ids = {attrs.get("id") for _, attrs in page.tags}
    assert {"environment", "speed", "accuracy", "gradients", "glance"} <= ids
    for words in ("Environment", "torch 2", "training recipe", "forward plus backward", "lower is faster",
                  "loss/baseline below 1", "forward+backward (s)", "held-out loss", "seeds solved",
                  "horizon at init (steps)", "Gradient decay — copy", "Learning curves — adding", "Speed on cpu"):
        assert words in text, words
    for cell in CELLS:
        assert cell in text
    figures = [tag for tag, _ in page.tags if tag == "figcaption"]
    assert len(figures) == len([tag for tag, _ in page.tags if tag == "img"]) == N_PLOTS


def test_markdown_has_tables_captions_and_plot_files(smoke):
    report = (smoke.out / "report.md").read_text()
    assert [line.split(":")[0] for line in report.splitlines() if line.startswith("## ")] == [
        "## Speed", "## Accuracy", "## Gradient decay"]
    assert "forward plus backward" in report
    links = [line[line.index("](") + 2:-1] for line in report.splitlines() if line.startswith("![")]
    assert len(links) == N_PLOTS
    for link in links:
        assert link.startswith("plots/") and (smoke.out / link).read_bytes().startswith(b"\x89PNG")


def stored_rows(db) -> list[dict]:
    with ResultStore(db, create=False) as store:
        return store.rows(store.resolve_run("latest"))


def test_csv_holds_every_row_with_its_unit(smoke):
    with (smoke.out / "results.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    stored = stored_rows(smoke.db)
    assert len(rows) == len(stored)
    assert {"run_id", "cell", "metric", "value", "unit", "seq_len", "q1", "q3", "stats"} <= set(rows[0])
    assert all(r["unit"] for r in rows if r["status"] == "ok")
    speed = [r for r in rows if r["metric"] == "forward_backward_s"]
    assert speed and all(r["unit"] == "s" and float(r["q1"]) <= float(r["value"]) <= float(r["q3"]) for r in speed)
    assert all(r["batch_size"].isdigit() for r in speed)  # integers stay integers ("8", not "8.0")
    samples = json.loads(speed[0]["stats"])["samples"]
    assert len(samples) == int(speed[0]["n_samples"])


def test_json_holds_the_run_and_every_row(smoke):
    def no_constants(name):
        raise AssertionError(f"{name} is not JSON")

    document = json.loads((smoke.out / "results.json").read_text(), parse_constant=no_constants)
    assert document["format"] == "rnnbench-results/4"
    assert document["run"]["status"] == "complete"
    assert len(document["rows"]) == len(stored_rows(smoke.db))
    curve = [r for r in document["rows"] if r["metric"] == "curve_loss"]
    assert curve and all(r["phase"] == "curve" and isinstance(r["step"], int) and r["unit"] == "loss" for r in curve)
    speed = next(r for r in document["rows"] if r["metric"] == "forward_s")
    assert speed["stats"]["median"] == speed["value"] and speed["unit"] == "s"


def test_runs_lists_the_stored_runs(smoke, capsys, run_config):
    with ResultStore(smoke.db) as store:  # a second, empty run: `latest` now means this one
        empty = store.start_run(["rnnbench", "run", "--cells", "gru"], run_config(cells=("gru",), tasks=()),
                                {"hostname": "elsewhere", "cpu_model": "Test CPU", "cpu_count": 4, "gpu_name": "Test GPU"})
    try:
        assert main(["runs", "--db", str(smoke.db)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == ["id", "started", "(UTC)", "status", "profile", "cells", "tasks", "devices", "executed",
                                    "machine"]
        first, second = lines[2].split(), lines[3].split()
        assert first[0] == "1" and "complete" in first and "smoke" in first and ",".join(CELLS) in first
        assert "in-process" in first  # the suite runs with RNNBENCH_WORKERS=1
        assert second[0] == str(empty) and "running" in second and "Test GPU" in lines[3] and "elsewhere:" in lines[3]
        # an empty run renders too, and says so
        assert main(["report", "--db", str(smoke.db), "--out", str(smoke.out / "empty"), "--format", "html"]) == 0
        assert "This run stored no results." in (smoke.out / "empty" / "report.html").read_text()
    finally:
        with ResultStore(smoke.db) as store, store.conn:
            store.conn.execute("DELETE FROM runs WHERE run_id = ?", (empty,))


def test_runs_says_speed_only_where_a_run_trained_on_no_task(tmp_path, capsys, run_config):
    """--measure speed keeps the profile's tasks in the configuration, but trains on none: the tasks column says
    so instead of listing copy,adding; a run that trains (or only probes gradients) lists its tasks."""
    db = tmp_path / "r.sqlite"
    with ResultStore(db) as store:
        for measures in (("speed",), ("speed", "accuracy"), ("gradients",)):
            store.start_run(["rnnbench", "run"], run_config(tasks=("copy", "adding"), measures=measures), {})
    assert main(["runs", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines[0].index("tasks")
    assert [line[at:].split("  ")[0] for line in lines[2:]] == ["— (speed only)", "copy,adding", "copy,adding"]


def test_report_defaults_to_beside_the_database(smoke, capsys):
    assert main(["report", "1", "--format", "json", "--db", str(smoke.db)]) == 0
    assert capsys.readouterr().out.strip() == str(smoke.db.parent / "run-1" / "results.json")


def test_load_results(smoke):
    frame = harness.load_results(smoke.db)
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == len(stored_rows(smoke.db))
    assert {"run_id", "cell", "metric", "value", "unit", "stats"} <= set(frame.columns)
    assert (harness.load_results(str(smoke.db), run=1)["run_id"] == 1).all()
    with pytest.raises(UsageError, match="no run 42"):
        harness.load_results(smoke.db, run=42)


def test_load_results_needs_an_existing_database(tmp_path):
    with pytest.raises(UsageError, match="results database not found"):
        harness.load_results(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()


@pytest.mark.parametrize("argv, message", [
    (["report", "7"], "no run 7 in"),
    (["report", "seven"], "run must be a run id (an integer) or 'latest'"),
    (["report", "--format", "pdf"], "unknown report format 'pdf'; available report formats: csv, html, json, markdown"),
    (["runs", "--db", "/nonexistent/results.sqlite"], "results database not found: '/nonexistent/results.sqlite'"),
    (["report", "--db", "/nonexistent/results.sqlite"], "results database not found"),
])
def test_bad_input_is_one_line_and_exit_2(smoke, capsys, argv, message):
    argv = argv if "--db" in argv else argv + ["--db", str(smoke.db)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_hostile_names_are_escaped(smoke, tmp_path):
    """Cell, task and error text from plugins are data, never markup, in HTML, Markdown and the plots."""
    results = Results.from_store(ResultStore(smoke.db), 1)
    hostile = '<img src=x onerror=alert(1)>$_'
    rows = results.rows[results.rows["task"].isna() | (results.rows["task"] == "copy")]  # fewer plots to draw
    rows = rows.replace({"cell": {"lstm": hostile}, "task": {"copy": "<b>copy</b>"}})
    rows.loc[rows.index[0], ["status", "error"]] = ["failed", "<script>alert('x')</script>"]
    registry = load_plugins()
    page = registry.reporter("html").render(Results(results.run, rows), tmp_path)
    html = page.read_text()
    parsed = parse(html)
    assert external_references(parsed) == []
    assert "<script" not in html and "<b>copy" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;$_" in html and "&lt;script&gt;" in html
    assert hostile in " ".join(parsed.text)
    markdown = registry.reporter("markdown").render(Results(results.run, rows), tmp_path).read_text()
    assert all(line.startswith("![") for line in markdown.splitlines() if "](plots/" in line)


# --- numbers behind the tables and plots, from rows made by hand --------------------------------


def synthetic(rows: list[dict]) -> Results:
    base = {"status": "ok", "error": None, "stats": None, "impl": "fused", "phase": None, "step": None,
            "batch_size": 16, "input_size": 10, "plugin": "test", "plugin_version": "1"}
    frame = pd.DataFrame([{**base, **r} for r in rows])
    config = build_config(load_plugins(), cells=("all",), tasks=("all",), devices=("cpu",), measures=("speed",),
                          profile_name="smoke")
    return Results(StoredRun(run_id=1, started_at="2026-01-01T00:00:00+00:00", status="complete",
                             argv=("rnnbench", "run"), config=config), frame)


def train_row(seed, metric, value, **extra):
    return {"item": f"train|gru|copy|seed{seed}", "measurement": "accuracy", "cell": "gru", "device": "cpu",
            "task": "copy", "seq_len": 10, "hidden_size": 16, "seed": seed, "metric": metric, "value": value, **extra}


def test_accuracy_aggregates_seeds():
    """Three seeds, by hand: loss/baseline 0.1, 0.2, 0.3 -> mean 0.2, s = 0.1, t_{0.975,2} = 4.3027, half-width
    4.3027 * 0.1 / sqrt(3) = 0.2484 -> [-0.0484, 0.448], clipped at 0 (a loss ratio is never negative) ->
    "0.2 [0, 0.448]"; 2 of 3 solved, Wilson (z = 1.96):
    centre (2 + 1.921) / (3 + 3.841) = 0.5731, half 1.96 / 6.841 * sqrt(2/3 + 0.9604) = 0.3654 -> [0.21, 0.94];
    steps to solve 100, 300 and one seed censored at 500: S(100) = 2/3, S(300) = 1/3, median 300 (not the
    mean 200 of the two that solved)."""
    rows = []
    for seed, (ratio, solved, steps, ran) in enumerate([(0.1, 1.0, 100, 100), (0.2, 1.0, 300, 300), (0.3, 0.0, None, 500)]):
        rows += [train_row(seed, "loss_ratio", ratio), train_row(seed, "solved", solved),
                 train_row(seed, "steps_to_solve", steps), train_row(seed, "steps_run", ran)]
    table = accuracy_table(synthetic(rows))
    assert table.loc[0, "seeds"] == 3
    assert table.loc[0, "loss/baseline"] == "0.2 [0, 0.448]"
    assert table.loc[0, "solved"] == "2/3 [0.21, 0.94]"
    assert table.loc[0, "steps to solve"] == "300 (2/3 solved; 1 censored at 500)"


def test_learning_curves_carry_a_solved_seed_forward():
    """Seed 1 stopped at step 10 (solved): its last value stands at step 20, so every step averages both seeds."""
    rows = [train_row(0, "baseline", 2.0), train_row(1, "baseline", 2.0)]
    for seed, curve in ((0, [(0, 2.0), (10, 1.0), (20, 0.6)]), (1, [(0, 2.0), (10, 0.2)])):
        rows += [train_row(seed, "curve_loss", loss, phase="curve", step=step) for step, loss in curve]
    series = learning_series(synthetic(rows))
    assert series["step"].tolist() == [0, 10, 20]
    assert series["mean"].tolist() == pytest.approx([1.0, 0.3, 0.2])  # (loss/baseline) averaged over the two seeds
    assert series["low"].tolist() == pytest.approx([1.0, 0.1, 0.1])
    assert series["high"].tolist() == pytest.approx([1.0, 0.5, 0.3])


def test_gradient_series_uses_the_geometric_mean():
    """Norms 1e-2 and 1e-4 over two seeds average to 1e-3: the plot is on a log scale."""
    rows = [{**train_row(seed, "grad_norm", norm, phase="init", step=3), "measurement": "gradients"}
            for seed, norm in ((0, 1e-2), (1, 1e-4))]
    series = gradient_series(synthetic(rows))
    assert series["distance"].tolist() == [3]
    assert series["mean"].iloc[0] == pytest.approx(1e-3)
    assert (series["low"].iloc[0], series["high"].iloc[0]) == (1e-4, 1e-2)


def test_gradient_norms_that_underflowed_are_left_out():
    """A norm of exactly 0 (float32 underflow) cannot sit on a log axis: no mean there, the band keeps the other seed."""
    rows = [{**train_row(seed, "grad_norm", norm, phase="trained", step=90), "measurement": "gradients"}
            for seed, norm in ((0, 1e-30), (1, 0.0))]
    series = gradient_series(synthetic(rows))
    assert math.isnan(series["mean"].iloc[0])
    assert series[["low", "high", "seeds"]].iloc[0].tolist() == [1e-30, 1e-30, 1]


def test_speed_series_reads_the_quartiles():
    stats = {"median": 2.0, "q1": 1.5, "q3": 3.0, "samples": [1, 2, 3]}
    rows = [{"item": "speed|x", "measurement": "speed", "cell": "x", "device": "cpu", "task": None, "seq_len": 50,
             "hidden_size": 16, "seed": None, "metric": "forward_s", "value": 2.0, "stats": stats}]
    series = speed_series(synthetic(rows))
    assert series[["seq_len", "median", "q1", "q3"]].iloc[0].tolist() == [50, 2.0, 1.5, 3.0]


def test_speed_plot_against_sequence_length():
    """Several lengths give a line plot per device (error bars), not bars; the figure renders to PNG."""
    rows = []
    for cell in ("a", "b"):
        for seq_len, seconds in ((10, 1e-3), (100, 1e-2)):
            stats = {"median": seconds, "q1": seconds * 0.9, "q3": seconds * 1.2}
            rows += [{"item": f"speed|{cell}|{seq_len}", "measurement": "speed", "cell": cell, "device": "cuda",
                      "task": None, "seq_len": seq_len, "hidden_size": 16, "seed": None, "metric": metric,
                      "value": seconds, "stats": stats} for metric in ("forward_s", "forward_backward_s")]
    plots = build_plots(synthetic(rows))
    assert [(p.name, p.section, p.title) for p in plots] == [("speed-cuda", "speed", "Speed on cuda against sequence length")]
    assert plots[0].png.startswith(b"\x89PNG")


def test_an_unknown_run_names_how_many_are_stored_when_it_shows_only_the_newest(tmp_path, run_config):
    from harness.store import ResultStore

    with ResultStore(tmp_path / "r.sqlite") as store:
        for _ in range(12):
            store.finish_run(store.start_run(["rnnbench", "run"], run_config(), {}), "complete")
        with pytest.raises(UsageError, match=r"no run 99 .*runs stored: 12, the newest \[3, 4, 5, 6, 7, 8, 9, 10, 11, 12\]"):
            store.run(99)


def two_seed_results() -> Results:
    """Two seeds of gru on copy, by hand. accuracy 0.1, 0.9; loss 0.002, 0.004; loss/baseline 0.50, 0.52;
    train s 1.00, 1.02. With t_{0.975,1} = 12.7062 and s/√2 = |x1 - x0|/2: accuracy 0.5 ± 5.08 -> [-4.58, 5.58],
    clipped to [0, 1]; loss 0.003 ± 0.0127 -> [-0.0097, 0.0157], clipped to [0, 0.0157]; loss/baseline
    0.51 ± 0.127 -> [0.383, 0.637] and train s 1.01 ± 0.127 -> [0.883, 1.14], inside their ranges: unchanged."""
    rows = []
    for seed, (accuracy, loss, ratio, seconds) in enumerate([(0.1, 0.002, 0.50, 1.00), (0.9, 0.004, 0.52, 1.02)]):
        rows += [train_row(seed, "accuracy", accuracy), train_row(seed, "loss", loss), train_row(seed, "loss_ratio", ratio),
                 train_row(seed, "train_time_s", seconds), train_row(seed, "solved", 0.0), train_row(seed, "steps_run", 20)]
    return synthetic(rows)


def test_two_seed_intervals_are_clipped_to_what_each_column_can_take():
    table = accuracy_table(two_seed_results())
    assert table.loc[0, ["accuracy", "loss", "loss/baseline", "train s"]].tolist() == [
        "0.5 [0, 1]", "0.003 [0, 0.0157]", "0.51 [0.383, 0.637]", "1.01 [0.883, 1.14]"]


def test_every_report_says_the_intervals_are_clipped_and_the_exports_hold_the_table_numbers(tmp_path):
    """The terminal, Markdown and HTML reports title the accuracy table '... clipped to the possible range', the
    Markdown and HTML captions say to which range; the CSV and JSON exports hold each seed's value, from which
    the table's clipped interval follows."""
    from harness.fairness import seed_interval
    from reports.terminal import run_tables
    from reports.tidy import render_csv, render_json

    results = two_seed_results()
    title = "(mean [95% Student t interval over seeds, clipped to the possible range])"
    assert title in run_tables(results)
    registry = load_plugins()
    markdown = registry.reporter("markdown").render(results, tmp_path / "md").read_text()
    page = " ".join(parse(registry.reporter("html").render(results, tmp_path / "html").read_text()).text)
    for text in (markdown, page):
        assert title in text and "Intervals are clipped to the values a column can take (accuracy in [0, 1]" in text
    assert "0.5 \\[0, 1\\]" in markdown and "0.5 [0, 1]" in page
    with render_csv(results, tmp_path).open() as handle:
        from_csv = [float(r["value"]) for r in csv.DictReader(handle) if r["metric"] == "accuracy"]
    from_json = [r["value"] for r in json.loads(render_json(results, tmp_path).read_text())["rows"]
                 if r["metric"] == "accuracy"]
    assert from_csv == from_json == [0.1, 0.9]
    found = seed_interval(from_json, "accuracy")
    assert (found.mean, found.low, found.high) == (pytest.approx(0.5), 0.0, 1.0)
    assert accuracy_table(results).loc[0, "accuracy"] == f"{found.mean:.3g} [{found.low:.3g}, {found.high:.3g}]"
