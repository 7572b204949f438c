"""Statistics, each written once, with tests on hand-computed values (tests/test_stats_speed.py,
tests/test_mann_whitney.py). Sections:

- :class:`Summary`: median, quartiles and spread of repeated measurements;
- :func:`log_slope`: the decay rate of a gradient profile;
- the Mann-Whitney U test (:func:`mann_whitney_u`), used to compare two runs' timings.

Nothing here needs SciPy: every formula is short and stated in its docstring.
"""

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


# --- Mann-Whitney U test ------------------------------------------------------------------


@dataclass(frozen=True)
class MannWhitney:
    """A two-sided Mann-Whitney U test of sample B against sample A.

    ``u``: the number of (a, b) pairs with b > a, ties counting one half (U of sample B);
    ``z``: its standardised distance from n_a·n_b/2 after the continuity correction;
    ``p_value``: two-sided, from the normal approximation (1.0 when every value is tied).
    """

    u: float
    z: float
    p_value: float


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, tied values sharing the mean of the ranks they span."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            out[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return out


def mann_whitney_u(a, b) -> MannWhitney:
    """Mann-Whitney U test of ``b`` against ``a`` (normal approximation, tie and continuity corrected).

    ``U_b = R_b - n_b(n_b+1)/2`` where ``R_b`` is the rank sum of ``b`` in the pooled sample;
    under the null hypothesis it has mean ``n_a n_b / 2`` and variance
    ``n_a n_b / 12 · ((n + 1) - Σ(t³ - t) / (n (n - 1)))`` over the groups of t tied values.
    """
    a, b = [float(v) for v in a], [float(v) for v in b]
    if not a or not b:
        raise ValueError(f"both samples need values, got {len(a)} and {len(b)}")
    n_a, n_b = len(a), len(b)
    n = n_a + n_b
    pooled = a + b
    pooled_ranks = ranks(pooled)
    u_b = sum(pooled_ranks[n_a:]) - n_b * (n_b + 1) / 2
    mean = n_a * n_b / 2
    ties = {}
    for value in pooled:
        ties[value] = ties.get(value, 0) + 1
    tie_term = sum(t**3 - t for t in ties.values()) / (n * (n - 1)) if n > 1 else 0.0
    variance = n_a * n_b / 12 * ((n + 1) - tie_term)
    if variance <= 0:
        return MannWhitney(u_b, 0.0, 1.0)
    distance = max(abs(u_b - mean) - 0.5, 0.0)
    z = math.copysign(distance / math.sqrt(variance), u_b - mean)
    return MannWhitney(u_b, z, math.erfc(abs(z) / math.sqrt(2)))


def smallest_p_value(n_a: int, n_b: int) -> float:
    """The smallest two-sided p the test can give for these sample sizes (complete separation)."""
    return mann_whitney_u(range(n_a), range(n_a, n_a + n_b)).p_value
