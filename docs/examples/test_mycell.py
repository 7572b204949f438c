"""A plugin's own tests: the conformance checks of `rnnbench check`, from pytest."""

from pathlib import Path

from harness.testing import assert_conforms, make_spec, run_checks

PLUGIN = Path(__file__).with_name("mycell.py")


def test_mycell_conforms():
    assert_conforms("mycell", plugin_files=[PLUGIN])  # AssertionError listing each failed check


def test_a_draft_cell_can_be_checked_before_it_is_registered():
    from torch import nn

    results = run_checks(make_spec("draft", lambda i, h: nn.GRU(i, h)))
    assert not [r for r in results if r.status == "FAIL"]
