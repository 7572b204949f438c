"""The README's examples run as written: the ten-line cell plugin and the load_results snippet."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

import harness
from harness.testing import run_checks
from harness.plugins import load_plugins

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_cell_example_is_a_working_plugin(tmp_path):
    """The 'Writing a cell' example loads as a plugin file and passes every conformance check."""
    block = next(b for b in _python_blocks() if "register_cells" in b)
    assert len(block.strip().splitlines()) <= 15
    path = tmp_path / "elman.py"
    path.write_text(block)
    registry = load_plugins([path], autoload=False)
    assert not registry.errors
    results = run_checks(registry.cell("elman"))
    failed = [r for r in results if r.status == "FAIL"]
    assert not failed, failed


def test_readme_load_results_snippet_runs(rnnbench, tmp_path, monkeypatch):
    """The load_results lines give the forward+backward medians per cell and implementation."""
    monkeypatch.chdir(tmp_path)
    assert rnnbench("run", "--cells", "lstm,numpy-rnn", "--measure", "speed", "--profile", "smoke", "--device", "cpu").code == 0
    block = next(b for b in _python_blocks() if "load_results" in b)
    namespace: dict = {}
    exec(block.replace("rows[rows.metric", "medians = rows[rows.metric"), namespace)
    medians = namespace["medians"]
    assert isinstance(namespace["rows"], pd.DataFrame)
    assert set(medians.index) == {("lstm", "fused"), ("lstm", "unrolled"), ("numpy-rnn", "numpy")}
    assert (medians > 0).all()
    assert harness.load_results is not None
