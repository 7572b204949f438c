"""Accuracy: train a cell on a task with one recipe for all cells, evaluate on held-out data.

Three data streams come from one seed, each its own generator (:func:`rng_for`):

- **train** (stream 1): the batches the optimizer sees;
- **test** (stream 2): the held-out set the accuracy table reports, evaluated once, after
  training has stopped; nothing during training looks at it;
- **validation** (stream 3): a second held-out set of the same size, evaluated every
  ``eval_every`` steps: the learning curve, early stopping "once solved", and the choice of
  learning rate in a sweep (:mod:`harness.selection`) read it and only it.

Keeping the test set out of early stopping and of the rate choice is what lets its figures
stand as held-out estimates (the train/validation/test protocol; e.g. Melis, Dyer & Blunsom
2018). The test stream keeps the number the single held-out set had before validation
existed, so test figures of older runs are on the same data.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from harness.config import Recipe
from harness.errors import DivergedError

TRAIN_STREAM, TEST_STREAM, VALIDATION_STREAM = 1, 2, 3


@dataclass(frozen=True)
class CurvePoint:
    step: int
    loss: float
    accuracy: float
    train_time_s: float


@dataclass(frozen=True)
class TrainingResult:
    """What one training run gives. ``loss``/``accuracy``/``solved``: on the test set after
    training; ``val_loss``/``val_accuracy``: on the validation set at the last evaluation;
    ``steps_to_solve``: the step at which the validation set first met the task's criterion
    (training stopped there), None when it never did within the budget; ``curve``: validation
    loss and accuracy every ``eval_every`` steps."""

    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    baseline: float
    solved: bool
    steps_to_solve: int | None
    time_to_solve_s: float | None
    steps_run: int
    train_time_s: float
    curve: tuple[CurvePoint, ...]

    @property
    def loss_ratio(self) -> float:
        return self.loss / self.baseline


def rng_for(seed: int, stream: int) -> np.random.Generator:
    """Independent generators for training, test and validation data, derived from one seed."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def held_out(task, recipe: Recipe, seed: int, device, dtype, stream: int = TEST_STREAM):
    """A held-out set of ``recipe.eval_size`` sequences from ``stream`` (TEST_STREAM or
    VALIDATION_STREAM): identical for every cell and every learning rate with this seed. A
    task on real data draws it from its own test or validation split."""
    if stream not in (TEST_STREAM, VALIDATION_STREAM):
        raise ValueError(f"held-out data comes from the test ({TEST_STREAM}) or validation ({VALIDATION_STREAM}) "
                         f"stream, got {stream}")
    split = "test" if stream == TEST_STREAM else "validation"
    batch = task.sample_split(recipe.eval_size, rng_for(seed, stream), split)
    return batch.to(device, dtype)


@torch.no_grad()
def evaluate(model, task, x, target) -> tuple[float, float]:
    logits, _ = model(x)
    return float(task.loss(logits, target)), float(task.accuracy(logits, target))


def make_optimizer(recipe: Recipe, params):
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr)
    if recipe.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=recipe.lr)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=0.9)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}; allowed: adam, rmsprop, sgd")


def train(model, task, recipe: Recipe, seed: int, device, dtype=torch.float32, test_data=None,
          validation_data=None) -> TrainingResult:
    """Train ``model`` (a SequenceModel already on ``device``) until the validation set is
    solved or the step budget is spent, then evaluate it once on the test set.

    ``test_data``/``validation_data``: (x, target) held-out sets, drawn here from their
    streams when not given. Time counts training steps only (evaluation excluded). Raises
    :class:`DivergedError` when the training or validation loss becomes NaN or inf.
    """
    train_rng = rng_for(seed, TRAIN_STREAM)
    eval_x, eval_target = (validation_data if validation_data is not None
                           else held_out(task, recipe, seed, device, dtype, VALIDATION_STREAM))
    optimizer = make_optimizer(recipe, model.parameters())
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    curve: list[CurvePoint] = []
    loss, accuracy = evaluate(model, task, eval_x, eval_target)
    curve.append(CurvePoint(0, loss, accuracy, 0.0))
    train_time_s = 0.0
    steps_to_solve = time_to_solve_s = None
    step = 0
    model.train()
    while step < recipe.steps:
        x, target = task.sample(recipe.batch_size, train_rng).to(device, dtype)
        sync()
        started = time.perf_counter()
        logits, _ = model(x)
        train_loss = task.loss(logits, target)
        optimizer.zero_grad(set_to_none=True)
        train_loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_norm)
        optimizer.step()
        value = train_loss.detach().item()  # also synchronises CUDA, so the step's time is real
        train_time_s += time.perf_counter() - started
        step += 1
        if not math.isfinite(value):
            raise DivergedError(f"training loss became {value} at step {step}")
        if step % recipe.eval_every == 0 or step == recipe.steps:
            loss, accuracy = evaluate(model, task, eval_x, eval_target)
            if not math.isfinite(loss):
                raise DivergedError(f"validation loss became {loss} at step {step}")
            curve.append(CurvePoint(step, loss, accuracy, train_time_s))
            if task.solved(loss, accuracy):
                steps_to_solve, time_to_solve_s = step, train_time_s
                break
    # The test set is looked at once, here, after every decision about training was made.
    test_x, test_target = test_data if test_data is not None else held_out(task, recipe, seed, device, dtype)
    test_loss, test_accuracy = evaluate(model, task, test_x, test_target)
    return TrainingResult(
        loss=test_loss,
        accuracy=test_accuracy,
        val_loss=curve[-1].loss,
        val_accuracy=curve[-1].accuracy,
        baseline=task.baseline,
        solved=task.solved(test_loss, test_accuracy),
        steps_to_solve=steps_to_solve,
        time_to_solve_s=time_to_solve_s,
        steps_run=step,
        train_time_s=train_time_s,
        curve=tuple(curve),
    )
