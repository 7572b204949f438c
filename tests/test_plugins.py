"""The plugin manager: file plugins register like built-ins; broken plugins are reported, not fatal."""

import pytest
import torch

from harness.cells import Unrolled, build_cell
from harness.errors import UnknownCellError, UsageError
from harness.plugins import load_plugins

BUILTIN_CELLS = set(load_plugins().cells)  # conftest has switched entry-point autoload off
BUILTIN_TASKS = set(load_plugins().tasks)

STEP_CELL_PLUGIN = """
    from torch import nn

    from harness import hookimpl


    class TinyStep(nn.Module):
        '''One nn.RNNCell step: (x_t, h) -> (h_t, h_t).'''

        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.step = nn.RNNCell(input_size, hidden_size)

        def forward(self, x_t, state):
            h = self.step(x_t, state)
            return h, h


    @hookimpl
    def register_cells(register):
        register("tinystep", TinyStep, backend="torch", form="step", summary="an RNNCell the harness unrolls")
"""


def test_builtin_plugins_load_cleanly(registry):
    """Without plugin files the registry holds the built-in cells, tasks and markdown report, with no errors."""
    assert registry.errors == []
    assert {"numpy-rnn", "torch-rnn", "lstm", "gru"} <= set(registry.cells)
    assert {"copy", "adding"} <= set(registry.tasks)
    assert "markdown" in registry.reporters
    assert {c.plugin.source for c in registry.cells.values()} == {"builtin"}
    assert registry.cell("numpy-rnn").backend == "numpy"


def test_plugin_file_registers_a_cell_with_source_file(write_plugin):
    """A cell from --plugin path.py appears in registry.cells, attributed to that file, beside the built-ins."""
    path = write_plugin("tinystep_plugin", STEP_CELL_PLUGIN)
    registry = load_plugins(plugin_files=[path])
    assert registry.errors == []
    spec = registry.cell("tinystep")
    assert spec.plugin.source == "file"
    assert spec.plugin.name == "tinystep_plugin"
    assert str(path.resolve()) in spec.plugin.distribution
    assert spec.form == "step"
    assert BUILTIN_CELLS < set(registry.cells)
    assert [c.name for c in registry.select_cells("all")][-1] == "tinystep"  # "all" includes third-party cells


def test_step_form_cell_is_unrolled_over_the_sequence(write_plugin):
    """A step-form cell is wrapped so that cell(x, None) equals calling the step on each x_t in turn."""
    registry = load_plugins(plugin_files=[write_plugin("tinystep_plugin", STEP_CELL_PLUGIN)])
    torch.manual_seed(0)
    cell = build_cell(registry.cell("tinystep"), 3, 4)
    assert isinstance(cell, Unrolled)
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        y, state = cell(x, None)
        h = None
        for t in range(5):
            h, _ = cell.step(x[t], h)
            torch.testing.assert_close(y[t], h)
    torch.testing.assert_close(state, y[-1])


def test_plugin_file_that_fails_to_import_is_reported_and_builtins_still_load(write_plugin):
    """A plugin raising on import gives one error naming its file and the exception; the others still load."""
    path = write_plugin("broken_plugin", "raise RuntimeError('plugin exploded on import')\n")
    registry = load_plugins(plugin_files=[path])
    assert len(registry.errors) == 1
    assert str(path) in registry.errors[0]
    assert "RuntimeError: plugin exploded on import" in registry.errors[0]
    assert set(registry.cells) == BUILTIN_CELLS
    assert set(registry.tasks) == BUILTIN_TASKS


@pytest.mark.parametrize(
    "hook,named",
    [("def register_cell(register):", "'register_cell'"), ("def register_cells(reg):", "'reg'")],
    ids=["misspelt-hook-name", "misspelt-argument"],
)
def test_misspelt_hook_is_reported(write_plugin, hook, named):
    """A hook implementation that matches no spec is an error naming the plugin, and registers nothing."""
    source = f"""
        from harness import hookimpl
        from plugins.gru import build

        @hookimpl
        {hook}
            raise AssertionError("a misspelt hook must never be called")
    """
    registry = load_plugins(plugin_files=[write_plugin("typo_plugin", source)])
    assert len(registry.errors) == 1
    assert "typo_plugin" in registry.errors[0]
    assert named in registry.errors[0]
    assert set(registry.cells) == BUILTIN_CELLS


def test_duplicate_cell_name_is_an_error_naming_both_plugins(write_plugin):
    """A file registering "lstm" again is reported naming the built-in and the file; the built-in lstm stays."""
    source = """
        from torch import nn
        from harness import hookimpl

        @hookimpl
        def register_cells(register):
            register("lstm", lambda i, h: nn.GRU(i, h), summary="an impostor")
            register("mylstm", lambda i, h: nn.LSTM(i, h))
    """
    registry = load_plugins(plugin_files=[write_plugin("dup_plugin", source)])
    assert len(registry.errors) == 1
    error = registry.errors[0]
    assert "duplicate cell name 'lstm'" in error
    assert "rnnbench" in error and "dup_plugin" in error
    assert registry.cell("lstm").plugin.source == "builtin"
    assert registry.cell("lstm").summary != "an impostor"
    assert registry.cell("mylstm").plugin.source == "file"  # the rest of the plugin still registers


def test_missing_plugin_file_is_a_usage_error(tmp_path):
    """--plugin naming a file that does not exist is a usage error that shows the path."""
    missing = tmp_path / "nowhere.py"
    with pytest.raises(UsageError, match="nowhere.py"):
        load_plugins(plugin_files=[missing])


def test_unknown_cell_lists_the_available_ones(registry):
    """Asking for an unregistered cell raises UnknownCellError listing every registered cell."""
    with pytest.raises(UnknownCellError) as info:
        registry.select_cells("lstm,nope")
    assert info.value.exit_code == 2
    assert "'nope'" in str(info.value)
    for name in BUILTIN_CELLS:
        assert name in str(info.value)
