"""Task options from the command line (--task-option TASK.OPTION=VALUE, --text FILE): parsed by
the factory's signature, refused in one line, used to build every task of the run, recorded."""

import hashlib
import json
import math
import re
import sqlite3

import pytest

from harness.errors import UsageError
from harness.task_options import factory_options, parse_task_options, with_text_file


def test_options_are_converted_to_the_type_of_their_default(registry):
    parsed = parse_task_options(("associative-recall.num_pairs=4", "associative-recall.vocab_size=16",
                                 "selective-copy.n_recall=3", "text.text_path=/some/file.txt"), registry)
    assert parsed == {"associative-recall": {"num_pairs": 4, "vocab_size": 16}, "selective-copy": {"n_recall": 3},
                      "text": {"text_path": "/some/file.txt"}}
    assert isinstance(parsed["associative-recall"]["num_pairs"], int)


def test_a_factory_without_options_has_none(registry):
    assert factory_options(registry.task("temporal-order").factory) == {}
    assert factory_options(registry.task("parity").factory) == {"running": False}
    assert factory_options(registry.task("selective-copy").factory) == {"n_symbols": 8, "n_recall": 8}


def test_text_file_becomes_the_text_tasks_absolute_path(tmp_path, monkeypatch):
    (tmp_path / "corpus.txt").write_text("abc")
    monkeypatch.chdir(tmp_path)
    assert with_text_file({}, "corpus.txt") == {"text": {"text_path": str(tmp_path / "corpus.txt")}}
    with pytest.raises(UsageError, match="no such file"):
        with_text_file({}, "missing.txt")


BAD_OPTIONS = [
    (["--task-option", "num_pairs=4"], ["'num_pairs=4'", "TASK.OPTION=VALUE"]),
    (["--task-option", "nosuchtask.k=1"], ["'nosuchtask'", "associative-recall"]),
    (["--tasks", "temporal-order", "--task-option", "temporal-order.width=3"], ["'width'", "its options: none"]),
    (["--tasks", "parity", "--task-option", "parity.width=3"], ["'width'", "its options: running"]),
    (["--tasks", "parity", "--task-option", "parity.running=maybe"], ["running=maybe", "true or false"]),
    (["--tasks", "associative-recall", "--task-option", "associative-recall.num_pairs=two"], ["num_pairs=two", "int"]),
    (["--tasks", "associative-recall", "--task-option", "associative-recall.num_pairs=40"],
     ["num_pairs=40", "from 1 to vocab_size/2 - 1 = 31", "got 40"]),
    (["--tasks", "copy", "--task-option", "selective-copy.n_recall=2"], ["selective-copy", "not among the tasks"]),
    (["--text", "no-such-corpus.txt"], ["--text no-such-corpus.txt", "no such file"]),
    (["--eval-lengths", "2y"], ["'2y'", "2x, 4x", "(200)"]),
    (["--eval-lengths", "0x"], ["'0x'"]),
]


@pytest.mark.parametrize("args,shown", BAD_OPTIONS, ids=[" ".join(args) for args, _ in BAD_OPTIONS])
def test_a_bad_option_is_one_line_and_exit_2(rnnbench, tmp_path, args, shown):
    result = rnnbench("run", "--profile", "smoke", "--device", "cpu", "--cells", "lstm", "--db", tmp_path / "r.sqlite",
                      *args)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnbench: error:"), result.err
    for text in shown:
        assert text in lines[0]
    assert not (tmp_path / "r.sqlite").exists()


def _rows(db, sql):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_a_run_builds_its_task_with_the_options_and_records_them(rnnbench, tmp_path):
    db = tmp_path / "r.sqlite"
    result = rnnbench("run", "--profile", "smoke", "--device", "cpu", "--cells", "lstm", "--measure", "accuracy",
                      "--tasks", "associative-recall", "--seq-len", "12", "--db", db, "--out", tmp_path / "out",
                      "--task-option", "associative-recall.vocab_size=16", "--task-option",
                      "associative-recall.num_pairs=2")
    assert result.code == 0, result.err
    # V = 16: values are the upper half, 8 tokens, so the memoryless baseline is ln 8.
    (baseline,) = _rows(db, "select value from results where metric = 'baseline'")[0]
    assert baseline == pytest.approx(math.log(8))
    assert {size for (size,) in _rows(db, "select distinct input_size from results")} == {16}
    (environment,) = _rows(db, "select environment from runs")[0]
    recorded = json.loads(environment)["tasks"]["associative-recall"]
    assert recorded == {"given": {"vocab_size": 16, "num_pairs": 2}, "task": {"vocab_size": 16, "num_pairs": 2}}


def test_text_file_trains_the_text_task_on_it_and_records_size_and_hash(rnnbench, tmp_path):
    corpus = tmp_path / "mine.txt"
    text = "hello world, how are you? fine, and you?\n" * 60
    corpus.write_text(text, encoding="utf-8")
    db = tmp_path / "r.sqlite"
    result = rnnbench("run", "--profile", "smoke", "--device", "cpu", "--cells", "gru", "--measure", "accuracy",
                      "--text", corpus, "--seq-len", "16", "--db", db, "--out", tmp_path / "out")
    assert result.code == 0, result.err
    assert {task for (task,) in _rows(db, "select distinct task from results")} == {"text"}  # --text alone: the text task
    (environment,) = _rows(db, "select environment from runs")[0]
    recorded = json.loads(environment)["tasks"]["text"]["task"]
    assert recorded == {"corpus": "mine.txt", "corpus_chars": len(text),
                        "corpus_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    assert "mine.txt" in (tmp_path / "out" / "report.md").read_text()


def _option_table(stdout: str) -> dict[str, tuple[str, str]]:
    """``rnnbench tasks``' options table: {"TASK.OPTION": (default, meaning)}."""
    block = stdout.split("Task options, set with 'rnnbench run --task-option TASK.OPTION=VALUE'")[1]
    lines = block.strip().split("\n\n")[0].splitlines()[1:]  # the header line, then the rule
    starts = [match.start() for match in re.finditer(r"-+", lines[1])]  # the rule under each column
    table = {}
    for line in lines[2:]:
        option, default, meaning = (line[a:b].strip() for a, b in zip(starts, [*starts[1:], None]))
        table[option] = (default, meaning)
    return table


def test_tasks_lists_every_option_of_every_task_with_its_default_and_meaning(rnnbench, registry):
    """What `run --help` promises for --task-option: 'rnnbench tasks' lists each task's options."""
    result = rnnbench("tasks")
    assert result.code == 0 and result.err == ""
    table = _option_table(result.out)
    expected = {f"{t.name}.{name}" for t in registry.tasks.values() for name in factory_options(t.factory)}
    assert set(table) == expected and expected  # every option of every registered task, and only those
    assert table["associative-recall.num_pairs"][0] == "8" and table["associative-recall.vocab_size"][0] == "64"
    assert table["parity.running"][0] == "false" and table["text.text_path"][0] == "(none)"
    assert table["selective-copy.n_recall"][1].startswith("K, how many symbols")
    assert all(meaning and meaning != "(not described)" for _, meaning in table.values())  # built-ins describe each
    assert "(--text FILE sets text.text_path)" in result.out
    without = {t.name for t in registry.tasks.values() if not factory_options(t.factory)}
    assert f"No options: {', '.join(t for t in registry.tasks if t in without)}" in result.out


def test_a_plugin_task_lists_the_options_its_docstring_declares(rnnbench, write_plugin):
    """A function factory's :param lines, continued on the next line; an option without one says so."""
    path = write_plugin("described_task", '''
        from harness import hookimpl
        from tasks.copy import CopyTask

        def delayed(seq_len, *, gap=3, scale=0.5, label=None):
            """A copy task with options.

            :param gap: steps between the symbols,
                at least 1
            :param scale: input scale
            """
            return CopyTask(seq_len)

        @hookimpl
        def register_tasks(register):
            register("described", delayed)
    ''')
    table = _option_table(rnnbench("tasks", "--plugin", path).out)
    assert table["described.gap"] == ("3", "steps between the symbols, at least 1")
    assert table["described.scale"] == ("0.5", "input scale")
    assert table["described.label"] == ("(none)", "(not described)")


def test_option_meanings_come_from_the_class_and_its_own_init_not_a_base_class():
    from harness.task_options import declared_options, option_meanings
    from tasks.associative_recall import AssociativeRecallTask

    class Base:
        def __init__(self, seq_len, *, width=2):
            """:param width: the base's meaning"""

    class Child(Base):
        """A task.

        :param depth: how deep
        """

        def __init__(self, seq_len, *, width=2, depth=1):
            super().__init__(seq_len, width=width)

    assert option_meanings(Child) == {"depth": "how deep"}
    assert [(o.name, o.shown_default, o.meaning) for o in declared_options(Child)] == [
        ("width", "2", ""), ("depth", "1", "how deep")]
    assert set(option_meanings(AssociativeRecallTask)) == {"vocab_size", "num_pairs"}


def test_text_with_a_run_that_leaves_out_the_text_task_names_text_not_task_option(rnnbench, tmp_path):
    """The user typed --text: the error says --text, not --task-option."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello world, how are you? " * 20)
    result = rnnbench("run", "--profile", "smoke", "--device", "cpu", "--cells", "lstm", "--tasks", "copy",
                      "--text", corpus, "--db", tmp_path / "r.sqlite")
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.strip() == (f"rnnbench: error: --text {corpus} is for task 'text': not among the tasks of this run "
                                  "(copy); add it to --tasks")
    assert not (tmp_path / "r.sqlite").exists()
