"""The text of ``rnnbench compare``: a comparison from :mod:`harness.compare` as tables and lines."""

from __future__ import annotations

from harness.compare import Comparison, ratio_text
from harness.names import ACCURACY, GRADIENTS
from harness.stats import smallest_p_value
from reports.tables import fmt_seconds


def _number(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _signed(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:+.{digits}g}"


def speed_rows(comparison: Comparison) -> list[dict]:
    return [{
        "cell": s.cell, "impl": s.impl, "device": s.device, "B": s.batch_size, "T": s.seq_len, "I": s.input_size,
        "H": s.hidden_size, "timing": s.timing, "A s": fmt_seconds(s.median_a), "B s": fmt_seconds(s.median_b),
        "B/A": "—" if s.ratio is None else f"{s.ratio:.3f}", "repeats": f"{s.n_a}/{s.n_b}" if s.ratio is not None else "—",
        "p": "—" if s.p_value is None else f"{s.p_value:.2g}", "verdict": s.verdict,
    } for s in comparison.speed]


def metric_rows(comparison: Comparison, measurement: str) -> list[dict]:
    """One row per condition: each metric's A, B and B - A side by side."""
    rows: dict[tuple, dict] = {}
    for m in comparison.metrics:
        if m.measurement != measurement:
            continue
        row = rows.setdefault((m.cell, m.task, m.seq_len, m.hidden_size, m.device), {
            "cell": m.cell, "task": m.task, "T": m.seq_len, "H": m.hidden_size, "device": m.device})
        if m.metric == "seeds solved":
            row[f"{m.metric} A"] = f"{_number(m.a)}/{m.seeds_a}"
            row[f"{m.metric} B"] = f"{_number(m.b)}/{m.seeds_b}"
        else:
            row[f"{m.metric} A"], row[f"{m.metric} B"] = _number(m.a), _number(m.b)
            row[f"{m.metric} B-A"] = _signed(m.difference)
    return list(rows.values())


def format_comparison(comparison: Comparison) -> str:
    """The comparison as a reader sees it: tables, the summary line, unmatched rows."""
    from tabulate import tabulate

    def table(rows):
        return tabulate(rows, headers="keys", tablefmt="simple", disable_numparse=True)

    a, b = comparison.run_a, comparison.run_b
    parts = [f"Comparing run {a} (A) with run {b} (B); B/A > 1 means B took longer."]
    parts += [f"note: {note}" for note in comparison.notes]
    if comparison.speed:
        parts += ["", "Speed: seconds per batch, median of the repeats", table(speed_rows(comparison)), "",
                  comparison.summary(),
                  f"verdict: a change only when the repeats differ (Mann-Whitney U, p < {comparison.alpha:g}), by at "
                  f"least {comparison.min_change:.0%}, with non-overlapping IQRs; otherwise 'not significant'"]
        if comparison.compared() and smallest_p_value(comparison.min_repeats, comparison.min_repeats) >= comparison.alpha:
            parts.append(f"note: some timings have only {comparison.min_repeats} repeats in a run; with so few no "
                         f"difference can be significant (more repeats: e.g. --profile default)")
    for measurement, title in ((ACCURACY, "Accuracy: held-out results, mean over seeds"),
                               (GRADIENTS, "Gradient decay: slope of ln-norm per step, mean over seeds")):
        rows = metric_rows(comparison, measurement)
        if rows:
            parts += ["", title, table(rows)]
    for side, run_id in (("A", a), ("B", b)):
        only = [u.description for u in comparison.unmatched if u.run == side]
        if only:
            parts += ["", f"Only in run {run_id} ({side}), not compared:", *(f"  {d}" for d in only)]
    if not comparison.speed and not comparison.metrics:
        parts += ["", "no rows match between the two runs"]
    return "\n".join(parts)


def regression_lines(comparison: Comparison, threshold: float) -> list[str]:
    """One line per timing of B significantly slower than A's by more than ``threshold``, then a count."""
    regressions = comparison.regressions(threshold)
    lines = [f"regression: {s.cell} {s.impl} {s.device} B={s.batch_size} T={s.seq_len} I={s.input_size} "
             f"H={s.hidden_size} {s.timing}: {ratio_text(s.ratio)} (p = {s.p_value:.2g})" for s in regressions]
    if regressions:
        lines.append(f"{len(regressions)} timing(s) significantly slower by more than {threshold:.1%}")
    return lines
