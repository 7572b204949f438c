"""Selective copying: Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces", 2023, section 3.1 and appendix E.1 (after the "denoise" task of Jing et al.,
"Gated Orthogonal Recurrent Units", Neural Computation 2019).

Alphabet: 0 = noise, 1..S = data symbols, S + 1 = delimiter (inputs one-hot over S + 2).
Input, length T + 1 + K: a region of T steps holding K data symbols (drawn uniformly from
1..S, with replacement) at K distinct positions drawn uniformly, noise at the other
T - K; then the delimiter; then K noise steps. Target: at the K steps after the
delimiter, the K data symbols in the order they appeared; no loss anywhere else
(``IGNORE_INDEX``). Unlike copy (Arjovsky et al. 2016), the symbols sit at random places,
so a recurrence whose dynamics do not depend on its input (a time-invariant filter) cannot
know where to look: Gu & Dao's argument for input-dependent ("selective") state updates.

Loss: mean cross-entropy over the K recall steps (S + 1 output classes: noise and the
S symbols). Memoryless baseline: without memory, each recalled symbol is a uniform draw
from S, so the best predictor spreads its mass evenly over the S symbols and pays ``ln S``
per recall step. Accuracy: the fraction of recalled symbols predicted correctly (memoryless
1/S); solved at accuracy >= 0.99.

``seq_len`` is T, the region's length (the difficulty); ``length`` is T + 1 + K. Options:
``n_symbols`` S (default 8) and ``n_recall`` K (default 8, Gu & Dao use 16 of 16 tokens at
T = 4096).
"""

from __future__ import annotations

import math

import numpy as np

from harness.hookspecs import hookimpl
from harness.tasks import IGNORE_INDEX, Batch, TaskSizeError, TokenTask, logits_of, one_hot

NOISE = 0


class SelectiveCopyTask(TokenTask):
    name = "selective-copy"
    reference = "Gu & Dao 2023 (Mamba), sec. 3.1 and app. E.1; Jing et al. 2019"
    solved_rule = "recalled-symbol accuracy >= 0.99"
    default_seq_len = 16
    min_seq_len = 8  # at the default n_recall; each task sets its own

    def __init__(self, seq_len: int, *, n_symbols: int = 8, n_recall: int = 8):
        """:param n_symbols: S, the data symbols the recalled ones are drawn from (>= 2)
        :param n_recall: K, how many symbols are scattered in the region and recalled in order (1 to T)
        """
        if not isinstance(n_symbols, int) or n_symbols < 2:
            raise TaskSizeError(f"{self.name}: n_symbols must be an integer >= 2, got {n_symbols!r}")
        if not isinstance(n_recall, int) or n_recall < 1:
            raise TaskSizeError(f"{self.name}: n_recall must be an integer >= 1, got {n_recall!r}")
        self.n_symbols, self.n_recall = n_symbols, n_recall
        self.min_seq_len = n_recall  # the region must hold the K symbols
        self.delimiter = n_symbols + 1
        self.input_size = n_symbols + 2
        self.output_size = n_symbols + 1
        super().__init__(seq_len)

    @property
    def options(self):
        return {"n_symbols": self.n_symbols, "n_recall": self.n_recall}

    @property
    def length(self) -> int:
        return self.seq_len + 1 + self.n_recall

    @property
    def baseline(self) -> float:
        return math.log(self.n_symbols)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        region, recall = self.seq_len, self.n_recall
        symbols = rng.integers(1, self.n_symbols + 1, size=(recall, batch_size))
        # K distinct positions per sequence, in increasing order: the order of appearance.
        positions = np.sort(np.argsort(rng.random((region, batch_size)), axis=0)[:recall], axis=0)
        tokens = np.full((self.length, batch_size), NOISE, dtype=np.int64)
        np.put_along_axis(tokens, positions, symbols, axis=0)
        tokens[region] = self.delimiter
        target = np.full((self.length, batch_size), IGNORE_INDEX, dtype=np.int64)
        target[region + 1:] = symbols
        return Batch(x=one_hot(tokens, self.input_size), target=target)

    def memoryless_logits(self, batch_size):
        """Uniform over the S data symbols, never noise (only the recall steps are scored)."""
        return logits_of(np.r_[0.0, np.full(self.n_symbols, 1 / self.n_symbols)], self.length, batch_size)

    def solved(self, loss: float, accuracy: float) -> bool:
        return accuracy >= 0.99


@hookimpl
def register_tasks(register):
    register("selective-copy", SelectiveCopyTask,
             summary="recall K symbols scattered among noise, in order (Gu & Dao 2023, Mamba)")
