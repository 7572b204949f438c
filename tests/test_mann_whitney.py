"""The Mann-Whitney U test and its ranks (harness.stats), on values worked out by hand."""

import math

import pytest

from harness.compare import ALPHA
from harness.stats import mann_whitney_u, ranks, smallest_p_value


def test_ranks_share_ties():
    """Values 10, 30, 20, 30 rank 1, 3.5, 2, 3.5: the two 30s share ranks 3 and 4."""
    assert ranks([10, 30, 20, 30]) == [1.0, 3.5, 2.0, 3.5]
    assert ranks([]) == []


def test_mann_whitney_complete_separation():
    """A = 1,2,3 and B = 4,5,6: every b beats every a, U_b = 9 = n_a·n_b.

    Null mean 4.5, variance 3·3/12·(6+1) = 5.25; continuity-corrected z = (9 - 4.5 - 0.5)/√5.25
    = 1.7457; two-sided p = erfc(z/√2) = 0.0809 (scipy's asymptotic mannwhitneyu gives the same).
    """
    test = mann_whitney_u([1, 2, 3], [4, 5, 6])
    assert test.u == 9
    assert test.z == pytest.approx(4 / math.sqrt(5.25))
    assert test.p_value == pytest.approx(0.080856, abs=1e-6)


def test_mann_whitney_with_ties():
    """A = 1,2,2 and B = 2,3,4: the three 2s share rank 3, so R_b = 3+5+6 = 14 and U_b = 14 - 6 = 8.

    Tie correction: one group of t = 3, Σ(t³-t)/(n(n-1)) = 24/30 = 0.8, variance 0.75·(7-0.8) = 4.65;
    z = (8 - 4.5 - 0.5)/√4.65 = 1.3912, p = 0.1642.
    """
    test = mann_whitney_u([1, 2, 2], [2, 3, 4])
    assert test.u == 8
    assert test.z == pytest.approx(3 / math.sqrt(4.65))
    assert test.p_value == pytest.approx(0.164160, abs=1e-6)


def test_mann_whitney_is_symmetric_and_flat_on_equal_samples():
    """Swapping the samples mirrors U (n_a·n_b - U) and z, with the same p; identical samples give p = 1."""
    ab, ba = mann_whitney_u([3, 1, 4, 1, 5], [9, 2, 6]), mann_whitney_u([9, 2, 6], [3, 1, 4, 1, 5])
    assert ab.u + ba.u == 15
    assert ab.z == pytest.approx(-ba.z)
    assert ab.p_value == pytest.approx(ba.p_value)
    assert mann_whitney_u([2.0, 2.0], [2.0, 2.0]).p_value == 1.0
    assert mann_whitney_u([1, 2, 3], [3, 2, 1]).p_value == 1.0


def test_three_repeats_can_never_be_significant_but_four_can():
    """Complete separation with 3 repeats per run gives p = 0.081 > 0.05; with 4, p = 0.030."""
    assert smallest_p_value(3, 3) > ALPHA
    assert smallest_p_value(4, 4) == pytest.approx(0.030383, abs=1e-6)
