"""The echo task: the smallest task that needs memory, used by ``rnnbench check``'s training
check (it is not registered as a benchmark task).

Input ``x ~ N(0, 1)`` of shape (T, B, 2); the target at step t is ``x_{t-1}[0]`` (zero at
t = 0), so the cell must carry one step of memory. Loss: mean squared error over all steps.
Baseline: a memoryless predictor's best guess is 0 (the target is independent of ``x_t``),
costing E[x²] = 1 at the T - 1 steps after the first and 0 at the first: (T - 1) / T.
Accuracy: the fraction of predictions within 0.1 of the target. Never "solved", so that the
training check always runs its full budget.
"""

from __future__ import annotations

import numpy as np
import torch

from harness.tasks import Batch, Task

TOLERANCE = 0.1


class EchoTask(Task):
    name = "echo"
    input_size = 2
    output_size = 1
    reference = "rnnbench's training check (a one-step delay line)"
    solved_rule = "never (the check compares the loss before and after training)"

    @property
    def length(self) -> int:
        return self.seq_len

    @property
    def baseline(self) -> float:
        return (self.seq_len - 1) / self.seq_len

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        x = rng.standard_normal((self.seq_len, batch_size, self.input_size)).astype(np.float32)
        target = np.zeros((self.seq_len, batch_size, 1), dtype=np.float32)
        target[1:] = x[:-1, :, :1]
        return Batch(x=x, target=target)

    def memoryless_logits(self, batch_size: int) -> torch.Tensor:
        """0, the mean of the target, at every step."""
        return torch.zeros(self.length, batch_size, 1, dtype=torch.float64)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(logits, target)

    def last_step_loss(self, logits_last: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(logits_last, target[-1])

    def accuracy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((logits - target).abs() < TOLERANCE).to(torch.float64).mean()

    def solved(self, loss: float, accuracy: float) -> bool:
        return False
