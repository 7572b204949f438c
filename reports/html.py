"""The HTML report: one self-contained page a reader can open offline and understand.

Everything is inside ``report.html``: styles inline, plots as base64 PNG ``data:`` URIs, no
scripts, no fonts, no external ``src``/``href`` (a Content-Security-Policy forbids fetching
anything else). Every piece of text that came from a run — cell, task and plugin names,
error messages, the command line — is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import math
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from harness import hookimpl
from harness.names import ACCURACY, GRADIENTS, LENGTH, SAMPLE, SPEED
from harness.fairness import task_rankings
from harness.results import Results
from reports.plots import Plot, build_plots
from reports.tables import SWEEP, TABLES, drop_empty_note
from reports.text import COLUMN_LABELS, TABLE_CAPTIONS, environment_items, labelled, table_notes

SECTION_HEADINGS = {SPEED: "Speed", ACCURACY: "Accuracy on long-dependency tasks", SWEEP: "Learning-rate sweep",
                    GRADIENTS: "Gradient decay", LENGTH: "Length generalisation", SAMPLE: "Text samples"}

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 0 auto; max-width: 1240px; padding: 1.5rem 1.5rem 3rem; color: #1b1f24; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 2px solid #d0d7de; padding-bottom: .2rem; }
.lede { color: #444; margin-top: 0; }
nav a { margin-right: 1rem; }
dl.env { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; font-size: .9rem;
         background: #f6f8fa; padding: .8rem 1rem; border-radius: 6px; }
dl.env dt { font-weight: 600; color: #444; }
dl.env dd { margin: 0; overflow-wrap: anywhere; }
ul.glance li { margin-bottom: .2rem; }
p.caption { color: #333; max-width: 60rem; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: .82rem; margin: .5rem 0 1rem; }
th, td { border-bottom: 1px solid #d0d7de; padding: .25rem .45rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; vertical-align: bottom; min-width: 3.5rem; }
td { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.note { white-space: normal; min-width: 12rem; max-width: 24rem; overflow-wrap: anywhere; color: #8a4b00; }
tr:nth-child(even) td { background: #fbfcfd; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #e1e4e8; }
figcaption { font-size: .9rem; color: #333; max-width: 60rem; }
footer { margin-top: 3rem; font-size: .8rem; color: #666; }
"""



def _numeric(text: str) -> bool:
    """Right-align figures ("0.123 ± 0.01", "3/3", "> 100", "—") but not names."""
    first = text.split(" ")[0].split("/")[0]
    if text == "—" or text.startswith("> "):
        return True
    try:
        float(first)
    except ValueError:
        return False
    return True


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


SHARED_COLUMNS = ("device", "B", "T", "I", "H", "layers", "threads", "seeds", "repeats")


def split_shared(table: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Move columns with one value in every row out of the table: (narrower table, [(label, value)])."""
    if len(table) < 2:
        return table, []
    shared = [c for c in SHARED_COLUMNS if c in table and table[c].astype(str).nunique() == 1]
    return table.drop(columns=shared), [(c, str(table[c].iloc[0])) for c in shared]


def _table_html(table: pd.DataFrame) -> str:
    headers = "".join(f"<th scope=\"col\">{_e(c)}</th>" for c in labelled(table).columns)
    body = []
    for record in table.itertuples(index=False):
        cells = []
        for column, value in zip(table.columns, record):
            text = "—" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
            css = "note" if column == "note" else ("num" if _numeric(text) else "")
            cells.append(f"<td class=\"{css}\">{_e(text)}</td>" if css else f"<td>{_e(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<div class=\"table-wrap\"><table><thead><tr>{headers}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _figure_html(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    return (f"<figure id=\"{_e(plot.name)}\"><img src=\"data:image/png;base64,{data}\" alt=\"{_e(plot.title)}\">"
            f"<figcaption><strong>{_e(plot.title)}.</strong> {_e(plot.caption)}</figcaption></figure>")


def _glance(results: Results) -> list[str]:
    """A few plain sentences drawn from the rows: the fastest cell per device, the best cell per task."""
    rows = results.rows
    if rows.empty:
        return []
    ok = rows[(rows["status"] == "ok") & rows["value"].notna()]
    lines = []
    speed = ok[(ok["measurement"] == SPEED) & (ok["metric"] == "forward_backward_s")]
    for (device, batch, seq_len, hidden), group in speed.groupby(["device", "batch_size", "seq_len", "hidden_size"], sort=False):
        if len(group) < 2:
            continue
        ranked = group.sort_values("value")
        best, worst = ranked.iloc[0], ranked.iloc[-1]
        lines.append(f"Fastest forward+backward on {device} (B = {int(batch)}, T = {int(seq_len)}, H = {int(hidden)}): "
                     f"{best['cell']} ({best['impl']}), {best['value']:.3e} s per batch, "
                     f"{worst['value'] / best['value']:.1f}x faster than the slowest, {worst['cell']} ({worst['impl']}).")
    lines += _accuracy_glance(results)
    decay = ok[(ok["measurement"] == GRADIENTS) & (ok["metric"] == "decay_rate") & (ok["phase"] == "trained")]
    for (task, seq_len, device), group in decay.groupby(["task", "seq_len", "device"], sort=False):
        rates = group.groupby("cell", sort=False)["value"].mean()
        if len(rates) < 2:
            continue
        lines.append(f"Slowest gradient decay after training on {task} (T = {int(seq_len)}, {device}): {rates.idxmax()} "
                     f"({rates.max():.3g} ln-norm per step; fastest decay: {rates.idxmin()}, {rates.min():.3g}).")
    return lines


def _accuracy_glance(results: Results) -> list[str]:
    """Per task: the best cell at its chosen rate, and the cells not shown to differ from it."""
    per_hidden = results.run.config.param_budget is None
    lines = []
    for task_ranking in task_rankings(results.rows, per_hidden_size=per_hidden):
        ranking = task_ranking.ranking
        best = ranking.cells[0]
        line = f"Best on {task_ranking.group}: {ranking.best}, test loss {best.mean:.3g}x the memoryless baseline"
        line += f" (mean over {best.n_seeds} seed{'s' * (best.n_seeds > 1)})."
        if len(ranking.cells) > 1:
            tied = [cell for cell in ranking.tied_with_best if cell != ranking.best]
            line += (f" Not shown to differ from it: {', '.join(tied)}." if tied
                     else " Every other cell is shown to be worse.")
            line += f" Method: {ranking.note}."
        lines.append(line)
    return lines


def render_html(results: Results, out_dir: Path) -> Path:
    """Write ``out_dir/report.html`` and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = results.run
    cells = list(dict.fromkeys(results.rows["cell"])) if not results.rows.empty else []
    plots = build_plots(results)
    title = f"rnnbench report — run {run.run_id}"
    parts = [
        "<!DOCTYPE html>",
        "<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f"<header><h1>{_e(title)}</h1>",
        f"<p class=\"lede\">Recurrent cells compared under identical conditions: how fast they run, whether they learn "
        f"dependencies across long sequences, and how their gradients fade over time. Cells: {_e(', '.join(cells) or 'none')}.</p>",
    ]
    sections = [(key, title_, build) for key, (title_, build) in TABLES.items()]
    tables = {key: drop_empty_note(build(results)) for key, _, build in sections}
    links = [f"<a href=\"#{key}\">{_e(SECTION_HEADINGS[key])}</a>" for key in tables if not tables[key].empty]
    parts.append("<nav><a href=\"#environment\">Environment</a>" + "".join(links) + "</nav></header>")

    glance = _glance(results)
    if glance:
        parts.append("<section id=\"glance\"><h2>At a glance</h2><ul class=\"glance\">"
                     + "".join(f"<li>{_e(line)}</li>" for line in glance) + "</ul></section>")
    parts.append("<section id=\"environment\"><h2>Environment</h2><dl class=\"env\">"
                 + "".join(f"<dt>{_e(label)}</dt><dd>{_e(value)}</dd>" for label, value in environment_items(run, results.rows))
                 + "</dl></section>")
    if results.rows.empty:
        parts.append("<p>This run stored no results.</p>")
    for key, table_title, _ in sections:
        if tables[key].empty:
            continue
        table, shared = split_shared(tables[key])
        shared_text = "Every row: " + ", ".join(f"{COLUMN_LABELS.get(c, c)} {v}" for c, v in shared) + "." if shared else ""
        parts += [
            f"<section id=\"{key}\"><h2>{_e(SECTION_HEADINGS[key])}</h2>",
            f"<p class=\"caption\"><strong>{_e(table_title)}.</strong> {_e(TABLE_CAPTIONS[key])} {_e(shared_text)}</p>",
            _table_html(table),
            *(f"<p class=\"caption\">{_e(note)}</p>" for note in table_notes(key, results.rows)),
            *(_figure_html(p) for p in plots if p.section == key),
            "</section>",
        ]
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    parts.append(f"<footer>Generated {generated} by rnnbench {_e(run.environment.get('rnnbench'))} from the results "
                 f"database alone; every number above is a stored measurement of run {run.run_id}.</footer>")
    parts.append("</body></html>")
    path = out_dir / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


@hookimpl
def register_reporters(register):
    register("html", render_html, suffix=".html", summary="HTML: one self-contained page with the tables and plots")
