"""Speed verdicts from round medians: hand-computed intervals, then A/A and A/B on seeded synthetic runs."""

import math

import numpy as np
import pytest

from harness.speed_verdict import NOT_SIGNIFICANT, ratio_words, round_medians, rounds_verdict, welch_degrees_of_freedom


def test_hand_computed_interval():
    # ln a = (0, 0.02, -0.02): mean 0, s² = 0.0004; ln b = (0.10, 0.12, 0.08): mean 0.10, s² = 0.0004
    # SE² = 0.0004/3 + 0.0004/3 = 2.6667e-4, SE = 0.0163299
    # Welch df = SE⁴ / (2 · (0.0004/3)² / 2) = 7.1111e-8 / 1.7778e-8 = 4
    # 99%: t_{0.995,4} = 4.604095 (t table) → half width 0.0751845 → ratio e^0.1 = 1.10517 in
    # [e^0.0248155, e^0.1751845] = [1.02513, 1.19147]; it excludes 1 and 10.5% ≥ 5% → slower
    a, b = np.exp([0.0, 0.02, -0.02]), np.exp([0.10, 0.12, 0.08])
    verdict = rounds_verdict(a, b)
    assert verdict.degrees_of_freedom == 4
    assert verdict.ratio == pytest.approx(math.exp(0.1))
    half_width = 4.604095 * math.sqrt(2 * 0.0004 / 3)
    assert verdict.low == pytest.approx(math.exp(0.1 - half_width), rel=1e-6)
    assert verdict.high == pytest.approx(math.exp(0.1 + half_width), rel=1e-6)
    assert verdict.significant and verdict.verdict == "1.11x slower"
    # and B against A the other way round is the mirror image
    assert rounds_verdict(b, a).verdict == "1.11x faster"


def test_a_clear_but_small_change_stays_below_the_floor():
    # ratio e^0.03 = 1.03: the interval excludes 1 (the rounds are tight) but 3% < 5%
    a, b = np.exp([0.0, 0.001, -0.001]), np.exp([0.03, 0.031, 0.029])
    verdict = rounds_verdict(a, b)
    assert verdict.low > 1 and not verdict.significant and verdict.verdict == NOT_SIGNIFICANT


def test_a_large_change_inside_a_wide_interval_is_not_called():
    # ratio e^0.1, but each side spreads ±30%: interval contains 1
    a, b = np.exp([0.0, 0.3, -0.3]), np.exp([0.1, 0.4, -0.2])
    verdict = rounds_verdict(a, b)
    assert verdict.low < 1 < verdict.high and verdict.verdict == NOT_SIGNIFICANT


def test_identical_constant_rounds():
    verdict = rounds_verdict([0.01] * 3, [0.012] * 3)
    # no spread at all: the interval is the point 1.2, and 20% ≥ 5%
    assert verdict.low == pytest.approx(1.2) and verdict.high == pytest.approx(1.2)
    assert verdict.verdict == "1.20x slower"
    assert rounds_verdict([0.01] * 3, [0.01] * 3).verdict == NOT_SIGNIFICANT


def test_too_few_rounds_give_no_verdict():
    verdict = rounds_verdict([0.01, 0.011], [0.02, 0.021, 0.02])
    assert not verdict.significant and verdict.verdict == "too few rounds: 2 and 3 (need 3 each)"


def test_welch_degrees_of_freedom_with_unequal_spreads():
    # s²_a/n_a = 0.04/4 = 0.01, s²_b/n_b = 0.01/5 = 0.002; df = 0.012² / (0.01²/3 + 0.002²/4)
    # = 1.44e-4 / (3.3333e-5 + 1e-6) = 4.194 → 4
    assert welch_degrees_of_freedom(0.04, 4, 0.01, 5) == 4


def test_round_medians_and_words():
    assert round_medians([[3.0, 1.0, 2.0], [5.0, 4.0]]) == (2.0, 4.5)
    assert [ratio_words(r) for r in (1.42, 0.5, 1.001)] == ["1.42x slower", "2.00x faster", "1.00x"]


@pytest.mark.parametrize("bad", [[0.01, -0.01, 0.01], [0.01, float("nan"), 0.01]])
def test_bad_timings_are_refused(bad):
    with pytest.raises(ValueError, match="must be positive finite seconds"):
        rounds_verdict(bad, [0.01] * 3)


# ---- A/A and A/B on synthetic runs with known properties -----------------------------------
ROWS, ROUNDS, TABLES = 24, 7, 200


def _synthetic_run(rng, base_s, sigma, slowdown=1.0, drift_sd=0.01):
    """Round medians (rows × rounds): lognormal round noise σ per row, one drift for the whole run."""
    drift = math.exp(rng.normal(0.0, drift_sd))
    noise = np.exp(rng.normal(0.0, sigma[:, None], size=(base_s.size, ROUNDS)))
    return base_s[:, None] * slowdown * drift * noise


def _tables(slowdown: float, seed: int):
    """For each of TABLES pairs of runs: how many of the 24 rows are called slower, and faster."""
    rng = np.random.default_rng(seed)
    slower, faster = [], []
    for _ in range(TABLES):
        base_s = np.exp(rng.uniform(math.log(1e-3), math.log(1e-1), ROWS))  # 1 ms … 100 ms per batch
        sigma = rng.uniform(0.005, 0.03, ROWS)  # round-to-round coefficient of variation
        run_a, run_b = _synthetic_run(rng, base_s, sigma), _synthetic_run(rng, base_s, sigma, slowdown)
        verdicts = [rounds_verdict(a, b).verdict for a, b in zip(run_a, run_b)]
        slower.append(sum(v.endswith("slower") for v in verdicts))
        faster.append(sum(v.endswith("faster") for v in verdicts))
    return np.array(slower), np.array(faster)


def test_unchanged_code_gets_a_verdict_in_at_most_one_row_of_24():
    slower, faster = _tables(1.0, seed=11)
    calls = slower + faster
    assert calls.mean() <= 0.3  # 0.07-0.23 over seeds (see speed_verdict's docstring)
    assert (calls > 1).mean() <= 0.05  # at most one row in 24, in at least 95% of tables


def test_a_real_ten_percent_slowdown_is_called():
    slower, faster = _tables(1.10, seed=12)
    assert slower.mean() >= 23.0  # of 24 rows
    assert faster.sum() == 0
