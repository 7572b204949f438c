"""Choosing the settings a fair comparison fixes per cell: the learning rate and the hidden size.

Learning rate (:func:`select_lr`)
---------------------------------
Each (cell, task, T) is trained at every rate of the sweep, for every seed; the rate is chosen
on *validation* losses only, so the test stream that the accuracy table reports stays held out
(the standard train/validation/test protocol; e.g. Melis, Dyer & Blunsom 2018, "On the State of
the Art of Evaluation in Neural Language Models", who show that per-model tuning changes the
ranking). The function receives nothing but validation losses — there is no argument through
which a test value could reach it.

- **Score** of a rate: the mean validation loss over its seeds (one rate for all seeds, since
  a user of the cell cannot pick a rate per seed).
- **Failed runs**: a (rate, seed) whose loss is NaN or infinite (diverged), or that is missing
  although the rate was tried (crashed before validating), is *failed*. Rates are ordered
  first by their number of failed seeds, then by mean validation loss over the seeds that did
  not fail: a rate that diverges on one seed in three loses to any rate that never diverges.
- **Ties**: means within a relative 1e-9 are equal, and the smaller rate wins (slower but
  safer, and the choice does not depend on float noise).
- **All failed**: every seed failed at every rate → ``lr`` is None and the note says so; the
  table should show "all rates diverged" rather than a number.
- **Edge of the grid**: when the chosen rate is the smallest or largest of two or more tried,
  ``at_grid_edge`` is set: the best rate may lie outside the sweep.

Hidden size (:func:`hidden_size_for_budget`)
--------------------------------------------
Given ``count_params(H)``, non-decreasing in H, find the H whose count is closest to the budget
by doubling then bisection (O(log H) calls, none far beyond the answer), ties to the smaller H. The caller decides what is counted; the
harness should count the readout too (see the function's docstring).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

TIE_RELATIVE = 1e-9
MAX_HIDDEN_SIZE = 1 << 20


@dataclass(frozen=True)
class LrScore:
    """One rate of the sweep: its mean validation loss over the seeds that did not fail."""

    lr: float
    mean_val_loss: float  # NaN when every seed failed
    n_ok: int
    n_failed: int


@dataclass(frozen=True)
class LrChoice:
    """The rate chosen for one (cell, task, T), with the whole sweep it was chosen from.

    ``lr`` is None when every run failed; ``scores`` lists every tried rate, ascending.
    """

    lr: float | None
    mean_val_loss: float
    n_failed: int
    at_grid_edge: bool
    scores: tuple[LrScore, ...]
    note: str


def _finite_or_none(value) -> float | None:
    """The loss as a float, or None for a failed run (None, NaN or infinite)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _score(lr: float, by_seed: Mapping[int, float], seeds: set) -> LrScore:
    losses = [_finite_or_none(by_seed.get(seed)) for seed in seeds]
    finite = [loss for loss in losses if loss is not None]
    mean = math.fsum(finite) / len(finite) if finite else math.nan
    return LrScore(lr, mean, len(finite), len(seeds) - len(finite))


def _better(candidate: LrScore, incumbent: LrScore) -> bool:
    """True when ``candidate`` beats ``incumbent``; called in ascending lr, so ties keep the smaller."""
    if candidate.n_failed != incumbent.n_failed:
        return candidate.n_failed < incumbent.n_failed
    scale = max(abs(candidate.mean_val_loss), abs(incumbent.mean_val_loss))
    return candidate.mean_val_loss < incumbent.mean_val_loss - TIE_RELATIVE * scale


def select_lr(validation_loss: Mapping[float, Mapping[int, float]], lrs_tried: Sequence[float]) -> LrChoice:
    """Choose the learning rate for one (cell, task, T) from validation losses alone.

    ``validation_loss`` maps lr → {seed: final validation loss}; ``lrs_tried`` lists every
    rate that was run (a tried rate absent from ``validation_loss``, or a seed missing under
    it, counts as failed). The seeds are those seen under any rate. See the module docstring
    for the rules on failures, ties and the all-failed case.
    """
    tried = sorted({float(lr) for lr in lrs_tried})
    if not tried or any(not (math.isfinite(lr) and lr > 0) for lr in tried):
        raise ValueError(f"lrs_tried must list positive learning rates, got {list(lrs_tried)}")
    given = {float(lr): by_seed for lr, by_seed in validation_loss.items()}
    stray = sorted(set(given) - set(tried))
    if stray:
        raise ValueError(f"validation losses for rates {stray} that are not among those tried {tried}")
    seeds = {seed for by_seed in given.values() for seed in by_seed}
    if not seeds:
        raise ValueError("select_lr needs validation losses for at least one seed")
    scores = tuple(_score(lr, given.get(lr, {}), seeds) for lr in tried)
    chosen = None
    for score in scores:
        if score.n_ok and (chosen is None or _better(score, chosen)):
            chosen = score
    if chosen is None:
        return LrChoice(None, math.nan, len(seeds), False, scores,
                        f"all rates failed: every seed diverged or crashed at {', '.join(f'{lr:g}' for lr in tried)}")
    at_edge = len(tried) > 1 and chosen.lr in (tried[0], tried[-1])
    note = f"lr {chosen.lr:g} chosen on validation loss from {len(tried)} rates"
    if chosen.n_failed:
        note += f"; {chosen.n_failed} of {len(seeds)} seeds failed even at this rate"
    if at_edge:
        note += "; at the edge of the sweep, so a better rate may lie outside it"
    return LrChoice(chosen.lr, chosen.mean_val_loss, chosen.n_failed, at_edge, scores, note)


def hidden_size_for_budget(count_params: Callable[[int], int], budget: int, *, smallest: int = 1,
                           largest: int = MAX_HIDDEN_SIZE) -> int:
    """The hidden size H in [smallest, largest] whose parameter count is closest to ``budget``.

    Sizes are tried from ``smallest`` up to the first whose count reaches the budget; the
    answer is the one among them whose count is nearest the budget, the smaller H on a tie. A budget below the count at
    ``smallest`` gives ``smallest``; one above the count at ``largest`` is refused.

    What to count: the whole trained model, cell *and* the harness's linear readout
    (H·O + O parameters). The readout grows with H, papers quote whole-model counts (Arjovsky
    et al. 2016; Lezcano-Casado & Martínez-Rubio 2019), and its share differs between cells
    (a larger H buys a larger readout), so leaving it out would let cells with cheap
    recurrences buy uncounted readout capacity.
    """
    if int(budget) != budget or budget < 1:
        raise ValueError(f"a parameter budget must be a positive whole number, got {budget}")
    if not 1 <= smallest <= largest:
        raise ValueError(f"need 1 ≤ smallest ≤ largest hidden size, got {smallest} and {largest}")
    # A plain scan upwards to the first size whose count reaches the budget: counts need not
    # grow monotonically (sLSTM and mLSTM pick their head count by divisibility, so an odd H
    # with one head holds more weights than H + 1 with two), which rules out bisection.
    # Counting is cheap when the caller builds modules on torch's "meta" device.
    sizes, counts = [], []
    for size in range(smallest, largest + 1):
        sizes.append(size)
        counts.append(count_params(size))
        if counts[-1] >= budget:
            break
    else:
        raise ValueError(f"a budget of {budget} parameters exceeds the count at the largest hidden size "
                         f"{largest} ({counts[-1]})")
    return min(zip(sizes, counts), key=lambda pair: (abs(pair[1] - budget), pair[0]))[0]
