"""A task plugin's own tests: the definition, and the baseline measured, not just stated."""

import math
from pathlib import Path

import numpy as np
import torch

from harness.plugins import load_plugins
from harness.task_checks import assert_task_conforms
from harness.tasks import IGNORE_INDEX

PLUGIN = Path(__file__).with_name("myecho.py")


def echo_task(seq_len, **options):
    return load_plugins([PLUGIN], autoload=False).task("myecho").factory(seq_len, **options)


def test_each_answer_is_the_symbol_t_steps_earlier():
    task = echo_task(7, n_symbols=5)
    batch = task.sample(32, np.random.default_rng(0))
    symbols = batch.x.argmax(axis=-1)
    assert batch.x.shape == (17, 32, 5)
    assert (batch.target[:7] == IGNORE_INDEX).all()
    np.testing.assert_array_equal(batch.target[7:], symbols[:10])


def test_the_baseline_is_the_loss_of_the_best_input_free_predictor():
    """Predicting the answers' frequencies, whatever the input, scores ln S on a large batch."""
    task = echo_task(3)
    _, target = task.sample(50_000, np.random.default_rng(1)).to(torch.device("cpu"), torch.float64)
    answers = target[target != IGNORE_INDEX]
    frequencies = torch.bincount(answers, minlength=4).double() / answers.numel()
    loss = float(task.loss(frequencies.log().expand(task.length, 50_000, 4), target))
    assert task.baseline == math.log(4)
    assert abs(loss - task.baseline) < 1e-3


def test_the_task_passes_rnnbench_check():
    """Shapes, seeding, finite losses, a target at the last step, and memoryless_logits scoring the baseline."""
    registry = load_plugins([PLUGIN], autoload=False)
    assert_task_conforms("myecho", registry=registry)
