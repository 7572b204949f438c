"""What the command line prints: a run's tables, its rows as JSON, the stored runs, listings.

Plain text for a terminal (tabulate's "simple" format); the CLI only echoes what these return.
"""

from __future__ import annotations

import json
import sys

from tabulate import tabulate

from harness.names import TRAIN_MEASUREMENTS
from harness.ownership import Owner
from harness.results import Results, StoredRun
from reports.tables import TABLES, drop_empty_note, run_layers
from reports.tidy import with_layer_count
from reports.text import execution_brief, layers_text, table_notes


def run_tables(results: Results) -> str:
    """The three tables of a run, each with its title and notes, as ``rnnbench run`` prints them;
    a stacked run (``--layers N``) first says how its cells were stacked."""
    stacked = layers_text(results.run.config)
    lines: list[str] = [] if stacked is None else ["", f"Layers: {stacked}."]
    for key, (title, build) in TABLES.items():
        table = drop_empty_note(build(results))
        if table.empty:
            continue
        lines += ["", title, tabulate(table, headers="keys", tablefmt="simple", showindex=False, disable_numparse=True)]
        lines += [f"Note: {note}" for note in table_notes(key, results.rows)]
    return "\n".join(lines + [""])


def rows_json(results: Results) -> str:
    """The run's rows as a JSON list of objects. Missing values become null: bare NaN is not JSON
    (jq and JSON.parse reject it)."""
    rows = results.rows.astype(object).where(results.rows.notna(), None)
    rows = with_layer_count(rows, run_layers(results))
    return json.dumps(rows.to_dict(orient="records"), default=str, indent=1, allow_nan=False)


def listing(rows: list[dict]) -> str:
    """Rows of plain values as one table ("(none)" when there are none)."""
    return tabulate(rows, headers="keys", tablefmt="simple") if rows else "(none)"


def machine(environment: dict) -> str:
    """A run's machine in a few words: ``host: CPU model xN, GPU``."""
    gpu = environment.get("gpu_name")
    return (f"{environment.get('hostname')}: {environment.get('cpu_model')} x{environment.get('cpu_count')}"
            + (f", {gpu}" if gpu else ""))


def run_status(run: StoredRun) -> str:
    """The stored status, except that a run left ``running`` by a process that is gone (killed,
    crashed) says so: it is not being measured, and ``--resume`` will take it over."""
    if run.status != "running":
        return run.status
    gone = Owner(run.owner_host, run.owner_pid, run.heartbeat_at).gone_because()
    return "running" if gone is None else "running, owner gone (resumable)"


def runs_table(runs: list[StoredRun]) -> str:
    """``rnnbench runs``: one line per stored run; a ``layers`` column when some run stacked its cells
    (``--layers N``, N != 1), so a stacked run is not mistaken for its one-layer twin."""
    stacked = any(run.config.layers != 1 for run in runs)
    return listing([{
        "id": run.run_id, "started (UTC)": run.started_at.replace("+00:00", ""), "status": run_status(run),
        "profile": run.config.profile, "cells": ",".join(run.config.cells), "tasks": tasks_text(run.config),
        **({"layers": run.config.layers} if stacked else {}),
        "devices": ",".join(run.config.devices), "executed": execution_brief(run.execution),
        "machine": machine(run.environment),
    } for run in runs])

def tasks_text(config) -> str:
    """The tasks a run trained on, or "— (speed only)" for a run that trained nothing: the profile's tasks
    stay in its configuration (``--measure speed`` selects no task), but no row of the run is of a task."""
    if not set(config.measures) & set(TRAIN_MEASUREMENTS):
        return "— (speed only)"
    return ",".join(config.tasks)


def cell_rows(registry) -> list[dict]:
    """``rnnbench cells``: one row per registered cell."""
    from harness.plugins import describe

    return [{"cell": c.name, "backend": c.backend, "form": c.form, "implementations": implementations_text(c),
             "plugin": describe(c.plugin), "summary": c.summary} for c in registry.cells.values()]


def task_rows(registry) -> list[dict]:
    """``rnnbench tasks``: one row per registered task."""
    from harness.plugins import describe

    return [{"task": t.name, "plugin": describe(t.plugin), "summary": t.summary} for t in registry.tasks.values()]


def task_option_rows(registry) -> list[dict]:
    """``rnnbench tasks``: one row per option of every task (``TASK.OPTION`` as ``--task-option`` takes it),
    with its default and what it means, as the task's plugin declares them."""
    from harness.task_options import declared_options

    return [{"option": f"{t.name}.{o.name}", "default": o.shown_default, "meaning": o.meaning or "(not described)"}
            for t in registry.tasks.values() for o in declared_options(t.factory)]


def implementations_text(spec) -> str:
    """``scan, step (ref)``: the implementations, the primary first, the reference marked."""
    return ", ".join(f"{name} (ref)" if name == spec.reference_impl and len(spec.impls.names) > 1 else name
                     for name in spec.impls.names)


def plugin_rows(registry) -> list[dict]:
    """``rnnbench plugins``: where each plugin came from and what it registered."""
    rows = []
    for info in registry.plugins:
        provided = [f"cell {c.name}" for c in registry.cells.values() if c.plugin == info]
        provided += [f"task {t.name}" for t in registry.tasks.values() if t.plugin == info]
        provided += [f"report {r.name}" for r in registry.reporters.values() if r.plugin == info]
        rows.append({"plugin": info.name, "source": info.source, "distribution": info.distribution,
                     "version": info.version, "registers": ", ".join(provided) or "(nothing)"})
    return rows


class Progress:
    """A tqdm bar on stderr for a terminal; one plain line per finished item otherwise."""

    def __init__(self):
        self.bar = None
        self.tty = sys.stderr.isatty()

    def __call__(self, index, total, item, status, elapsed_s):
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=total, file=sys.stderr, unit="item", leave=False)
            self.bar.set_description_str(item.label()[:60])
            self.bar.update(1)
            if status not in ("ok", "already stored"):
                self.bar.write(f"[{index}/{total}] {item.label()}: {status}", file=sys.stderr)
        else:
            print(f"[{index}/{total}] {item.label()}: {status} ({elapsed_s:.1f} s)", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
