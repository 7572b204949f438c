"""Multi-query associative recall (MQAR): Arora, Eyuboglu, Timalsina et al., "Zoology:
Measuring and Improving Recall in Efficient Language Models", ICLR 2024 (arXiv 2023),
section 3.1.

Vocabulary of V tokens: 0 = blank, keys 1 .. V/2 - 1, values V/2 .. V - 1 (inputs one-hot
over V). Input, length T: N key-value pairs ``k1 v1 k2 v2 ... kN vN`` (N distinct keys, N
distinct values, drawn uniformly without replacement), then a query region of T - 2N
steps in which each of the N keys appears once more, in a random order, blanks elsewhere.
Target: at each query step, the value that was paired with the queried key; no loss at any
other step (``IGNORE_INDEX``).

Choices where Zoology leaves room, fixed here: the queries sit at uniformly drawn
positions (Zoology draws the gaps from a power law that favours short ones), the steps
between them are blank (Zoology's ``random_non_queries=False``), and one query always sits
at the last step, so that the gradient probe's last-step loss is defined for every sequence.

Loss: mean cross-entropy (V output classes) over the N query steps. Memoryless baseline:
values are independent of keys, so without memory the best prediction is uniform over the
V - V//2 value tokens, which costs ``ln(V - V//2)`` per query. (A model that remembers
which N values occurred, but not their keys, reaches ``ln N``: below the baseline, short of
recall.) Accuracy: the fraction of queries answered with the right value; solved at
accuracy >= 0.99.

``seq_len`` is T, the whole length (Zoology's ``input_seq_len``), so ``length`` = T; the
query region must hold N queries: T >= 3N. Options: ``vocab_size`` V (default 64, even,
>= 4) and ``num_pairs`` N (default 8, Zoology varies it from 4 to 64). With a fixed T,
larger N asks a recurrence to hold more bindings in its fixed-size state.
"""

from __future__ import annotations

import math

import numpy as np

from harness.hookspecs import hookimpl
from harness.tasks import IGNORE_INDEX, Batch, TaskSizeError, TokenTask, logits_of, one_hot

BLANK = 0


def _distinct(low: int, high: int, count: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct integers from [low, high) per column: shape (count, batch_size)."""
    return low + np.argsort(rng.random((high - low, batch_size)), axis=0)[:count]


class AssociativeRecallTask(TokenTask):
    name = "associative-recall"
    reference = "Arora et al. 2023 (Zoology), sec. 3.1: multi-query associative recall"
    solved_rule = "query accuracy >= 0.99"
    default_seq_len = 64
    min_seq_len = 3 * 8  # at the default num_pairs; each task sets its own

    def __init__(self, seq_len: int, *, vocab_size: int = 64, num_pairs: int = 8):
        """:param vocab_size: V, the tokens: half keys (but the blank), half values (even, >= 4)
        :param num_pairs: N, key-value pairs per sequence, each queried once (1 to V/2 - 1; T >= 3N)
        """
        if not isinstance(vocab_size, int) or vocab_size < 4 or vocab_size % 2:
            raise TaskSizeError(f"{self.name}: vocab_size must be an even integer >= 4, got {vocab_size!r}")
        max_pairs = vocab_size // 2 - 1  # the number of key tokens
        if not isinstance(num_pairs, int) or not 1 <= num_pairs <= max_pairs:
            raise TaskSizeError(f"{self.name}: num_pairs must be an integer from 1 to vocab_size/2 - 1 = {max_pairs}, "
                                f"got {num_pairs!r}")
        self.vocab_size, self.num_pairs = vocab_size, num_pairs
        self.first_value = vocab_size // 2
        self.input_size = self.output_size = vocab_size
        self.min_seq_len = 3 * num_pairs
        super().__init__(seq_len)

    @property
    def options(self):
        return {"vocab_size": self.vocab_size, "num_pairs": self.num_pairs}

    @property
    def length(self) -> int:
        return self.seq_len

    @property
    def baseline(self) -> float:
        return math.log(self.vocab_size - self.first_value)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        pairs, length = self.num_pairs, self.seq_len
        context = 2 * pairs
        keys = _distinct(1, self.first_value, pairs, batch_size, rng)
        values = _distinct(self.first_value, self.vocab_size, pairs, batch_size, rng)
        tokens = np.full((length, batch_size), BLANK, dtype=np.int64)
        tokens[0:context:2], tokens[1:context:2] = keys, values
        # Query slots: the last step, and N - 1 distinct earlier steps of the query region.
        earlier = _distinct(context, length - 1, pairs - 1, batch_size, rng)
        slots = np.concatenate([earlier, np.full((1, batch_size), length - 1)], axis=0)
        order = np.argsort(rng.random((pairs, batch_size)), axis=0)  # which pair each slot asks for
        np.put_along_axis(tokens, slots, np.take_along_axis(keys, order, axis=0), axis=0)
        target = np.full((length, batch_size), IGNORE_INDEX, dtype=np.int64)
        np.put_along_axis(target, slots, np.take_along_axis(values, order, axis=0), axis=0)
        return Batch(x=one_hot(tokens, self.input_size), target=target)

    def memoryless_logits(self, batch_size):
        """Uniform over the V - V//2 value tokens (only the query steps are scored)."""
        p = np.zeros(self.vocab_size)
        p[self.first_value:] = 1 / (self.vocab_size - self.first_value)
        return logits_of(p, self.length, batch_size)

    def solved(self, loss: float, accuracy: float) -> bool:
        return accuracy >= 0.99


@hookimpl
def register_tasks(register):
    register("associative-recall", AssociativeRecallTask,
             summary="recall the values of N queried keys (multi-query AR, Arora et al. 2023, Zoology)")
