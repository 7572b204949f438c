"""Next-character prediction on text: the seed article's example, in which a Keras
SimpleRNN learns to continue "hello world, how are you?" one character at a time; the
character-level language modelling of Karpathy's min-char-rnn and of Graves,
"Generating Sequences With Recurrent Neural Networks", 2013, section 3.

Corpus: by default the help topics of the Python language reference that every CPython
installation carries for ``help()`` (the module ``pydoc_data.topics``: English prose with
code, no download), the topics in sorted order, joined by a blank line. It changes between
Python releases, so the task records its size and SHA-256 in :attr:`TextTask.options`; on
CPython 3.11.7 it has 465,048 characters (103 distinct), SHA-256
``2a95af4ac93f5b719944030ce3769070ddf827d847cba42192afa8da989e5dc4``; its test split has a
unigram entropy of 4.52 bits, H(next | current) = 3.09 bits and H(next | previous two) =
1.93 bits. ``text_path=FILE`` trains
on a UTF-8 file instead.

Splits: contiguous, the first 80 % of the characters for training, the next 10 % for
validation, the last 10 % for testing (held-out data). Vocabulary: the distinct
characters of the whole corpus, one-hot inputs and one output class each.

Input, length T: a window of T characters starting at a uniformly drawn position of a
split; target: the next character at every step (the window shifted by one). Loss: mean
cross-entropy over all T steps, in **bits per character**. Baseline: the best predictor
that ignores its input predicts the character frequencies of the test split and pays
their entropy, the unigram entropy ``-Σ_c p_c log2 p_c``. Solved: held-out bits per
character below ``H(next | previous two characters)`` of the test split, the loss of the
best predictor that sees only the last two characters, fitted to the test text itself (an
optimistic bar: a cell below it uses more than two characters of memory well). The bar
of one character, ``H(next | current)``, is too low to be useful: LSTM and GRU pass it
within about 100 steps, and training stops once solved. Accuracy: the fraction of next
characters predicted exactly (arg-max).

``seq_len`` is T and ``length`` is T. :meth:`TextTask.generate` continues a prompt with a
trained model, seeded.
"""

from __future__ import annotations

import functools
import hashlib
import math
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from harness.errors import UsageError
from harness.hookspecs import hookimpl
from harness.tasks import SPLITS, Batch, TaskSizeError, TokenTask, logits_of, one_hot

SPLIT_FRACTIONS = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}
DEFAULT_PROMPT = "hello world, how are you?"
SOLVED_CONTEXT = 2  # characters of context of the predictor a solving cell must beat


@dataclass(frozen=True)
class Corpus:
    """A text as character codes: ``codes`` (N,) int64 indexes ``vocabulary``."""

    name: str
    text: str
    vocabulary: str
    codes: np.ndarray
    sha256: str

    def split_range(self, split: str) -> tuple[int, int]:
        start, stop = SPLIT_FRACTIONS[split]
        return int(start * len(self.text)), int(stop * len(self.text))


def python_topics() -> str:
    """The language-reference help topics shipped with CPython, sorted and joined."""
    from pydoc_data.topics import topics

    return "\n".join(topics[key] for key in sorted(topics))


@functools.cache
def load_corpus(text_path: str | None = None) -> Corpus:
    """The default corpus (``text_path=None``) or a UTF-8 file, encoded once per process."""
    if text_path is None:
        name, text = f"pydoc-topics (Python {platform.python_version()})", python_topics()
    else:
        try:
            name, text = Path(text_path).name, Path(text_path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"text: cannot read {text_path!r} as UTF-8 text: {exc}") from None
    vocabulary = "".join(sorted(set(text)))
    index = {char: code for code, char in enumerate(vocabulary)}
    codes = np.fromiter((index[char] for char in text), dtype=np.int64, count=len(text))
    return Corpus(name, text, vocabulary, codes, hashlib.sha256(text.encode("utf-8")).hexdigest())


def unigram_entropy_bits(codes: np.ndarray, size: int) -> float:
    """``-Σ_c p_c log2 p_c`` over the character frequencies of ``codes``."""
    p = np.bincount(codes, minlength=size) / len(codes)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def conditional_entropy_bits(codes: np.ndarray, context: int) -> float:
    """``H(next | previous context characters)`` in bits, over the (context + 1)-grams of ``codes``:
    the loss of the best predictor that sees only the last ``context`` characters, fitted to ``codes``."""
    grams = np.lib.stride_tricks.sliding_window_view(codes, context + 1)
    _, gram_ids, gram_counts = np.unique(grams, axis=0, return_inverse=True, return_counts=True)
    _, context_ids, context_counts = np.unique(grams[:, :-1], axis=0, return_inverse=True, return_counts=True)
    p_next = gram_counts[gram_ids.ravel()] / context_counts[context_ids.ravel()]  # per position
    return float(-np.log2(p_next).mean())


class TextTask(TokenTask):
    name = "text"
    reference = "the seed article's SimpleRNN example; Karpathy's min-char-rnn; Graves 2013, sec. 3"
    solved_rule = "held-out bits/char < H(next | previous 2 chars) of the test split"
    default_seq_len = 100

    def __init__(self, seq_len: int, *, text_path: str | None = None):
        """:param text_path: a UTF-8 text file to train on (its size and SHA-256 are recorded);
            not set: Python's help topics
        """
        super().__init__(seq_len)
        self.corpus = load_corpus(None if text_path is None else str(text_path))
        self.input_size = self.output_size = len(self.corpus.vocabulary)
        for split in SPLITS:
            start, stop = self.corpus.split_range(split)
            if stop - start < seq_len + 1:
                raise TaskSizeError(f"text: the {split} split of {self.corpus.name} has {stop - start} characters, "
                                    f"fewer than a window of T + 1 = {seq_len + 1}; use a longer text or a smaller T")
        test = slice(*self.corpus.split_range("test"))
        self.unigram_bits = unigram_entropy_bits(self.corpus.codes[test], self.output_size)
        self.solved_bits = conditional_entropy_bits(self.corpus.codes[test], SOLVED_CONTEXT)

    @property
    def options(self):
        return {"corpus": self.corpus.name, "corpus_chars": len(self.corpus.text), "corpus_sha256": self.corpus.sha256}

    @property
    def length(self) -> int:
        return self.seq_len

    @property
    def baseline(self) -> float:
        return self.unigram_bits

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        return self.sample_split(batch_size, rng, "train")

    def sample_split(self, batch_size: int, rng: np.random.Generator, split: str) -> Batch:
        if split not in SPLITS:
            raise ValueError(f"text: split must be one of {', '.join(SPLITS)}, got {split!r}")
        start, stop = self.corpus.split_range(split)
        first = rng.integers(start, stop - self.seq_len, size=batch_size)  # the window and its next char fit
        window = self.corpus.codes[first + np.arange(self.seq_len + 1)[:, None]]  # (T + 1, B)
        return Batch(x=one_hot(window[:-1], self.input_size), target=window[1:].copy())

    def loss(self, logits, target):
        return super().loss(logits, target) / math.log(2)

    def last_step_loss(self, logits_last, target):
        return super().last_step_loss(logits_last, target) / math.log(2)

    def memoryless_logits(self, batch_size):
        """The character frequencies of the test split, at every step."""
        test = self.corpus.codes[slice(*self.corpus.split_range("test"))]
        return logits_of(np.bincount(test, minlength=self.output_size) / len(test), self.length, batch_size)

    def solved(self, loss: float, accuracy: float) -> bool:
        return loss < self.solved_bits

    def encode(self, text: str) -> np.ndarray:
        """Character codes of ``text``; refuses characters the corpus does not have."""
        index = {char: code for code, char in enumerate(self.corpus.vocabulary)}
        unknown = sorted(set(text) - set(index))
        if unknown:
            raise UsageError(f"text: the prompt has characters that {self.corpus.name} does not: {''.join(unknown)!r}")
        return np.array([index[char] for char in text], dtype=np.int64)

    @torch.no_grad()
    def generate(self, model, prompt: str = DEFAULT_PROMPT, n_chars: int = 200, seed: int = 0,
                 temperature: float = 1.0) -> str:
        """Continue ``prompt`` by ``n_chars`` characters drawn from ``model``'s predictions.

        ``model`` maps one-hot inputs (L, B, V) and a state to logits (L, B, V) and the next
        state (the harness's SequenceModel). The prompt is read in one call, then each drawn
        character is fed back one step at a time. Each character is drawn from
        ``softmax(logits / temperature)`` with a CPU generator seeded by ``seed``: the same
        model, prompt and seed give the same text on any device.
        """
        if not prompt:
            raise UsageError("text: the prompt must have at least one character")
        if temperature <= 0:
            raise UsageError(f"text: temperature must be > 0, got {temperature!r}")
        parameter = next(model.parameters())
        generator = torch.Generator().manual_seed(seed)
        was_training = model.training
        model.eval()
        try:
            inputs = torch.from_numpy(one_hot(self.encode(prompt)[:, None], self.input_size))
            logits, state = model(inputs.to(parameter.device, parameter.dtype), None)
            drawn = []
            for _ in range(n_chars):
                probabilities = F.softmax(logits[-1, 0].double().cpu() / temperature, dim=-1)
                code = int(torch.multinomial(probabilities, 1, generator=generator))
                drawn.append(self.corpus.vocabulary[code])
                step = torch.zeros(1, 1, self.input_size, device=parameter.device, dtype=parameter.dtype)
                step[0, 0, code] = 1.0
                logits, state = model(step, state)
        finally:
            model.train(was_training)
        return "".join(drawn)


@hookimpl
def register_tasks(register):
    register("text", TextTask,
             summary="next-character prediction in bits/char on Python's help text (the seed's example)")
