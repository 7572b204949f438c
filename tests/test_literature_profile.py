"""The `literature` profile (issue 14): the sizes and budgets docs/reproduction.md states are the ones
the profile holds, the command the doc shows plans the run the doc describes, and the baselines the
doc quotes are the tasks' analytic ones at the profile's lengths."""

import math
import re
import shlex
from pathlib import Path

import pytest

from harness.cli import cli
from harness.profiles import PROFILES
from harness.runner import TrainItem, plan
from harness.settings import build_config
from tasks.adding import AddingTask
from tasks.copy import CopyTask

DOC = Path(__file__).resolve().parent.parent / "docs" / "reproduction.md"
LITERATURE = PROFILES["literature"]
PAPERS_CELLS = ("gru", "lstm", "torch-rnn", "exprnn")


def _doc_settings() -> dict[str, str]:
    """The rows of the doc's settings table: `| setting | value | why |` after the heading naming the profile."""
    section = DOC.read_text().split("## 2. The `literature` profile", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|", section, re.M)
    return {key: value for key, value in rows if key not in ("setting",) and not set(key) <= set("-")}


def _doc_command() -> list[str]:
    """The `rnnbench run --profile literature ...` line of the doc's first bash block."""
    for block in re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S):
        for line in block.splitlines():
            if line.startswith("rnnbench run --profile literature"):
                return shlex.split(line)[1:]
    raise AssertionError("docs/reproduction.md shows no `rnnbench run --profile literature` command")


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("×10^", "e"))


def test_the_profile_holds_the_settings_the_doc_states():
    settings = _doc_settings()
    assert LITERATURE.task_seq_lens == {"copy": (int(settings["copy T"]),), "adding": (int(settings["adding T"]),)}
    assert LITERATURE.hidden_sizes == (int(settings["hidden size H"]),)
    assert LITERATURE.seeds == int(settings["seeds"])
    recipe = LITERATURE.recipe
    assert settings["optimiser"].lower().startswith(recipe.optimizer) and LITERATURE.lrs == ()
    assert recipe.lr == _number(settings["learning rate"])
    assert recipe.batch_size == int(settings["batch size"])
    assert recipe.steps == _number(settings["adding steps"])
    assert LITERATURE.task_steps == {"copy": _number(settings["copy steps"])}
    assert recipe.clip_norm == _number(settings["gradient-norm clip"])
    assert (recipe.eval_every, recipe.eval_size) == tuple(int(n) for n in re.findall(r"\d+", settings["validation"]))


def test_the_docs_command_plans_four_cells_on_both_tasks_with_three_seeds(registry):
    """The doc's command parses, names the papers' cells, and plans 4 cells x 2 tasks x 3 seeds = 24 trainings."""
    argv = _doc_command()
    context = cli.get_command(None, "run").make_context("run", argv[1:])
    params = context.params
    assert params["profile_name"] == "literature" and tuple(params["cells"]) == PAPERS_CELLS
    assert tuple(params["measures"]) == ("accuracy",) and params["workers"] == "2"
    config = build_config(registry, cells=params["cells"], tasks=params["tasks"], devices=("cpu",),
                          measures=params["measures"], profile_name="literature")
    items = [item for item in plan(config, registry) if isinstance(item, TrainItem)]
    assert sorted({(i.cell.name, i.task.name, i.seq_len) for i in items}) == sorted(
        (cell, task, length) for cell in PAPERS_CELLS for task, length in (("copy", 100), ("adding", 200)))
    assert sorted({i.seed for i in items}) == [0, 1, 2] and len(items) == 24


def test_run_help_names_the_profile(rnnbench):
    result = rnnbench("run", "--help")
    assert result.code == 0 and "literature (published outcomes at CPU sizes" in " ".join(result.out.split())


@pytest.mark.parametrize("task, expected", [
    # Adding: always predicting 1, the mean of the sum of two U(0,1) values, leaves its variance 2 * 1/12.
    ("adding", 1 / 6),
    # Copy at delay T: 10 symbols out of 8 recalled at chance, blanks predicted exactly, over T + 20 steps.
    ("copy", 10 * math.log(8) / (100 + 20)),
])
def test_the_baselines_the_doc_quotes_are_the_tasks_own(task, expected):
    built = {"adding": AddingTask, "copy": CopyTask}[task](LITERATURE.seq_lens_for(task)[0])
    assert built.baseline == pytest.approx(expected)
