"""The copy (memory) task of Arjovsky, Shah & Bengio, "Unitary Evolution Recurrent Neural
Networks", ICML 2016, section 4.1 (after Hochreiter & Schmidhuber 1997).

Alphabet: 0 = blank, 1..8 = symbols, 9 = delimiter (inputs one-hot over these 10).
Input, length T + 20: 10 symbols drawn uniformly from 1..8, T - 1 blanks, the
delimiter, 10 blanks. Target, same length: T + 10 blanks, then the 10 symbols.
Loss: cross-entropy over all T + 20 steps (9 output classes: blank and the 8 symbols).
Memoryless baseline: predict blank for T + 10 steps, uniform over the 8 symbols for the
last 10, which costs ``10 ln 8 / (T + 20)`` per step. Accuracy is over the 10 recalled
symbols only; solved at accuracy >= 0.99.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from harness import hookimpl
from harness.tasks import Batch, TokenTask, logits_of

N_SYMBOLS = 8
N_RECALL = 10
BLANK = 0
DELIMITER = N_SYMBOLS + 1


class CopyTask(TokenTask):  # every step has a target: no IGNORE_INDEX
    name = "copy"
    input_size = N_SYMBOLS + 2
    output_size = N_SYMBOLS + 1
    reference = "Arjovsky, Shah & Bengio 2016, ICML, sec. 4.1"
    solved_rule = "recalled-symbol accuracy >= 0.99"

    @property
    def length(self) -> int:
        return self.seq_len + 2 * N_RECALL

    @property
    def baseline(self) -> float:
        return N_RECALL * math.log(N_SYMBOLS) / self.length

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        length, delay = self.length, self.seq_len
        symbols = rng.integers(1, N_SYMBOLS + 1, size=(N_RECALL, batch_size))
        tokens = np.full((length, batch_size), BLANK, dtype=np.int64)
        tokens[:N_RECALL] = symbols
        tokens[N_RECALL + delay - 1] = DELIMITER  # after T - 1 blanks
        target = np.full((length, batch_size), BLANK, dtype=np.int64)
        target[-N_RECALL:] = symbols
        x = np.eye(self.input_size, dtype=np.float32)[tokens]
        return Batch(x=x, target=target)

    def memoryless_logits(self, batch_size):
        """Blank for sure at the first T + 10 steps, then uniform over the 8 symbols."""
        blank = np.eye(self.output_size)[BLANK]
        uniform = np.r_[0.0, np.full(N_SYMBOLS, 1 / N_SYMBOLS)]
        return torch.cat([logits_of(blank, self.length - N_RECALL, batch_size), logits_of(uniform, N_RECALL, batch_size)])

    def accuracy(self, logits, target):
        recalled = logits[-N_RECALL:].argmax(dim=-1)
        return (recalled == target[-N_RECALL:]).to(torch.float64).mean()

    def solved(self, loss: float, accuracy: float) -> bool:
        return accuracy >= 0.99


@hookimpl
def register_tasks(register):
    register("copy", CopyTask, summary="recall 10 symbols after a delay T (Arjovsky et al. 2016)")
