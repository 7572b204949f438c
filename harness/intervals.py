"""Confidence intervals for a mean over seeds and for a fraction of seeds solved.

Three intervals, each returned as a frozen record that says how it was made:

- :func:`t_interval`: Student's t interval for a mean, ``x̄ ± t_{1-α/2, n-1} · s/√n``
  (Student 1908). Exact when the seed values are normal; with 3 seeds it is wide, as it
  should be (t_{0.975, 2} = 4.30).
- :func:`bootstrap_interval`: the percentile bootstrap of the mean (Efron & Tibshirani 1993,
  *An Introduction to the Bootstrap*, ch. 13), seeded so a report is reproducible. It assumes
  nothing about the distribution but undercovers at small n: with 3 seeds there are only 10
  distinct resamples and the interval cannot reach beyond the sample's own range.
- :func:`wilson_interval`: Wilson's score interval for k successes in n trials (Wilson 1927;
  recommended over the Wald interval by Brown, Cai & DasGupta 2001, *Statistical Science*
  16:101). It stays inside [0, 1] and is not empty at k = 0 or k = n.

:func:`clipped` intersects an interval with the range the quantity can take (an accuracy in
[0, 1], a loss or a time at least 0): a t interval of two seeds can reach below 0 where the
mean cannot. If the interval covers the true mean with probability 95%, so does its
intersection with a range that surely holds the true mean, and the intersection is no wider;
the record says which bound was clipped.

The t quantile is computed here (no SciPy): the two-sided t distribution function for an
integer number of degrees of freedom has a closed form (Abramowitz & Stegun 1964, 26.7.3 and
26.7.4), inverted by bisection.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np

LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class MeanInterval:
    """A mean over seeds with its confidence interval.

    ``method`` is "t", "bootstrap" or "none" (a single value: ``low`` and ``high`` are NaN,
    since one seed says nothing about the spread). ``level`` is the coverage, e.g. 0.95.
    ``low_clipped``/``high_clipped``: the bound was moved in to the quantity's range (:func:`clipped`).
    """

    mean: float
    low: float
    high: float
    n: int
    level: float
    method: str
    low_clipped: bool = False
    high_clipped: bool = False

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def text(self, spec: str = ".3g") -> str:
        """``"0.52 [0.41, 0.63]"``, or ``"0.52 (n=1, no interval)"`` for one seed."""
        if not self.has_interval:
            return f"{self.mean:{spec}} (n={self.n}, no interval)"
        return f"{self.mean:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"


@dataclass(frozen=True)
class Proportion:
    """k of n seeds solved, with a Wilson score interval for the underlying rate."""

    k: int
    n: int
    low: float
    high: float
    level: float

    @property
    def fraction(self) -> float:
        return self.k / self.n

    def text(self) -> str:
        """``"2/3 [0.21, 0.94]"``."""
        return f"{self.k}/{self.n} [{self.low:.2f}, {self.high:.2f}]"


def _finite_values(values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError("a mean needs at least one value, got none")
    if not np.isfinite(array).all():
        raise ValueError(f"values must be finite (drop or fill failed seeds first), got {array.tolist()}")
    return array


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")


def t_two_sided_probability(t: float, df: int) -> float:
    """P(|T| ≤ t) for Student's t with ``df`` (a positive integer) degrees of freedom.

    Abramowitz & Stegun 26.7.3-4, with θ = atan(t/√df) and c = cos²θ:
    odd df:  (2/π)(θ + sinθ cosθ [1 + (2/3)c + (2·4)/(3·5)c² + ... up to c^{(df-3)/2}]), and 2θ/π at df = 1;
    even df: sinθ [1 + (1/2)c + (1·3)/(2·4)c² + ... up to c^{(df-2)/2}].
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df}")
    t = abs(t)
    theta = math.atan(t / math.sqrt(df))
    sin, cos2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 1:
        if df == 1:
            return 2 * theta / math.pi
        term, total = 1.0, 1.0
        for j in range(1, (df - 1) // 2):
            term *= cos2 * (2 * j) / (2 * j + 1)
            total += term
        return 2 / math.pi * (theta + sin * math.cos(theta) * total)
    term, total = 1.0, 1.0
    for j in range(1, df // 2):
        term *= cos2 * (2 * j - 1) / (2 * j)
        total += term
    return sin * total


@lru_cache(maxsize=256)  # a report asks for the same few (level, df) many times
def t_quantile(level: float, df: int) -> float:
    """The t with P(|T| ≤ t) = ``level``, e.g. t_quantile(0.95, 2) = 4.3027 (two-sided 95%)."""
    _check_level(level)
    low, high = 0.0, 1.0
    while t_two_sided_probability(high, df) < level:
        high *= 2
    for _ in range(200):  # bisection to float precision; A(t) is increasing in t
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if t_two_sided_probability(middle, df) < level:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def t_interval(values, level: float = LEVEL) -> MeanInterval:
    """Student's t interval for the mean: ``x̄ ± t_{(1+level)/2, n-1} · s/√n`` (s with n - 1).

    Needs n ≥ 2 for an interval; with n = 1 it returns the value with ``method="none"`` and
    NaN bounds rather than inventing a spread.
    """
    _check_level(level)
    array = _finite_values(values)
    n, mean = array.size, float(array.mean())
    if n == 1:
        return MeanInterval(mean, math.nan, math.nan, 1, level, "none")
    half_width = t_quantile(level, n - 1) * float(array.std(ddof=1)) / math.sqrt(n)
    return MeanInterval(mean, mean - half_width, mean + half_width, n, level, "t")


def bootstrap_interval(values, level: float = LEVEL, *, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> MeanInterval:
    """Percentile bootstrap interval for the mean (Efron & Tibshirani 1993, §13.3).

    Draws ``resamples`` samples of size n with replacement (``numpy.random.default_rng(seed)``),
    takes each one's mean, and returns the (1-level)/2 and (1+level)/2 percentiles of those
    means (NumPy's linear interpolation). Same values and seed give the same interval.
    With n = 1 every resample is the value itself, so it returns ``method="none"`` as
    :func:`t_interval` does.
    """
    _check_level(level)
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    array = _finite_values(values)
    n, mean = array.size, float(array.mean())
    if n == 1:
        return MeanInterval(mean, math.nan, math.nan, 1, level, "none")
    rng = np.random.default_rng(seed)
    means = array[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    low, high = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return MeanInterval(mean, float(low), float(high), n, level, "bootstrap")


def clipped(interval: MeanInterval, lower: float = -math.inf, upper: float = math.inf, *, values) -> MeanInterval:
    """``interval`` ∩ [``lower``, ``upper``], the range the quantity can take, with the clipped bounds marked;
    ``values``: the observations ``interval`` was computed from.

    P(low ≤ μ ≤ high) = P(max(low, lower) ≤ μ ≤ min(high, upper)) whenever lower ≤ μ ≤ upper, so the
    coverage is kept exactly. Nothing else is narrowed. Clipped only when every value lies in the range:
    a value outside it shows that the range does not hold for this quantity (e.g. a Gaussian negative
    log-likelihood, which goes below 0 once trained), and then the interval is returned unchanged rather
    than made to exclude an observed value (``loss`` −0.01, 0.05 stays 0.02 [−0.361, 0.401]).
    """
    if not lower <= upper:
        raise ValueError(f"a range needs lower <= upper, got [{lower}, {upper}]")
    if not interval.has_interval or not all(lower <= float(value) <= upper for value in values):
        return interval
    low_clipped, high_clipped = interval.low < lower, interval.high > upper
    return dataclasses.replace(interval, low=max(interval.low, lower), high=min(interval.high, upper),
                               low_clipped=low_clipped, high_clipped=high_clipped)


def wilson_interval(k: int, n: int, level: float = LEVEL) -> Proportion:
    """Wilson score interval for a success probability from k successes in n trials.

    With z the standard normal (1+level)/2 quantile and p̂ = k/n:
    ``(k + z²/2)/(n + z²) ± z/(n + z²) · √(k(n-k)/n + z²/4)``
    (Wilson 1927, JASA 22:209; Brown, Cai & DasGupta 2001).
    """
    _check_level(level)
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive whole number of trials, got {n}")
    if int(k) != k or not 0 <= k <= n:
        raise ValueError(f"k must be a whole number from 0 to n={n}, got {k}")
    k, n = int(k), int(n)
    z = NormalDist().inv_cdf((1 + level) / 2)
    z2 = z * z
    centre = (k + z2 / 2) / (n + z2)
    half_width = z / (n + z2) * math.sqrt(k * (n - k) / n + z2 / 4)
    # Clamp only float round-off: at k = 0 the low end is 0 exactly in real arithmetic.
    return Proportion(k, n, max(0.0, centre - half_width), min(1.0, centre + half_width), level)
