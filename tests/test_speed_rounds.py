"""Speed timed in rounds, and compare's verdict from the rounds (harness.speed_verdict.rounds_verdict)."""

import math

import pytest
import torch

from harness.compare import compare_rows
from harness.config import TimingConfig
from harness.results import ResultRow
from harness.speed import measure_speed
from harness.speed_verdict import rounds_verdict


def test_a_round_gets_its_share_of_the_budget():
    """5 rounds of (min 5 repeats, max 100, 0.5 s): each at least max(3, ceil(5/5)) = 3 repeats, at most 20, 0.1 s."""
    per_round = TimingConfig(warmup=2, min_repeats=5, max_repeats=100, min_time_s=0.5, rounds=5).per_round()
    assert per_round == TimingConfig(warmup=0, min_repeats=3, max_repeats=20, min_time_s=0.1, rounds=1)
    single = TimingConfig(rounds=1)
    assert single.per_round() is single


def test_measure_speed_keeps_one_median_per_round():
    cell = torch.nn.GRU(3, 4)
    timing = TimingConfig(warmup=1, min_repeats=3, max_repeats=4, min_time_s=0.0, rounds=3)
    result = measure_speed(cell, 2, 5, 3, "cpu", timing)
    assert len(result.forward_round_medians) == len(result.forward_backward_round_medians) == 3
    assert result.forward.n == 9  # 3 rounds x 3 repeats, pooled
    assert all(m > 0 for m in result.forward_round_medians)


def speed_rows(run_medians_s: list[float]) -> list[ResultRow]:
    base = dict(item="speed|gru|fused|cpu|B2|T5|I3|H4", measurement="speed", cell="gru", device="cpu", impl="fused",
                batch_size=2, seq_len=5, input_size=3, hidden_size=4)
    stats = {"samples": run_medians_s, "median": sorted(run_medians_s)[len(run_medians_s) // 2],
             "round_medians": run_medians_s}
    return [ResultRow(**base, metric=metric, value=stats["median"], unit="s", stats=stats)
            for metric in ("forward_s", "forward_backward_s")]


def test_compare_judges_by_the_rounds():
    """A: rounds 1.00, 1.02, 0.98 ms; B: 10% slower each. By hand: mean of logs differs by ln 1.1, the log
    variances are equal (s = 0.02 in log terms), so B/A = 1.100 and the 99% Welch interval excludes 1: "1.10x slower"."""
    a = [1.00e-3, 1.02e-3, 0.98e-3]
    b = [1.1 * v for v in a]
    comparison = compare_rows(speed_rows(a), speed_rows(b))
    forward = comparison.speed[0]
    assert forward.method == "rounds" and (forward.rounds_a, forward.rounds_b) == (3, 3)
    assert forward.ratio == pytest.approx(1.1)
    assert forward.verdict == "1.10x slower" and forward.slower
    expected = rounds_verdict(a, b)
    assert (forward.low, forward.high) == (pytest.approx(expected.low), pytest.approx(expected.high))


def test_round_to_round_noise_is_not_called_a_change():
    """The same spread of rounds in both runs, medians 3% apart: under the 5% floor, "not significant"."""
    a = [1.00e-3, 1.05e-3, 0.95e-3, 1.02e-3, 0.98e-3]
    b = [1.03 * v for v in reversed(a)]
    forward = compare_rows(speed_rows(a), speed_rows(b)).speed[0]
    assert forward.ratio == pytest.approx(1.03) and forward.verdict == "not significant"


def test_rows_without_rounds_fall_back_to_the_repeats():
    rows_a, rows_b = speed_rows([1e-3] * 8), speed_rows([2e-3] * 8)
    for row in rows_a + rows_b:
        row.stats.pop("round_medians", None)
    forward = compare_rows(rows_a, rows_b).speed[0]
    assert forward.method == "repeats" and forward.p_value is not None and not math.isnan(forward.ratio)
