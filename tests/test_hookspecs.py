"""Every hook is specified with a docstring, documented in docs/writing-cells.md, called by the
plugin manager, and has a test here named test_hook_<name> (a new hook without one fails)."""

import inspect
from pathlib import Path

import pytest

from harness import hookspecs
from harness.plugins import HOOK_NAMES, load_plugins

DOC = Path(__file__).resolve().parent.parent / "docs" / "writing-cells.md"
HOOKS = sorted(name for name, obj in vars(hookspecs).items() if hasattr(obj, f"{hookspecs.PROJECT}_spec"))


def test_hookspecs_are_found():
    assert HOOKS == ["register_cells", "register_reporters", "register_tasks"]


def test_the_plugin_manager_calls_every_hook():
    """load_plugins calls the hooks named in HOOK_NAMES: a spec missing there would never be called."""
    assert sorted(HOOK_NAMES) == HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring_that_says_what_register_takes(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook))
    assert doc, f"hookspec {hook} has no docstring"
    assert "register(" in doc and ":param register:" in doc, f"hookspec {hook}'s docstring does not describe register"
    assert list(inspect.signature(getattr(hookspecs, hook)).parameters) == ["register"]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    """docs/writing-cells.md has a '### `hook`' section in its hook reference."""
    assert f"### `{hook}`" in DOC.read_text(), f"{hook} has no section in {DOC.name}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    assert callable(globals().get(f"test_hook_{hook}")), f"add test_hook_{hook} to {Path(__file__).name}"


def test_hook_register_cells(write_plugin):
    """register(name, factory, backend=, form=, summary=, unroll=) makes a CellSpec with every field and the plugin."""
    path = write_plugin("cells_hook", """
        from torch import nn
        from harness import hookimpl
        from plugins.torch_steps import GRUStep

        @hookimpl
        def register_cells(register):
            register("hookgru", lambda i, h: nn.GRU(i, h), backend="torch", form="sequence", summary="a GRU",
                     unroll=GRUStep)
            register("hookstep", lambda i, h: nn.RNNCell(i, h), form="step")
            register("hookbad", lambda i, h: None, backend="jax")
            register("hookform", lambda i, h: None, form="scan")
            register("hooknotcallable", 42)
            register("all", lambda i, h: nn.GRU(i, h))
    """)
    registry = load_plugins([path], autoload=False)
    spec = registry.cell("hookgru")
    assert (spec.backend, spec.form, spec.summary, spec.plugin.name) == ("torch", "sequence", "a GRU", "cells_hook")
    assert spec.unroll is not None and spec.factory(2, 3).hidden_size == 3
    assert registry.cell("hookstep").form == "step"
    assert not {"hookbad", "hookform", "hooknotcallable", "all"} & set(registry.cells)
    errors = "\n".join(registry.errors)
    assert "'hookbad' has backend 'jax'; allowed: torch, numpy" in errors
    assert "'hookform' has form 'scan'; allowed: sequence, step" in errors
    assert "'hooknotcallable' factory or unroll is not callable" in errors
    assert "invalid cell name 'all'" in errors


def test_hook_register_tasks(write_plugin):
    """register(name, factory, summary=) makes a TaskSpec whose factory(seq_len) builds the task."""
    path = write_plugin("tasks_hook", """
        from harness import hookimpl
        from tasks.adding import AddingTask

        @hookimpl
        def register_tasks(register):
            register("adding2", AddingTask, summary="adding, again")
            register("notatask", "AddingTask")
    """)
    registry = load_plugins([path], autoload=False)
    spec = registry.task("adding2")
    assert (spec.summary, spec.plugin.name, spec.plugin.source) == ("adding, again", "tasks_hook", "file")
    assert spec.factory(12).length == 12
    assert "notatask" not in registry.tasks
    assert any("task 'notatask' factory is not callable" in e for e in registry.errors)


def test_hook_register_reporters(write_plugin, tmp_path):
    """register(name, render, suffix=, summary=) makes a ReporterSpec; `rnnbench plugins` lists what it registers."""
    path = write_plugin("reporters_hook", """
        from harness import hookimpl

        def render_text(results, out_dir):
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / "report.txt"
            path.write_text(f"{len(results)} rows")
            return path

        @hookimpl
        def register_reporters(register):
            register("text", render_text, suffix=".txt", summary="plain text")
    """)
    registry = load_plugins([path], autoload=False)
    spec = registry.reporter("text")
    assert (spec.suffix, spec.summary, spec.plugin.name) == (".txt", "plain text", "reporters_hook")
    written = spec.render([1, 2, 3], tmp_path / "out")
    assert written.read_text() == "3 rows"


def test_a_plugin_may_implement_several_hooks_and_take_fewer_arguments(write_plugin):
    """One module can implement all hooks; pluggy lets an implementation omit the register argument."""
    path = write_plugin("multi_hook", """
        from torch import nn
        from harness import hookimpl

        CALLED = []

        @hookimpl
        def register_cells(register):
            register("multicell", lambda i, h: nn.RNN(i, h))

        @hookimpl
        def register_tasks():
            CALLED.append("tasks")
    """)
    registry = load_plugins([path], autoload=False)
    assert registry.errors == []
    assert "multicell" in registry.cells
    assert [p.name for p in registry.plugins if p.source == "file"] == ["multi_hook"]
