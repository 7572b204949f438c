"""Summary statistics of repeated measurements (one small immutable class)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

UNSTABLE_IQR_RATIO = 0.10


@dataclass(frozen=True)
class Summary:
    """Statistics of a sample of measurements, e.g. seconds per batch.

    Quartiles use linear interpolation between order statistics (NumPy's default,
    the same as Python's ``statistics.quantiles(method="inclusive")``).
    """

    samples: tuple[float, ...]

    def __post_init__(self):
        if len(self.samples) == 0:
            raise ValueError("Summary needs at least one sample")
        if not all(math.isfinite(s) for s in self.samples):
            raise ValueError(f"Summary samples must be finite, got {self.samples}")
        object.__setattr__(self, "samples", tuple(float(s) for s in self.samples))

    @cached_property
    def _array(self) -> np.ndarray:
        return np.asarray(self.samples, dtype=np.float64)

    @property
    def n(self) -> int:
        return len(self.samples)

    @cached_property
    def median(self) -> float:
        return float(np.median(self._array))

    @cached_property
    def q1(self) -> float:
        return float(np.percentile(self._array, 25))

    @cached_property
    def q3(self) -> float:
        return float(np.percentile(self._array, 75))

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @cached_property
    def mean(self) -> float:
        return float(self._array.mean())

    @cached_property
    def stdev(self) -> float:
        """Sample standard deviation (n - 1); 0 for a single sample."""
        return float(self._array.std(ddof=1)) if self.n > 1 else 0.0

    @property
    def min(self) -> float:
        return float(self._array.min())

    @property
    def max(self) -> float:
        return float(self._array.max())

    @property
    def unstable(self) -> bool:
        """True when IQR/median exceeds 10%: the figure should not be quoted without care."""
        return self.median > 0 and self.iqr / self.median > UNSTABLE_IQR_RATIO

    def as_dict(self) -> dict:
        return {
            "median": self.median,
            "q1": self.q1,
            "q3": self.q3,
            "iqr": self.iqr,
            "mean": self.mean,
            "stdev": self.stdev,
            "min": self.min,
            "max": self.max,
            "n": self.n,
            "samples": list(self.samples),
        }


def log_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of ln(y) against x, over points with finite positive y."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(y) & (y > 0)
    if keep.sum() < 2:
        return float("nan")
    x, logy = x[keep], np.log(y[keep])
    dx = x - x.mean()
    return float((dx * (logy - logy.mean())).sum() / (dx * dx).sum())
