"""Length generalisation (--eval-lengths) and text samples: the rows a trained model adds, and
how the reports show them."""

import math
import sqlite3

import pytest
import torch
from torch import nn

from harness.errors import UsageError
from harness.lengths import length_rows, parse_eval_lengths, resolve_length
from harness.plugins import load_plugins

REGISTRY = load_plugins()
BASE = dict(item="train|test", measurement="accuracy", cell="oracle", device="cpu", task="parity", seed=0)


@pytest.mark.parametrize("typed,expected", [("2x,4x", ("2x", "4x")), (["8X", "200", "2x", "2x"], ("8x", "200", "2x")),
                                            ("1.5x", ("1.5x",)), ("", ())])
def test_eval_lengths_are_multiples_or_lengths(typed, expected):
    assert parse_eval_lengths(typed) == expected


@pytest.mark.parametrize("bad", ["x2", "0x", "-1", "0", "2x,abc"])
def test_bad_eval_lengths_are_refused(bad):
    with pytest.raises(UsageError, match="--eval-lengths"):
        parse_eval_lengths(bad)


@pytest.mark.parametrize("spec,trained,expected", [("2x", 8, 16), ("1.5x", 10, 15), ("8x", 12, 96), ("30", 8, 30)])
def test_a_length_resolves_against_the_trained_t(spec, trained, expected):
    assert resolve_length(spec, trained) == expected


class ParityOracle(nn.Module):
    """Knows parity at any length: the running xor of the bits, as confident logits at every step."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x, state=None):
        running = torch.cumsum(x[..., 1], dim=0) % 2  # (L, B): parity of the bits so far
        return torch.stack([1 - running, running], dim=-1) * 50.0, None


class Silent(nn.Module):
    """Remembers nothing: zero logits, so the loss is ln 2 whatever the length."""

    def forward(self, x, state=None):
        return torch.zeros(*x.shape[:2], 2), None


def _metrics(rows):
    return {(r.seq_len, r.metric): r.value for r in rows if r.status == "ok"}


def test_a_model_that_knows_parity_is_right_at_every_length():
    rows = length_rows(ParityOracle(), REGISTRY.task("parity"), {}, 8, ("2x", "4x", "100"), BASE, seed=0,
                       eval_size=128, device="cpu")
    metrics = _metrics(rows)
    assert {seq_len for seq_len, _ in metrics} == {16, 32, 100}
    for seq_len in (16, 32, 100):
        assert metrics[(seq_len, "length_accuracy")] == 1.0
        assert metrics[(seq_len, "length_loss")] < 1e-6
        assert metrics[(seq_len, "length_baseline")] == pytest.approx(math.log(2))
    first = rows[0]
    assert (first.measurement, first.phase, first.length) == ("length", "length", 16)
    assert first.stats == {"trained_seq_len": 8, "eval_length": "2x"}


def test_a_memoryless_model_scores_the_baseline_at_every_length():
    metrics = _metrics(length_rows(Silent(), REGISTRY.task("parity"), {}, 8, ("2x", "8x"), BASE, seed=0,
                                   eval_size=64, device="cpu"))
    assert metrics[(16, "length_loss")] == pytest.approx(math.log(2))
    assert metrics[(64, "length_loss")] == pytest.approx(math.log(2))


def test_the_trained_length_itself_is_not_repeated():
    assert length_rows(Silent(), REGISTRY.task("parity"), {}, 8, ("1x", "8"), BASE, seed=0, eval_size=8,
                       device="cpu") == []


def test_a_task_that_cannot_be_built_at_a_length_says_so_in_a_skipped_row():
    pytest.importorskip("sklearn")
    (row,) = length_rows(Silent(), REGISTRY.task("digits"), {}, 64, ("2x",), BASE, seed=0, eval_size=8, device="cpu")
    assert (row.status, row.measurement, row.seq_len, row.metric) == ("skipped", "length", 128, "length_accuracy")
    assert row.error.startswith("digits cannot be built at T=128: ") and "fixed at 64" in row.error


def test_a_run_with_eval_lengths_stores_tables_and_plots_them(rnnbench, tmp_path):
    db, out = tmp_path / "r.sqlite", tmp_path / "out"
    result = rnnbench("run", "--profile", "smoke", "--device", "cpu", "--cells", "lstm,gru", "--measure", "accuracy",
                      "--tasks", "parity", "--seq-len", "6", "--eval-lengths", "2x,4x", "--db", db, "--out", out)
    assert result.code == 0, result.err
    with sqlite3.connect(db) as conn:
        stored = conn.execute("select cell, seq_len, length, metric, stats from results where measurement = 'length'"
                              " order by cell, seq_len, metric").fetchall()
    assert [(cell, seq_len, metric) for cell, seq_len, _, metric, _ in stored] == [
        (cell, seq_len, metric) for cell in ("gru", "lstm") for seq_len in (12, 24)
        for metric in ("length_accuracy", "length_baseline", "length_loss")]
    assert all(length == seq_len and '"trained_seq_len": 6' in stats for _, seq_len, length, _, stats in stored)
    section = result.out.split("Length generalisation")[1].split("\n\n")[0].splitlines()
    data = [line.split() for line in section[3:]]
    assert [(line[0], line[5]) for line in data] == [("lstm", "6"), ("lstm", "12"), ("lstm", "24"),
                                                     ("gru", "6"), ("gru", "12"), ("gru", "24")]
    assert (out / "plots" / "length-parity-6-16-cpu.png").is_file()
    assert "## Length generalisation" in (out / "report.md").read_text()
    html = rnnbench("report", "--db", db, "--format", "html", "--out", out)
    assert html.code == 0 and 'id="length-parity-6-16-cpu"' in (out / "report.html").read_text()


def test_text_samples_are_seeded_and_shown_side_by_side(rnnbench, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello world, how are you? I am well.\n" * 40)
    samples = []
    for attempt in range(2):
        db, out = tmp_path / f"r{attempt}.sqlite", tmp_path / f"out{attempt}"
        result = rnnbench("run", "--profile", "smoke", "--device", "cpu", "--cells", "lstm,gru", "--measure", "accuracy",
                          "--text", corpus, "--seq-len", "12", "--db", db, "--out", out)
        assert result.code == 0, result.err
        with sqlite3.connect(db) as conn:
            samples.append(conn.execute("select cell, metric, value, stats from results where measurement = 'sample'"
                                        " order by cell").fetchall())
    assert samples[0] == samples[1], "the same seed must give the same text"
    assert [(cell, metric, value) for cell, metric, value, _ in samples[0]] == [("gru", "sample_chars", 120),
                                                                             ("lstm", "sample_chars", 120)]
    assert '"prompt": "hello world, how are you?"' in samples[0][0][3]
    report = (out / "report.md").read_text()
    assert "## Text samples" in report and report.count("| hello world, how are you? |") == 2


CAPPED_PLUGIN = """
    from harness import hookimpl
    from harness.errors import UsageError
    from tasks.copy import CopyTask

    def capped(seq_len):
        if seq_len > 50:
            raise {error}(f"capped: T must be at most 50, got {{seq_len}}")
        return CopyTask(seq_len)

    @hookimpl
    def register_tasks(register):
        register("capped", capped)
"""


def _capped_run(rnnbench, write_plugin, tmp_path, error: str):
    """A plugin task refusing T > 50 with ``error``, trained at T = 20 and read at 2x and 4x."""
    path = write_plugin(f"capped_{error.lower()}", CAPPED_PLUGIN.format(error=error))
    db = tmp_path / "r.sqlite"
    result = rnnbench("run", "--plugin", path, "--profile", "smoke", "--device", "cpu", "--cells", "gru",
                      "--tasks", "capped", "--measure", "accuracy", "--seq-len", "20", "--steps", "5", "--seeds", "1",
                      "--eval-lengths", "2x,4x", "--db", db, "--out", tmp_path / "out")
    with sqlite3.connect(db) as conn:
        stored = conn.execute("select measurement, seq_len, metric, status, error from results"
                              " where metric in ('accuracy', 'length_accuracy') or status != 'ok'"
                              " order by measurement, seq_len").fetchall()
    return result, stored


@pytest.mark.parametrize("error", ["UsageError", "ValueError"])
def test_a_length_a_plugin_task_refuses_is_skipped_not_the_run(rnnbench, write_plugin, tmp_path, error):
    """The memory estimate and the evaluation agree (harness.lengths.task_at_length): T = 40 is read,
    T = 80 gets a skipped row, and the run is not refused over it."""
    result, stored = _capped_run(rnnbench, write_plugin, tmp_path, error)
    assert result.code == 0, result.err
    assert stored == [("accuracy", 20, "accuracy", "ok", None), ("length", 40, "length_accuracy", "ok", None),
                      ("length", 80, "length_accuracy", "skipped",
                       "capped cannot be built at T=80: capped: T must be at most 50, got 80")]


def test_a_plugin_task_failing_at_a_length_fails_its_item_not_the_estimate(rnnbench, write_plugin, tmp_path):
    """Any other exception from the factory does not stop the memory estimate: the item fails with it
    and the results it had are stored."""
    result, stored = _capped_run(rnnbench, write_plugin, tmp_path, "RuntimeError")
    assert result.code == 1 and "Traceback" not in result.err
    assert "failed: RuntimeError: capped: T must be at most 50, got 80" in result.err  # the progress line
    assert stored[0] == ("accuracy", 20, "accuracy", "ok", None)
    assert stored[-1][3:] == ("failed", "RuntimeError: capped: T must be at most 50, got 80")
