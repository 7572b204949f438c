"""Confidence intervals: values worked out by hand in the comments, or read from printed tables."""

import math

import pytest

from harness.fairness import seed_interval
from harness.intervals import (bootstrap_interval, clipped, t_interval, t_quantile, t_two_sided_probability,
                               wilson_interval)


@pytest.mark.parametrize(
    "df, expected",
    [
        # df = 1 is the Cauchy distribution: t = tan(π (0.975 - 1/2)) = tan(0.475 π) = 12.7062
        (1, math.tan(0.475 * math.pi)),
        # df = 2 has t = (2p - 1) √(2 / (4 p (1 - p))) at p = 0.975: 0.95 · √(2/0.0975) = 4.30265
        (2, 0.95 * math.sqrt(2 / 0.0975)),
        # the rest from any printed t table (two-sided 95%)
        (3, 3.182446),
        (4, 2.776445),
        (5, 2.570582),
        (10, 2.228139),
        (30, 2.042272),
    ],
)
def test_t_quantile_matches_closed_forms_and_tables(df, expected):
    assert t_quantile(0.95, df) == pytest.approx(expected, rel=1e-6)


def test_t_quantile_tends_to_the_normal_quantile():
    assert t_quantile(0.95, 100_000) == pytest.approx(1.959964, abs=1e-4)


def test_t_distribution_function_at_df_two_is_t_over_root_two_plus_t_squared():
    # df = 2: P(|T| ≤ t) = t / √(2 + t²); at t = 1 that is 1/√3
    assert t_two_sided_probability(1.0, 2) == pytest.approx(1 / math.sqrt(3), rel=1e-12)


def test_t_interval_three_seeds():
    # values 1, 2, 3: mean 2, s = 1, s/√3 = 0.577350; t_{0.975,2} = 4.302653
    # half width 4.302653 · 0.577350 = 2.484138 → [-0.484138, 4.484138]
    interval = t_interval([1.0, 2.0, 3.0])
    assert (interval.mean, interval.n, interval.method) == (2.0, 3, "t")
    assert interval.low == pytest.approx(-0.484138, abs=1e-6)
    assert interval.high == pytest.approx(4.484138, abs=1e-6)
    assert interval.text(".2f") == "2.00 [-0.48, 4.48]"


def test_t_interval_two_seeds():
    # values 2, 4: mean 3, s = √2, s/√2 = 1; t_{0.975,1} = 12.706205 → [-9.706205, 15.706205]
    interval = t_interval([2.0, 4.0])
    assert interval.low == pytest.approx(-9.706205, abs=1e-6)
    assert interval.high == pytest.approx(15.706205, abs=1e-6)


@pytest.mark.parametrize("make", [t_interval, bootstrap_interval])
def test_one_seed_gives_the_value_and_no_interval(make):
    interval = make([0.52])
    assert interval.mean == 0.52 and interval.method == "none" and not interval.has_interval
    assert math.isnan(interval.low) and math.isnan(interval.high)
    assert interval.text() == "0.52 (n=1, no interval)"


def test_bootstrap_interval_of_a_binary_sample():
    # values 0, 0, 0, 1: a resample's mean is K/4 with K ~ Binomial(4, 1/4), so
    # P(K=0) = (3/4)^4 = 0.3164, P(K≤1) = 0.7383, P(K≤2) = 0.9492, P(K≤3) = 0.9961.
    # The 2.5th percentile is 0 and the 97.5th is 3/4 (0.9492 < 0.975 < 0.9961); with 10 000
    # resamples the empirical distribution function is within ±0.003 of these, far from 0.975.
    interval = bootstrap_interval([0.0, 0.0, 0.0, 1.0], seed=1)
    assert (interval.mean, interval.low, interval.high, interval.method) == (0.25, 0.0, 0.75, "bootstrap")


def test_bootstrap_is_reproducible_from_its_seed():
    values = [0.31, 0.47, 0.52, 0.9, 0.12]
    assert bootstrap_interval(values, seed=7) == bootstrap_interval(values, seed=7)
    interval = bootstrap_interval(values, seed=7)
    assert min(values) <= interval.low < interval.mean < interval.high <= max(values)


def test_bootstrap_of_a_normal_sample_is_close_to_t_with_many_seeds():
    # with n = 400 both intervals are x̄ ± ≈1.96 s/√n; the percentile bootstrap is
    # narrower by the factor √((n-1)/n) and Monte Carlo noise, both well under 5%
    import numpy as np

    values = np.random.default_rng(3).normal(10.0, 2.0, size=400)
    t, boot = t_interval(values), bootstrap_interval(values, seed=0)
    assert boot.high - boot.low == pytest.approx(t.high - t.low, rel=0.05)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")]])
def test_intervals_refuse_empty_or_non_finite_values(bad):
    with pytest.raises(ValueError, match="value"):
        t_interval(bad)


def test_wilson_two_of_three():
    # z = 1.959964, z² = 3.841459; centre = (2 + 1.920729)/(3 + 3.841459) = 0.573086
    # half = z/(n + z²) · √(2·1/3 + z²/4) = 0.286484 · √1.627032 = 0.365427 → [0.2077, 0.9385]
    solved = wilson_interval(2, 3)
    assert solved.low == pytest.approx(0.207660, abs=1e-6)
    assert solved.high == pytest.approx(0.938508, abs=1e-6)
    assert solved.fraction == pytest.approx(2 / 3)
    assert solved.text() == "2/3 [0.21, 0.94]"


def test_wilson_none_and_all_solved():
    # k = 0: centre = half = (z²/2)/(3 + z²) = 1.920729/6.841459 = 0.280749 → [0, 0.561497];
    # k = n mirrors it: [1 - 0.561497, 1]
    none, every = wilson_interval(0, 3), wilson_interval(3, 3)
    assert none.low == 0.0 and none.high == pytest.approx(0.561497, abs=1e-6)
    assert every.low == pytest.approx(0.438503, abs=1e-6) and every.high == 1.0


def test_wilson_textbook_example():
    # Brown, Cai & DasGupta (2001) and Newcombe (1998) quote 81/263 → [0.2553, 0.3662] (95%)
    interval = wilson_interval(81, 263)
    assert (round(interval.low, 4), round(interval.high, 4)) == (0.2553, 0.3662)


@pytest.mark.parametrize("k, n", [(4, 3), (-1, 3), (1, 0), (1.5, 3)])
def test_wilson_refuses_impossible_counts(k, n):
    with pytest.raises(ValueError, match="must be"):
        wilson_interval(k, n)


# --- clipped to the range the quantity can take ------------------------------------------------------------

T1 = math.tan(0.475 * math.pi)  # t_{0.975, 1} = 12.7062: two seeds


def test_a_two_seed_accuracy_interval_crossing_both_ends_is_clipped_to_zero_and_one():
    # accuracies 0.1, 0.9: mean 0.5, s = 0.8/√2 = 0.565685, s/√2 = 0.4, half width 12.7062 · 0.4 = 5.08248
    # → [-4.58248, 5.58248], which [0, 1] cuts to [0, 1]
    raw = t_interval([0.1, 0.9])
    assert (raw.low, raw.high) == (pytest.approx(0.5 - 0.4 * T1), pytest.approx(0.5 + 0.4 * T1))
    found = clipped(raw, 0.0, 1.0, values=[0.1, 0.9])
    assert (found.mean, found.low, found.high, found.low_clipped, found.high_clipped) == (
        pytest.approx(0.5), 0.0, 1.0, True, True)
    assert (found.n, found.level, found.method) == (2, 0.95, "t")
    assert found == seed_interval([0.1, 0.9], "accuracy")


def test_a_two_seed_interval_crossing_one_end_is_clipped_there_only():
    # accuracies 0.95, 0.97: mean 0.96, s/√2 = 0.01, half width 0.127062 → [0.832938, 1.087062] → [0.832938, 1]
    found = seed_interval([0.95, 0.97], "accuracy")
    assert (found.low, found.high) == (pytest.approx(0.96 - 0.01 * T1), 1.0)
    assert (found.low_clipped, found.high_clipped) == (False, True)
    # losses 0.002, 0.004: mean 0.003, s/√2 = 0.001, half width 0.0127062 → [-0.0097062, 0.0157062] → [0, 0.0157062]
    loss = seed_interval([0.002, 0.004], "loss")
    assert (loss.low, loss.high) == (0.0, pytest.approx(0.003 + 0.001 * T1))
    assert (loss.low_clipped, loss.high_clipped) == (True, False)


def test_an_interval_inside_the_range_is_unchanged():
    # accuracies 0.50, 0.52: mean 0.51, s/√2 = 0.01 → [0.382938, 0.637062], inside [0, 1]
    raw = t_interval([0.50, 0.52])
    assert seed_interval([0.50, 0.52], "accuracy") == raw == clipped(raw, 0.0, 1.0, values=[0.50, 0.52])
    assert (raw.low, raw.high) == (pytest.approx(0.51 - 0.01 * T1), pytest.approx(0.51 + 0.01 * T1))


def test_a_metric_of_any_sign_is_not_clipped():
    # decay rates -0.1, 0.1: mean 0, s/√2 = 0.1 → [-1.27062, 1.27062]; a slope of ln-norm may take any value
    assert seed_interval([-0.1, 0.1], "decay_rate") == seed_interval([-0.1, 0.1]) == t_interval([-0.1, 0.1])


def test_clipping_leaves_one_seed_and_a_mean_outside_the_range_alone():
    one = t_interval([0.3])
    assert clipped(one, 0.0, 1.0, values=[0.3]) is one
    # a task whose loss went negative breaks the declared range: the interval is not made to exclude its mean
    negative = t_interval([-0.5, 0.1])
    assert clipped(negative, 0.0, math.inf, values=[-0.5, 0.1]) is negative
    with pytest.raises(ValueError, match="lower <= upper"):
        clipped(negative, 1.0, 0.0, values=[-0.5, 0.1])


def test_one_seed_outside_the_range_leaves_the_interval_alone_though_the_mean_is_inside():
    # losses -0.01, 0.05 (a Gaussian NLL can go below 0): mean 0.02, s/√2 = 0.03, half width 0.381186
    # → [-0.361186, 0.401186]; clipping at 0 would exclude the seed at -0.01, so it is left as it is
    found = seed_interval([-0.01, 0.05], "loss")
    assert found == t_interval([-0.01, 0.05])
    assert (found.low, found.high) == (pytest.approx(0.02 - 0.03 * T1), pytest.approx(0.02 + 0.03 * T1))
    assert (found.low_clipped, found.high_clipped) == (False, False)
    # accuracies are fractions by definition, but the rule is the same at the upper end: 0.9, 1.02 → unclipped
    assert seed_interval([0.9, 1.02], "accuracy") == t_interval([0.9, 1.02])
