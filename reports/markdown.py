"""The Markdown report: run metadata, the training recipe, the three tables and their plots.

The plots are PNG files in ``plots/`` beside ``report.md``, linked by relative paths so the
folder can be moved or committed as a whole.

Every stored string (cell, task and plugin names, error messages, the command line, the machine's
description) comes from plugins or users, so it is written as literal text: see :func:`md_text`
and :func:`md_code`. Only the report's own headings, captions and glossary are Markdown.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from tabulate import tabulate

from harness import hookimpl
from harness.names import ACCURACY, GRADIENTS, SPEED
from harness.results import Results, StoredRun
from reports.plots import build_plots
from reports.tables import TABLES, drop_empty_note
from reports.text import (TABLE_CAPTIONS, execution_text, layers_text, table_notes, task_budget_text,
                          task_options_text)

GLOSSARY = {
    "speed": "fwd s / fwd+bwd s: median seconds per batch; IQR: interquartile range of the repeats (s); "
             "steps/s: B·T / median fwd+bwd; peak mem: see the method in the run's rows "
             "(CUDA: max_memory_allocated; CPU: rise of the peak RSS).",
    "accuracy": "loss/baseline < 1 means the cell learned more than a memoryless predictor; solved: seeds whose test set meets the "
                "task's criterion; steps to solve: Kaplan-Meier median over seeds, training steps only; "
                "rank: ≈ best = not shown to differ from the best.",
    "sweep": "val loss @ r: mean over seeds of the final validation loss at rate r; '(k failed)': seeds that diverged.",
    "gradients": "decay/step: slope of ln||dL/ds_t|| per step of distance (negative: vanishing); first/last: norm at the "
                 "initial state over the norm one step before the loss; horizon: first probed distance where the norm "
                 "falls below 1e-3 of the last step's (> L: never).",
    "length": "trained T: the length the model was trained at; T: the length it was evaluated at; L: steps the cell "
              "saw; loss/baseline: against the memoryless baseline at that T.",
    "sample": "prompt and sample: the same prompt and sampling seed for every cell; ↵ marks a newline.",
}


# Characters that Markdown would read as formatting, links, code or table borders.
_MD_PUNCTUATION = set("\\`*_[]|#")


def md_text(value) -> str:
    """A stored string as literal Markdown on one line: Markdown punctuation backslash-escaped,
    ``<``, ``>`` and ``&`` as HTML entities (no tag from a plugin or an error message reaches a
    browser), and line breaks as ``<br>`` so that a table row stays one row."""
    text = "".join("\\" + ch if ch in _MD_PUNCTUATION else ch for ch in str(value))
    return "<br>".join(html.escape(text, quote=False).splitlines())


def md_code(value) -> str:
    """A stored string as an inline code span (shown verbatim, HTML included): on one line, fenced
    by more backticks than the longest run of backticks it holds."""
    text = " ".join(str(value).splitlines())
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def environment_lines(run: StoredRun) -> list[str]:
    environment = {key: md_text(value) for key, value in run.environment.items()}
    gpu = environment.get("gpu_name")
    lines = [
        f"- run {run.run_id}, started {md_text(run.started_at)}, status **{md_text(run.status)}**",
        f"- command: {md_code(' '.join(run.argv))}",
        f"- machine: {environment.get('cpu_model')} ({environment.get('cpu_count')} cores), {environment.get('platform')}"
        + (f"; GPU {gpu}, driver {environment.get('gpu_driver', '?')}, CUDA {environment.get('cuda_version')}, "
           f"cuDNN {environment.get('cudnn_version')}" if gpu else ""),
        f"- software: rnnbench {environment.get('rnnbench')} (commit {environment.get('git_commit') or 'unknown'}), "
        f"torch {environment.get('torch')}, NumPy {environment.get('numpy')} ({environment.get('blas')}), "
        f"Python {environment.get('python')}",
        f"- threads: torch {environment.get('torch_threads')}, BLAS {environment.get('blas_threads')}",
        f"- executed: {md_text(execution_text(run.execution))}",
    ]
    options = task_options_text(run.environment)
    if options:
        lines.append(f"- task options: {md_text(options)}")
    budgets = task_budget_text(run.config)
    if budgets:
        lines.append(f"- per-task sizes: {md_text(budgets)}")
    stacked = layers_text(run.config)
    if stacked:
        lines.append(f"- layers: {md_text(stacked)}")
    if run.reason:
        lines.append(f"- ended {md_text(run.status)}: {md_text(run.reason)}")
    lines.append(f"- training recipe (every cell): {md_text(run.recipe.describe(run.config.learning_rates))}")
    return lines


def render_markdown(results: Results, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = build_plots(results)
    if plots:
        (out_dir / "plots").mkdir(exist_ok=True)
    parts = [f"# rnnbench report — run {results.run.run_id}", "", *environment_lines(results.run), ""]
    for key, (title, build) in TABLES.items():
        table = drop_empty_note(build(results))
        if table.empty:
            continue
        cells = table.apply(lambda column: column.map(lambda v: md_text(v) if isinstance(v, str) else v))
        parts += [f"## {title}", "", TABLE_CAPTIONS[key], "",
                  tabulate(cells, headers="keys", tablefmt="github", showindex=False, disable_numparse=True), "",
                  f"_{GLOSSARY[key]}_", "", *(f"_{md_text(note)}_\n" for note in table_notes(key, results.rows))]
        for plot in (p for p in plots if p.section == key):
            (out_dir / "plots" / f"{plot.name}.png").write_bytes(plot.png)
            parts += [f"![{md_text(plot.title)}](plots/{plot.name}.png)", "", f"_{md_text(plot.caption)}_", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(parts))
    return path


@hookimpl
def register_reporters(register):
    register("markdown", render_markdown, suffix=".md", summary="Markdown: run metadata, the three tables, plots as PNG files beside it")
