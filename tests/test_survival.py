"""Kaplan-Meier steps to solve, with censoring: every value worked out by hand in the comments."""

import math

import pytest

from harness.survival import kaplan_meier, solve_curve


def test_two_of_three_solve_one_censored_at_the_budget():
    # solved at 600 and 1100, the third unsolved at the 1500-step budget.
    # step 600: 3 at risk, 1 solves → S = 2/3; step 1100: 2 at risk, 1 solves → S = 2/3 · 1/2 = 1/3
    # median: first step with S ≤ 1/2 → 1100 (the mean of the solved seeds, 850, would flatter it)
    curve = solve_curve([600, 1100, None], budget_steps=1500)
    assert curve.event_steps == (600, 1100)
    assert curve.at_risk == (3, 2)
    assert curve.survival == pytest.approx((2 / 3, 1 / 3))
    assert curve.censored_steps == (1500,)
    assert curve.median_steps == 1100
    assert curve.text() == "1100 (2/3 solved; 1 censored at 1500)"
    assert curve.fraction_solved_at(599) == 0.0
    assert curve.fraction_solved_at(600) == pytest.approx(1 / 3)
    assert curve.fraction_solved_at(1500) == pytest.approx(2 / 3)


def test_censoring_before_an_event_shrinks_the_risk_set():
    # 100 (solved), 200 (stopped unsolved), 300 (solved), 400 (solved), 500 (stopped unsolved)
    # 100: r = 5, d = 1 → S = 4/5 = 0.8
    # 300: r = 3 (the seed censored at 200 has left), d = 1 → S = 0.8 · 2/3 = 0.53333
    # 400: r = 2, d = 1 → S = 0.53333 · 1/2 = 0.26667 → median 400
    curve = kaplan_meier([100, 200, 300, 400, 500], [True, False, True, True, False])
    assert curve.at_risk == (5, 3, 2)
    assert curve.survival == pytest.approx((0.8, 8 / 15, 4 / 15))
    assert curve.median_steps == 400
    assert curve.fraction_solved_at(350) == pytest.approx(7 / 15)
    assert curve.text() == "400 (3/5 solved; 2 censored at 200, 500)"


def test_fewer_than_half_solved_is_not_reached():
    # one of three solves at 700: S(700) = 2/3 > 1/2 for ever after → no median
    curve = solve_curve([700, math.nan, None], budget_steps=1500)
    assert curve.median_steps is None
    assert curve.text() == "not reached (1/3 solved; 2 censored at 1500)"


def test_exactly_half_solved_reaches_the_median_at_the_first_step_it_hits_one_half():
    # 2 seeds, one solves at 900: S(900) = 1/2 → median 900 (R would report the midpoint rule)
    assert solve_curve([900, None], 2000).median_steps == 900


def test_all_solved_and_tied_steps():
    # 500, 500, 800: step 500 has r = 3, d = 2 → S = 1/3 ≤ 1/2 → median 500; step 800 → S = 0
    curve = solve_curve([500, 800, 500], 1000)
    assert curve.solved_at == (2, 1)
    assert curve.survival == pytest.approx((1 / 3, 0.0))
    assert curve.text() == "500 (3/3 solved)"


def test_a_seed_censored_at_an_event_step_is_still_at_risk_there():
    # events at 1000 (one seed) and a seed censored at 1000: r = 2 at 1000 → S = 1/2
    curve = kaplan_meier([1000, 1000], [True, False])
    assert curve.at_risk == (2,) and curve.survival == (0.5,)


def test_curve_points_run_from_zero_to_the_budget():
    curve = solve_curve([600, 1100, None], 1500)
    steps, fractions = curve.curve_points()
    assert steps == (0, 600, 1100, 1500)
    assert fractions == pytest.approx((0.0, 1 / 3, 2 / 3, 2 / 3))


def test_numpy_and_pandas_values_are_accepted():
    # what a frame column gives: int64 solve steps, NaN for the unsolved seed
    import numpy as np

    curve = solve_curve(list(np.array([600.0, 1100.0, np.nan])), np.int64(1500))
    assert curve.text() == "1100 (2/3 solved; 1 censored at 1500)"


def test_per_seed_budgets():
    curve = solve_curve([None, 300, None], [1000, 2000, 2000])
    assert curve.censored_steps == (1000, 2000)
    assert curve.censoring_text() == "1/3 solved; 2 censored at 1000, 2000"


@pytest.mark.parametrize(
    "solve_steps, budget, message",
    [
        ([1600], 1500, "beyond its budget"),
        ([-5], 1500, "whole number"),
        ([10.5], 1500, "whole number"),
        ([None, None], [1000], "one per seed"),
    ],
)
def test_bad_observations_are_refused(solve_steps, budget, message):
    with pytest.raises(ValueError, match=message):
        solve_curve(solve_steps, budget)


def test_no_seeds_is_refused():
    with pytest.raises(ValueError, match="at least one seed"):
        kaplan_meier([], [])
