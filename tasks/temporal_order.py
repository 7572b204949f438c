"""The temporal-order problem: Hochreiter & Schmidhuber, "Long Short-Term Memory", Neural
Computation 9(8), 1997, section 5.6, experiment 6a (two relevant symbols, 4 classes).

Alphabet (inputs one-hot over 8): E (start), B (end), the distractors a, b, c, d, and the
relevant symbols X, Y. Input, length T: E at step 0, B at step T - 1, distractors drawn
uniformly at every other step except two: step t1, uniform in [T//10, 2T//10], and step
t2, uniform in [T//2, 6T//10], each holding X or Y with probability 1/2. Target, at the
last step: the order of the two relevant symbols, one of 4 classes XX, XY, YX, YY
(Hochreiter & Schmidhuber's Q, R, S, U). At T = 100 the windows are the paper's [10, 20]
and [50, 60]; the paper draws the length from 100..110 per sequence, here every sequence
of a batch has length T (the windows scale with T instead).

Loss: cross-entropy at the last step (``IGNORE_INDEX`` at every earlier step). Memoryless
baseline: the 4 classes are equally likely and independent of the last input (always B),
so the best memoryless prediction is uniform and costs ``ln 4``. Accuracy: the fraction of
sequences classified correctly (memoryless 1/4); solved at accuracy >= 0.99.

``seq_len`` is T and ``length`` is T.
"""

from __future__ import annotations

import math

import numpy as np

from harness.hookspecs import hookimpl
from harness.tasks import IGNORE_INDEX, Batch, TokenTask, logits_of, one_hot

START, END, X, Y = 0, 1, 6, 7
DISTRACTORS = (2, 3, 4, 5)  # a, b, c, d
N_CLASSES = 4


def relevant_windows(seq_len: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The inclusive step ranges of t1 and t2 at length T."""
    return (seq_len // 10, 2 * seq_len // 10), (seq_len // 2, 6 * seq_len // 10)


class TemporalOrderTask(TokenTask):
    name = "temporal-order"
    input_size = 8
    output_size = N_CLASSES
    reference = "Hochreiter & Schmidhuber 1997, Neural Computation, sec. 5.6, experiment 6a"
    solved_rule = "accuracy >= 0.99"
    min_seq_len = 10  # so that t1 >= 1 falls after the start symbol
    default_seq_len = 20

    @property
    def length(self) -> int:
        return self.seq_len

    @property
    def baseline(self) -> float:
        return math.log(N_CLASSES)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        length = self.seq_len
        (low1, high1), (low2, high2) = relevant_windows(length)
        tokens = rng.integers(DISTRACTORS[0], DISTRACTORS[-1] + 1, size=(length, batch_size))
        tokens[0], tokens[-1] = START, END
        first_is_y = rng.integers(0, 2, size=batch_size)
        second_is_y = rng.integers(0, 2, size=batch_size)
        columns = np.arange(batch_size)
        tokens[rng.integers(low1, high1 + 1, size=batch_size), columns] = X + first_is_y
        tokens[rng.integers(low2, high2 + 1, size=batch_size), columns] = X + second_is_y
        target = np.full((length, batch_size), IGNORE_INDEX, dtype=np.int64)
        target[-1] = 2 * first_is_y + second_is_y  # XX, XY, YX, YY
        return Batch(x=one_hot(tokens, self.input_size), target=target)

    def memoryless_logits(self, batch_size):
        """Uniform over the 4 classes (only the last step is scored)."""
        return logits_of(np.full(N_CLASSES, 1 / N_CLASSES), self.length, batch_size)

    def solved(self, loss: float, accuracy: float) -> bool:
        return accuracy >= 0.99


@hookimpl
def register_tasks(register):
    register("temporal-order", TemporalOrderTask,
             summary="classify the order of two symbols among distractors, 4 classes (Hochreiter & Schmidhuber 1997)")
