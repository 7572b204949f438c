"""Gradient-decay summaries and probe placement, against hand-computed values."""

import math

import numpy as np
import pytest

from harness.gradients import GradientProfile, probe_steps


def test_decay_rate_is_the_least_squares_slope_of_log_norm():
    """Norms 1, e^-1, e^-3 at distances 1, 2, 3 have log-slope -1.5 (worked by hand)."""
    profile = GradientProfile(distances=(1, 2, 3), norms=(1.0, math.exp(-1), math.exp(-3)))
    assert profile.decay_rate == pytest.approx(-1.5, rel=1e-12)


def test_decay_rate_of_an_exact_exponential_and_uneven_distances():
    """Norms 2·e^(-0.3 d) at uneven distances give decay rate -0.3 exactly."""
    distances = (1, 2, 5, 9, 20)
    profile = GradientProfile(distances, tuple(2 * math.exp(-0.3 * d) for d in distances))
    assert profile.decay_rate == pytest.approx(-0.3, rel=1e-12)


def test_first_last_ratio_is_the_initial_state_norm_over_the_last_step_norm():
    """first/last = ||dL/ds_0|| / ||dL/ds_{L-1}|| = norm at the largest distance over norm at distance 1."""
    profile = GradientProfile(distances=(1, 2, 4), norms=(4.0, 2.0, 0.5))
    assert profile.first_last_ratio == pytest.approx(0.125)
    assert math.isnan(GradientProfile((1, 2), (0.0, 0.0)).first_last_ratio)


def test_horizon_is_the_first_distance_below_one_thousandth_of_the_last_step():
    """Norms e^-(d-1): the first distance with norm < 1e-3 is d = 8 (e^-7 ≈ 9.1e-4; e^-6 ≈ 2.5e-3)."""
    distances = tuple(range(1, 13))
    profile = GradientProfile(distances, tuple(math.exp(-(d - 1)) for d in distances))
    assert profile.horizon == 8


def test_horizon_is_none_when_never_reached():
    """A norm exactly at 1e-3 of the last step's does not count; the horizon is then None."""
    assert GradientProfile((1, 2, 3), (1.0, 0.5, 1e-3)).horizon is None
    assert GradientProfile((1, 2, 3), (2.0, 2.0, 2.0)).horizon is None


@pytest.mark.parametrize("length", [1, 5, 128])
def test_probe_steps_takes_every_step_when_they_fit(length):
    """Up to max_probes, every state step 0..L-1 is probed."""
    assert probe_steps(length, max_probes=128) == list(range(length))


@pytest.mark.parametrize("length,max_probes", [(129, 128), (1000, 16), (10_000, 32)])
def test_probe_steps_are_log_spaced_with_both_ends(length, max_probes):
    """Beyond max_probes: at most max_probes sorted unique steps, including 0 and L-1, dense near the loss."""
    steps = probe_steps(length, max_probes)
    assert steps == sorted(set(steps))
    assert len(steps) <= max_probes
    assert steps[0] == 0 and steps[-1] == length - 1
    assert {length - 1, length - 2, length - 3} <= set(steps)  # distances 1, 2, 3
    gaps = np.diff(steps)
    assert gaps[0] >= gaps[-1]  # wide gaps far from the loss, narrow ones near it
