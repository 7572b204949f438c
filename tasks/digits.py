"""Sequential digits: the 8×8 handwritten digits bundled with scikit-learn
(``sklearn.datasets.load_digits``: 1,797 images of 10 classes, pixels 0..16, from the UCI
"Optical Recognition of Handwritten Digits" set, Alpaydin & Kaynak 1998), read one pixel
per step: the small, offline cousin of pixel-by-pixel MNIST (Le, Jaitly & Hinton 2015,
sec. 4.2) and its permuted variant (same paper).

Input, length T = 64: pixel values / 16, one per step in row-major order, shape
(64, B, 1). ``digits-permuted`` reads the pixels in one fixed order, :data:`PERMUTATION`,
drawn once (``numpy.random.default_rng(20231).permutation(64)``) and written out here so
that no library version can change it; it spreads neighbouring pixels far apart in time.
Target, at the last step: the digit (10 classes).

Splits, fixed and stratified, no random numbers: within each class, in the data set's
order, the images of rank r with r mod 10 in {0, 1} form the test split (368 images),
r mod 10 = 2 the validation split (181), the rest the training split (1,248). Training
batches come from the training split (:meth:`sample`); :meth:`sample_split` draws from any
split. A batch cycles through its split in a fresh random order, so a batch at least as
large as the split holds every image of it.

Loss: cross-entropy at the last step (``IGNORE_INDEX`` at every earlier step). Baseline:
the best predictor that ignores the image predicts the class frequencies of the test split
(the held-out data) and pays their entropy, ``-Σ_c p_c ln p_c`` ≈ ln 10 (the classes are
nearly balanced). The last pixel, all a memoryless cell sees, is blank in 94 % of the images and
says little. Accuracy: the fraction of images classified correctly; solved at test
accuracy >= 0.95 (a linear classifier, logistic regression on all 64 pixels at once,
reaches 0.96 on this split).

``seq_len`` is fixed at 64 (the pixels of one image); ``length`` = 64.

scikit-learn is an optional dependency (``pip install 'rnnbench[data]'``); the tasks are
always listed, and building one without it says so in one line.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from harness.errors import UsageError
from harness.hookspecs import hookimpl
from harness.tasks import IGNORE_INDEX, SPLITS, Batch, TaskSizeError, TokenTask, logits_of

N_PIXELS = 64
N_CLASSES = 10
MAX_PIXEL = 16.0
PERMUTATION = (
    55, 16, 10, 48, 44, 42, 27, 36, 25, 62, 49, 58, 34, 30, 9, 35, 56, 22, 29, 4, 45, 11, 21, 26, 13, 18, 24, 19,
    57, 2, 53, 63, 8, 38, 54, 20, 6, 32, 41, 61, 52, 47, 39, 46, 50, 51, 12, 14, 0, 31, 43, 3, 23, 37, 60, 1, 59,
    15, 40, 5, 33, 28, 17, 7,
)
SPLIT_OF_RANK_MOD_10 = ("test", "test", "validation") + ("train",) * 7


@dataclass(frozen=True)
class DigitsData:
    """Pixels (N, 64) float32 in [0, 1], labels (N,) int64, and each split's image indices."""

    pixels: np.ndarray
    labels: np.ndarray
    splits: dict[str, np.ndarray]


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """The fixed stratified split: by each image's rank within its class, modulo 10."""
    rank = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank[members] = np.arange(len(members))
    part = np.array(SPLIT_OF_RANK_MOD_10)[rank % 10]
    return {split: np.flatnonzero(part == split) for split in SPLITS}


@functools.cache
def load() -> DigitsData:
    """Read scikit-learn's bundled copy once per process (no download)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UsageError("the digits tasks need scikit-learn, which is not installed: "
                         "pip install 'rnnbench[data]'") from None
    bunch = load_digits()
    labels = bunch.target.astype(np.int64)
    return DigitsData((bunch.data / MAX_PIXEL).astype(np.float32), labels, split_indices(labels))


def draw(indices: np.ndarray, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """``batch_size`` of ``indices``: whole shuffled passes over them, then part of one more."""
    passes = -(-batch_size // len(indices))
    return np.concatenate([rng.permutation(indices) for _ in range(passes)])[:batch_size]


def class_entropy(labels: np.ndarray) -> float:
    """Entropy (nats) of the label frequencies: the loss of predicting those frequencies."""
    frequencies = np.bincount(labels, minlength=N_CLASSES) / len(labels)
    frequencies = frequencies[frequencies > 0]
    return float(-(frequencies * np.log(frequencies)).sum())


class DigitsTask(TokenTask):
    name = "digits"
    input_size = 1
    output_size = N_CLASSES
    reference = "scikit-learn load_digits (UCI optdigits, Alpaydin & Kaynak 1998); read as in Le et al. 2015, sec. 4.2"
    solved_rule = "test accuracy >= 0.95"
    min_seq_len = N_PIXELS
    default_seq_len = N_PIXELS
    order: tuple[int, ...] | None = None  # pixel reading order; None: row-major

    def __init__(self, seq_len: int = N_PIXELS):
        if seq_len != N_PIXELS:
            raise TaskSizeError(f"{self.name}: seq_len is fixed at {N_PIXELS} (an 8x8 image, one pixel per step), "
                                f"got {seq_len!r}; pass --seq-len {N_PIXELS}")
        super().__init__(seq_len)
        self.data = load()

    @property
    def length(self) -> int:
        return N_PIXELS

    @property
    def baseline(self) -> float:
        return class_entropy(self.data.labels[self.data.splits["test"]])

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        return self.sample_split(batch_size, rng, "train")

    def sample_split(self, batch_size: int, rng: np.random.Generator, split: str) -> Batch:
        if split not in SPLITS:
            raise ValueError(f"{self.name}: split must be one of {', '.join(SPLITS)}, got {split!r}")
        chosen = draw(self.data.splits[split], batch_size, rng)
        pixels = self.data.pixels[chosen]
        if self.order is not None:
            pixels = pixels[:, list(self.order)]
        target = np.full((N_PIXELS, batch_size), IGNORE_INDEX, dtype=np.int64)
        target[-1] = self.data.labels[chosen]
        return Batch(x=np.ascontiguousarray(pixels.T[:, :, None]), target=target)

    def memoryless_logits(self, batch_size):
        """The class frequencies of the test split (only the last step is scored)."""
        test_labels = self.data.labels[self.data.splits["test"]]
        return logits_of(np.bincount(test_labels, minlength=N_CLASSES) / len(test_labels), self.length, batch_size)

    def solved(self, loss: float, accuracy: float) -> bool:
        return accuracy >= 0.95


class PermutedDigitsTask(DigitsTask):
    name = "digits-permuted"
    reference = DigitsTask.reference + "; one fixed pixel permutation, as permuted MNIST"
    order = PERMUTATION


@hookimpl
def register_tasks(register):
    register("digits", DigitsTask, summary="classify 8x8 handwritten digits read pixel by pixel, T=64 (scikit-learn)")
    register("digits-permuted", PermutedDigitsTask,
             summary="digits with the pixels read in one fixed random order (as permuted MNIST)")
