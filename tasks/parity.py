"""Parity: the parity of a sequence of T bits. A regular-language task of the Chomsky
hierarchy benchmark (Delétang et al., "Neural Networks and the Chomsky Hierarchy", ICLR
2023), used for state tracking and length generalisation by Beck et al. 2024 (xLSTM,
sec. 4.1, "formal languages") and by Grazzi et al. ("Unlocking State-Tracking in Linear
RNNs Through Negative Eigenvalues", ICLR 2025).

Input, length T: bits b_1..b_T drawn independently and uniformly, one-hot over {0, 1}.
Target, at the last step: b_1 xor b_2 xor ... xor b_T (2 classes).

Loss: cross-entropy at the last step (``IGNORE_INDEX`` at every earlier step). Memoryless
baseline: for T >= 2 the parity is independent of any T - 1 of the bits, in particular of
the last one, so a predictor that misses even one bit can do no better than 1/2 each way:
``ln 2``. Accuracy: the fraction of sequences classified correctly (memoryless 1/2);
solved at accuracy >= 0.99.

Option ``running`` (default ``False``): a target at every step t = 2..T, the parity of the
prefix, p_t = b_1 xor ... xor b_t (step 1 has ``IGNORE_INDEX``), as Grazzi et al. and
Delétang et al. train it. One final target gives no gradient until a model already uses
every bit (a plateau: its loss is ln 2 for every function of fewer bits), so small budgets
stay at chance; the prefix targets grade the task from 2 bits to T. Loss: mean
cross-entropy over the T - 1 scored steps; accuracy: the fraction of those steps right.
Memoryless baseline, still ``ln 2``: for t >= 2, p_t = p_{t-1} xor b_t with p_{t-1}
uniform and independent of b_t, so p_t is uniform given b_t alone (and given nothing);
a predictor without memory pays ln 2 at each scored step, and the mean of T - 1 terms of
ln 2 is ln 2. Step 1 is left out because p_1 = b_1 is read off the current input, which
would put a cell without memory below ln 2 (at (T - 1)/T · ln 2).

``seq_len`` is T and ``length`` is T; a cell trained at T may be evaluated at longer T.
"""

from __future__ import annotations

import math

import numpy as np

from harness.hookspecs import hookimpl
from harness.tasks import IGNORE_INDEX, Batch, TaskSizeError, TokenTask, logits_of, one_hot


class ParityTask(TokenTask):
    name = "parity"
    input_size = 2
    output_size = 2
    reference = "Deletang et al. 2023 (ICLR); Beck et al. 2024 (xLSTM), sec. 4.1; Grazzi et al. 2025 (ICLR)"
    solved_rule = "accuracy >= 0.99"
    min_seq_len = 2  # one bit is its own parity: no memory needed

    def __init__(self, seq_len: int, *, running: bool = False):
        """:param running: true: a target at every step from the second, the parity so far (Grazzi et al.
            2025); false: one target, at the last step
        """
        if not isinstance(running, bool):
            raise TaskSizeError(f"{self.name}: running must be true or false, got {running!r}")
        self.running = running
        super().__init__(seq_len)

    @property
    def options(self):
        return {"running": self.running}

    @property
    def length(self) -> int:
        return self.seq_len

    @property
    def baseline(self) -> float:
        return math.log(2)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        bits = rng.integers(0, 2, size=(self.seq_len, batch_size))
        target = np.full((self.seq_len, batch_size), IGNORE_INDEX, dtype=np.int64)
        if self.running:
            target[1:] = (np.cumsum(bits, axis=0) % 2)[1:]  # p_t for t = 2..T; p_1 = b_1 needs no memory
        else:
            target[-1] = bits.sum(axis=0) % 2
        return Batch(x=one_hot(bits, self.input_size), target=target)

    def memoryless_logits(self, batch_size):
        """1/2 each way at every step (only the scored steps count: the last one, or 2..T when running)."""
        return logits_of([0.5, 0.5], self.length, batch_size)

    def solved(self, loss: float, accuracy: float) -> bool:
        return accuracy >= 0.99


@hookimpl
def register_tasks(register):
    register("parity", ParityTask, summary="parity of T random bits, read one per step (Deletang et al. 2023)")
