"""The task contract: seeded batches, loss, metrics, analytic baseline, "solved" criterion."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch


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
            raise ValueError(f"{self.name}: seq_len must be an integer >= {self.min_seq_len}, got {seq_len!r}")
        self.seq_len = seq_len

    min_seq_len: int = 1

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
        """Training loss (scalar) for logits of shape (L, B, output_size)."""

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
