"""Speed verdicts from the spread *between* rounds, so that unchanged code is not called changed.

Why rounds
----------
Repeats inside one process share its memory layout, allocator state, CPU frequency and
neighbours, so their spread is smaller than the spread between two runs of the same command:
a verdict built on it (as a test on the within-process repeats is) calls run-to-run drift a
change. Georges, Buytaert & Eeckhout (2007, "Statistically Rigorous Java Performance
Evaluation", OOPSLA) and Kalibera & Jones (2013, "Rigorous Benchmarking in Reasonable Time",
ISMM) show that the variation between process launches dominates and must be sampled;
pyperf runs 20 processes for the same reason. Here each run measures a timing in R rounds,
each a fresh process (or at least a fresh round after the others), and keeps one number per
round: the median of that round's repeats. The verdict compares those round medians.

The verdict
-----------
With a_1..a_Ra and b_1..b_Rb the round medians (seconds) of runs A and B:

1. Work in logs, where a ratio is a difference: the estimate of B/A is
   ``exp(mean(ln b) - mean(ln a))``, a ratio of geometric means.
2. Its interval is Welch's t interval for a difference of means (Welch 1947, *Biometrika*
   34:28) on the logs, exponentiated: ``SE² = s²_a/R_a + s²_b/R_b`` and the
   Welch-Satterthwaite degrees of freedom ``SE⁴ / ((s²_a/R_a)²/(R_a-1) + (s²_b/R_b)²/(R_b-1))``,
   rounded *down* to a whole number (a slightly wider, conservative interval; the t quantile
   here is exact for whole df). The level is 99%, not 95%: a table has 24 rows, and at 95%
   an A/A comparison would call one row in twenty by chance alone, one row per table.
3. It is called a change only when the interval excludes 1 **and** the estimate is at least
   ``min_change`` (5%) away from 1 (in log terms, either way). The floor absorbs drift that
   is shared by all rounds of one run — the machine being warmer or busier during run B — which
   no amount of rounds inside run B can reveal (asv's ``--factor`` plays the same part).

Power and false calls (normal round medians, coefficient of variation σ per round, 5 rounds
per run): on unchanged code a row is called when the t statistic passes t_{0.995} *and* the
estimate passes 5%; for σ ≤ 3% the second is the binding one, ≈ P(|Z| > 0.0488/(σ√(2/5))),
about 1% of rows (0.24 of 24) at σ = 3%; for larger σ the first bounds it at 1%. A real 10%
slowdown (ln 1.1 = 0.095) is called when 0.095 exceeds both 0.0488 and t_{0.995,8}·σ√(2/5)
= 2.12σ; it is called in 95% of rows while σ ≲ 3% (0.095 ≥ (2.12 + 1.645·0.63)σ), and in
most rows up to σ ≈ 4.5%. With noisier rounds, measure more of them. Fewer than 3 rounds on
either side give no verdict.

Simulated (200 pairs of 24-row tables, σ per row uniform in 0.5-3%, a drift shared by all
rows of a run with sd 1%, 7 rounds per run; ``tests/test_speed_verdict.py``, six seeds):
A/A calls 0.07-0.23 rows of 24 on average and more than one row in 1-3% of tables; a
planted 10% slowdown is called in 23.8-23.9 of 24 rows. Two limits, both worth knowing when wiring this in:

- *Drift shared by a whole run* is invisible to its rounds; only the 5% floor holds it off.
  At a drift sd of 2% per run, A/A tables get ~2 false calls on average. When A and B are
  measured in one session (an A/A or A/B benchmark), alternate their processes
  (A, B, A, B, ...) so that drift falls on both alike.
- *Outlier rounds* (a neighbour stealing the CPU for a whole round) widen the interval: with
  5% of rounds 15% slow, 7 rounds find the 10% slowdown in ~19 of 24 rows and 10 rounds in
  ~23. Prefer 10 rounds where the budget allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.intervals import t_quantile

LEVEL = 0.99
MIN_CHANGE = 0.05
MIN_ROUNDS = 3
NOT_SIGNIFICANT = "not significant"


def ratio_words(ratio: float) -> str:
    """B/A of times as a reader says it: 1.42 → "1.42x slower", 0.5 → "2.00x faster", ≈1 → "1.00x"."""
    if f"{ratio:.2f}" == "1.00" or f"{1 / ratio:.2f}" == "1.00":
        return "1.00x"
    return f"{ratio:.2f}x slower" if ratio >= 1 else f"{1 / ratio:.2f}x faster"


@dataclass(frozen=True)
class RoundsVerdict:
    """B against A for one timing, from per-round medians.

    ``ratio``: geometric-mean round median of B over A (> 1: B slower); ``low``/``high``: its
    interval at ``level`` (NaN when too few rounds); ``significant``: whether a change is
    called; ``verdict``: what a reader sees ("1.10x slower", "not significant",
    "too few rounds: 2 and 5 (need 3 each)").
    """

    ratio: float
    low: float
    high: float
    level: float
    degrees_of_freedom: int
    n_rounds_a: int
    n_rounds_b: int
    significant: bool
    verdict: str


def round_medians(samples_by_round) -> tuple[float, ...]:
    """The median of each round's repeats (seconds): what :func:`rounds_verdict` compares."""
    medians = []
    for index, samples in enumerate(samples_by_round):
        array = np.asarray(samples, dtype=np.float64).ravel()
        if array.size == 0:
            raise ValueError(f"round {index} has no timings")
        medians.append(float(np.median(array)))
    return tuple(medians)


def _log_times(values, side: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if not (np.isfinite(array).all() and (array > 0).all()):
        raise ValueError(f"round medians of run {side} must be positive finite seconds, got {array.tolist()}")
    return np.log(array)


def welch_degrees_of_freedom(var_a: float, n_a: int, var_b: float, n_b: int) -> int:
    """Welch-Satterthwaite df, rounded down (a tolerance keeps a float 3.9999999 at 4); at least 1."""
    share_a, share_b = var_a / n_a, var_b / n_b
    denominator = share_a**2 / (n_a - 1) + share_b**2 / (n_b - 1)
    if denominator == 0:
        return n_a + n_b - 2
    return max(1, math.floor((share_a + share_b) ** 2 / denominator + 1e-9))


def rounds_verdict(round_medians_a_s, round_medians_b_s, *, level: float = LEVEL,
                   min_change: float = MIN_CHANGE, min_rounds: int = MIN_ROUNDS) -> RoundsVerdict:
    """Is B slower or faster than A? Welch interval on log round medians plus a 5% floor (see module)."""
    log_a, log_b = _log_times(round_medians_a_s, "A"), _log_times(round_medians_b_s, "B")
    n_a, n_b = log_a.size, log_b.size
    if min(n_a, n_b) < max(min_rounds, 2):
        ratio = float(np.exp(log_b.mean() - log_a.mean())) if n_a and n_b else math.nan
        return RoundsVerdict(ratio, math.nan, math.nan, level, 0, n_a, n_b, False,
                             f"too few rounds: {n_a} and {n_b} (need {max(min_rounds, 2)} each)")
    difference = float(log_b.mean() - log_a.mean())
    var_a, var_b = float(log_a.var(ddof=1)), float(log_b.var(ddof=1))
    standard_error = math.sqrt(var_a / n_a + var_b / n_b)
    df = welch_degrees_of_freedom(var_a, n_a, var_b, n_b)
    half_width = t_quantile(level, df) * standard_error
    low, high = math.exp(difference - half_width), math.exp(difference + half_width)
    excludes_one = low > 1 or high < 1
    large_enough = abs(difference) >= math.log1p(min_change)
    significant = excludes_one and large_enough
    ratio = math.exp(difference)
    return RoundsVerdict(ratio, low, high, level, df, n_a, n_b, significant,
                         ratio_words(ratio) if significant else NOT_SIGNIFICANT)
