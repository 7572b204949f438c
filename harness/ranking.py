"""Which cells differ: rank cells on one task and mark those not shown to differ from the best.

Method
------
1. **Rank** the cells by their mean over seeds (lowest first for a loss, highest first for an
   accuracy); equal means are ordered by cell name so the ranking is deterministic.
2. **Compare each cell with the best, paired by seed.** Seed s of two cells sees the same
   initial data stream, so the paired differences d_s = x_cell,s - x_best,s remove the
   seed-to-seed variation the cells share. The test is the exact paired permutation
   (sign-flip) test of Fisher (1935, *The Design of Experiments*, §21): under "no difference"
   each d_s is as likely to have either sign, so the two-sided p-value is the fraction of the
   2^m sign vectors ε with |Σ ε_s d_s| ≥ |Σ d_s|. It is exact at any m, assumes no
   distribution, and tests the same mean difference the ranking uses. (Wilcoxon's signed-rank
   test would discard the magnitudes and, at these m, has the same smallest p.) Above
   m = 16 pairs the 2^m vectors are sampled (65 536 seeded draws, p = (1 + hits)/(1 + draws)).
3. **Correct for multiplicity** with Holm's step-down procedure (Holm 1979, *Scand. J.
   Statist.* 6:65) over the k comparisons with the best: with raw p sorted ascending,
   p_adj(i) = max_{j ≤ i} min(1, (k - j + 1) p(j)). A cell "differs from the best" when
   p_adj < α (0.05); otherwise it is marked "≈ best": *not shown to differ*, which is not the
   same as shown equal.

Power at few seeds
------------------
Only the observed sign vector and its mirror image can reach the largest |Σ|, so the
smallest two-sided p with m pairs is 2/2^m: **0.25 at m = 3**, 0.125 at 4, 0.0625 at 5 and
0.03125 at 6. With 3 seeds no cell can ever be shown to differ from the best: every cell
comes out "≈ best", and :attr:`Ranking.note` says so in words. With Holm over k comparisons
the first one needs 2/2^m < α/k, i.e. m ≥ 6 for one other cell and m ≥ 8 for four.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
EXACT_MAX_PAIRS = 16
SAMPLED_SIGN_VECTORS = 1 << 16
BEST, TIED, WORSE = "best", "≈ best", "worse than best"


def sign_flip_p_value(differences, *, seed: int = 0) -> float:
    """Two-sided p of the paired sign-flip test: P(|Σ ε d| ≥ |Σ d|) over uniform signs ε.

    Exact enumeration up to 16 pairs, seeded sampling above. Zero differences are kept (a
    flip leaves them unchanged). No pairs, or all differences zero, give p = 1.
    """
    d = np.asarray(differences, dtype=np.float64).ravel()
    if not np.isfinite(d).all():
        raise ValueError(f"paired differences must be finite, got {d.tolist()}")
    if d.size == 0 or not d.any():
        return 1.0
    observed = abs(d.sum())
    # sums that differ from the observed one only by float round-off count as reaching it
    tolerance = 1e-9 * np.abs(d).sum()
    if d.size <= EXACT_MAX_PAIRS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        return float((np.abs(signs @ d) >= observed - tolerance).mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(SAMPLED_SIGN_VECTORS, d.size))
    hits = int((np.abs(signs @ d) >= observed - tolerance).sum())
    return (1 + hits) / (1 + SAMPLED_SIGN_VECTORS)


def holm_adjust(p_values) -> tuple[float, ...]:
    """Holm-Bonferroni adjusted p-values, in the order given.

    Sorted ascending, the i-th (1-based) of k gets max over j ≤ i of min(1, (k - j + 1) p(j)).
    """
    p = [float(value) for value in p_values]
    if any(not 0 <= value <= 1 for value in p):
        raise ValueError(f"p-values must lie in [0, 1], got {p}")
    k = len(p)
    adjusted = [0.0] * k
    running = 0.0
    for position, index in enumerate(sorted(range(k), key=p.__getitem__)):
        running = max(running, min(1.0, (k - position) * p[index]))
        adjusted[index] = running
    return tuple(adjusted)


@dataclass(frozen=True)
class CellRank:
    """One cell's place on one task.

    ``rank`` is 1 for the best; ``n_pairs`` counts the seeds it shares with the best (its own
    seed count for the best itself); ``p_value`` and ``p_holm`` are None for the best;
    ``verdict`` is "best", "≈ best" (not shown to differ) or "worse than best".
    """

    cell: str
    rank: int
    mean: float
    n_seeds: int
    n_pairs: int
    p_value: float | None
    p_holm: float | None
    verdict: str


@dataclass(frozen=True)
class Ranking:
    """Cells ranked on one metric of one task, with the comparison to the best stated."""

    metric: str
    lower_is_better: bool
    alpha: float
    cells: tuple[CellRank, ...]
    note: str

    @property
    def best(self) -> str:
        return self.cells[0].cell

    @property
    def tied_with_best(self) -> tuple[str, ...]:
        """The best cell and every cell not shown to differ from it."""
        return tuple(rank.cell for rank in self.cells if rank.verdict in (BEST, TIED))


def _seed_values(cell: str, by_seed: Mapping) -> dict:
    if not by_seed:
        raise ValueError(f"cell {cell!r} has no seed values; every ranked cell needs at least one")
    values = {seed: float(value) for seed, value in by_seed.items()}
    bad = {seed: value for seed, value in values.items() if not math.isfinite(value)}
    if bad:
        raise ValueError(
            f"cell {cell!r} has non-finite values at seeds {sorted(bad)}; "
            "give failed runs a value (e.g. the baseline) or leave the cell out"
        )
    return values


def seeds_needed(comparisons: int, alpha: float = ALPHA) -> int:
    """Fewest pairs m at which Holm over ``comparisons`` tests can reject: k · 2/2^m < α."""
    m = 1
    while comparisons * 2.0 / 2**m >= alpha:
        m += 1
    return m


def _power_note(pair_counts: list[int], alpha: float) -> str:
    if not pair_counts:
        return "only one cell: nothing to compare"
    k, most = len(pair_counts), max(pair_counts)
    method = f"paired sign-flip test on seeds, Holm-corrected over {k} comparison{'s' * (k > 1)}, α = {alpha:g}"
    if k * 2.0 / 2**most >= alpha:
        smallest_p = 2.0 / 2**most if most else 1.0
        return (
            f"{method}. With {most} paired seeds the smallest possible p is {smallest_p:.3g}, so no cell "
            f"can be shown to differ from the best: '≈ best' means only 'not shown to differ'; "
            f"{seeds_needed(k, alpha)} seeds are needed before any difference can be shown"
        )
    return method


def rank_cells(values: Mapping[str, Mapping[int, float]], *, lower_is_better: bool, metric: str = "",
               alpha: float = ALPHA) -> Ranking:
    """Rank cells on one task by mean over seeds; mark who is not shown to differ from the best.

    ``values`` maps cell name → {seed: metric value}, e.g. {"lstm": {0: 0.02, 1: 0.03, 2: 0.01}}.
    Cells are compared with the best on the seeds both have (paired by seed); a cell sharing
    no seed with the best gets p = 1. Values must be finite: decide beforehand what a failed
    run scores.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    if not values:
        raise ValueError("rank_cells needs at least one cell")
    by_cell = {cell: _seed_values(cell, by_seed) for cell, by_seed in values.items()}
    means = {cell: float(np.mean(list(by_seed.values()))) for cell, by_seed in by_cell.items()}
    direction = 1.0 if lower_is_better else -1.0
    order = sorted(by_cell, key=lambda cell: (direction * means[cell], cell))
    best = order[0]
    others = order[1:]
    pairs, p_values = [], []
    for cell in others:
        shared = sorted(set(by_cell[cell]) & set(by_cell[best]))
        pairs.append(len(shared))
        p_values.append(sign_flip_p_value([by_cell[cell][seed] - by_cell[best][seed] for seed in shared]))
    adjusted = holm_adjust(p_values)
    ranks = [CellRank(best, 1, means[best], len(by_cell[best]), len(by_cell[best]), None, None, BEST)]
    for position, cell in enumerate(others):
        verdict = WORSE if adjusted[position] < alpha else TIED
        ranks.append(CellRank(cell, position + 2, means[cell], len(by_cell[cell]), pairs[position],
                              p_values[position], adjusted[position], verdict))
    return Ranking(metric, lower_is_better, alpha, tuple(ranks), _power_note(pairs, alpha))
