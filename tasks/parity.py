"""Parity: the parity of a sequence of T bits. A regular-language task of the Chomsky
hierarchy benchmark (Delétang et al., "Neural Networks and the Chomsky Hierarchy", ICLR
2023), used for state tracking and length generalisation by Beck et al. 2024 (xLSTM,
sec. 4.1, "formal languages").

Input, length T: bits b_1..b_T drawn independently and uniformly, one-hot over {0, 1}.
Target, at the last step: b_1 xor b_2 xor ... xor b_T (2 classes).

Loss: cross-entropy at the last step (``IGNORE_INDEX`` at every earlier step). Memoryless
baseline: for T >= 2 the parity is independent of any T - 1 of the bits, in particular of
the last one, so a predictor that misses even one bit can do no better than 1/2 each way:
``ln 2``. Accuracy: the fraction of sequences classified correctly (memoryless 1/2);
solved at accuracy >= 0.99.

``seq_len`` is T and ``length`` is T; a cell trained at T may be evaluated at longer T.
"""

from __future__ import annotations

import math

import numpy as np

from harness.hookspecs import hookimpl
from harness.tasks import IGNORE_INDEX, Batch, TokenTask, logits_of, one_hot


class ParityTask(TokenTask):
    name = "parity"
    input_size = 2
    output_size = 2
    reference = "Deletang et al. 2023 (ICLR); Beck et al. 2024 (xLSTM), sec. 4.1"
    solved_rule = "accuracy >= 0.99"
    min_seq_len = 2  # one bit is its own parity: no memory needed

    @property
    def length(self) -> int:
        return self.seq_len

    @property
    def baseline(self) -> float:
        return math.log(2)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        bits = rng.integers(0, 2, size=(self.seq_len, batch_size))
        target = np.full((self.seq_len, batch_size), IGNORE_INDEX, dtype=np.int64)
        target[-1] = bits.sum(axis=0) % 2
        return Batch(x=one_hot(bits, self.input_size), target=target)

    def memoryless_logits(self, batch_size):
        """1/2 each way (only the last step is scored)."""
        return logits_of([0.5, 0.5], self.length, batch_size)

    def solved(self, loss: float, accuracy: float) -> bool:
        return accuracy >= 0.99


@hookimpl
def register_tasks(register):
    register("parity", ParityTask, summary="parity of T random bits, read one per step (Deletang et al. 2023)")
