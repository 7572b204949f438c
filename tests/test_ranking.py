"""Which cells differ: the sign-flip test, Holm's correction and the ranking, against hand counts."""

import itertools

import numpy as np
import pytest

from harness.ranking import TIED, WORSE, holm_adjust, rank_cells, seeds_needed, sign_flip_p_value


def test_three_pairs_cannot_go_below_a_quarter():
    # d = (1, 2, 3): the 8 signed sums are ±6, ±4, ±2, 0, 0; |sum| ≥ 6 for 2 of 8 → p = 0.25,
    # the smallest any 3 pairs can give
    assert sign_flip_p_value([1.0, 2.0, 3.0]) == 0.25
    assert sign_flip_p_value([0.1, 0.1, 0.1]) == 0.25


def test_mixed_signs_four_pairs():
    # d = (1, -2, 3, 4): |Σ d| = 6. Flipping a subset S of the magnitudes {1,2,3,4} gives
    # ±(10 - 2 s(S)), and |10 - 2s| ≥ 6 ⇔ s ≤ 2 or s ≥ 8: {}, {1}, {2} and their complements
    # {1,2,3,4}, {2,3,4}, {1,3,4} → 6 of 16 → p = 0.375
    assert sign_flip_p_value([1.0, -2.0, 3.0, 4.0]) == 0.375


def test_six_pairs_same_sign():
    # only the observed vector and its mirror reach |Σ| = 21: p = 2/64
    assert sign_flip_p_value([1, 2, 3, 4, 5, 6]) == pytest.approx(2 / 64)


def test_no_difference_gives_one():
    assert sign_flip_p_value([0.0, 0.0, 0.0]) == 1.0
    assert sign_flip_p_value([]) == 1.0


def test_sampled_p_agrees_with_enumeration_above_sixteen_pairs():
    d = np.random.default_rng(5).normal(0.3, 1.0, size=17)
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=17)))
    exact = float((np.abs(signs @ d) >= abs(d.sum()) - 1e-9).mean())
    assert sign_flip_p_value(d, seed=0) == pytest.approx(exact, abs=0.01)


def test_holm_adjustment():
    # p = (0.01, 0.04, 0.03), k = 3; ascending 0.01·3 = 0.03, 0.03·2 = 0.06, then
    # 0.04·1 = 0.04 raised to the running maximum 0.06 → (0.03, 0.06, 0.06) in the given order
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx((0.03, 0.06, 0.06))
    assert holm_adjust([0.5, 0.9]) == pytest.approx((1.0, 1.0))


def test_seeds_needed():
    # k · 2/2^m < 0.05: one comparison needs 2^m > 40 → m = 6; two need 2^m > 80 → 7; four → 8
    assert [seeds_needed(k) for k in (1, 2, 4)] == [6, 7, 8]


def _seven_seed_cells():
    best = {seed: 0.1 * (seed + 1) for seed in range(7)}  # 0.1 … 0.7, mean 0.4
    return {
        "best": best,
        # worse on every seed by 0.1 … 0.7: mean 0.8, all 7 signs agree → p = 2/128
        "worse": {seed: best[seed] + 0.1 * (seed + 1) for seed in range(7)},
        # d = (1, 2, 3, 4, 5, 6, -7)/10, mean 0.6: |Σ| = 1.4; with magnitudes 1..7 (total 28)
        # |28 - 2s| ≥ 14 ⇔ s ≤ 7 or s ≥ 21; subsets with s ≤ 7: 1 empty + 7 singletons
        # + 9 pairs + {1,2,3}, {1,2,4} = 19, and 19 complements → p = 38/128
        "mixed": {seed: best[seed] + (0.1 * (seed + 1) if seed < 6 else -0.7) for seed in range(7)},
    }


def test_ranking_with_seven_seeds_separates_the_consistent_loser():
    # Holm over k = 2: worse 2/128 · 2 = 0.03125 < 0.05 → worse than best;
    # mixed max(0.03125, 38/128) = 0.296875 → ≈ best
    ranking = rank_cells(_seven_seed_cells(), lower_is_better=True, metric="loss/baseline")
    assert [rank.cell for rank in ranking.cells] == ["best", "mixed", "worse"]
    by_cell = {rank.cell: rank for rank in ranking.cells}
    assert by_cell["mixed"].mean == pytest.approx(0.6) and by_cell["worse"].mean == pytest.approx(0.8)
    assert by_cell["worse"].p_value == pytest.approx(2 / 128)
    assert by_cell["worse"].p_holm == pytest.approx(0.03125)
    assert by_cell["worse"].verdict == WORSE
    assert by_cell["mixed"].p_value == pytest.approx(38 / 128)
    assert by_cell["mixed"].p_holm == pytest.approx(38 / 128)
    assert by_cell["mixed"].verdict == TIED
    assert ranking.tied_with_best == ("best", "mixed")
    assert "Holm-corrected over 2 comparisons" in ranking.note and "no cell can" not in ranking.note


def test_holm_keeps_a_raw_p_below_alpha_from_counting_at_six_seeds():
    # drop seed 6: worse has p = 2/64 = 0.03125 raw but 0.0625 after Holm over 2 → ≈ best
    cells = {cell: {seed: v for seed, v in by_seed.items() if seed < 6} for cell, by_seed in _seven_seed_cells().items()}
    by_cell = {rank.cell: rank for rank in rank_cells(cells, lower_is_better=True).cells}
    assert by_cell["worse"].p_value == pytest.approx(0.03125)
    assert by_cell["worse"].p_holm == pytest.approx(0.0625)
    assert by_cell["worse"].verdict == TIED


def test_three_seeds_say_that_nothing_can_be_shown():
    cells = {"gru": {0: 0.05, 1: 0.10, 2: 0.12}, "lstm": {0: 0.10, 1: 0.20, 2: 0.15}, "rnn": {0: 1.0, 1: 1.0, 2: 0.98}}
    ranking = rank_cells(cells, lower_is_better=True)
    assert ranking.best == "gru"
    # each comparison: all 3 signs agree → p = 0.25; Holm over 2 → 0.5
    assert [(rank.p_value, rank.p_holm) for rank in ranking.cells[1:]] == [(0.25, 0.5), (0.25, 0.5)]
    assert ranking.tied_with_best == ("gru", "lstm", "rnn")
    assert "smallest possible p is 0.25" in ranking.note
    assert "no cell can be shown to differ" in ranking.note
    assert "7 seeds are needed" in ranking.note


def test_higher_is_better_ranks_the_largest_mean_first():
    ranking = rank_cells({"a": {0: 0.5, 1: 0.6}, "b": {0: 0.9, 1: 0.95}}, lower_is_better=False, metric="accuracy")
    assert ranking.best == "b" and ranking.cells[1].rank == 2


def test_pairs_use_only_shared_seeds_and_equal_means_order_by_name():
    ranking = rank_cells({"z": {0: 1.0, 1: 2.0}, "a": {1: 2.0, 2: 1.0, 3: 0.0}}, lower_is_better=True)
    # a: mean 1.0, z: mean 1.5 → a best; shared seed 1 only, difference 0 → p = 1
    assert ranking.best == "a" and ranking.cells[1].n_pairs == 1 and ranking.cells[1].p_value == 1.0
    tie = rank_cells({"b": {0: 1.0}, "a": {0: 1.0}}, lower_is_better=True)
    assert [rank.cell for rank in tie.cells] == ["a", "b"]


def test_non_finite_values_are_refused_with_what_to_do():
    with pytest.raises(ValueError, match="cell 'lstm' has non-finite values at seeds \\[1\\]"):
        rank_cells({"lstm": {0: 0.1, 1: float("nan")}, "gru": {0: 0.2, 1: 0.3}}, lower_is_better=True)
