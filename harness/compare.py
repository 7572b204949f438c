"""Run-to-run comparison: matching rows of two runs side by side, with verdicts that respect noise.

Speed rows match when cell, implementation, device and sizes (B, T, I, H) are equal; each of
the two timings (forward, forward+backward) gets the ratio B/A and a verdict: "1.42x slower",
"1.10x faster" or "not significant". Accuracy and gradient rows match on cell, task, T, H and
device, each run at its own chosen learning rate (:func:`harness.fairness.at_chosen_lr`), and
are shown with their differences. Rows that only one run has are listed as unmatched, never
dropped. Every difference between the two runs' configurations is listed
(:mod:`harness.run_diff`); where the training recipe differs, accuracy and gradient
differences are withheld, where the timing method differs, speed verdicts are, and so are the
rows of a cell whose code differs — unless asked for (``force``).

The verdict from rounds (runs timed in rounds, speed method 3 on)
-----------------------------------------------------------------
Each timing stores one minimum (speed method 4 on; older runs: one median) per round;
:func:`harness.speed_verdict.rounds_verdict` compares them: the Hodges-Lehmann estimate of B/A,
its distribution-free 99% rank interval, and a change called only when that interval excludes 1,
the ratio is at least ``min_change`` (5%) from 1 and, one run a side with 8 or more timings of
other cells on the same device, it stands out from their empirical null (:func:`empirical_null`:
at least the floor and 3 robust standard deviations of their ln B/A from their median), which
sees what no round inside one run can: the machine slower for the whole of a run, and
timing-to-timing drift between runs. It assumes most cells did not change; a shift of a whole
device's table is reported in a note and fails ``--fail-above``. Rounds spread over the item's measurement
vary more than repeats inside one stretch of time, so unchanged code is rarely called changed
(``benchmarks/aa_ab.py``). A side given as several runs (``compare_runs(store, [1, 3, 5], [2, 4, 6])``)
contributes one value per run: the median of that run's round values, so that the rounds of one
process, which share its spells, are not counted as independent.

The verdict from repeats (older runs, without round medians)
------------------------------------------------------------
A difference is *significant* when all three hold:

1. **The samples differ beyond chance**: a two-sided Mann-Whitney U test on the stored repeat
   samples gives p < ``alpha`` (0.05). The test uses ranks only, so it assumes no particular
   distribution — timing samples are skewed, with long right tails from interrupts and
   frequency changes, which breaks the normality a t-test (pyperf's choice) leans on, and one
   outlier cannot move it. The p-value comes from the normal approximation with the tie
   correction and the continuity correction (the same as
   ``scipy.stats.mannwhitneyu(method="asymptotic")``); written by hand here so that rnnbench
   needs no SciPy. With 3 repeats per run the smallest possible p is 0.08, so smoke-profile
   runs never show a significant difference: at least 4 repeats per side are needed.
2. **The change is large enough to outlast the run**: the ratio of medians is at least
   ``1 + min_change`` (5%) away from 1, either way. Repeats inside one run share the same
   process, memory layout, CPU frequency and neighbours, so they only see within-run noise;
   two runs of the same command differ by a few percent for reasons the samples cannot show.
   A floor on the effect (like asv's ``--factor``) keeps such drift from being called a change.
3. **The middle halves do not overlap**: the interquartile ranges of A and B are disjoint. With
   a hundred repeats the test above detects shifts far smaller than the spread of the
   repeats; when the middle halves of the two samples still overlap, the shift is within what
   one run's own noise covers, and a busy machine moves between runs by more than that. This
   is the same median-and-IQR view the speed table quotes, so a reader can check a verdict
   against the table.

On this project's shared 2-core machine, two runs of the same default-profile command gave
p < 0.05 on 17 of 24 timings (within-run samples are that precise) yet differences of 1-17%;
rule 1 alone would call most of them changes; rules 2 and 3 left two (shifts of 14% and 17%
while other jobs shared the machine).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.errors import UsageError
from harness.fairness import at_chosen_lr, with_recipe_columns
from harness.names import ACCURACY, GRADIENTS, MEASUREMENTS, SPEED, TIMINGS
from harness.results import (SPEED_CONDITION, TRAIN_CONDITION, as_int, conditions, problem, rows_frame, samples, seed_values,
                             stats)
from harness.run_diff import (ACCURACY_EFFECT, SPEED_EFFECT, Difference, cell_code_differences, config_differences,
                              model_difference, trained_impl_differences, withheld_reason)
from harness.speed_verdict import ratio_words, rounds_verdict
from harness.stats import Summary, mann_whitney_u

ALPHA = 0.05
MIN_CHANGE = 0.05
# What a timing's rounds are judged by, best first: minima (speed method 4 on), else medians (method 3).
ROUND_STATISTICS = ("round_minima", "round_medians")
# Runs timed in at least this many rounds a side are judged by their rounds (too few for a 99% rank interval
# says so); runs of one round, or none kept, by the repeats test below.
ROUNDS_VERDICT_FROM = 2
# (measurement, metric, phase) -> the label shown beside its values
TRAIN_METRICS = {
    (ACCURACY, "loss_ratio", None): "loss/baseline",
    (ACCURACY, "accuracy", None): "accuracy",
    (ACCURACY, "solved", None): "seeds solved",
    (GRADIENTS, "decay_rate", "init"): "decay/step at init",
    (GRADIENTS, "decay_rate", "trained"): "decay/step trained",
}


@dataclass(frozen=True)
class SpeedComparison:
    """One timing of one speed condition in both runs.

    ``timing`` is "forward" or "forward+backward" (or "—" when a side has no timings);
    medians are seconds per batch; ``ratio`` is median B / median A; ``verdict`` is what a
    reader sees ("1.42x slower", "not significant", "failed in B: ...", "withheld: ..."); ``withheld`` says
    why a verdict is withheld (then ``significant`` is False, and the timing counts as withheld, not as
    not significant).
    ``method``: "rounds" (per-round minima, or medians for older runs, or one value per run when a
    side pools runs: :func:`harness.speed_verdict.rounds_verdict`; ``ratio`` is then its
    Hodges-Lehmann estimate of B/A, ``low``/``high`` its 99% interval)
    or "repeats" (older runs: Mann-Whitney on the pooled repeats, ``p_value``).
    """

    cell: str
    impl: str
    device: str
    batch_size: int
    seq_len: int
    input_size: int
    hidden_size: int
    timing: str
    median_a: float | None = None
    median_b: float | None = None
    n_a: int = 0
    n_b: int = 0
    ratio: float | None = None
    p_value: float | None = None
    separated: bool = False  # the IQRs of A and B do not overlap
    significant: bool = False
    verdict: str = "not significant"
    method: str = "repeats"
    low: float | None = None
    high: float | None = None
    rounds_a: int = 0
    rounds_b: int = 0
    round_unit: str = "rounds"  # "runs" when a side pools several runs, one value each
    withheld: str | None = None  # why no verdict is given (the model, timing method or cell's code differs)

    @property
    def slower(self) -> bool:
        return self.significant and self.ratio is not None and self.ratio > 1

    @property
    def faster(self) -> bool:
        return self.significant and self.ratio is not None and self.ratio < 1


@dataclass(frozen=True)
class MetricComparison:
    """One accuracy or gradient metric of one condition, averaged over seeds, in both runs.

    For "seeds solved" ``a``/``b`` are counts out of ``seeds_a``/``seeds_b``; otherwise means
    over the seeds that finished; ``difference`` is b - a, None when ``withheld`` says why it is
    not shown (the recipe or the cell's code differs). ``lr_a``/``lr_b``: the rate each run's
    figures are at (its chosen rate in a sweep).
    """

    measurement: str
    cell: str
    task: str
    seq_len: int
    hidden_size: int
    device: str
    metric: str
    a: float | None
    b: float | None
    seeds_a: int
    seeds_b: int
    lr_a: float | None = None
    lr_b: float | None = None
    withheld: str | None = None

    @property
    def difference(self) -> float | None:
        return None if self.a is None or self.b is None or self.withheld else self.b - self.a


@dataclass(frozen=True)
class Unmatched:
    """A condition only one run measured; ``run`` is "A" or "B"."""

    run: str
    measurement: str
    description: str


@dataclass(frozen=True)
class Comparison:
    run_a: int | tuple[int, ...] | None  # a tuple when a side pools several runs
    run_b: int | tuple[int, ...] | None
    speed: tuple[SpeedComparison, ...] = ()
    metrics: tuple[MetricComparison, ...] = ()
    unmatched: tuple[Unmatched, ...] = ()
    alpha: float = ALPHA
    min_change: float = MIN_CHANGE
    min_repeats: int = 0  # fewest repeats on either side of a compared timing
    notes: tuple[str, ...] = ()  # caveats about the comparison as a whole
    differences: tuple[Difference, ...] = ()  # configuration differences, cells whose code differs included
    force: bool = False  # verdicts given even where recipe, timing method or cell code differ
    table_shifts: tuple = ()  # (device, median B/A of the table's timings, timings) where an empirical null applied

    def compared(self, timing: str | None = None) -> list[SpeedComparison]:
        """Speed comparisons with a ratio (both sides measured), optionally of one timing."""
        return [s for s in self.speed if s.ratio is not None and (timing is None or s.timing == timing)]

    def geometric_mean(self, timing: str | None = None) -> float | None:
        """Geometric mean of B/A over the compared timings: the typical factor, outliers damped."""
        ratios = [s.ratio for s in self.compared(timing) if s.ratio > 0]
        return math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else None

    def regressions(self, threshold: float) -> list[SpeedComparison]:
        """Significantly slower timings whose ratio B/A exceeds ``1 + threshold`` (0.05 for 5%)."""
        return [s for s in self.speed if s.slower and s.ratio > 1 + threshold]

    def summary(self) -> str:
        """One line: the geometric mean of B/A, per timing, and how many timings changed; timings whose
        verdict is withheld are counted as withheld, with why, not as not significant."""
        compared = self.compared()
        if not compared:
            return "no speed rows measured in both runs"
        overall = self.geometric_mean()
        per_timing = [f"{name} {ratio_words(g)}" for name in TIMINGS.values()
                      if (g := self.geometric_mean(name)) is not None]
        judged = [s for s in compared if not s.withheld]
        slower = sum(s.slower for s in judged)
        faster = sum(s.faster for s in judged)
        withheld = _withheld_count([s.withheld for s in compared if s.withheld])
        return (f"geometric mean of B/A over {len(compared)} timings: {ratio_words(overall)} — "
                f"{', '.join(per_timing)}; {slower} slower, {faster} faster, "
                f"{len(judged) - slower - faster} not significant" + (f", {withheld}" if withheld else ""))


def _withheld_count(reasons: list[str]) -> str:
    """"8 withheld (the model differs (layers))"; with several reasons, how many each: "3 withheld (2: ...; 1: ...)"."""
    if not reasons:
        return ""
    counts = {reason: reasons.count(reason) for reason in dict.fromkeys(reasons)}
    why = next(iter(counts)) if len(counts) == 1 else "; ".join(f"{n}: {reason}" for reason, n in counts.items())
    return f"{len(reasons)} withheld ({why})"


def _describe(measurement: str, key: tuple, names: tuple[str, ...]) -> str:
    short = {"batch_size": "B", "seq_len": "T", "input_size": "I", "hidden_size": "H"}
    parts = [f"{short[n]}={as_int(v)}" if n in short else str(v) for n, v in zip(names, key)]
    return f"{measurement} " + " ".join(parts)


def _failure(group: pd.DataFrame, side: str) -> str | None:
    """"failed in B: RuntimeError: ..." for a condition that one run did not measure."""
    found = problem(group)
    return None if found is None else f"{found[0]} in {side}: {found[1]}"


def compare_speed(key: tuple, group_a: pd.DataFrame, group_b: pd.DataFrame, alpha: float = ALPHA,
                  min_change: float = MIN_CHANGE, withheld: str | None = None) -> list[SpeedComparison]:
    """The two timings of one speed condition, A against B (see the module docstring for the verdict).
    ``withheld``: why no verdict may be given (the timing method or the cell's code differs)."""
    base = dict(zip(SPEED_CONDITION, key))
    for name in ("batch_size", "seq_len", "input_size", "hidden_size"):
        base[name] = as_int(base[name])
    base["impl"] = base["impl"] or "—"
    failures = [f for side, g in (("A", group_a), ("B", group_b)) if (f := _failure(g, side))]
    if failures:
        return [SpeedComparison(**base, timing="—", verdict="; ".join(failures))]
    out = []
    for metric, timing in TIMINGS.items():
        a, b = _pooled_samples(group_a, metric), _pooled_samples(group_b, metric)
        if not a or not b:
            out.append(SpeedComparison(**base, timing=timing, verdict="no samples in " + ("A" if not a else "B")))
            continue
        rounds_a, rounds_b, unit = _rounds_of_both(group_a, group_b, metric)
        comparison = _timing_comparison(base, timing, a, b, rounds_a, rounds_b, alpha, min_change, unit)
        if withheld:
            comparison = dataclasses.replace(comparison, significant=False, verdict=f"withheld: {withheld}",
                                             withheld=withheld)
        out.append(comparison)
    return out


def _pooled_samples(group: pd.DataFrame, metric: str) -> list[float]:
    """Every repeat of ``metric`` in the group: one run's, or those of every run a side pools."""
    runs = _runs_in(group)
    if len(runs) <= 1:
        return samples(group, metric)
    return [sample for run in runs for sample in samples(group[group["run_id"] == run], metric)]


def _runs_in(group: pd.DataFrame) -> list:
    return list(group["run_id"].dropna().unique()) if "run_id" in group else []


def _rounds_of_both(group_a: pd.DataFrame, group_b: pd.DataFrame, metric: str) -> tuple[list[float], list[float], str]:
    """What the verdict compares, and its unit ("rounds" or "runs"). One run a side: each run's rounds,
    minima where both runs kept them (speed method 4), else medians. A side that pools several runs:
    one value per run on both sides, the median of its rounds (the rounds of one process share its
    spells; counted one by one they would overstate the evidence)."""
    pooled = len(_runs_in(group_a)) > 1 or len(_runs_in(group_b)) > 1
    for kind in ROUND_STATISTICS:
        if pooled:
            found = [[_median_or_none(_round_values(group[group["run_id"] == run], metric, kind)) for run in _runs_in(group)]
                     for group in (group_a, group_b)]
            if all(values and None not in values for values in found):
                return found[0], found[1], "runs"
        else:
            rounds_a, rounds_b = _round_values(group_a, metric, kind), _round_values(group_b, metric, kind)
            if rounds_a and rounds_b:
                return rounds_a, rounds_b, "rounds"
    return [], [], "rounds"


def _median_or_none(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def _round_values(group: pd.DataFrame, metric: str, kind: str) -> list[float]:
    found = stats(group, metric) or {}
    return [float(m) for m in found.get(kind) or []]


def _timing_comparison(base: dict, timing: str, a: list[float], b: list[float], rounds_a: list[float],
                       rounds_b: list[float], alpha: float, min_change: float, unit: str = "rounds") -> SpeedComparison:
    spread_a, spread_b = Summary(tuple(a)), Summary(tuple(b))
    common = dict(**base, timing=timing, median_a=spread_a.median, median_b=spread_b.median, n_a=len(a), n_b=len(b),
                  separated=spread_a.q3 < spread_b.q1 or spread_b.q3 < spread_a.q1)
    if unit == "runs" or min(len(rounds_a), len(rounds_b)) >= ROUNDS_VERDICT_FROM:
        verdict = rounds_verdict(rounds_a, rounds_b, min_change=min_change, unit=unit)
        return SpeedComparison(**common, ratio=verdict.ratio, significant=verdict.significant,
                               verdict=verdict.verdict, method="rounds", low=verdict.low,
                               high=verdict.high, rounds_a=len(rounds_a), rounds_b=len(rounds_b), round_unit=unit)
    ratio = spread_b.median / spread_a.median if spread_a.median > 0 else None
    test = mann_whitney_u(a, b)
    large = ratio is not None and (ratio >= 1 + min_change or ratio <= 1 / (1 + min_change))
    significant = test.p_value < alpha and large and common["separated"]
    return SpeedComparison(**common, ratio=ratio, p_value=test.p_value, significant=significant,
                           verdict=ratio_words(ratio) if significant else "not significant")


def _rate(group: pd.DataFrame) -> float | None:
    rates = group["lr"].dropna().unique() if "lr" in group else ()
    return float(rates[0]) if len(rates) == 1 else None


def compare_train(measurement: str, key: tuple, group_a: pd.DataFrame, group_b: pd.DataFrame,
                  withheld: str | None = None) -> list[MetricComparison]:
    base = dict(zip(TRAIN_CONDITION, key))
    base["seq_len"], base["hidden_size"] = as_int(base["seq_len"]), as_int(base["hidden_size"])
    seeds_a, seeds_b = (int(g["seed"].nunique(dropna=False)) for g in (group_a, group_b))
    rates = dict(lr_a=_rate(group_a), lr_b=_rate(group_b))
    out = []
    for (which, metric, phase), label in TRAIN_METRICS.items():
        if which != measurement:
            continue
        values_a, values_b = seed_values(group_a, metric, phase), seed_values(group_b, metric, phase)
        if metric == "solved":
            a, b = float(sum(values_a)), float(sum(values_b))
        else:
            a = sum(values_a) / len(values_a) if values_a else None
            b = sum(values_b) / len(values_b) if values_b else None
        out.append(MetricComparison(measurement, **base, metric=label, a=a, b=b, seeds_a=seeds_a, seeds_b=seeds_b,
                                    **rates, withheld=withheld))
    return out


def compare_rows(rows_a, rows_b, *, run_a: int | None = None, run_b: int | None = None, alpha: float = ALPHA,
                 min_change: float = MIN_CHANGE, differences: tuple[Difference, ...] = (),
                 force: bool = False, single_runs: bool = True) -> Comparison:
    """Compare two runs' tidy rows (lists of dicts as ``ResultStore.rows`` gives, or DataFrames).

    ``differences``: the runs' configuration differences (:func:`harness.run_diff.config_differences`);
    unless ``force``, they withhold the verdicts they affect. Cells whose code differs are found here.
    ``single_runs``: each side is one run, so the table's empirical null applies (pooled runs see the drift
    between runs in their own values).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    if min_change < 0:
        raise ValueError(f"min_change must be >= 0, got {min_change}")
    frame_a, frame_b = (at_chosen_lr(with_recipe_columns(rows_frame(rows))) for rows in (rows_a, rows_b))
    cells_changed = cell_code_differences(frame_a, frame_b)
    differences = tuple(differences) + tuple(cells_changed.values()) + tuple(trained_impl_differences(frame_a, frame_b))
    withheld_for = {effect: None if force else withheld_reason(list(differences), effect)
                    for effect in (ACCURACY_EFFECT, SPEED_EFFECT)}

    def withheld(cell: str, effect: str) -> str | None:
        if force:
            return None
        if cell in cells_changed:
            return "the cell's code differs"
        return withheld_for[effect]

    speed: list[SpeedComparison] = []
    metrics: list[MetricComparison] = []
    unmatched: list[Unmatched] = []
    for measurement in MEASUREMENTS:
        names = SPEED_CONDITION if measurement == SPEED else TRAIN_CONDITION
        groups_a, groups_b = conditions(frame_a, measurement, names), conditions(frame_b, measurement, names)
        for key, group_a in groups_a.items():
            if key not in groups_b:
                unmatched.append(Unmatched("A", measurement, _describe(measurement, key, names)))
            elif measurement == SPEED:
                speed += compare_speed(key, group_a, groups_b[key], alpha, min_change, withheld(key[0], SPEED_EFFECT))
            else:
                metrics += compare_train(measurement, key, group_a, groups_b[key], withheld(key[0], ACCURACY_EFFECT))
        unmatched += [Unmatched("B", measurement, _describe(measurement, key, names)) for key in groups_b if key not in groups_a]
    notes, shifts = (), ()
    if single_runs:
        speed, notes, shifts = _against_empirical_null(speed, min_change, model_difference(list(differences)))
    repeats = [min(s.n_a, s.n_b) for s in speed if s.ratio is not None and s.method == "repeats"]
    return Comparison(run_a, run_b, tuple(speed), tuple(metrics), tuple(unmatched), alpha, min_change,
                      min(repeats) if repeats else 0, notes=notes, differences=differences, force=force,
                      table_shifts=shifts)


# The empirical null of a speed table (Efron 2004, "Large-scale simultaneous hypothesis testing: the choice of a
# null hypothesis", JASA 99:96): with at least this many timings judged by rounds, their log ratios B/A, most of
# them of unchanged cells, show how far two runs drift apart as a whole (centre) and timing by timing (spread).
EMPIRICAL_NULL_MIN_TIMINGS = 8
EMPIRICAL_NULL_Z = 3.0  # a timing must stand this many robust standard deviations from the centre
MAD_TO_SD = 1.4826  # a normal distribution's standard deviation over its median absolute deviation


@dataclass(frozen=True)
class EmpiricalNull:
    """Centre (B/A) and robust spread (of ln B/A) of a table's timings; ``threshold``: how far (in ln) from the
    centre a timing must lie to be called."""

    centre: float
    spread: float
    threshold: float
    timings: int


def empirical_null(speed: list[SpeedComparison], min_change: float) -> EmpiricalNull | None:
    """The table's empirical null, None for fewer than :data:`EMPIRICAL_NULL_MIN_TIMINGS` timings judged by rounds."""
    logs = np.log([s.ratio for s in speed if s.method == "rounds" and s.ratio and s.ratio > 0])
    if logs.size < EMPIRICAL_NULL_MIN_TIMINGS:
        return None
    centre = float(np.median(logs))
    spread = MAD_TO_SD * float(np.median(np.abs(logs - centre)))
    return EmpiricalNull(math.exp(centre), spread, max(math.log1p(min_change), EMPIRICAL_NULL_Z * spread), logs.size)


def _against_empirical_null(speed: list[SpeedComparison], min_change: float,
                            model: str | None = None) -> tuple[list, tuple, tuple]:
    """Call a timing only where it also stands out from the other cells' timings on its device: at least the
    threshold of *their* empirical null from its centre (left out, so that a changed cell does not hide in its own
    change; fewer than :data:`EMPIRICAL_NULL_MIN_TIMINGS` timings of other cells: no null). Rounds inside one run
    cannot show the machine being slower for the whole of that run, or timing-to-timing drift between runs; the
    other timings can (measured here: in one of five A/A pairs of ``rnnbench run --cells all --measure speed``
    every timing of one run was 1.32x slower, and 11 of 44 were called by their rounds alone). It assumes that
    most cells did not change. ``model``: the runs' model difference ("the model differs (layers)"), which the
    note names as the first cause of a whole table moving. Returns the comparisons, notes, and (device, table
    centre, timings) per device."""
    out, withheld, nulls = [], {}, {}
    for s in speed:
        if s.significant and s.method == "rounds":
            if (s.device, s.cell) not in nulls:  # the other cells' null: one per cell, however many of its timings
                nulls[s.device, s.cell] = empirical_null(
                    [o for o in speed if o.device == s.device and o.cell != s.cell], min_change)
            null = nulls[s.device, s.cell]
            if null is not None and abs(math.log(s.ratio / null.centre)) < null.threshold:
                s = dataclasses.replace(s, significant=False, verdict=f"not significant (within the other cells' "
                                                                      f"drift, {null.centre:.2f}x)")
                withheld[s.device] = withheld.get(s.device, 0) + 1
        out.append(s)
    notes, shifts = [], []
    for device in dict.fromkeys(s.device for s in speed):
        null = empirical_null([s for s in speed if s.device == device], min_change)
        if null is None:
            continue
        shifts.append((device, null.centre, null.timings))
        shifted = abs(math.log(null.centre)) >= math.log1p(min_change)
        if not shifted and not withheld.get(device):
            continue
        notes.append(
            f"{device}: the table's {null.timings} timings moved by {null.centre:.2f}x at their median, spread "
            f"±{null.spread:.1%} (robust sd of ln B/A); a timing is called changed only where it also lies at least "
            f"{min_change:.0%} and {EMPIRICAL_NULL_Z:g} such sd from the median of the other cells' timings (Efron's "
            f"empirical null, which assumes most cells did not change)"
            + (f"; {withheld[device]} called by their rounds alone are not" if withheld.get(device) else "")
            + (f"; {table_shift_cause(model)}" if shifted else ""))
    return out, tuple(notes), tuple(shifts)


def table_shift_cause(model: str | None) -> str:
    """What a whole speed table moving means: another model where the runs' models differ, else the machine or
    the software."""
    if model:
        return (f"the whole table moving is expected here: {model}, so B timed another model (any drift of the "
                f"machine is mixed in)")
    return "the whole table moving means the machine ran faster or slower during one of the runs, or the software differs"


def min_change_for_gate(fail_above: float | None) -> float:
    """The minimum change to call significant when a gate asks to fail above ``fail_above``:
    a gate finer than the default 5% must be able to trip, so the floor drops to it."""
    return MIN_CHANGE if fail_above is None else min(MIN_CHANGE, fail_above)


def compare_runs(store, run_a, run_b, *, alpha: float = ALPHA, min_change: float = MIN_CHANGE,
                 force: bool = False) -> Comparison:
    """Compare stored runs of one :class:`harness.store.ResultStore`: each side a run id, "latest", or
    several runs of the same configuration ("1,3,5" or a list), whose speed rounds are pooled one
    value per run (run A, B, A, B, ... alternately, so that the machine's drift falls on both sides).
    Accuracy and gradient rows come from the first run of each side."""
    ids_a, ids_b = side_runs(store, run_a, "A"), side_runs(store, run_b, "B")
    both = sorted(set(ids_a) & set(ids_b))
    if both:
        raise UsageError(f"run {both[0]} is on both sides; each run belongs to A or to B")
    rows_a, rows_b = _pooled_rows(store, ids_a, "A"), _pooled_rows(store, ids_b, "B")
    comparison = compare_rows(rows_a, rows_b, run_a=_label(ids_a), run_b=_label(ids_b), alpha=alpha,
                              min_change=min_change, differences=tuple(config_differences(store.run(ids_a[0]),
                                                                                          store.run(ids_b[0]))),
                              force=force, single_runs=len(ids_a) == 1 and len(ids_b) == 1)
    if len(ids_a) > 1 or len(ids_b) > 1:
        note = (f"speed verdicts from one value per run (the median of its rounds' fastest calls, or of their medians "
                f"for runs that kept only those): {len(ids_a)} run(s) in A, {len(ids_b)} in B; accuracy and gradients "
                f"from runs {ids_a[0]} and {ids_b[0]}")
        comparison = dataclasses.replace(comparison, notes=(*comparison.notes, note))
    elif any(s.method == "rounds" for s in comparison.compared()):
        spread = all(store.run(i).config.timing.spread for i in (*ids_a, *ids_b))
        note = SINGLE_SPREAD_RUN_NOTE if spread else SINGLE_RUN_NOTE
        comparison = dataclasses.replace(comparison, notes=(*comparison.notes, note))
    return comparison


# Measured with benchmarks/aa_ab.py on this project's 2-core VM: with rounds back to back, 21 of 120 single-run
# A/A timings called, and a planted 10% slowdown needed about 20 runs a side (README, Performance).
SINGLE_SPREAD_RUN_NOTE = ("one run a side: a timing is called changed only when every one of B's rounds (spread over "
                          "the run) is slower, or every one faster, than all of A's, by at least the floor and, with "
                          f"{EMPIRICAL_NULL_MIN_TIMINGS} or more timings of other cells, beyond their drift; on a "
                          "noisy machine a change of about 10% needs several runs a side, alternating, pooled "
                          "(rnnbench compare 1,3,5 2,4,6)")
SINGLE_RUN_NOTE = ("one run a side: each timing's rounds were taken back to back, about a second in all, so a slow "
                   "spell of a shared machine that covers them is not in their spread and can be called a change; "
                   "for verdicts that hold there, run each side several times, alternating, and pool them "
                   "(rnnbench compare 1,3,5 2,4,6; on a noisy machine about 20 runs a side find a 10% change)")


def side_runs(store, ref, side: str) -> tuple[int, ...]:
    """The run ids of one side: an id, "latest", "1,3,5", or a sequence of those; every run of a side
    must share one configuration (else UsageError naming the difference). A run named twice ("1,1", or
    "latest,3" where latest is 3) is refused rather than counted once: the user meant two runs, and pooling
    one silently would give another verdict (one run a side is judged by its rounds, pooled sides by runs)."""
    refs = [part.strip() for part in ref.split(",")] if isinstance(ref, str) else \
        list(ref) if isinstance(ref, (list, tuple)) else [ref]
    if not refs or any(r == "" for r in refs):
        raise UsageError(f"run {side} must be a run id, 'latest', or ids separated by commas, got {ref!r}")
    resolved = [store.resolve_run(r) for r in refs]
    twice = next((run for i, run in enumerate(resolved) if run in resolved[:i]), None)
    if twice is not None:
        names = list(dict.fromkeys(str(r) for r, run in zip(refs, resolved) if run == twice))
        said = f"run {twice} is named twice" if len(names) == 1 else f"{' and '.join(names)} are both run {twice}"
        raise UsageError(f"{said} in side {side}; name each run of a side once (pooled runs must be different runs)")
    ids = tuple(resolved)
    first = store.run(ids[0])
    for other in ids[1:]:
        found = config_differences(first, store.run(other))
        if found:
            raise UsageError(f"runs {ids[0]} and {other} of side {side} were measured differently "
                             f"({found[0].what}: {found[0].a} vs {found[0].b}); pool only runs of one configuration")
    return ids


def _pooled_rows(store, ids: tuple[int, ...], side: str) -> list[dict]:
    """The first run's rows, and the speed rows of the others; runs whose cells' code differs are refused."""
    rows = list(store.rows(ids[0]))
    first = rows_frame(rows)
    for other in ids[1:]:
        found = store.rows(other)
        changed = cell_code_differences(first, rows_frame(found))
        if changed:
            cell, difference = next(iter(changed.items()))
            raise UsageError(f"runs {ids[0]} and {other} of side {side} ran different code of cell {cell} "
                             f"({difference.a} vs {difference.b}); pool only runs of the same code")
        rows += [row for row in found if row.get("measurement") == SPEED]
    return rows


def _label(ids: tuple[int, ...]) -> int | tuple[int, ...]:
    return ids[0] if len(ids) == 1 else ids
