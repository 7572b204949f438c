"""Accuracy: train a cell on a task with one recipe for all cells, evaluate on held-out data."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from harness.config import Recipe
from harness.errors import DivergedError

TRAIN_STREAM, EVAL_STREAM = 1, 2


@dataclass(frozen=True)
class CurvePoint:
    step: int
    loss: float
    accuracy: float
    train_time_s: float


@dataclass(frozen=True)
class TrainingResult:
    loss: float
    accuracy: float
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
    """Independent generators for training and held-out data, derived from one seed."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def held_out(task, recipe: Recipe, seed: int, device, dtype):
    """The held-out set: drawn from its own stream, identical for every cell with this seed."""
    batch = task.sample_split(recipe.eval_size, rng_for(seed, EVAL_STREAM), "test")  # real data: its test split
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


def train(model, task, recipe: Recipe, seed: int, device, dtype=torch.float32, eval_data=None) -> TrainingResult:
    """Train ``model`` (a SequenceModel already on ``device``) until solved or out of steps.

    Time counts training steps only (evaluation excluded). Raises :class:`DivergedError` when the training loss becomes NaN or inf.
    """
    train_rng = rng_for(seed, TRAIN_STREAM)
    eval_x, eval_target = eval_data if eval_data is not None else held_out(task, recipe, seed, device, dtype)
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
                raise DivergedError(f"held-out loss became {loss} at step {step}")
            curve.append(CurvePoint(step, loss, accuracy, train_time_s))
            if task.solved(loss, accuracy):
                steps_to_solve, time_to_solve_s = step, train_time_s
                break
    return TrainingResult(
        loss=curve[-1].loss,
        accuracy=curve[-1].accuracy,
        baseline=task.baseline,
        solved=steps_to_solve is not None,
        steps_to_solve=steps_to_solve,
        time_to_solve_s=time_to_solve_s,
        steps_run=step,
        train_time_s=train_time_s,
        curve=tuple(curve),
    )
