"""The text of ``rnnbench compare``: a comparison from :mod:`harness.compare` as tables and lines."""

from __future__ import annotations

from harness.compare import EMPIRICAL_NULL_MIN_TIMINGS, EMPIRICAL_NULL_Z, Comparison
from harness.speed_verdict import ratio_words
from harness.names import ACCURACY, GRADIENTS, MEASUREMENTS
from harness.run_diff import model_difference
from harness.stats import smallest_p_value
from reports.tables import fmt_seconds


def _number(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _signed(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:+.{digits}g}"


def _evidence(s) -> str:
    """What the verdict rests on: the rounds' 99% interval of B/A, or the repeats' Mann-Whitney p."""
    if s.method == "rounds":
        interval = "" if s.low is None or s.low != s.low else f" [{s.low:.3f}, {s.high:.3f}]"
        return f"{s.rounds_a}/{s.rounds_b} {s.round_unit}{interval}"
    return "—" if s.p_value is None else f"{s.n_a}/{s.n_b} repeats, p {s.p_value:.2g}"


def speed_rows(comparison: Comparison) -> list[dict]:
    return [{
        "cell": s.cell, "impl": s.impl, "device": s.device, "B": s.batch_size, "T": s.seq_len, "I": s.input_size,
        "H": s.hidden_size, "timing": s.timing, "A s": fmt_seconds(s.median_a), "B s": fmt_seconds(s.median_b),
        "B/A": "—" if s.ratio is None else f"{s.ratio:.3f}", "evidence": _evidence(s), "verdict": s.verdict,
    } for s in comparison.speed]


def metric_rows(comparison: Comparison, measurement: str) -> list[dict]:
    """One row per condition: each metric's A, B and B - A side by side."""
    rows: dict[tuple, dict] = {}
    for m in comparison.metrics:
        if m.measurement != measurement:
            continue
        row = rows.setdefault((m.cell, m.task, m.seq_len, m.hidden_size, m.device), {
            "cell": m.cell, "task": m.task, "T": m.seq_len, "H": m.hidden_size, "device": m.device,
            "lr A": _number(m.lr_a), "lr B": _number(m.lr_b)})
        if m.withheld:
            row["note"] = f"differences withheld: {m.withheld}"
        if m.metric == "seeds solved":
            row[f"{m.metric} A"] = f"{_number(m.a)}/{m.seeds_a}"
            row[f"{m.metric} B"] = f"{_number(m.b)}/{m.seeds_b}"
        else:
            row[f"{m.metric} A"], row[f"{m.metric} B"] = _number(m.a), _number(m.b)
            row[f"{m.metric} B-A"] = "withheld" if m.withheld else _signed(m.difference)
    return list(rows.values())


def _runs(ids) -> str:
    """"run 3", or "runs 1, 3, 5" for a side that pools several runs."""
    return f"runs {', '.join(str(i) for i in ids)}" if isinstance(ids, tuple) else f"run {ids}"


def format_comparison(comparison: Comparison) -> str:
    """The comparison as a reader sees it: tables, the summary line, unmatched rows."""
    from tabulate import tabulate

    def table(rows):
        return tabulate(rows, headers="keys", tablefmt="simple", disable_numparse=True)

    a, b = _runs(comparison.run_a), _runs(comparison.run_b)
    parts = [f"Comparing {a} (A) with {b} (B); B/A > 1 means B took longer."]
    parts += difference_lines(comparison)
    parts += [f"note: {note}" for note in comparison.notes]
    if comparison.speed:
        parts += ["", "Speed: A s and B s are seconds per batch, median of the repeats; B/A and its interval come from "
                      "the rounds (see the verdict line)", table(speed_rows(comparison)), "",
                  comparison.summary(), *verdict_lines(comparison)]
        if (comparison.min_repeats and comparison.compared()
                and smallest_p_value(comparison.min_repeats, comparison.min_repeats) >= comparison.alpha):
            parts.append(f"note: some timings have only {comparison.min_repeats} repeats in a run; with so few no "
                         f"difference can be significant (more repeats: e.g. --profile default)")
    for measurement, title in ((ACCURACY, "Accuracy: test-set results at each run's chosen learning rate, mean over seeds"),
                               (GRADIENTS, "Gradient decay: slope of ln-norm per step, mean over seeds")):
        rows = metric_rows(comparison, measurement)
        if rows:
            parts += ["", title, table(rows)]
    for side, run_id in (("A", a), ("B", b)):
        only = [u.description for u in comparison.unmatched if u.run == side]
        if only:
            parts += ["", f"Only in {run_id} ({side}), not compared:", *(f"  {d}" for d in only)]
    if not comparison.speed and not comparison.metrics:
        parts += ["", "no rows match between the two runs"]
    return "\n".join(parts)


def difference_lines(comparison: Comparison) -> list[str]:
    """The configuration differences, above every table, each with the tables whose verdicts it withholds."""
    if not comparison.differences:
        sides = "sides'" if isinstance(comparison.run_a, tuple) or isinstance(comparison.run_b, tuple) else "runs'"
        return [f"The two {sides} configurations agree (recipe, sweep, seeds, sizes, timing, software, cell code)."]
    lines = ["", "Configuration differences (A vs B):"]
    lines += [f"  {d.line()}" + (f"  [{', '.join(d.withholds)}]" if d.withholds else "") for d in comparison.differences]
    withheld = [table for table in MEASUREMENTS if any(table in d.withholds for d in comparison.differences)]
    if withheld and not comparison.force:
        lines.append(f"Verdicts and differences of the rows these affect ({', '.join(withheld)}) are withheld: the runs "
                     "did not measure them the same way. Pass --force to see them anyway.")
    elif withheld:
        lines.append("--force: verdicts are given although the runs differ as above; read them with that in mind.")
    return lines


def verdict_lines(comparison: Comparison) -> list[str]:
    """How the speed verdicts were reached, for each method that was used."""
    methods = {s.method for s in comparison.compared()}
    lines = []
    if "rounds" in methods:
        lines.append(f"verdict (timed in rounds): B/A is the Hodges-Lehmann estimate from the rounds' fastest calls "
                     f"(one value per run where a side pools runs); a change only when its 99% rank interval excludes "
                     f"1, it is at least {comparison.min_change:.0%} from 1 and, one run a side with "
                     f"{EMPIRICAL_NULL_MIN_TIMINGS} or more timings of other cells, at least {comparison.min_change:.0%} "
                     f"and {EMPIRICAL_NULL_Z:g} robust sd of their ln B/A from their median; otherwise 'not significant'")
    if "repeats" in methods:
        lines.append(f"verdict (runs without rounds): a change only when the repeats differ (Mann-Whitney U, p < "
                     f"{comparison.alpha:g}), by at least {comparison.min_change:.0%}, with non-overlapping IQRs")
    return lines


def nothing_to_gate(comparison: Comparison) -> str | None:
    """One line when a gate has no timing to judge: every compared timing's verdict is withheld (the
    model, timing method or cells' code differs) and ``--force`` was not given; None otherwise."""
    compared = comparison.compared()
    if comparison.force or not compared or any(s.withheld is None for s in compared):
        return None
    reasons = "; ".join(dict.fromkeys(s.withheld for s in compared))
    return f"nothing to gate: every timing withheld ({reasons}); pass --force to gate on them anyway"


def regression_lines(comparison: Comparison, threshold: float) -> list[str]:
    """One line per timing of B significantly slower than A's by more than ``threshold``, one per device whose whole
    table is slower by more than that at its median (the empirical null does not call such a shift timing by
    timing, and a gate must not pass it silently), then a count."""
    regressions = comparison.regressions(threshold)
    judged = {s.device for s in comparison.compared() if s.withheld is None}  # a withheld table is not gated
    lines = [f"regression: {s.cell} {s.impl} {s.device} B={s.batch_size} T={s.seq_len} I={s.input_size} "
             f"H={s.hidden_size} {s.timing}: {ratio_words(s.ratio)} ({_evidence(s)})" for s in regressions]
    shifted = [(device, centre, n) for device, centre, n in comparison.table_shifts
               if centre > 1 + threshold and device in judged]
    model = model_difference(list(comparison.differences))
    cause = f"{model}: B timed another model" if model else "a slower machine during run B, or slower software"
    lines += [f"regression: every timing on {device} together: {ratio_words(centre)} at the median of {n} timings "
              f"({cause})" for device, centre, n in shifted]
    if regressions:
        lines.append(f"{len(regressions)} timing(s) significantly slower by more than {threshold:.1%}")
    if shifted:
        lines.append(f"{len(shifted)} device table(s) slower as a whole by more than {threshold:.1%}")
    return lines
