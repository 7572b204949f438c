"""The CPU-side logic of the issue-12 benchmarks (benchmarks/scan_forms.py, cpu_ratios.py, gpu_ratios.py).

The timings themselves are the benchmarks' business; here: the two forms have the same parameters and
compute the same thing, rounds are paired and interleaved, the crossover is read correctly,
the CPU script prints PASS/FAIL lines, and the GPU script skips cleanly without CUDA.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import cpu_ratios  # noqa: E402
import gpu_ratios  # noqa: E402
import scan_forms  # noqa: E402
from harness.plugins import load_plugins  # noqa: E402

REGISTRY = load_plugins(autoload=False)


@pytest.mark.parametrize("name", list(scan_forms.CPU_TARGETS))
def test_forms_have_equal_parameters_and_agree(name):
    forms = scan_forms.build_forms(REGISTRY, name, "cpu", inputs=3, hidden=8)
    fast_params, step_params = list(forms["fast"].parameters()), list(forms["step"].parameters())
    assert len(fast_params) == len(step_params)
    assert all(torch.equal(a, b) for a, b in zip(fast_params, step_params))  # built under one seed
    x = torch.randn(12, 2, 3)
    with torch.no_grad():
        fast, step = forms["fast"](x, None)[0], forms["step"](x, None)[0]
    torch.testing.assert_close(fast, step, rtol=1e-4, atol=1e-5)


def test_paired_rounds_alternate_the_first_call():
    order = []
    calls = {"fast": lambda: order.append("fast"), "step": lambda: order.append("step")}
    rounds = scan_forms.paired_rounds(calls, 3, lambda fn: fn() or 0.1)
    # two timed warm-ups each (calls under half a second), then the rounds
    assert order == ["fast", "fast", "step", "step", "fast", "step", "step", "fast", "fast", "step"]
    assert rounds == [{"fast": 0.1, "step": 0.1}] * 3


def test_rounds_balance_the_faster_form_and_average_its_calls():
    # a fast form 4x quicker than the step loop (its first warm-up slow) is called 4 times a round;
    # its sample is their mean
    seconds = {"fast": iter([0.4, 0.25, 0.2, 0.3, 0.25, 0.25, 0.1, 0.1, 0.1, 0.1]), "step": iter([1.0, 1.1, 0.9])}
    calls = {name: (lambda name=name: name) for name in seconds}
    rounds = scan_forms.paired_rounds(calls, 2, lambda fn: next(seconds[fn()]))
    assert rounds == [{"fast": pytest.approx(0.25), "step": 1.1}, {"fast": pytest.approx(0.1), "step": 0.9}]
    assert scan_forms.balanced_repeats({"a": lambda: 0.001, "b": lambda: 1.0}, lambda fn: fn()) == {"a": 50, "b": 1}


def test_crossover_is_the_start_of_the_last_winning_run():
    assert scan_forms.crossover([(64, 2, 1), (256, 1, 2), (1024, 3, 2), (4096, 1, 2), (16384, 1, 3)]) == 4096
    assert scan_forms.crossover([(64, 1, 2), (256, 1, 2)]) == 64
    assert scan_forms.crossover([(64, 1, 2), (256, 2, 1)]) is None


def test_result_ratio_is_the_ratio_of_the_fastest_rounds():
    # rounds 2 and 3 of the fast form caught in slow spells: they do not move the value
    result = scan_forms.FormsResult((1.0, 2.0, 9.0), (10.0, 8.0, 12.0), None, 5 * 2**20, (4, 1))
    assert result.ratios == [0.1, 0.25, 0.75] and result.ratio == 1.0 / 8.0
    first, second = scan_forms.describe("x", result)
    assert "fast 1000 ms, step loop 8000 ms (fastest of 3 rounds of 4 and 1 calls)" in first
    assert "peak memory fast n/a, step loop 5 MiB" in first
    assert second == "# x_fast_vs_step per round: 0.100 0.250 0.750 (median 0.250)"


def test_cpu_script_prints_a_verdict_per_cell(monkeypatch, capsys):
    monkeypatch.setattr(scan_forms, "SEQ_LEN", 32)
    monkeypatch.setattr(scan_forms, "COARSE_LENGTHS", (16, 32))
    assert cpu_ratios.main(["--only", "scan", "--cells", "mingru,lru", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    for name in ("mingru", "lru"):
        assert f"{name}_fast_vs_step value=" in out and f"# {name} fast/step sweep: T=16:" in out
    assert "target=<=0.2" in out
    assert "# lru: its large products alone take" in out  # and the line of its parts, below


def test_lru_parts_line_adds_the_parts_against_the_step_loop():
    line = scan_forms.describe_lru_parts({"products": 0.2, "inputs": 0.01, "recurrences": 0.02}, 1.0)
    assert "its large products alone take 200 ms, 0.200 of the step loop" in line
    assert "input's products (10 ms) and the two recurrences (20 ms), 230 ms = 0.230 of the step loop" in line


def test_cpu_script_refuses_a_cell_without_a_target(capsys):
    with pytest.raises(SystemExit):
        cpu_ratios.main(["--only", "scan", "--cells", "lstm"])
    assert "no scan target for lstm" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip without CUDA")
def test_gpu_script_skips_without_cuda(capsys):
    assert gpu_ratios.main([]) == 0
    assert capsys.readouterr().out.strip() == "no CUDA device: nothing measured"


def test_numpy_parts_report_prints_both_lines_against_the_floor():
    first, second = cpu_ratios.parts_report(4, 3, 8, 64, floor_s=1.0, repeats=1)
    assert first.startswith("# beside the products: tanh forward") and "of the floor" in first
    # the floor's two per-step products are 2/3 of it: 667 ms of a 1 s floor, plus the parts timed
    assert "two products a step 666.7 ms" in second and "before the interpreter's cost and storing the states" in second
