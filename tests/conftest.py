"""Shared fixtures. Installed third-party plugins are kept out so they cannot change results.

Every test that takes a ``cell_name`` or ``task_name`` argument runs once per registered
cell or task, so a new built-in plugin is covered by the same suite without new tests.
"""

import os

# Before anything loads plugins: the entry-point group is skipped for the whole session
# (subprocesses inherit it too).
os.environ["RNNBENCH_DISABLE_PLUGIN_AUTOLOAD"] = "1"
# Runs measure in the test process (--workers 1), so tests can monkeypatch the measurement
# code; tests/test_parallel_runs.py and tests/test_executors.py cover worker processes.
os.environ["RNNBENCH_WORKERS"] = "1"

import sys
import textwrap
from dataclasses import dataclass

import pytest

from harness.cli import main
from harness.plugins import load_plugins

_REGISTRY = load_plugins()
CELL_NAMES = list(_REGISTRY.cells)
TASK_NAMES = list(_REGISTRY.tasks)


def pytest_generate_tests(metafunc):
    if "cell_name" in metafunc.fixturenames:
        metafunc.parametrize("cell_name", CELL_NAMES)
    if "task_name" in metafunc.fixturenames:
        metafunc.parametrize("task_name", TASK_NAMES)


@pytest.fixture
def registry():
    """A freshly loaded registry of the built-in plugins (no entry points, no files)."""
    return load_plugins()


@pytest.fixture
def write_plugin(tmp_path):
    """Write a plugin file into tmp_path: ``write_plugin("name", source) -> path``.

    The modules the plugin manager imports from these files are dropped afterwards.
    """
    written = []

    def write(stem: str, source: str):
        path = tmp_path / f"{stem}.py"
        path.write_text(textwrap.dedent(source))
        written.append(stem)
        return path

    yield write
    for stem in written:
        sys.modules.pop(f"rnnbench_plugin_{stem}", None)


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def rnnbench(capsys):
    """Run the CLI in-process as a user types it: ``rnnbench("run", "--cells", "lstm")``."""

    def run(*argv) -> CliResult:
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


@pytest.fixture
def run_config():
    """A :class:`harness.config.RunConfig` of the smoke profile's sizes for tests that store runs by
    hand: ``run_config(cells=("lstm", "gru"))`` overrides any field."""
    from dataclasses import replace

    from harness.config import RunConfig
    from harness.profiles import PROFILES

    smoke = PROFILES["smoke"]
    base = RunConfig(cells=("lstm",), tasks=("copy",), devices=("cpu",), measures=("speed",), seeds=(0,),
                     task_seq_lens={"copy": smoke.seq_lens_for("copy")}, hidden_sizes=smoke.hidden_sizes,
                     recipe=smoke.recipe, speed_batch_sizes=smoke.speed_batch_sizes, speed_seq_lens=smoke.speed_seq_lens,
                     speed_hidden_sizes=smoke.speed_hidden_sizes, speed_input_size=smoke.speed_input_size,
                     timing=smoke.timing, profile=smoke.name)
    return lambda **overrides: replace(base, **overrides)
