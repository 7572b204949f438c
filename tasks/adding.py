"""The adding problem of Hochreiter & Schmidhuber 1997, in the form used by Le, Jaitly &
Hinton 2015 ("A Simple Way to Initialize Recurrent Networks of Rectified Linear Units",
sec. 4.1) and Arjovsky, Shah & Bengio 2016 (sec. 4.2).

Input, length T, two channels: channel 0 holds values drawn from U(0, 1); channel 1 is
zero except for two markers, one at a uniformly drawn step in the first half
[0, T//2) and one in the second half [T//2, T). Target: the sum of the two marked
values. Loss: mean squared error of the prediction at the last step. Baseline: always
predict 1, the mean of the sum, which costs Var(U1 + U2) = 2/12 = 1/6. Accuracy: the
fraction of sequences with |error| < 0.04; solved at held-out MSE <= 0.01.
"""

from __future__ import annotations

import numpy as np
import torch

from harness import hookimpl
from harness.tasks import Batch, Task

TOLERANCE = 0.04


class AddingTask(Task):
    name = "adding"
    input_size = 2
    output_size = 1
    reference = "Le, Jaitly & Hinton 2015, sec. 4.1; Arjovsky et al. 2016, sec. 4.2"
    solved_rule = "held-out MSE <= 0.01"
    min_seq_len = 2

    @property
    def length(self) -> int:
        return self.seq_len

    @property
    def baseline(self) -> float:
        return 1.0 / 6.0

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        length = self.seq_len
        half = length // 2
        values = rng.random((length, batch_size))
        first = rng.integers(0, half, size=batch_size)
        second = rng.integers(half, length, size=batch_size)
        markers = np.zeros((length, batch_size))
        columns = np.arange(batch_size)
        markers[first, columns] = 1.0
        markers[second, columns] = 1.0
        target = values[first, columns] + values[second, columns]
        x = np.stack([values, markers], axis=-1).astype(np.float32)
        return Batch(x=x, target=target.astype(np.float32))

    def memoryless_logits(self, batch_size):
        """1, the mean of the sum of two U(0, 1) values, at every step (only the last is scored)."""
        return torch.ones(self.length, batch_size, 1, dtype=torch.float64)

    def loss(self, logits, target):
        return self.last_step_loss(logits[-1], target)

    def last_step_loss(self, logits_last, target):
        return ((logits_last[:, 0] - target) ** 2).mean()

    def accuracy(self, logits, target):
        return ((logits[-1, :, 0] - target).abs() < TOLERANCE).to(torch.float64).mean()

    def solved(self, loss: float, accuracy: float) -> bool:
        return loss <= 0.01


@hookimpl
def register_tasks(register):
    register("adding", AddingTask, summary="sum two marked values in a length-T sequence (Le et al. 2015)")
