"""docs/writing-cells.md and docs/writing-tasks.md cannot rot: their code blocks are the example
files, every example runs, and the commands they show parse."""

import ast
import importlib.util
import math
import re
import shlex
import sys
from pathlib import Path

import pytest
import torch

from harness.cells import build_cell
from harness.cli import cli
from harness.plugins import load_plugins
from harness.testing import CHECK_NAMES, run_checks

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "writing-cells.md"
DOCS = (DOC, REPO / "docs" / "writing-tasks.md")
EXAMPLES = REPO / "docs" / "examples"
INCLUDE = re.compile(r"<!-- include: (?P<path>\S+) -->\n```python\n(?P<code>.*?)```\n", re.S)
EXAMPLE_CELLS = {"mycell.py": "mycell", "mycell_sequence.py": "mycell-seq", "mycell_numpy.py": "mycell-numpy",
                 "mycell_scan.py": "mycell-scan"}


def included() -> dict[str, str]:
    return {m["path"]: m["code"] for doc in DOCS for m in INCLUDE.finditer(doc.read_text())}


def test_every_included_block_is_the_file_verbatim():
    """Each '<!-- include: PATH -->' is followed by a python block equal to PATH's text."""
    blocks = included()
    assert blocks
    for path, code in blocks.items():
        assert code == (REPO / path).read_text(), f"the block included from {path} differs from the file: copy the file in"


def test_every_example_file_is_shown_in_the_doc():
    assert sorted(included()) == sorted(f"docs/examples/{p.name}" for p in EXAMPLES.glob("*.py"))


@pytest.fixture(scope="module")
def example_registry():
    registry = load_plugins([EXAMPLES / name for name in (*EXAMPLE_CELLS, "mytask.py")], autoload=False)
    yield registry
    for stem in (*EXAMPLE_CELLS, "mytask.py"):
        sys.modules.pop(f"rnnbench_plugin_{Path(stem).stem}", None)


def test_examples_load_without_errors(example_registry):
    assert example_registry.errors == []
    assert set(EXAMPLE_CELLS.values()) <= set(example_registry.cells)
    assert example_registry.task("mytask").plugin.source == "file"


@pytest.mark.parametrize("cell", EXAMPLE_CELLS.values())
def test_example_cells_pass_every_check(example_registry, cell):
    failed = [r.line() for r in run_checks(cell, registry=example_registry) if r.status == "FAIL"]
    assert not failed


def test_the_three_forms_of_the_example_compute_the_same_cell(example_registry):
    """Built under one seed, mycell (step), mycell-seq (sequence), mycell-numpy and the built-in mingru agree."""
    x = torch.randn(6, 3, 4, dtype=torch.float64)
    outputs = {}
    for name in (*EXAMPLE_CELLS.values(), "mingru"):
        torch.manual_seed(0)
        spec = example_registry.cell(name)
        with torch.no_grad():
            outputs[name] = build_cell(spec, 4, 5).double()(x, None)[0]
    for name, y in outputs.items():
        torch.testing.assert_close(y, outputs["mycell"], msg=lambda m: f"{name} differs from mycell: {m}")


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(f"docs_example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _class_source(path: Path, name: str) -> str:
    text = path.read_text()
    node = next(n for n in ast.parse(text).body if isinstance(n, ast.ClassDef) and n.name == name)
    return ast.get_source_segment(text, node)


def test_builtin_mingru_is_the_tutorial_cell():
    """plugins/mingru.py's class is docs/examples/mycell.py's, line for line."""
    assert _class_source(REPO / "plugins" / "mingru.py", "MinGRU") == _class_source(EXAMPLES / "mycell.py", "MinGRU")


def test_the_docs_pytest_example_passes():
    """docs/examples/test_mycell.py, the plugin-author test the doc shows, passes."""
    module = _module(EXAMPLES / "test_mycell.py")
    tests = [getattr(module, name) for name in dir(module) if name.startswith("test_")]
    assert len(tests) == 3
    try:
        for test in tests:
            test()
    finally:
        sys.modules.pop("rnnbench_plugin_mycell", None)
        sys.modules.pop("rnnbench_plugin_mycell_scan", None)


def test_the_scan_example_has_two_implementations_and_a_wrong_scan_fails(example_registry):
    """mycell-scan registers scan and step, the step the reference; the same file with the scan's
    gate and candidate swapped fails assert_equivalent."""
    spec = example_registry.cell("mycell-scan")
    assert spec.impls.names == ("scan", "step") and spec.reference_impl == "step"
    from harness.testing import assert_equivalent, make_spec

    module = _module(EXAMPLES / "mycell_scan.py")

    class Swapped(module.MinGRUScan):
        def forward(self, x, state=None):
            candidate, gate = self.linear(x).chunk(2, dim=-1)
            h = module.linear_scan(torch.sigmoid(-gate), torch.sigmoid(gate) * candidate, state)
            return h, h[-1]

    broken = make_spec("broken", Swapped, impl="scan", alternatives={"step": module.MinGRUStep}, reference="step")
    with pytest.raises(AssertionError, match="scan vs step in float64"):
        assert_equivalent(broken)


def test_the_tutorial_command_puts_mycell_in_all_three_tables_beside_lstm_and_gru(rnnbench, tmp_path):
    """`rnnbench run --plugin mycell.py --cells mycell,lstm,gru` (smoke profile): mycell has rows in the
    speed, accuracy and gradient-decay tables."""
    result = rnnbench("run", "--plugin", EXAMPLES / "mycell.py", "--cells", "mycell,lstm,gru", "--profile", "smoke",
                      "--device", "cpu", "--tasks", "adding", "--db", tmp_path / "r.sqlite", "--out", tmp_path / "out")
    sys.modules.pop("rnnbench_plugin_mycell", None)
    assert result.code == 0, result.err
    sections = [block for block in result.out.split("\n\n") if block.strip()]
    titles = {"Speed": None, "Accuracy": None, "Gradient decay": None}
    for block in sections:
        lines = block.strip().splitlines()
        for title in titles:
            if lines[0].startswith(title):
                titles[title] = [line.split()[0] for line in lines[3:]]
    for title, cells in titles.items():
        assert cells is not None, f"no {title} table"
        assert {"mycell", "lstm", "gru"} <= set(cells), (title, cells)


def test_the_custom_task_runs_through_rnnbench_run(rnnbench, tmp_path):
    """`rnnbench run --plugin mytask.py --tasks mytask`: accuracy and gradient rows for mytask, against its baseline 1/3."""
    from harness.store import ResultStore

    db = tmp_path / "r.sqlite"
    result = rnnbench("run", "--plugin", EXAMPLES / "mytask.py", "--tasks", "mytask", "--cells", "lstm,gru",
                      "--measure", "accuracy,gradients", "--profile", "smoke", "--device", "cpu", "--db", db,
                      "--out", tmp_path / "out")
    sys.modules.pop("rnnbench_plugin_mytask", None)
    assert result.code == 0, result.err
    with ResultStore(db) as store:
        rows = store.rows(store.resolve_run("latest"))
    assert {r["task"] for r in rows} == {"mytask"}
    assert {r["cell"] for r in rows} == {"lstm", "gru"}
    baselines = {r["value"] for r in rows if r["metric"] == "baseline"}
    assert len(baselines) == 1 and baselines.pop() == pytest.approx(1 / 3)
    assert all(r["status"] == "ok" for r in rows)


def _doc_commands() -> list[list[str]]:
    commands = []
    for block in (b for doc in DOCS for b in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S)):
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("rnnbench "):
                commands.append(shlex.split(line)[1:])
    return commands


@pytest.mark.parametrize("argv", _doc_commands(), ids=lambda argv: " ".join(argv)[:60])
def test_every_command_in_the_doc_parses(argv):
    """Each `rnnbench ...` line of the doc names a real command whose options and arguments parse."""
    name, *args = argv
    command = cli.get_command(None, name)
    assert command is not None, f"no command {name!r}"
    command.make_context(name, list(args))


def test_the_docs_task_tests_pass():
    """docs/examples/test_myecho.py, the task-author tests writing-tasks.md shows, pass."""
    module = _module(EXAMPLES / "test_myecho.py")
    tests = [getattr(module, name) for name in dir(module) if name.startswith("test_")]
    assert len(tests) == 3
    try:
        for test in tests:
            test()
    finally:
        sys.modules.pop("rnnbench_plugin_myecho", None)


def test_the_token_task_example_runs_through_rnnbench_run(rnnbench, tmp_path):
    """`rnnbench run --plugin myecho.py --tasks myecho`: ok rows for both cells, against its baseline ln 4."""
    from harness.store import ResultStore

    db = tmp_path / "r.sqlite"
    result = rnnbench("run", "--plugin", EXAMPLES / "myecho.py", "--tasks", "myecho", "--cells", "lstm,gru",
                      "--measure", "accuracy,gradients", "--profile", "smoke", "--device", "cpu", "--db", db,
                      "--out", tmp_path / "out")
    sys.modules.pop("rnnbench_plugin_myecho", None)
    assert result.code == 0, result.err
    with ResultStore(db) as store:
        rows = store.rows(store.resolve_run("latest"))
    assert {(r["task"], r["cell"]) for r in rows} == {("myecho", "lstm"), ("myecho", "gru")}
    baselines = {r["value"] for r in rows if r["metric"] == "baseline"}
    assert len(baselines) == 1 and baselines.pop() == pytest.approx(math.log(4))
    assert all(r["status"] == "ok" for r in rows)


def test_the_doc_describes_every_check():
    text = DOC.read_text()
    for name in CHECK_NAMES:
        assert f"| `{name}` |" in text, f"check {name!r} is missing from the checks table"
