"""Broken plugins get clear, named errors and never take the others down (what tests/test_plugins.py
and tests/test_failures.py do not already cover): installed plugins, duplicates between two
files, and cells that break the contract at run time, caught before timing."""

import sys
import textwrap

import pytest

import harness.runner as runner
from harness.plugins import load_plugins
from harness.store import ResultStore

BUILTIN_CELLS = set(load_plugins(autoload=False).cells)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path where ``install(dist, entry_points, modules)`` fakes an installed
    distribution: its modules and a ``.dist-info`` with METADATA and entry_points.txt."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    imported = []

    def install(dist: str, entry_points: dict[str, str], modules: dict[str, str], version: str = "1.2.3"):
        for module, source in modules.items():
            (folder / f"{module}.py").write_text(textwrap.dedent(source))
            imported.append(module)
        info = folder / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[rnnbench]\n{lines}")

    yield install
    for module in imported:
        sys.modules.pop(module, None)


GOOD_CELL = """
    from torch import nn
    from harness import hookimpl

    @hookimpl
    def register_cells(register):
        register("installedcell", lambda i, h: nn.GRU(i, h), summary="from an installed package")
"""


def test_installed_plugin_is_attributed_to_its_distribution(site):
    """A cell from the entry-point group records the distribution's name and version."""
    site("rnnbench-installed", {"installed": "installed_cell"}, {"installed_cell": GOOD_CELL})
    registry = load_plugins(autoload=True)
    assert registry.errors == []
    info = registry.cell("installedcell").plugin
    assert (info.name, info.source, info.distribution, info.version) == ("installed", "entry-point", "rnnbench-installed", "1.2.3")
    assert "installedcell" not in load_plugins(autoload=False).cells  # the switch keeps installed plugins out


def test_installed_plugin_that_fails_to_import_is_named_with_its_distribution(site):
    """An entry point whose module raises is one error naming the entry point, distribution, version and
    exception; the other installed plugin and every built-in still load."""
    site("rnnbench-broken", {"broken": "broken_cell"}, {"broken_cell": "import numpyy\n"}, version="0.0.1")
    site("rnnbench-installed", {"installed": "installed_cell"}, {"installed_cell": GOOD_CELL})
    registry = load_plugins(autoload=True)
    assert registry.errors == [
        "plugin 'broken' (rnnbench-broken 0.0.1) failed to import: ModuleNotFoundError: No module named 'numpyy'"
    ]
    assert "installedcell" in registry.cells
    assert BUILTIN_CELLS < set(registry.cells)


def test_installed_plugin_with_a_misspelt_hook_is_named(site):
    site("rnnbench-typo", {"typo": "typo_cell"}, {"typo_cell": """
        from harness import hookimpl

        @hookimpl
        def register_cell(register):
            raise AssertionError("never called")
    """})
    registry = load_plugins(autoload=True)
    assert registry.errors == ["plugin 'typo' (rnnbench-typo 1.2.3): unknown hook 'register_cell' (did you mean "
                               "register_cells?); known hooks: register_cells, register_tasks, register_reporters"]


def test_a_misspelt_hook_in_a_plugin_file_names_the_file_not_a_module_repr(write_plugin):
    path = write_plugin("misspelt", """
        import torch
        from harness import hookimpl

        @hookimpl
        def register_cell(register):
            register("ms", torch.nn.GRU)
    """)
    registry = load_plugins([path], autoload=False)
    assert registry.errors == [f"plugin 'misspelt' ({path.resolve()}): unknown hook 'register_cell' (did you mean "
                               "register_cells?); known hooks: register_cells, register_tasks, register_reporters"]


CELL_CALL = ("register(name, factory, *, backend, form, summary, impl, alternatives, reference, defaults, unroll)")


def test_a_register_call_with_a_misspelt_keyword_names_the_file_and_lists_what_register_takes(write_plugin):
    """Not '_registrar.<locals>.register_cell() got an unexpected keyword argument': the plugin's file,
    the closest keyword, every argument register takes; the bad call is skipped, the good ones kept."""
    path = write_plugin("badarg", """
        import torch
        from harness import hookimpl

        @hookimpl
        def register_cells(register):
            register("ba", torch.nn.GRU, fomr="step")
            register("short")
            register("kept", torch.nn.GRU)

        @hookimpl
        def register_reporters(register):
            register("rep", print)
    """)
    registry = load_plugins([path], autoload=False)
    where = f"plugin 'badarg' ({path.resolve()})"
    assert registry.errors == [
        f"{where}: register('ba', ...) in register_cells: got an unexpected keyword argument 'fomr' (did you mean "
        f"form?); it takes {CELL_CALL}; 'ba' is not registered",
        f"{where}: register('short', ...) in register_cells: missing a required argument: 'factory'; it takes "
        f"{CELL_CALL}; 'short' is not registered",
        f"{where}: register('rep', ...) in register_reporters: missing a required argument: 'suffix'; it takes "
        "register(name, render, *, suffix (required), summary); 'rep' is not registered",
    ]
    assert "kept" in registry.cells and "ba" not in registry.cells


def test_a_hook_with_arguments_rnnbench_does_not_give_is_one_line(write_plugin):
    path = write_plugin("badhookarg", """
        from harness import hookimpl

        @hookimpl
        def register_cells(reg):
            raise AssertionError("never called")
    """)
    registry = load_plugins([path], autoload=False)
    assert registry.errors == [f"plugin 'badhookarg' ({path.resolve()}): register_cells takes 'reg', which rnnbench "
                               "does not give; write register_cells(register)"]


def test_hook_function_without_hookimpl_is_reported_not_ignored(write_plugin):
    """Forgetting @hookimpl would leave the cell silently unregistered: it is an error naming the plugin."""
    path = write_plugin("unmarked", """
        from torch import nn

        def register_cells(register):
            register("unmarkedcell", lambda i, h: nn.GRU(i, h))
    """)
    registry = load_plugins([path], autoload=False)
    assert registry.errors == ["plugin 'unmarked': register_cells is not marked with @hookimpl "
                               "(from harness import hookimpl), so it is never called"]
    assert "unmarkedcell" not in registry.cells


def test_duplicate_between_two_plugin_files_names_both_files(write_plugin):
    """The second file's "twin" is ignored with an error naming both files; the first one's stays."""
    source = """
        from torch import nn
        from harness import hookimpl

        @hookimpl
        def register_cells(register):
            register("twin", lambda i, h: nn.{module}(i, h), summary="{module}")
    """
    first = write_plugin("first_twin", source.replace("{module}", "GRU"))
    second = write_plugin("second_twin", source.replace("{module}", "LSTM"))
    registry = load_plugins([first, second], autoload=False)
    assert registry.errors == [
        f"duplicate cell name 'twin': registered by first_twin (file:{first.resolve()}) and by second_twin "
        f"(file:{second.resolve()}); the second is ignored"
    ]
    assert registry.cell("twin").summary == "GRU"


def test_duplicate_task_name_is_reported_too(write_plugin):
    path = write_plugin("dup_task", """
        from harness import hookimpl
        from tasks.copy import CopyTask

        @hookimpl
        def register_tasks(register):
            register("copy", CopyTask, summary="impostor")
    """)
    registry = load_plugins([path], autoload=False)
    assert registry.errors == [
        f"duplicate task name 'copy': registered by copy (rnnbench {registry.task('copy').plugin.version}) and by "
        f"dup_task (file:{path.resolve()}); the second is ignored"
    ]
    assert registry.task("copy").summary != "impostor"


def test_a_hook_that_raises_is_named_and_its_earlier_registrations_kept(write_plugin):
    path = write_plugin("half_plugin", """
        from torch import nn
        from harness import hookimpl

        @hookimpl
        def register_cells(register):
            register("firsthalf", lambda i, h: nn.GRU(i, h))
            raise KeyError("config")
    """)
    registry = load_plugins([path], autoload=False)
    assert registry.errors == ["plugin 'half_plugin' failed in register_cells: KeyError: 'config'"]
    assert "firsthalf" in registry.cells


CONTRACT_BREAKERS = """
    import torch
    from torch import nn

    from harness import hookimpl


    class WrongSize(nn.Module):
        '''Outputs H + 1 features.'''

        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.rnn = nn.RNN(input_size, hidden_size + 1)

        def forward(self, x, state=None):
            return self.rnn(x, state)


    class ShapeShifter(nn.Module):
        '''Returns h from a fresh start but (h, c) once fed a state.'''

        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.rnn = nn.LSTM(input_size, hidden_size)

        def forward(self, x, state=None):
            y, (h, c) = self.rnn(x, None if state is None else (state, torch.zeros_like(state)))
            return y, (h if state is None else (h, c))


    class DictState(nn.Module):
        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.rnn = nn.RNN(input_size, hidden_size)

        def forward(self, x, state=None):
            y, h = self.rnn(x, None if state is None else state["h"])
            return y, {"h": h}


    @hookimpl
    def register_cells(register):
        register("wrongsize", WrongSize)
        register("shapeshifter", ShapeShifter)
        register("dictstate", DictState)
"""


def test_contract_breakers_fail_before_timing_with_expected_and_actual_shapes(rnnbench, write_plugin, tmp_path, monkeypatch):
    """Wrong output size, a state whose structure changes and a dict state are failed speed rows with
    clear messages; the timer never runs for them; lstm is measured; exit code 1."""
    timed = []
    real_measure = runner.measure_speed

    def spy(cell, *args, **kwargs):
        timed.append(type(cell).__name__)
        return real_measure(cell, *args, **kwargs)

    monkeypatch.setattr(runner, "measure_speed", spy)
    plugin = write_plugin("contract_breakers", CONTRACT_BREAKERS)
    db = tmp_path / "results.sqlite"
    result = rnnbench("run", "--plugin", plugin, "--cells", "wrongsize,shapeshifter,dictstate,lstm", "--measure", "speed",
                      "--impl", "fused,module", "--profile", "smoke", "--device", "cpu", "--db", db, "--out", tmp_path / "out")
    assert result.code == 1
    assert "Traceback" not in result.err
    with ResultStore(db) as store:
        rows = store.rows(store.resolve_run("latest"))
    errors = {r["cell"]: r["error"] for r in rows if r["status"] == "failed"}
    assert set(errors) == {"wrongsize", "shapeshifter", "dictstate"}
    assert errors["wrongsize"].startswith("CellContractError: cell 'wrongsize': output has shape (3, 2, 17), "
                                          "expected (T, B, H) = (3, 2, 16) (registered with form='sequence'")
    assert errors["shapeshifter"].startswith("CellContractError: cell 'shapeshifter': the state changed structure when "
                                             "fed back: (1, 2, 16) -> ((1, 2, 16), (1, 2, 16))")
    assert errors["dictstate"] == ("CellContractError: cell 'dictstate': state is a dict; a state is a tensor or a "
                                   "tuple of tensors, e.g. (h, c)")
    assert timed == ["LSTM"]  # only lstm reached the timer
    assert {r["cell"] for r in rows if r["status"] == "ok"} == {"lstm"}
