"""Speed verdicts from the spread *between* rounds, robust to a machine that slows down in spells.

Why rounds
----------
Repeats inside one stretch of time share its memory layout, allocator state, CPU frequency and
neighbours, so their spread is smaller than the spread between two runs of the same command:
a verdict built on it calls run-to-run drift a change. Georges, Buytaert & Eeckhout (2007,
"Statistically Rigorous Java Performance Evaluation", OOPSLA) and Kalibera & Jones (2013,
"Rigorous Benchmarking in Reasonable Time", ISMM) show that the variation between process
launches dominates and must be sampled; pyperf runs 20 processes for the same reason. A speed
item is timed in R rounds and keeps two numbers per round: the median and the **minimum** of the
round's calls. The verdict compares the round minima of run A with those of run B.

Why minima, and why ranks
-------------------------
On a shared machine the noise is one-sided: a call is never faster than the code allows, and
other tenants make it slower. On this project's 2-core VM it comes in *spells*: for a second or
several, every call is 30-50% slower (the process's CPU time rises as much as its wall time,
and no steal time is counted, so it is contention for the core or its caches, not
descheduling), then the machine is fast again. Over 30 s of back-to-back GRU calls the
per-second medians ranged 8.3-12.2 ms and the per-second minima 7.7-8.6 ms. Chen & Revels
(2016, "Robust benchmarking in noisy environments", arXiv:1608.04295) show that under such
noise the minimum is the most stable estimate of a program's own time, and Julia's
BenchmarkTools judges by it; a round's minimum is the best call of that round.

A round that falls wholly inside a spell is still slow, and its minimum with it. A t interval
on the mean (the verdict before speed method 4) then widens or shifts with one such round; a
rank interval moves by one rank. So the verdict works on ranks:

1. In logs, where a ratio is a difference, the estimate of B/A is the Hodges-Lehmann shift
   (Hodges & Lehmann 1963, *Ann. Math. Stat.* 34:598): the median of the R_a·R_b pairwise
   differences ``ln b_j - ln a_i``, exponentiated.
2. Its interval is the distribution-free one that inverts the Mann-Whitney test (Moses 1953;
   Hollander & Wolfe, *Nonparametric Statistical Methods*, §4.3): with the differences sorted,
   ``[D_(k), D_(R_a·R_b+1-k)]``, where k - 1 is the largest U with P(U ≤ k - 1) ≤ (1 - level)/2
   under the exact null distribution of U for sizes R_a and R_b. It assumes only that B's
   round minima are A's shifted by a constant factor — whatever the shape of the noise, spells
   included. The level is 99%, not 95%: a table has 24 rows, and at 95% an A/A comparison would
   call one row in twenty by chance alone, one row per table. At 99% it needs at least 5 rounds
   a side (then the interval is [smallest, largest] difference: every round of B must be slower
   than every round of A); 3 rounds a side can never reach it and give no verdict.
3. It is called a change only when the interval excludes 1 **and** the estimate is at least
   ``min_change`` (5%) away from 1 (in log terms, either way). The floor absorbs drift that
   is shared by all rounds of one run — the machine being warmer or busier during run B — which
   no amount of rounds inside run B can reveal (asv's ``--factor`` plays the same part).

Limits, worth knowing when reading a verdict
--------------------------------------------
- The default, literature and paper profiles spread an item's rounds over the run
  (:class:`harness.config.TimingConfig` ``spread``): they lie tens of seconds apart, so a slow
  spell lands on one of them and moves the estimate by one rank. With rounds taken back to back
  (about a second per timing), a spell can cover them all and move the whole run; between two
  such runs the 5% floor is then what holds drift off. Either way, 5 rounds a side call a
  change only when every round of B is slower (or faster) than every round of A, which a 10%
  change on a noisy machine seldom gives: time each side in several runs spread over time and
  compare those (``rnnbench compare 1,3,5 2,4,6``: runs of one side pooled, one value per run;
  ``benchmarks/aa_ab.py``), alternating A and B so that the machine's drift falls on both alike.
- Simulated (``tests/test_speed_verdict.py``): 24-row tables, lognormal round noise with a
  coefficient of variation of 0.5-3% per row, a drift shared by all rows of a run with sd 1%,
  7 rounds per run: A/A calls about 0.1 rows of 24 and a planted 10% slowdown is called in
  nearly every row; with a third of rounds in 35%-slow spells and 20 rounds a side, A/A stays
  under one row in 24 and the 10% slowdown is still called in most rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

LEVEL = 0.99
MIN_CHANGE = 0.05
NOT_SIGNIFICANT = "not significant"


def ratio_words(ratio: float) -> str:
    """B/A of times as a reader says it: 1.42 → "1.42x slower", 0.5 → "2.00x faster", ≈1 → "1.00x"."""
    if f"{ratio:.2f}" == "1.00" or f"{1 / ratio:.2f}" == "1.00":
        return "1.00x"
    return f"{ratio:.2f}x slower" if ratio >= 1 else f"{1 / ratio:.2f}x faster"


@dataclass(frozen=True)
class RoundsVerdict:
    """B against A for one timing, from per-round statistics (minima since speed method 4).

    ``ratio``: the Hodges-Lehmann estimate of B/A (> 1: B slower); ``low``/``high``: its
    distribution-free interval at ``level`` (NaN when too few rounds); ``significant``: whether a
    change is called; ``verdict``: what a reader sees ("1.10x slower", "not significant",
    "too few rounds for a 99% interval: 3 and 3 (5 a side suffice)").
    """

    ratio: float
    low: float
    high: float
    level: float
    n_rounds_a: int
    n_rounds_b: int
    significant: bool
    verdict: str


def _per_round(samples_by_round, reduce) -> tuple[float, ...]:
    values = []
    for index, samples in enumerate(samples_by_round):
        array = np.asarray(samples, dtype=np.float64).ravel()
        if array.size == 0:
            raise ValueError(f"round {index} has no timings")
        values.append(float(reduce(array)))
    return tuple(values)


def round_medians(samples_by_round) -> tuple[float, ...]:
    """The median of each round's calls (seconds)."""
    return _per_round(samples_by_round, np.median)


def round_minima(samples_by_round) -> tuple[float, ...]:
    """The fastest call of each round (seconds): what :func:`rounds_verdict` compares."""
    return _per_round(samples_by_round, np.min)


def _log_times(values, side: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if not (np.isfinite(array).all() and (array > 0).all()):
        raise ValueError(f"round times of run {side} must be positive finite seconds, got {array.tolist()}")
    return np.log(array)


@lru_cache(maxsize=256)
def mann_whitney_null_cdf(n: int, m: int) -> tuple[float, ...]:
    """P(U ≤ u) for u = 0 … n·m under the null (no ties): U counts the pairs (i, j) with b_j < a_i.

    Exact, by the recurrence on the largest of the n + m values: it is either one of the n
    (adding m to U) or one of the m, so c(n, m, u) = c(n - 1, m, u - m) + c(n, m - 1, u), with
    c(n, 0, 0) = c(0, m, 0) = 1 (Mann & Whitney 1947).
    """
    size = n * m + 1
    previous = [np.eye(1, size)[0] for _ in range(m + 1)]  # c(0, j, ·): only u = 0
    for _ in range(n):
        current = [np.eye(1, size)[0]]  # c(i, 0, ·)
        for j in range(1, m + 1):
            row = current[j - 1].copy()
            row[j:] += previous[j][: size - j]
            current.append(row)
        previous = current
    final = previous[m]
    return tuple(float(p) for p in np.cumsum(final) / final.sum())


def rank_interval_depth(n: int, m: int, level: float = LEVEL) -> int:
    """k of the Moses interval [D_(k), D_(nm+1-k)]: the number of U values u with P(U ≤ u) ≤ (1 - level)/2.
    0 when even the widest interval does not reach ``level`` (too few rounds)."""
    cdf = np.asarray(mann_whitney_null_cdf(n, m))
    return int(np.count_nonzero(cdf <= (1 - level) / 2 * (1 + 1e-12)))


def rounds_verdict(rounds_a_s, rounds_b_s, *, level: float = LEVEL, min_change: float = MIN_CHANGE,
                   unit: str = "rounds") -> RoundsVerdict:
    """Is B slower or faster than A? Hodges-Lehmann shift of log round times with its rank interval,
    plus a 5% floor (see the module docstring). ``unit`` names the values in the verdict's words:
    "rounds", or "runs" when each value stands for one run of a pooled side."""
    log_a, log_b = _log_times(rounds_a_s, "A"), _log_times(rounds_b_s, "B")
    n_a, n_b = log_a.size, log_b.size
    differences = np.sort((log_b[None, :] - log_a[:, None]).ravel())
    estimate = float(np.median(differences)) if differences.size else math.nan
    ratio = math.exp(estimate)
    depth = rank_interval_depth(n_a, n_b, level) if n_a and n_b else 0
    if depth == 0:
        need = next(r for r in range(2, 50) if rank_interval_depth(r, r, level) > 0)
        return RoundsVerdict(ratio, math.nan, math.nan, level, n_a, n_b, False,
                             f"too few {unit} for a {level:.0%} interval: {n_a} and {n_b} ({need} a side suffice)")
    low, high = math.exp(differences[depth - 1]), math.exp(differences[differences.size - depth])
    excludes_one = low > 1 or high < 1
    large_enough = abs(estimate) >= math.log1p(min_change)
    significant = excludes_one and large_enough
    return RoundsVerdict(ratio, low, high, level, n_a, n_b, significant,
                         ratio_words(ratio) if significant else NOT_SIGNIFICANT)
