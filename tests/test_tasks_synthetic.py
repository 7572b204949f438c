"""selective-copy, associative-recall, temporal-order and parity follow their published
definitions, and each baseline is the loss of the memoryless predictor it describes."""

import math

import numpy as np
import pytest
import torch

from harness.tasks import IGNORE_INDEX, TaskSizeError
from tasks.associative_recall import AssociativeRecallTask
from tasks.parity import ParityTask
from tasks.selective_copy import NOISE, SelectiveCopyTask
from tasks.temporal_order import END, START, X, Y, TemporalOrderTask, relevant_windows

CPU = torch.device("cpu")


def rng(seed):
    return np.random.default_rng(seed)


def tensors(task, batch_size, seed):
    return task.sample(batch_size, rng(seed)).to(CPU, torch.float64)


def input_free_logits(task, target):
    """The best predictor that ignores its input: the log frequencies of the scored targets, at every step."""
    scored = target[target != IGNORE_INDEX]
    frequencies = torch.bincount(scored, minlength=task.output_size).double() / scored.numel()
    return frequencies.log().expand(task.length, target.shape[1], task.output_size)


def perfect_logits(task, target):
    return 20.0 * torch.nn.functional.one_hot(target.clamp(min=0), task.output_size).double()


def assert_perfect_solves_and_input_free_does_not(task, target):
    perfect, free = perfect_logits(task, target), input_free_logits(task, target)
    assert float(task.accuracy(perfect, target)) == 1.0
    assert task.solved(float(task.loss(perfect, target)), 1.0)
    assert not task.solved(float(task.loss(free, target)), float(task.accuracy(free, target)))


# --- selective copy (Gu & Dao 2023) -----------------------------------------------------

@pytest.mark.parametrize("region, n_symbols, n_recall", [(8, 8, 8), (30, 4, 5), (200, 8, 16)])
def test_selective_copy_batch_follows_the_definition(region, n_symbols, n_recall):
    """K symbols at distinct places in T noise steps, a delimiter, K noise steps; the target is the symbols in order, after the delimiter."""
    task = SelectiveCopyTask(region, n_symbols=n_symbols, n_recall=n_recall)
    batch = task.sample(64, rng(0))
    assert task.length == region + 1 + n_recall
    assert batch.x.shape == (task.length, 64, n_symbols + 2)
    tokens = batch.x.argmax(axis=-1)
    np.testing.assert_array_equal(batch.x.sum(axis=-1), 1.0)
    assert (tokens[region] == n_symbols + 1).all()
    assert (tokens[region + 1:] == NOISE).all()
    assert (batch.target[: region + 1] == IGNORE_INDEX).all()
    for column in range(64):
        data = tokens[:region, column]
        symbols = data[data != NOISE]
        assert len(symbols) == n_recall and ((symbols >= 1) & (symbols <= n_symbols)).all()
        np.testing.assert_array_equal(batch.target[region + 1:, column], symbols)


def test_selective_copy_positions_are_spread_over_the_whole_region():
    """Every step of the region holds a symbol with probability K/T (within 5 standard errors on 20k sequences)."""
    task = SelectiveCopyTask(20, n_recall=4)
    tokens = task.sample(20_000, rng(1)).x.argmax(axis=-1)[:20]
    occupied = (tokens != NOISE).mean(axis=1)
    p = 4 / 20
    assert np.abs(occupied - p).max() < 5 * math.sqrt(p * (1 - p) / 20_000)


def test_selective_copy_input_free_predictor_meets_the_ln_s_baseline():
    """The best input-free predictor (symbol frequencies at the recall steps) scores ln S on 20k sequences."""
    task = SelectiveCopyTask(12, n_symbols=6, n_recall=4)
    _, target = tensors(task, 20_000, 2)
    loss = float(task.loss(input_free_logits(task, target), target))
    assert task.baseline == pytest.approx(math.log(6))
    assert loss == pytest.approx(math.log(6), rel=2e-3)
    assert_perfect_solves_and_input_free_does_not(task, target)


def test_selective_copy_loss_and_accuracy_read_only_the_recall_steps():
    """Garbage at the noise steps changes neither loss nor accuracy; one wrong symbol of 8 costs 1/8 accuracy."""
    task = SelectiveCopyTask(10)
    _, target = tensors(task, 1, 3)
    logits = perfect_logits(task, target)
    logits[: task.seq_len + 1] = torch.randn(task.seq_len + 1, 1, task.output_size, dtype=torch.float64)
    assert float(task.accuracy(logits, target)) == 1.0
    assert float(task.loss(logits, target)) < 1e-6
    logits[-1, 0] = torch.roll(logits[-1, 0], 1)
    assert float(task.accuracy(logits, target)) == pytest.approx(1 - 1 / 8)


def test_selective_copy_refuses_a_region_too_short_for_its_symbols():
    with pytest.raises(TaskSizeError, match="seq_len must be an integer >= 8, got 7"):
        SelectiveCopyTask(7)


# --- multi-query associative recall (Arora et al. 2023) ---------------------------------

@pytest.mark.parametrize("length, vocab_size, num_pairs", [(64, 64, 8), (12, 10, 4), (100, 32, 2)])
def test_associative_recall_batch_follows_the_definition(length, vocab_size, num_pairs):
    """N pairs (distinct keys < V/2 <= distinct values), then each key queried once; the target is its value."""
    task = AssociativeRecallTask(length, vocab_size=vocab_size, num_pairs=num_pairs)
    batch = task.sample(64, rng(4))
    assert task.length == length and batch.x.shape == (length, 64, vocab_size)
    tokens = batch.x.argmax(axis=-1)
    context = 2 * num_pairs
    assert (batch.target[:context] == IGNORE_INDEX).all()
    assert (batch.target[-1] != IGNORE_INDEX).all()  # the last step is always a query
    for column in range(64):
        keys, values = tokens[0:context:2, column], tokens[1:context:2, column]
        assert len(set(keys)) == num_pairs and ((keys >= 1) & (keys < vocab_size // 2)).all()
        assert len(set(values)) == num_pairs and ((values >= vocab_size // 2) & (values < vocab_size)).all()
        queries = tokens[context:, column]
        asked = queries[queries != 0]
        assert sorted(asked) == sorted(keys)
        answers = batch.target[context:, column]
        np.testing.assert_array_equal(answers != IGNORE_INDEX, queries != 0)
        paired = dict(zip(keys, values))
        np.testing.assert_array_equal(answers[queries != 0], [paired[k] for k in asked])


def test_associative_recall_input_free_and_bag_of_values_predictors():
    """Input-free: ln(V/2), the baseline. Knowing which N values occurred, not their keys: ln N, below it."""
    task = AssociativeRecallTask(24, vocab_size=16, num_pairs=4)
    x, target = tensors(task, 20_000, 5)
    loss = float(task.loss(input_free_logits(task, target), target))
    assert task.baseline == pytest.approx(math.log(8))
    assert loss == pytest.approx(math.log(8), rel=2e-3)
    seen_values = x[1:8:2].sum(dim=0)  # (B, V): one-hot sum of the 4 values in context
    bag = torch.where(seen_values > 0, 0.0, -1e9).double().expand(task.length, -1, -1)
    assert float(task.loss(bag, target)) == pytest.approx(math.log(4), rel=1e-9)
    assert_perfect_solves_and_input_free_does_not(task, target)


@pytest.mark.parametrize("options, message", [
    ({"vocab_size": 7}, "vocab_size must be an even integer >= 4, got 7"),
    ({"vocab_size": 16, "num_pairs": 8}, "num_pairs must be an integer from 1 to vocab_size/2 - 1 = 7, got 8"),
])
def test_associative_recall_refuses_impossible_options(options, message):
    with pytest.raises(TaskSizeError, match=message.replace("(", r"\(")):
        AssociativeRecallTask(64, **options)


def test_associative_recall_needs_room_for_the_queries():
    """T >= 3N: 2N steps of pairs and N queries."""
    AssociativeRecallTask(24, num_pairs=8)
    with pytest.raises(TaskSizeError, match=">= 24, got 23"):
        AssociativeRecallTask(23, num_pairs=8)


# --- temporal order (Hochreiter & Schmidhuber 1997, experiment 6a) ----------------------

def test_temporal_order_windows_are_the_papers_at_t_100():
    assert relevant_windows(100) == ((10, 20), (50, 60))


@pytest.mark.parametrize("length", [10, 37, 100])
def test_temporal_order_batch_follows_the_definition(length):
    """E first, B last, X/Y once in each window, distractors elsewhere; class = 2·[first is Y] + [second is Y]."""
    task = TemporalOrderTask(length)
    batch = task.sample(256, rng(6))
    tokens = batch.x.argmax(axis=-1)
    assert (tokens[0] == START).all() and (tokens[-1] == END).all()
    (low1, high1), (low2, high2) = relevant_windows(length)
    relevant = (tokens == X) | (tokens == Y)
    assert (relevant.sum(axis=0) == 2).all()
    assert (relevant[low1:high1 + 1].sum(axis=0) == 1).all() and (relevant[low2:high2 + 1].sum(axis=0) == 1).all()
    assert ((tokens[1:-1] >= 2) | relevant[1:-1]).all()
    symbols = np.array([tokens[relevant[:, column], column] for column in range(256)])  # (B, 2), in time order
    first, second = symbols[:, 0], symbols[:, 1]
    np.testing.assert_array_equal(batch.target[-1], 2 * (first == Y) + (second == Y))
    assert (batch.target[:-1] == IGNORE_INDEX).all()


def test_temporal_order_input_free_predictor_meets_the_ln_4_baseline():
    task = TemporalOrderTask(20)
    _, target = tensors(task, 40_000, 7)
    assert task.baseline == pytest.approx(math.log(4))
    assert float(task.loss(input_free_logits(task, target), target)) == pytest.approx(math.log(4), rel=1e-3)
    assert_perfect_solves_and_input_free_does_not(task, target)


# --- parity -------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [2, 9, 64])
def test_parity_batch_follows_the_definition(length):
    task = ParityTask(length)
    batch = task.sample(128, rng(8))
    bits = batch.x.argmax(axis=-1)
    np.testing.assert_array_equal(batch.x.sum(axis=-1), 1.0)
    np.testing.assert_array_equal(batch.target[-1], bits.sum(axis=0) % 2)
    assert (batch.target[:-1] == IGNORE_INDEX).all()


def test_parity_predictors_that_miss_a_bit_meet_the_ln_2_baseline():
    """Input-free, and reading only the last bit (the memoryless cell's view): both ln 2 on 40k sequences."""
    task = ParityTask(7)
    x, target = tensors(task, 40_000, 9)
    assert task.baseline == pytest.approx(math.log(2))
    assert float(task.loss(input_free_logits(task, target), target)) == pytest.approx(math.log(2), rel=1e-3)
    # The best predictor from the last bit alone: the parity frequencies given that bit.
    last_bit, parity = x[-1].argmax(dim=-1), target[-1]
    p_odd = torch.stack([parity[last_bit == b].double().mean() for b in (0, 1)])[last_bit]
    logits = torch.zeros(task.length, len(parity), 2, dtype=torch.float64)
    logits[-1] = torch.stack([torch.log1p(-p_odd), torch.log(p_odd)], dim=-1)
    assert float(task.loss(logits, target)) == pytest.approx(math.log(2), rel=1e-3)
    assert_perfect_solves_and_input_free_does_not(task, target)


@pytest.mark.parametrize("length", [2, 9, 64])
def test_running_parity_scores_the_parity_of_every_prefix_from_step_2(length):
    """running=True: target p_t = b_1 xor ... xor b_t at t = 2..T, none at step 1; same bits as the default."""
    task = ParityTask(length, running=True)
    assert task.options == {"running": True} and ParityTask(length).options == {"running": False}
    batch = task.sample(128, rng(8))
    bits = batch.x.argmax(axis=-1)
    np.testing.assert_array_equal(bits, ParityTask(length).sample(128, rng(8)).x.argmax(axis=-1))
    assert (batch.target[0] == IGNORE_INDEX).all()
    for t in range(2, length + 1):  # t counts from 1, as in the docstring
        np.testing.assert_array_equal(batch.target[t - 1], bits[:t].sum(axis=0) % 2)
    np.testing.assert_array_equal(batch.target[-1], ParityTask(length).sample(128, rng(8)).target[-1])


def test_running_parity_memoryless_predictors_meet_the_ln_2_baseline():
    """Its memoryless_logits, the input-free predictor, and the best predictor from the current bit alone
    (what a cell without memory sees): all ln 2 on 40k sequences. Scoring step 1 would let the last one win."""
    task = ParityTask(6, running=True)
    x, target = tensors(task, 40_000, 10)
    assert task.baseline == pytest.approx(math.log(2))
    memoryless = task.memoryless_logits(40_000)
    assert memoryless.shape == (task.length, 40_000, 2)
    assert float(task.loss(memoryless, target)) == pytest.approx(math.log(2), rel=1e-12)  # 1/2 each way, exactly
    assert float(task.loss(input_free_logits(task, target), target)) == pytest.approx(math.log(2), rel=1e-3)
    # Per step t and current bit b: the frequency of odd prefixes among the sequences with that bit.
    current_bit = x.argmax(dim=-1)  # (L, B)
    prefix = torch.cumsum(current_bit, dim=0) % 2
    p_odd = torch.zeros(task.length, 40_000, dtype=torch.float64)
    for step in range(task.length):
        for bit in (0, 1):
            chosen = current_bit[step] == bit
            p_odd[step, chosen] = prefix[step, chosen].double().mean()
    from_current_bit = torch.stack([torch.log1p(-p_odd.clamp(max=1 - 1e-12)), torch.log(p_odd.clamp(min=1e-12))], -1)
    assert float(task.loss(from_current_bit, target)) == pytest.approx(math.log(2), rel=1e-3)
    step_one = target.clone()
    step_one[0] = prefix[0]  # had step 1 been scored, the current bit would answer it
    expected = (task.length - 1) / task.length * math.log(2)
    assert float(task.loss(from_current_bit, step_one)) == pytest.approx(expected, rel=2e-3)
    assert_perfect_solves_and_input_free_does_not(task, target)


def test_running_parity_accuracy_counts_every_scored_step():
    """One wrong prefix of the T - 1 scored ones costs 1/(T - 1); step 1 is never counted."""
    task = ParityTask(5, running=True)
    _, target = tensors(task, 1, 11)
    logits = perfect_logits(task, target)
    logits[0] = torch.randn(1, 2, dtype=torch.float64)
    assert float(task.accuracy(logits, target)) == 1.0
    logits[2, 0] = torch.roll(logits[2, 0], 1)
    assert float(task.accuracy(logits, target)) == pytest.approx(1 - 1 / 4)


def test_parity_refuses_a_running_that_is_not_a_boolean():
    with pytest.raises(TaskSizeError, match="running must be true or false, got 'yes'"):
        ParityTask(8, running="yes")


def test_parity_refuses_one_bit():
    with pytest.raises(TaskSizeError, match=">= 2, got 1"):
        ParityTask(1)
