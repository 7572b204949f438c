"""The task contract: seeded batches, loss, metrics, analytic baseline, "solved" criterion."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from harness.errors import UsageError

# Targets of token tasks hold this where a step has no loss (torch's default ignore_index).
IGNORE_INDEX = -100
# The disjoint parts of a real data set; synthetic tasks draw every part from the same law.
SPLITS = ("train", "validation", "test")


class TaskSizeError(UsageError, ValueError):
    """A task asked for at a size it does not define (one line on the command line)."""


@dataclass(frozen=True)
class Batch:
    """One batch, time-major. ``x``: (L, B, input_size) float32; ``target``: task-specific."""

    x: np.ndarray
    target: np.ndarray

    def to(self, device: torch.device, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(self.x).to(device=device, dtype=dtype)
        target = torch.from_numpy(self.target).to(device)
        if target.is_floating_point():
            target = target.to(dtype)
        return x, target


class Task(ABC):
    """A synthetic long-dependency task. Subclasses set the class attributes below.

    ``seq_len`` is the task's difficulty parameter T (the delay for copy, the sequence
    length for adding); ``length`` is the number of input steps the cell sees.
    """

    name: str
    input_size: int
    output_size: int
    reference: str

    def __init__(self, seq_len: int):
        if not isinstance(seq_len, int) or seq_len < self.min_seq_len:
            raise TaskSizeError(f"{self.name}: seq_len must be an integer >= {self.min_seq_len}, got {seq_len!r}")
        self.seq_len = seq_len

    min_seq_len: int = 1
    # T at which the task runs when neither --seq-len nor the profile names one (None: the
    # profile's default lengths); tasks whose data fixes T (digits: 64 pixels) set it.
    default_seq_len: int | None = None

    @property
    @abstractmethod
    def length(self) -> int:
        """Number of input time steps L."""

    @property
    @abstractmethod
    def baseline(self) -> float:
        """Analytic loss of the best memoryless predictor (loss/baseline < 1 means learning)."""

    @abstractmethod
    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """Draw one batch from ``rng``."""

    @abstractmethod
    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Training loss (scalar, at least 0: a mean of non-negative per-step losses) for logits of shape
        (L, B, output_size)."""

    @abstractmethod
    def last_step_loss(self, logits_last: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss at the last time step alone, for logits (B, output_size): the gradient probe's L."""

    @abstractmethod
    def accuracy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Task accuracy in [0, 1] (scalar tensor)."""

    @abstractmethod
    def solved(self, loss: float, accuracy: float) -> bool:
        """Whether held-out metrics meet the task's "solved" criterion."""

    solved_rule: str = ""

    @property
    def options(self) -> dict[str, object]:
        """The task's options beyond ``seq_len`` (factory keyword arguments), for the record."""
        return {}

    def memoryless_logits(self, batch_size: int) -> torch.Tensor:
        """The outputs, shape (L, B, output_size), of the predictor that :attr:`baseline` describes:
        the best one that sees no input. They may depend on the step (copy: blank until the
        recall steps) but not on the sequence, which is why no input is passed. A probability of
        0 is a ``-inf`` logit (:func:`logits_of`). ``rnnbench check TASK`` scores them with
        :meth:`loss` on a large held-out batch and expects :attr:`baseline`.
        """
        raise NotImplementedError(f"{self.name}: define memoryless_logits(batch_size), the outputs (L, B, output_size) "
                                  "of the input-free predictor whose loss is the baseline (docs/writing-tasks.md, "
                                  "section 4)")

    def sample_split(self, batch_size: int, rng: np.random.Generator, split: str) -> Batch:
        """Draw one batch from one part of the data: ``"train"``, ``"validation"`` or ``"test"``.

        Synthetic tasks draw every part from the same distribution (the harness keeps the
        parts apart by giving each its own seeded stream), so this is :meth:`sample`.
        Tasks on a fixed data set override it to draw from disjoint parts; their
        :meth:`sample` is the training part.
        """
        if split not in SPLITS:
            raise ValueError(f"{self.name}: split must be one of {', '.join(SPLITS)}, got {split!r}")
        return self.sample(batch_size, rng)


def logits_of(probabilities, length: int, batch_size: int) -> torch.Tensor:
    """The same class probabilities (output_size,) at every step of every sequence, as logits of
    shape (length, batch_size, output_size) in float64: ``ln p``, ``-inf`` where ``p`` is 0."""
    p = torch.as_tensor(np.asarray(probabilities, dtype=np.float64))
    return p.log().expand(length, batch_size, len(p))


def one_hot(tokens: np.ndarray, size: int) -> np.ndarray:
    """Integer tokens of any shape -> float32 one-hot vectors, shape ``tokens.shape + (size,)``."""
    return np.eye(size, dtype=np.float32)[tokens]


class TokenTask(Task):
    """A task whose targets are classes: ``target`` is int64 of shape (L, B), one class per
    step, with :data:`IGNORE_INDEX` at steps without a loss. The loss is the mean
    cross-entropy (nats) over the steps with a target, accuracy the fraction of those steps
    whose arg-max is the target. A task scored at the last step alone fills every earlier
    step with :data:`IGNORE_INDEX`; every token task has a target at its last step, which
    the gradient probe needs.
    """

    def loss(self, logits, target):
        return F.cross_entropy(logits.reshape(-1, self.output_size), target.reshape(-1), ignore_index=IGNORE_INDEX)

    def last_step_loss(self, logits_last, target):
        return F.cross_entropy(logits_last, target[-1], ignore_index=IGNORE_INDEX)

    def accuracy(self, logits, target):
        scored = target != IGNORE_INDEX
        return (logits.argmax(dim=-1)[scored] == target[scored]).to(torch.float64).mean()
