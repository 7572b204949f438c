"""The conformance checks ``rnnbench check TASK`` runs on a task plugin, importable for pytest:
``assert_task_conforms("mytask")``.

Each check takes a :class:`~harness.plugins.TaskSpec` and returns the message of its PASS line
or ``(SKIP, why)``; it raises :class:`~harness.errors.TaskContractError` with the message of its
FAIL line. In order:

``build``      the factory builds the task at its default T (or T = 16) with its default
               options; sizes are positive integers, the baseline a positive finite number
``shapes``     ``x`` is float32 (L, B, input_size) and finite; a token task's target is int64
               (L, B) of classes or ``IGNORE_INDEX``; at B = 1 too
``seeded``     the same seed gives the same batch, another seed another, in every split
``losses``     loss and last-step loss of random outputs are finite scalars, at least 0, with
               finite gradients; accuracy is in [0, 1]
``last-step``  a token task has a target at its last step in every sequence (the gradient
               probe differentiates that step's loss)
``baseline``   the loss of :meth:`~harness.tasks.Task.memoryless_logits`, the input-free predictor
               the baseline describes, measured on 16 held-out batches of 512 sequences
               (test split), equals :attr:`~harness.tasks.Task.baseline` within 4 standard errors
               of the mean over batches (and 1e-6 relative); that predictor is not ``solved``

When ``build`` fails the others are skipped. Checks run under ``torch.random.fork_rng`` on one
thread, like the cell checks (:mod:`harness.testing`).
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
from torch.random import fork_rng

from harness.checks import SKIP, raise_failures
from harness.errors import RnnbenchError, TaskContractError
from harness.plugins import TaskSpec
from harness.tasks import IGNORE_INDEX, SPLITS, TokenTask

BATCH = 5
BASELINE_BATCHES, BASELINE_BATCH = 16, 512
FALLBACK_SEQ_LEN = 16


def _task(spec: TaskSpec):
    seq_len = getattr(spec.factory, "default_seq_len", None) or max(FALLBACK_SEQ_LEN,
                                                                     getattr(spec.factory, "min_seq_len", 1))
    return spec.factory(seq_len)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def check_build(spec: TaskSpec) -> str:
    try:
        task = _task(spec)
    except RnnbenchError as exc:
        raise TaskContractError(str(exc)) from None
    for name in ("input_size", "output_size", "length", "seq_len"):
        found = getattr(task, name, None)
        if not isinstance(found, (int, np.integer)) or isinstance(found, bool) or found < 1:
            raise TaskContractError(f"task.{name} must be a positive integer, got {found!r}")
    baseline = task.baseline
    if not isinstance(baseline, (int, float)) or not math.isfinite(baseline) or baseline <= 0:
        raise TaskContractError(f"task.baseline must be a positive finite number (a loss), got {baseline!r}")
    return (f"T={task.seq_len}: L={task.length}, input_size={task.input_size}, output_size={task.output_size}, "
            f"baseline {baseline:.6g}")


def _check_batch(task, batch, batch_size: int, where: str) -> None:
    x, target = batch.x, batch.target
    expected = (task.length, batch_size, task.input_size)
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.shape != expected:
        raise TaskContractError(f"{where}: x must be a float32 array of shape (L, B, input_size) = {expected}, got "
                                f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
    if not np.isfinite(x).all():
        raise TaskContractError(f"{where}: x has NaN or inf entries")
    if isinstance(task, TokenTask):
        if target.dtype != np.int64 or target.shape != expected[:2]:
            raise TaskContractError(f"{where}: a token task's target must be int64 of shape (L, B) = {expected[:2]}, "
                                    f"got {target.dtype} {target.shape}")
        scored = target[target != IGNORE_INDEX]
        if scored.size and (scored.min() < 0 or scored.max() >= task.output_size):
            raise TaskContractError(f"{where}: targets must be classes 0..{task.output_size - 1} or IGNORE_INDEX "
                                    f"({IGNORE_INDEX}), got values from {scored.min()} to {scored.max()}")
    elif batch_size not in np.shape(target)[:2]:
        raise TaskContractError(f"{where}: target of shape {np.shape(target)} has no batch axis of size {batch_size}")


def check_shapes(spec: TaskSpec) -> str:
    task = _task(spec)
    for batch_size in (BATCH, 1):
        for split in SPLITS:
            _check_batch(task, task.sample_split(batch_size, _rng(0), split), batch_size,
                         f"sample_split({batch_size}, rng, {split!r})")
        _check_batch(task, task.sample(batch_size, _rng(0)), batch_size, f"sample({batch_size}, rng)")
    target = task.sample(BATCH, _rng(0)).target
    return f"x float32 (L, B, I) = {(task.length, BATCH, task.input_size)}; target {target.dtype} {target.shape}; every split"


def check_seeded(spec: TaskSpec) -> str:
    task = _task(spec)
    for split in SPLITS:
        first, again = task.sample_split(64, _rng(3), split), task.sample_split(64, _rng(3), split)
        if not (np.array_equal(first.x, again.x) and np.array_equal(first.target, again.target)):
            raise TaskContractError(f"split {split!r}: two batches from generators seeded alike differ: draw every "
                                    "random number from the rng argument, not numpy.random or random")
        other = task.sample_split(64, _rng(4), split)
        if np.array_equal(first.x, other.x) and np.array_equal(first.target, other.target):
            raise TaskContractError(f"split {split!r}: generators seeded 3 and 4 give the same batch: the batch must "
                                    "come from the rng argument")
    return "same seed, same batch; another seed, another batch (train, validation and test)"


def check_losses(spec: TaskSpec) -> str:
    task = _task(spec)
    _, target = task.sample(BATCH, _rng(1)).to(torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(task.length, BATCH, task.output_size, generator=generator).requires_grad_()
    loss, last = task.loss(logits, target), task.last_step_loss(logits[-1], target)
    for name, value in (("loss", loss), ("last_step_loss", last)):
        if not isinstance(value, torch.Tensor) or value.dim() != 0 or not torch.isfinite(value):
            raise TaskContractError(f"{name} of random outputs must be a finite scalar tensor, got {value!r}")
    # Reports clip a loss's interval at 0 (harness.metric_ranges). last_step_loss is not held to it: no
    # reported metric is its value; the gradient probe (harness.gradients) only differentiates it.
    if loss.item() < 0:
        raise TaskContractError(f"loss of random outputs is {loss.item():.4g}; a loss must be at least 0 "
                                "(a mean of non-negative per-step losses: cross-entropy, squared error)")
    (loss + last).backward()
    loss, last = loss.detach(), last.detach()
    if logits.grad is None or not torch.isfinite(logits.grad).all():
        raise TaskContractError("the loss gives no finite gradient with respect to the outputs")
    accuracy = float(task.accuracy(logits.detach(), target))
    if not 0.0 <= accuracy <= 1.0:
        raise TaskContractError(f"accuracy must lie in [0, 1], got {accuracy}")
    return f"random outputs: loss {loss.item():.4g}, last-step loss {last.item():.4g}, accuracy {accuracy:.3g}"


def check_last_step(spec: TaskSpec):
    task = _task(spec)
    if not isinstance(task, TokenTask):
        return SKIP, "not a token task: its own last_step_loss defines the probe's loss"
    for split in SPLITS:
        target = task.sample_split(256, _rng(2), split).target
        missing = int((target[-1] == IGNORE_INDEX).sum())
        if missing:
            raise TaskContractError(f"split {split!r}: {missing} of 256 sequences have no target at the last step; "
                                    "every token task scores its last step (the gradient probe's loss)")
    return "every sequence has a target at its last step (256 per split)"


def check_baseline(spec: TaskSpec) -> str:
    task = _task(spec)
    try:
        outputs = task.memoryless_logits(BASELINE_BATCH)
    except NotImplementedError as exc:
        raise TaskContractError(str(exc)) from None
    expected = (task.length, BASELINE_BATCH, task.output_size)
    if not isinstance(outputs, torch.Tensor) or tuple(outputs.shape) != expected:
        raise TaskContractError(f"memoryless_logits({BASELINE_BATCH}) must be a tensor of shape (L, B, output_size) = "
                                f"{expected}, got {getattr(outputs, 'shape', type(outputs).__name__)}")
    losses, accuracies = [], []
    for index in range(BASELINE_BATCHES):
        _, target = task.sample_split(BASELINE_BATCH, _rng(100 + index), "test").to(torch.device("cpu"), torch.float64)
        losses.append(float(task.loss(outputs.to(torch.float64), target)))
        accuracies.append(float(task.accuracy(outputs.to(torch.float64), target)))
    count = BASELINE_BATCHES * BASELINE_BATCH
    bad = [loss for loss in losses if not math.isfinite(loss)]
    if bad:  # a NaN mean is never within the tolerance, but "is nan" would not say where it came from
        raise TaskContractError(f"the memoryless predictor's loss is {bad[0]} on {len(bad)} of {BASELINE_BATCHES} "
                                f"held-out batches of {BASELINE_BATCH}: memoryless_logits or loss gives NaN or inf")
    mean, error = float(np.mean(losses)), float(np.std(losses, ddof=1) / math.sqrt(len(losses)))
    tolerance = 4 * error + 1e-6 * abs(task.baseline)
    if not abs(mean - task.baseline) <= tolerance:
        raise TaskContractError(f"the memoryless predictor's loss on {count} held-out sequences is {mean:.6g} "
                                f"(standard error {error:.2g}) but task.baseline is {task.baseline:.6g}: the baseline "
                                "or memoryless_logits is wrong")
    if task.solved(mean, float(np.mean(accuracies))):
        raise TaskContractError(f"the memoryless predictor (loss {mean:.4g}, accuracy {np.mean(accuracies):.3g}) counts "
                                "as solved: the solved rule must ask for more than no memory")
    return (f"memoryless predictor's loss on {count} held-out sequences {mean:.6g} ± {error:.2g} (s.e.) = baseline "
            f"{task.baseline:.6g}; not solved")


TASK_CHECKS = (
    ("build", check_build),
    ("shapes", check_shapes),
    ("seeded", check_seeded),
    ("losses", check_losses),
    ("last-step", check_last_step),
    ("baseline", check_baseline),
)
TASK_CHECK_NAMES = tuple(name for name, _ in TASK_CHECKS)


def iter_task_checks(spec: TaskSpec) -> Iterator:
    """Yield each check's :class:`harness.testing.CheckResult` as soon as it is known."""
    from harness.testing import FAIL, CheckResult

    blocked = False
    for name, check in TASK_CHECKS:
        if blocked:
            yield CheckResult(name, SKIP, "skipped until 'build' passes")
            continue
        result = _run_one(name, check, spec)
        blocked = name == "build" and result.status == FAIL
        yield result


def _run_one(name: str, check, spec: TaskSpec):
    from harness.testing import FAIL, PASS, CheckResult

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with fork_rng(devices=[]):
            outcome = check(spec)
    except TaskContractError as failure:
        return CheckResult(name, FAIL, str(failure))
    except Exception as exc:  # the task's own error: say what it was
        return CheckResult(name, FAIL, f"{type(exc).__name__}: {exc}")
    finally:
        torch.set_num_threads(threads)
    status, message = outcome if isinstance(outcome, tuple) else (PASS, outcome)
    return CheckResult(name, status, message)


def assert_task_conforms(task: str | TaskSpec, *, registry=None, plugin_files=()) -> list:
    """Run the task checks and raise ``AssertionError`` listing every failure; return the results."""
    if isinstance(task, str):
        from harness.plugins import load_plugins

        task = (registry or load_plugins(plugin_files)).task(task)
    return raise_failures("task", task.name, list(iter_task_checks(task)))
