"""myecho: repeat each symbol T steps later, a token task plugin with an option."""

import math

import numpy as np

from harness import hookimpl
from harness.tasks import IGNORE_INDEX, Batch, TaskSizeError, TokenTask, logits_of, one_hot


class DelayedEcho(TokenTask):
    """Input, length T + 10: symbols drawn uniformly from S, one-hot. Target: at each of
    the last 10 steps, the symbol seen T steps earlier; no loss at the first T steps
    (IGNORE_INDEX). Without memory, the symbol T steps back is independent of everything
    the cell sees now, so the best prediction is uniform over S: the baseline ln S."""

    name = "myecho"
    reference = "docs/writing-tasks.md, a worked example"
    solved_rule = "accuracy >= 0.99"

    def __init__(self, seq_len, *, n_symbols=4):  # options are keyword arguments with defaults
        """:param n_symbols: S, the symbols drawn from (>= 2); 'rnnbench tasks' shows this line"""
        if not isinstance(n_symbols, int) or n_symbols < 2:
            raise TaskSizeError(f"myecho: n_symbols must be an integer >= 2, got {n_symbols!r}")
        self.n_symbols = self.input_size = self.output_size = n_symbols
        super().__init__(seq_len)  # checks seq_len >= min_seq_len (1)

    @property
    def options(self):  # recorded beside seq_len
        return {"n_symbols": self.n_symbols}

    @property
    def length(self):  # the steps the cell sees; seq_len is the delay T
        return self.seq_len + 10

    @property
    def baseline(self):
        return math.log(self.n_symbols)

    def memoryless_logits(self, batch_size):  # the predictor the baseline describes; no input
        return logits_of(np.full(self.n_symbols, 1 / self.n_symbols), self.length, batch_size)

    def sample(self, batch_size, rng):  # rng: a seeded numpy Generator
        symbols = rng.integers(0, self.n_symbols, size=(self.length, batch_size))
        target = np.full((self.length, batch_size), IGNORE_INDEX, dtype=np.int64)
        target[self.seq_len:] = symbols[:10]  # step t answers with the symbol of step t - T
        return Batch(x=one_hot(symbols, self.n_symbols), target=target)

    def solved(self, loss, accuracy):  # loss, accuracy and last_step_loss come from TokenTask
        return accuracy >= 0.99


@hookimpl
def register_tasks(register):
    register("myecho", DelayedEcho, summary="repeat each symbol T steps later (the docs' token-task example)")
