"""Speed verdicts from round minima by ranks: hand-computed intervals, then A/A and A/B on seeded synthetic runs."""

import math

import numpy as np
import pytest

from harness.speed_verdict import (NOT_SIGNIFICANT, mann_whitney_null_cdf, rank_interval_depth, ratio_words, round_medians,
                                   round_minima, rounds_verdict)

A_LOGS = [0.0, 0.01, -0.01, 0.02, -0.02]


def test_mann_whitney_null_distribution_by_hand():
    # sizes 3 and 2: C(5, 2) = 10 orderings; U = 0..6 occurs 1, 1, 2, 2, 2, 1, 1 times
    assert mann_whitney_null_cdf(3, 2) == pytest.approx((0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0))
    assert mann_whitney_null_cdf(2, 3) == mann_whitney_null_cdf(3, 2)


@pytest.mark.parametrize("n, depth", [(4, 0), (5, 1), (7, 5), (10, 17), (20, 106)])
def test_rank_interval_depth_matches_the_tables(n, depth):
    # two-sided 1% critical values of U for equal sizes (Mann-Whitney tables): none for 4, 0 for 5, 4 for 7,
    # 16 for 10, 105 for 20; the interval drops that many + 1 differences at each end. For 5: P(U = 0) = 1/252.
    assert rank_interval_depth(n, n) == depth


def test_hand_computed_interval_with_five_rounds():
    # ln b = ln a + 0.1: the 25 differences 0.1 + (a_j - a_i) run from 0.06 to 0.14 with median 0.10; with 5 rounds a
    # side the 99% interval is [smallest, largest] difference: [e^0.06, e^0.14], excluding 1; 10.5% ≥ 5% → slower
    a = np.exp(A_LOGS)
    b = np.exp(np.array(A_LOGS) + 0.1)
    verdict = rounds_verdict(a, b)
    assert verdict.ratio == pytest.approx(math.exp(0.1))
    assert (verdict.low, verdict.high) == (pytest.approx(math.exp(0.06)), pytest.approx(math.exp(0.14)))
    assert verdict.significant and verdict.verdict == "1.11x slower"
    assert rounds_verdict(b, a).verdict == "1.11x faster"


def test_one_slow_round_moves_the_estimate_by_one_rank():
    # B's rounds (logs) 0.10, 0.11, 0.09, 0.12 and one round caught in a slow spell, 0.60. Of the 25 differences
    # 20 are 0.07 (1), 0.08 (2), 0.09 (3), 0.10 (4), 0.11 (4), 0.12 (3), 0.13 (2), 0.14 (1) and 5 are 0.58-0.62:
    # the 13th of 25 is 0.11, so B/A = e^0.11 = 1.116 (the mean of the logs would say e^0.204 = 1.23);
    # the interval [e^0.07, e^0.62] excludes 1 → "1.12x slower"
    b = np.exp([0.10, 0.11, 0.09, 0.12, 0.60])
    verdict = rounds_verdict(np.exp(A_LOGS), b)
    assert verdict.ratio == pytest.approx(math.exp(0.11))
    assert (verdict.low, verdict.high) == (pytest.approx(math.exp(0.07)), pytest.approx(math.exp(0.62)))
    assert verdict.verdict == "1.12x slower"


def test_overlapping_rounds_are_not_called():
    # 5 rounds a side: one round of B faster than one of A leaves 1 inside the interval, whatever the estimate
    b = np.exp([0.15, 0.16, 0.14, 0.17, -0.03])
    verdict = rounds_verdict(np.exp(A_LOGS), b)
    assert verdict.low < 1 < verdict.high and verdict.ratio > 1.1 and verdict.verdict == NOT_SIGNIFICANT


def test_a_clear_but_small_change_stays_below_the_floor():
    a = np.exp([0.0, 0.001, -0.001, 0.002, -0.002])
    b = a * math.exp(0.03)
    verdict = rounds_verdict(a, b)
    assert verdict.low > 1 and not verdict.significant and verdict.verdict == NOT_SIGNIFICANT


def test_identical_constant_rounds():
    verdict = rounds_verdict([0.01] * 5, [0.012] * 5)
    assert verdict.low == pytest.approx(1.2) and verdict.high == pytest.approx(1.2)
    assert verdict.verdict == "1.20x slower"
    assert rounds_verdict([0.01] * 5, [0.01] * 5).verdict == NOT_SIGNIFICANT


def test_too_few_rounds_give_no_verdict():
    verdict = rounds_verdict([0.01, 0.011, 0.012], [0.02, 0.021, 0.02])
    assert not verdict.significant and math.isnan(verdict.low)
    assert verdict.verdict == "too few rounds for a 99% interval: 3 and 3 (5 a side suffice)"


def test_round_statistics_and_words():
    assert round_medians([[3.0, 1.0, 2.0], [5.0, 4.0]]) == (2.0, 4.5)
    assert round_minima([[3.0, 1.0, 2.0], [5.0, 4.0]]) == (1.0, 4.0)
    assert [ratio_words(r) for r in (1.42, 0.5, 1.001)] == ["1.42x slower", "2.00x faster", "1.00x"]
    with pytest.raises(ValueError, match="round 1 has no timings"):
        round_minima([[1.0], []])


@pytest.mark.parametrize("bad", [[0.01, -0.01, 0.01, 0.01, 0.01], [0.01, float("nan"), 0.01, 0.01, 0.01]])
def test_bad_timings_are_refused(bad):
    with pytest.raises(ValueError, match="must be positive finite seconds"):
        rounds_verdict(bad, [0.01] * 5)


# ---- A/A and A/B on synthetic runs with known properties -----------------------------------
ROWS, TABLES = 24, 200


def _synthetic_run(rng, base_s, sigma, rounds, slowdown=1.0, drift_sd=0.01, spell_share=0.0):
    """Round times (rows × rounds): lognormal round noise σ per row, one drift for the whole run, and a share of
    rounds caught in a slow spell (35% slower, ±5%)."""
    drift = math.exp(rng.normal(0.0, drift_sd))
    noise = np.exp(rng.normal(0.0, sigma[:, None], size=(base_s.size, rounds)))
    caught = rng.random((base_s.size, rounds)) < spell_share
    spells = np.where(caught, 1.35 * np.exp(rng.normal(0.0, 0.05, size=caught.shape)), 1.0)
    return base_s[:, None] * slowdown * drift * noise * spells


def _tables(slowdown: float, seed: int, rounds: int, spell_share: float = 0.0):
    """For each of TABLES pairs of runs: how many of the 24 rows are called slower, and faster."""
    rng = np.random.default_rng(seed)
    slower, faster = [], []
    for _ in range(TABLES):
        base_s = np.exp(rng.uniform(math.log(1e-3), math.log(1e-1), ROWS))  # 1 ms … 100 ms per batch
        sigma = rng.uniform(0.005, 0.03, ROWS)  # round-to-round coefficient of variation
        run_a = _synthetic_run(rng, base_s, sigma, rounds, spell_share=spell_share)
        run_b = _synthetic_run(rng, base_s, sigma, rounds, slowdown, spell_share=spell_share)
        verdicts = [rounds_verdict(a, b).verdict for a, b in zip(run_a, run_b)]
        slower.append(sum(v.endswith("slower") for v in verdicts))
        faster.append(sum(v.endswith("faster") for v in verdicts))
    return np.array(slower), np.array(faster)


def test_unchanged_code_gets_a_verdict_in_at_most_one_row_of_24():
    slower, faster = _tables(1.0, seed=11, rounds=7)
    calls = slower + faster
    assert calls.mean() <= 0.3  # 0.09-0.13 over seeds (see speed_verdict's docstring)
    assert (calls > 1).mean() <= 0.05  # at most one row in 24, in at least 95% of tables


def test_a_real_ten_percent_slowdown_is_called():
    slower, faster = _tables(1.10, seed=12, rounds=7)
    assert slower.mean() >= 23.0  # of 24 rows (23.8-23.9 over seeds)
    assert faster.sum() == 0


def test_slow_spells_in_a_third_of_the_rounds():
    """20 rounds a side, a third of them 35% slow: A/A still calls under one row in 24 on average, and a 10%
    slowdown is still called in most rows (16 of 24 over seeds), never as faster."""
    slower, faster = _tables(1.0, seed=13, rounds=20, spell_share=1 / 3)
    assert (slower + faster).mean() <= 0.6  # 0.26-0.48 over seeds
    slower, faster = _tables(1.10, seed=14, rounds=20, spell_share=1 / 3)
    assert slower.mean() >= 14.0 and faster.sum() == 0
