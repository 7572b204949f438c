"""Learning-rate selection on validation losses, and hidden sizes matched to a parameter budget."""

import functools
import inspect
import math

import pytest

from harness.selection import hidden_size_for_budget, select_lr

NAN = float("nan")


def test_the_lowest_mean_validation_loss_wins():
    # means: 1e-3 → (0.30 + 0.50)/2 = 0.40; 3e-3 → (0.20 + 0.30)/2 = 0.25; 1e-2 → (0.10 + 0.60)/2 = 0.35
    choice = select_lr({1e-3: {0: 0.30, 1: 0.50}, 3e-3: {0: 0.20, 1: 0.30}, 1e-2: {0: 0.10, 1: 0.60}}, [1e-3, 3e-3, 1e-2])
    assert choice.lr == 3e-3 and choice.mean_val_loss == pytest.approx(0.25)
    assert not choice.at_grid_edge
    assert [score.mean_val_loss for score in choice.scores] == pytest.approx([0.40, 0.25, 0.35])
    assert choice.note == "lr 0.003 chosen on validation loss from 3 rates"


def test_a_rate_that_diverges_on_one_seed_loses_to_one_that_never_does():
    # 1e-2 has the lowest finite mean (0.05) but seed 2 diverged (NaN): 1 failure beats 0 failures
    choice = select_lr({3e-3: {0: 0.2, 1: 0.2, 2: 0.2}, 1e-2: {0: 0.05, 1: 0.05, 2: NAN}}, [3e-3, 1e-2])
    assert choice.lr == 3e-3
    assert [(score.n_ok, score.n_failed) for score in choice.scores] == [(3, 0), (2, 1)]


def test_a_missing_seed_or_rate_counts_as_failed():
    # 1e-3 was tried but left no values at all (crashed): 2 failures; 1e-2 lost seed 1 (1 failure);
    # 3e-3 lost seed 0 too but seed 1 is infinite (diverged) → 2 failures. Fewest failures: 1e-2.
    choice = select_lr({3e-3: {1: math.inf}, 1e-2: {0: 0.4}}, [1e-3, 3e-3, 1e-2])
    assert [score.n_failed for score in choice.scores] == [2, 2, 1]
    assert choice.lr == 1e-2 and choice.n_failed == 1 and choice.at_grid_edge
    assert "1 of 2 seeds failed even at this rate" in choice.note
    assert "edge of the sweep" in choice.note


def test_ties_go_to_the_smaller_rate():
    # equal means up to float round-off: 0.1 + 0.2 ≠ 0.3 in binary, yet both rates tie
    choice = select_lr({1e-2: {0: 0.3, 1: 0.3}, 3e-3: {0: 0.1 + 0.2, 1: 0.3}}, [3e-3, 1e-2])
    assert choice.lr == 3e-3


def test_every_run_failed():
    choice = select_lr({1e-3: {0: NAN}, 1e-2: {0: math.inf}}, [1e-3, 1e-2])
    assert choice.lr is None and math.isnan(choice.mean_val_loss)
    assert choice.note == "all rates failed: every seed diverged or crashed at 0.001, 0.01"


def test_one_rate_is_never_at_the_edge():
    assert not select_lr({1e-2: {0: 0.5}}, [1e-2]).at_grid_edge


def test_the_choice_can_only_see_validation_losses():
    # The signature is the guard: nothing but validation losses and the list of rates goes in.
    # Whoever adds a parameter here must show that no test-stream value can flow through it.
    assert list(inspect.signature(select_lr).parameters) == ["validation_loss", "lrs_tried"]


@pytest.mark.parametrize(
    "losses, tried, message",
    [
        ({1e-2: {0: 0.1}}, [1e-3], "not among those tried"),
        ({1e-2: {0: 0.1}}, [], "positive learning rates"),
        ({1e-2: {0: 0.1}}, [-1e-2, 1e-2], "positive learning rates"),
        ({1e-2: {}}, [1e-2], "at least one seed"),
    ],
)
def test_bad_sweeps_are_refused(losses, tried, message):
    with pytest.raises(ValueError, match=message):
        select_lr(losses, tried)


# ---- parameter matching -------------------------------------------------------------------

def test_hidden_size_on_a_known_quadratic():
    # count(H) = H² + 10H: budget 200 lies between count(10) = 200 exactly → 10;
    # budget 207: count(10) = 200 (7 under), count(11) = 231 (24 over) → 10;
    # budget 216: 16 under vs 15 over → 11; and a tie:
    # count(H) = 2H gives a tie at budget 5 between H = 2 (4) and H = 3 (6) → the smaller, 2
    def square(h):
        return h * h + 10 * h

    assert [hidden_size_for_budget(square, budget) for budget in (200, 207, 216)] == [10, 10, 11]
    assert hidden_size_for_budget(lambda h: 2 * h, 5) == 2
    assert hidden_size_for_budget(square, 3) == 1
    with pytest.raises(ValueError, match="exceeds the count at the largest hidden size 64"):
        hidden_size_for_budget(square, 10**6, largest=64)


def _model_count(cell_name: str, input_size: int, output_size: int):
    """count(H) of cell plus readout, as the runner builds them (memoised: modules are slow to build)."""
    from harness.cells import SequenceModel, build_cell
    from harness.plugins import load_plugins

    spec = load_plugins().cell(cell_name)

    @functools.cache
    def count(hidden_size: int) -> int:
        model = SequenceModel(build_cell(spec, input_size, hidden_size), hidden_size, output_size)
        return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)

    return count


@pytest.mark.parametrize("budget", [300, 2000, 5000])
def test_hidden_size_is_the_brute_force_optimum_for_every_cell(cell_name, budget):
    # adding-task sizes: I = 2, O = 1. Try every H up to the first whose count reaches the
    # budget (counts only grow beyond it), and take the nearest, the smaller H on a tie.
    count = _model_count(cell_name, 2, 1)
    candidates = [1]
    while count(candidates[-1]) < budget:
        candidates.append(candidates[-1] + 1)
    best = min(candidates, key=lambda h: (abs(count(h) - budget), h))
    assert hidden_size_for_budget(count, budget) == best


@pytest.mark.parametrize(
    "torch_cell, gates",
    # torch's recurrent layers keep two bias vectors per gate block: g (H·I + H² + 2H)
    [("lstm", 4), ("gru", 3), ("torch-rnn", 1)],
)
@pytest.mark.parametrize("budget", [1000, 10_000, 50_000])
def test_hidden_size_is_within_one_unit_of_the_continuous_optimum(torch_cell, gates, budget):
    # copy-task sizes: I = 10, O = 9. Whole-model count g(H·I + H² + 2H) + (H·O + O) = budget is
    # the quadratic g H² + (g(I + 2) + O) H + O - budget = 0; its positive root H* is the real
    # optimum, and the chosen whole H must be ⌊H*⌋ or ⌈H*⌉.
    input_size, output_size = 10, 9
    count = _model_count(torch_cell, input_size, output_size)
    for hidden_size in (1, 7, 33):  # the formula is what torch's modules hold
        assert count(hidden_size) == gates * (hidden_size * input_size + hidden_size**2 + 2 * hidden_size) \
            + hidden_size * output_size + output_size
    a, b, c = gates, gates * (input_size + 2) + output_size, output_size - budget
    optimum = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    assert abs(hidden_size_for_budget(count, budget) - optimum) < 1
