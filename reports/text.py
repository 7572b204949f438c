"""Words shared by every report format: table captions, readable column labels, the environment.

A report is handed to someone who never saw rnnbench's glossary, so every table gets a
caption that says what a row is and how to read it, and the HTML report shows column
labels that carry their units.
"""

from __future__ import annotations

import pandas as pd

from harness.metric_ranges import CLIPPED_NOTE
from harness.names import ACCURACY, SPEED
from harness.results import StoredRun

TABLE_CAPTIONS = {
    "speed": "Time to run a batch of B sequences of length T (input size I, hidden size H) forward, and forward "
             "plus backward (a loss on the last step, gradients for every parameter), median over the "
             "repeated calls, in seconds: lower is faster. The IQR (interquartile range) shows how much the repeats "
             "varied; rows marked unstable varied by more than 10% of the median.",
    "accuracy": "Each cell trained with the same recipe on each task, then evaluated once on a held-out test set. "
                "Training watched a separate validation set: it stopped once the validation set met the task's "
                "solved criterion, and when several learning rates were tried, the rate was chosen per cell and task "
                "on the mean final validation loss (never on the test set); the table shows the test figures at that "
                "rate. loss/baseline below 1 means the cell learned more than a predictor that remembers nothing. "
                "Values are the mean over seeds with its 95% Student t interval in brackets (one seed: no interval). "
                "'solved' counts the seeds whose test set met the criterion, k/n with a 95% Wilson interval. "
                "'steps to solve' is the Kaplan-Meier median step at which the validation set was solved, with the "
                "seeds that never solved counted as censored at the step they stopped ('not reached': fewer than half "
                "solved). 'rank' orders the cells on each task by mean test loss/baseline; each is compared with the "
                "best by an exact paired sign-flip test on the seeds, Holm-corrected, α = 0.05: '≈ best' means not "
                "shown to differ, which is not the same as shown equal. 'params' counts the cell and its readout. "
                + CLIPPED_NOTE,
    "sweep": "Every learning rate tried, with the mean over seeds of the final validation loss; the rate with the "
             "fewest failed seeds and then the lowest mean was chosen (ties: the smaller rate). A choice at the "
             "edge of the sweep means a better rate may lie outside it.",
    "gradients": "How fast the gradient of the last step's loss fades as it flows back in time. decay/step is the "
                 "slope of ln‖∂L/∂s_t‖ per step of distance (more negative: vanishes faster); first/last is the norm "
                 "at the first state over the norm one step before the loss; the horizon is the distance at which "
                 "the norm falls below 1/1000 of its value next to the loss ('> T': never within the sequence). "
                 "Means over seeds with 95% t intervals; first/last is a geometric mean, its interval taken on ln. "
                 "Rows are at each cell's chosen learning rate. " + CLIPPED_NOTE,
    "length": "Each model trained at one length T (the first line of each block: its test set there) and then, "
              "unchanged, evaluated on held-out sequences of the same task built at longer T (--eval-lengths). "
              "L is the number of steps the cell sees. loss/baseline compares with the memoryless baseline at that "
              "T. A task that cannot be built at a length (digits: T is fixed) says so in the note. Means over seeds "
              "with 95% t intervals, at each cell's chosen learning rate. " + CLIPPED_NOTE,
    "sample": "Each trained model continues the same prompt, characters drawn from its predicted distribution "
              "with the same sampling seed and temperature, so differences come from the models. Newlines are "
              "shown as ↵; the stored text (the run's rows) is exact.",
}

# Column names as the tables build them -> labels with units, for formats with room for them.
COLUMN_LABELS = {
    "impl": "implementation",
    "device": "device",
    "threads": "CPU threads",
    "seeds": "seeds",
    "repeats": "repeats",
    "B": "batch B",
    "T": "length T",
    "I": "input I",
    "H": "hidden H",
    "layers": "layers",
    "fwd s": "forward (s)",
    "fwd IQR": "forward IQR (s)",
    "fwd+bwd s": "forward+backward (s)",
    "fwd+bwd IQR": "forward+backward IQR (s)",
    "steps/s": "throughput (time steps/s)",
    "peak mem MiB": "peak memory (MiB)",
    "loss": "held-out loss",
    "accuracy": "accuracy (fraction)",
    "solved": "seeds solved",
    "steps to solve": "training steps to solve",
    "s to solve": "seconds to solve",
    "train s": "training time (s)",
    "params": "parameters",
    "lr": "learning rate",
    "rank": "rank on the task",
    "decay/step init": "decay per step, at init (ln-norm/step)",
    "decay/step trained": "decay per step, trained (ln-norm/step)",
    "first/last init": "first/last norm, at init",
    "first/last trained": "first/last norm, trained",
    "horizon init": "horizon at init (steps)",
    "horizon trained": "horizon trained (steps)",
}


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """The table with readable column labels (units included)."""
    return table.rename(columns=COLUMN_LABELS)


def counted(count, noun: str, plural: str | None = None) -> str:
    """``"1 worker process"``, ``"2 worker processes"``: the count with the noun in the number it takes."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def execution_brief(execution: dict) -> str:
    """How a run was executed, in a few words (``rnnbench runs``): "in-process", "2 workers",
    "dask tcp://HOST:8786 (2 hosts)"."""
    kind = execution.get("executor")
    if kind is None or kind == "in-process":
        return "in-process"
    if kind == "dask":
        hosts = execution.get("hosts") or []
        return f"dask {execution.get('cluster')}" + (f" ({counted(len(hosts), 'host')})" if hosts else "")
    gpus = execution.get("gpus") or []
    return counted(execution.get("workers"), "worker") + (f", {counted(len(gpus), 'GPU')}" if gpus else "")


def execution_text(execution: dict) -> str:
    """How a run was executed, in a sentence (reports): executor, workers, hosts, GPUs, time limit."""
    kind = execution.get("executor")
    if kind is None:
        return "in the rnnbench process, one item after another (recorded before rnnbench ran items in workers)"
    if kind == "in-process":
        parts = ["in the rnnbench process, one item after another"]
    elif kind == "dask":
        workers = counted(execution.get("dask_workers"), "Dask worker")
        slots = counted(execution.get("threads"), "item slot")
        parts = [f"on the Dask cluster at {execution.get('cluster')}: {workers}, {slots}; "
                 "timing items alone on their machine"]
    else:
        parts = [f"in {counted(execution.get('workers'), 'worker process', 'worker processes')} on one machine; "
                 "timing items alone"]
    if execution.get("hosts"):
        parts.append(f"hosts used: {', '.join(execution['hosts'])}")
    if execution.get("gpus"):
        parts.append(f"GPUs used: {', '.join(execution['gpus'])}")
    limit = execution.get("item_timeout_s")
    parts.append(f"time limit per item {limit:g} s" if limit else "no time limit per item")
    return "; ".join(parts)


def environment_items(run: StoredRun, rows: pd.DataFrame | None = None) -> list[tuple[str, str]]:
    """(label, plain text) pairs describing where and how a run was measured."""
    environment = run.environment
    items = [
        ("run", f"{run.run_id}, started {run.started_at}, finished {run.finished_at or '—'}, status {run.status}"),
        ("command", " ".join(run.argv)),
        ("machine", f"{environment.get('cpu_model')} ({environment.get('cpu_count')} cores), "
                    f"{environment.get('platform')}, host {environment.get('hostname')}"),
    ]
    if environment.get("gpu_name"):
        items.append(("GPU", f"{environment['gpu_name']}, driver {environment.get('gpu_driver', '?')}, "
                             f"CUDA {environment.get('cuda_version')}, cuDNN {environment.get('cudnn_version')}"))
    items += [
        ("software", f"rnnbench {environment.get('rnnbench')} (commit {environment.get('git_commit') or 'unknown'}), "
                     f"torch {environment.get('torch')}, NumPy {environment.get('numpy')} ({environment.get('blas')}), "
                     f"Python {environment.get('python')}"),
        ("threads", f"torch {environment.get('torch_threads')}, BLAS {environment.get('blas_threads')}"),
        ("devices", ", ".join(run.devices) or "—"),
        ("executed", execution_text(run.execution)),
        ("training recipe", f"the same for every cell: {run.recipe.describe(run.config.learning_rates)}"),
        ("seeds", ", ".join(str(s) for s in run.config.seeds)),
    ]
    options = task_options_text(environment)
    if options:
        items.append(("task options", options))
    budgets = task_budget_text(run.config)
    if budgets:
        items.append(("per-task sizes", budgets))
    stacked = layers_text(run.config)
    if stacked:
        items.append(("layers", stacked))
    if getattr(run.config, "param_budget", None):
        items.append(("parameter budget", f"each cell's hidden size chosen so that its parameter count is closest to "
                                          f"{run.config.param_budget}"))
    if rows is not None and not rows.empty and "plugin" in rows:
        sources = rows.drop_duplicates("cell")[["cell", "plugin", "plugin_version"]]
        items.append(("cells from", "; ".join(f"{r.cell}: {r.plugin} {r.plugin_version}" for r in sources.itertuples())))
    return items


def layers_text(config) -> str | None:
    """How the cells were stacked (``--layers N``), in a sentence; None for one layer, the cell alone."""
    layers = getattr(config, "layers", 1)
    if layers == 1:
        return None
    return (f"every cell stacked {layers} layers deep (--layers {layers}), pre-norm and residual, the first layer "
            "the cell alone; H is each layer's width, and params count every layer and its layer norm")


def table_notes(key: str, rows: pd.DataFrame) -> list[str]:
    """Notes that depend on the run: how memory was measured, and when seeds are too few for a spread."""
    if rows.empty or "measurement" not in rows:
        return []
    notes = []
    if key == SPEED:
        memory = rows[(rows["measurement"] == SPEED) & (rows["metric"] == "peak_memory_bytes")]
        methods = sorted({f"{r['device']}: {r['stats']['method']}" for _, r in memory.iterrows()
                          if isinstance(r["stats"], dict) and r["stats"].get("method")})
        if methods:
            notes.append("Peak memory measured as " + "; ".join(methods) + ".")
    if key == ACCURACY:
        seeds = rows[rows["measurement"] == ACCURACY]["seed"].dropna().unique()
        if len(seeds) == 1:
            notes.append("One seed: no interval is shown, and differences between cells may be within seed-to-seed "
                         "variation; run with --seeds 3 or more before quoting them.")
        notes += ranking_notes(rows)
    return notes


def ranking_notes(rows: pd.DataFrame) -> list[str]:
    """The ranking method with its power at these seeds, once per distinct note."""
    from harness.fairness import task_rankings

    return [f"Rank: {note}." for note in dict.fromkeys(r.ranking.note for r in task_rankings(rows)
                                                       if len(r.ranking.cells) > 1)]


def task_options_text(environment: dict) -> str:
    """What the run's tasks were built with, where that is more than their defaults: the options
    given and what the task records (the text task's corpus, its size and SHA-256)."""
    parts = []
    for task, record in (environment.get("tasks") or {}).items():
        shown = {**(record.get("given") or {}), **(record.get("task") or {})}
        if record.get("given") or "corpus_sha256" in shown:
            parts.append(f"{task}: " + ", ".join(f"{key}={value}" for key, value in shown.items()))
    return "; ".join(parts)


def task_budget_text(config) -> str:
    """A profile's per-task hidden sizes and step budgets (the rest of the recipe is shared)."""
    parts = [f"{task}: H = {', '.join(str(h) for h in sizes)}"
             for task, sizes in (getattr(config, "task_hidden_sizes", None) or {}).items()]
    parts += [f"{task}: up to {steps} steps" for task, steps in (getattr(config, "task_steps", None) or {}).items()]
    return "; ".join(parts)
