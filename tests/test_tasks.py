"""Task generators follow their published definitions; losses meet the analytic baselines."""

import math

import numpy as np
import pytest
import torch

from harness.tasks import IGNORE_INDEX, SPLITS, TaskSizeError, TokenTask
from tasks.adding import AddingTask
from tasks.copy import CopyTask

BLANK, DELIMITER = 0, 9


def rng(seed):
    return np.random.default_rng(seed)


def build(registry, task_name):
    """The task at its default T, else T = 10 (digits, for one, exists only at T = 64)."""
    factory = registry.task(task_name).factory
    return factory(getattr(factory, "default_seq_len", None) or 10)


# --- every registered task ------------------------------------------------------------

def test_task_batches_have_the_declared_shapes(registry, task_name):
    """A batch is time-major (length, B, input_size) float32 and finite."""
    task = build(registry, task_name)
    batch = task.sample(5, rng(0))
    assert batch.x.shape == (task.length, 5, task.input_size)
    assert batch.x.dtype == np.float32
    assert np.isfinite(batch.x).all()
    assert math.isfinite(task.baseline) and task.baseline > 0


def test_task_batches_are_seeded(registry, task_name):
    """The same seed gives the same batch; another seed gives another batch."""
    task = build(registry, task_name)
    first, again, other = task.sample(8, rng(3)), task.sample(8, rng(3)), task.sample(8, rng(4))
    np.testing.assert_array_equal(first.x, again.x)
    np.testing.assert_array_equal(first.target, again.target)
    assert not np.array_equal(first.x, other.x)


def test_task_losses_and_accuracy_are_well_formed(registry, task_name):
    """loss and last_step_loss are finite scalars, accuracy lies in [0, 1], and float64 flows through."""
    task = build(registry, task_name)
    x, target = task.sample(6, rng(0)).to(torch.device("cpu"), torch.float64)
    assert x.dtype == torch.float64
    logits = torch.randn(task.length, 6, task.output_size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    loss, last = task.loss(logits, target), task.last_step_loss(logits[-1], target)
    accuracy = float(task.accuracy(logits, target))
    assert loss.ndim == 0 and last.ndim == 0
    assert math.isfinite(float(loss)) and math.isfinite(float(last))
    assert 0.0 <= accuracy <= 1.0


def test_task_rejects_a_bad_sequence_length(registry, task_name):
    """A zero sequence length is refused with a message that shows it, as a usage error (one line on the CLI)."""
    with pytest.raises(TaskSizeError, match="got 0"):
        registry.task(task_name).factory(0)


def test_every_split_is_seeded_and_well_formed(registry, task_name):
    """sample_split gives batches of the declared shapes for train, validation and test, the same for the same seed."""
    task = build(registry, task_name)
    for split in SPLITS:
        first, again = task.sample_split(7, rng(1), split), task.sample_split(7, rng(1), split)
        assert first.x.shape == (task.length, 7, task.input_size)
        np.testing.assert_array_equal(first.x, again.x)
        np.testing.assert_array_equal(first.target, again.target)
    with pytest.raises(ValueError, match="split must be one of train, validation, test"):
        task.sample_split(7, rng(1), "dev")


def test_token_targets_follow_the_contract(registry, task_name):
    """A token task's target is int64 (L, B): a class or IGNORE_INDEX at each step, and a class at the last step."""
    task = build(registry, task_name)
    if not isinstance(task, TokenTask):
        pytest.skip(f"{task_name} is not a token task")
    target = task.sample(16, rng(2)).target
    assert target.dtype == np.int64 and target.shape == (task.length, 16)
    assert ((target == IGNORE_INDEX) | ((target >= 0) & (target < task.output_size))).all()
    assert (target[-1] != IGNORE_INDEX).all()


def test_task_options_are_a_record(registry, task_name):
    task = build(registry, task_name)
    assert isinstance(task.options, dict)
    assert all(isinstance(k, str) for k in task.options)


# --- copy (Arjovsky, Shah & Bengio 2016) -----------------------------------------------

@pytest.mark.parametrize("delay", [1, 5, 30])
def test_copy_batch_follows_the_definition(delay):
    """Copy input: 10 symbols in 1..8, T-1 blanks, delimiter at T+9, 10 blanks; target T+10 blanks then the symbols."""
    task = CopyTask(delay)
    batch = task.sample(64, rng(1))
    assert task.length == delay + 20
    assert batch.x.shape == (delay + 20, 64, 10)
    np.testing.assert_array_equal(batch.x.sum(axis=-1), 1.0)  # one-hot over the 10 tokens
    tokens = batch.x.argmax(axis=-1)
    symbols = tokens[:10]
    assert ((symbols >= 1) & (symbols <= 8)).all()
    assert len(np.unique(symbols)) == 8  # all 8 symbols get drawn
    assert (tokens[delay + 9] == DELIMITER).all()
    blanks = np.ones(delay + 20, dtype=bool)
    blanks[:10] = False
    blanks[delay + 9] = False
    assert (tokens[blanks] == BLANK).all()
    assert batch.target.shape == (delay + 20, 64)
    assert (batch.target[: delay + 10] == BLANK).all()
    np.testing.assert_array_equal(batch.target[delay + 10 :], symbols)


def _copy_memoryless_logits(task, batch_size):
    """All mass on blank for the first T+10 steps, uniform over the 8 symbols for the last 10."""
    logits = torch.full((task.length, batch_size, 9), -1e4, dtype=torch.float64)
    logits[: task.seq_len + 10, :, BLANK] = 0.0
    logits[task.seq_len + 10 :, :, 1:] = 0.0
    return logits


@pytest.mark.parametrize("delay", [1, 5, 100])
def test_copy_memoryless_loss_equals_the_baseline(delay):
    """The memoryless predictor scores exactly 10 ln 8 / (T + 20) under task.loss, which is task.baseline."""
    task = CopyTask(delay)
    _, target = task.sample(32, rng(2)).to(torch.device("cpu"), torch.float64)
    loss = float(task.loss(_copy_memoryless_logits(task, 32), target))
    expected = 10 * math.log(8) / (delay + 20)
    assert loss == pytest.approx(expected, rel=1e-12)
    assert task.baseline == pytest.approx(expected, rel=1e-12)


def test_copy_accuracy_and_solved_criterion():
    """A perfect copier has accuracy 1 and is solved; the memoryless predictor is not."""
    task = CopyTask(5)
    _, target = task.sample(32, rng(3)).to(torch.device("cpu"), torch.float64)
    perfect = 20.0 * torch.nn.functional.one_hot(target, 9).to(torch.float64)
    loss, accuracy = float(task.loss(perfect, target)), float(task.accuracy(perfect, target))
    assert accuracy == 1.0
    assert task.solved(loss, accuracy)
    memoryless = _copy_memoryless_logits(task, 32)
    assert not task.solved(float(task.loss(memoryless, target)), float(task.accuracy(memoryless, target)))


def test_copy_accuracy_counts_only_the_recalled_symbols():
    """Accuracy ignores the blank steps: wrong blanks with right symbols still score 1, and one wrong symbol in 10 scores 0.9."""
    task = CopyTask(5)
    _, target = task.sample(1, rng(4)).to(torch.device("cpu"), torch.float64)
    logits = 20.0 * torch.nn.functional.one_hot(target, 9).to(torch.float64)
    logits[: task.seq_len + 10] = torch.roll(logits[: task.seq_len + 10], 1, dims=-1)  # every blank step wrong
    assert float(task.accuracy(logits, target)) == 1.0
    logits[-1, 0] = torch.roll(logits[-1, 0], 1)
    assert float(task.accuracy(logits, target)) == pytest.approx(0.9)


# --- adding (Le et al. 2015; Arjovsky et al. 2016) -------------------------------------

@pytest.mark.parametrize("seq_len", [2, 7, 50])
def test_adding_batch_follows_the_definition(seq_len):
    """Adding: T steps, 2 channels, one marker in each half, values in [0, 1), target the sum of the marked values."""
    task = AddingTask(seq_len)
    batch = task.sample(256, rng(5))
    assert task.length == seq_len
    assert batch.x.shape == (seq_len, 256, 2)
    values, markers = batch.x[..., 0], batch.x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(np.unique(markers)) <= {0.0, 1.0}
    half = seq_len // 2
    np.testing.assert_array_equal(markers[:half].sum(axis=0), 1.0)
    np.testing.assert_array_equal(markers[half:].sum(axis=0), 1.0)
    assert batch.target.shape == (256,)
    np.testing.assert_allclose(batch.target, (values * markers).sum(axis=0), rtol=1e-6)


def test_adding_constant_one_predictor_meets_the_one_sixth_baseline():
    """Always predicting 1 gives MSE 1/6 within 4 standard errors on 200k sequences."""
    task = AddingTask(10)
    n = 200_000
    _, target = task.sample(n, rng(6)).to(torch.device("cpu"), torch.float64)
    logits = torch.ones(task.length, n, 1, dtype=torch.float64)
    mse = float(task.loss(logits, target))
    # (U1 + U2 - 1)^2 has mean 1/6 and variance E[d^4] - 1/36 = 1/15 - 1/36 = 7/180.
    standard_error = math.sqrt(7 / 180 / n)
    assert task.baseline == pytest.approx(1 / 6)
    assert abs(mse - 1 / 6) < 4 * standard_error


def test_adding_loss_is_the_mse_of_the_last_step_only():
    """The adding loss reads the last step's first output only."""
    task = AddingTask(6)
    _, target = task.sample(4, rng(7)).to(torch.device("cpu"), torch.float64)
    logits = torch.full((6, 4, 1), 100.0, dtype=torch.float64)
    logits[-1, :, 0] = target + 0.5
    assert float(task.loss(logits, target)) == pytest.approx(0.25)
    assert float(task.last_step_loss(logits[-1], target)) == pytest.approx(0.25)


def test_adding_accuracy_and_solved_criterion():
    """A perfect adder has accuracy 1, loss 0 and is solved; constant 1 is not solved."""
    task = AddingTask(10)
    _, target = task.sample(64, rng(8)).to(torch.device("cpu"), torch.float64)
    perfect = torch.zeros(10, 64, 1, dtype=torch.float64)
    perfect[-1, :, 0] = target
    loss, accuracy = float(task.loss(perfect, target)), float(task.accuracy(perfect, target))
    assert loss == 0.0 and accuracy == 1.0
    assert task.solved(loss, accuracy)
    constant = torch.ones(10, 64, 1, dtype=torch.float64)
    assert not task.solved(float(task.loss(constant, target)), float(task.accuracy(constant, target)))
