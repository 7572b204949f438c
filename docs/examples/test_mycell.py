"""A plugin's own tests: the conformance checks of `rnnbench check`, from pytest."""

from pathlib import Path

from harness.testing import assert_conforms, assert_equivalent, make_spec, run_checks

PLUGIN = Path(__file__).with_name("mycell.py")
SCAN_PLUGIN = Path(__file__).with_name("mycell_scan.py")


def test_mycell_conforms():
    assert_conforms("mycell", plugin_files=[PLUGIN])  # AssertionError listing each failed check


def test_mycell_scan_equals_its_step_form():
    # outputs, final state and every gradient, float64 at T = 200 and float32 at T = 4096
    assert_equivalent("mycell-scan", plugin_files=[SCAN_PLUGIN])


def test_a_draft_cell_can_be_checked_before_it_is_registered():
    from torch import nn

    results = run_checks(make_spec("draft", lambda i, h: nn.GRU(i, h)))
    assert not [r for r in results if r.status == "FAIL"]
