"""mytask: recall the first of T values, a custom task plugin."""

import numpy as np
import torch

from harness import hookimpl
from harness.tasks import Batch, Task


class RecallFirst(Task):
    """Input (T, B, 2): channel 0 holds values drawn from U(-1, 1), channel 1 marks step 0.
    Target: the value at step 0, predicted at the last step (MSE). The best prediction
    without memory is 0, which costs Var(U(-1, 1)) = 1/3: the baseline."""

    name = "mytask"
    input_size = 2
    output_size = 1
    reference = "docs/writing-cells.md, a worked example"
    solved_rule = "held-out MSE <= 0.01"

    @property
    def length(self):  # the number of input steps the cell sees, here T itself
        return self.seq_len

    @property
    def baseline(self):
        return 1.0 / 3.0

    def memoryless_logits(self, batch_size):  # predict 0 at every step, whatever the input
        return torch.zeros(self.length, batch_size, 1)

    def sample(self, batch_size, rng):  # rng: a seeded numpy Generator
        x = np.zeros((self.seq_len, batch_size, 2), dtype=np.float32)
        x[..., 0] = rng.uniform(-1.0, 1.0, size=(self.seq_len, batch_size))
        x[0, :, 1] = 1.0
        return Batch(x=x, target=x[0, :, 0].copy())

    def loss(self, logits, target):  # logits: (T, B, 1) from the harness's linear readout
        return self.last_step_loss(logits[-1], target)

    def last_step_loss(self, logits_last, target):  # the gradient probe's loss: the last step alone
        return ((logits_last[:, 0] - target) ** 2).mean()

    def accuracy(self, logits, target):  # the fraction recalled to within 0.1
        return ((logits[-1, :, 0] - target).abs() < 0.1).to(torch.float64).mean()

    def solved(self, loss, accuracy):
        return loss <= 0.01


@hookimpl
def register_tasks(register):
    register("mytask", RecallFirst, summary="recall the first of T values (the docs' task example)")
