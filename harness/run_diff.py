"""Every difference between two stored runs' configurations, and which comparisons each one spoils.

``rnnbench compare`` prints these above its tables: a reader must know that run B trained
with another learning rate, another step budget, or a cell file that was edited, before
reading any difference as the cells' doing. Each :class:`Difference` says what it affects:

- ``accuracy`` (training recipe, learning-rate sweep, seeds, parameter budget, probes): accuracy
  and gradient rows of the two runs were not produced the same way, so their verdict is withheld;
- ``speed`` (timing method: rounds, repeats, warm-up, threads, the harness's speed method):
  speed verdicts are withheld;
- ``model`` (the layer count, ``--layers``): the two runs measured different models under the same
  row conditions (cell, sizes), so both kinds of verdict are withheld;
- ``stated`` (profile name, rnnbench version and commit, Python/torch/NumPy, machine): said, but
  no verdict is withheld, since comparing two versions of the code or two machines is what a
  comparison is for.

A cell whose plugin file changed (its content hash, stored as the rows' ``plugin_version``
``sha256:...``) or whose plugin distribution changed version is listed per cell; its rows'
verdicts are withheld too (an edited cell is not paired with its earlier self), unless the
user asks for them (``--force``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from harness.names import ACCURACY, GRADIENTS, SPEED
from harness.results import StoredRun

ACCURACY_EFFECT, SPEED_EFFECT, MODEL_EFFECT, CELL_EFFECT, STATED = "accuracy", "speed", "model", "cell", "stated"
# The tables whose verdicts and differences each kind of difference withholds, in the order compare prints them:
# a recipe difference withholds the gradient rows too, since they are probed on the model that recipe trained.
WITHHELD_TABLES = {
    SPEED_EFFECT: (SPEED,),
    ACCURACY_EFFECT: (ACCURACY, GRADIENTS),
    MODEL_EFFECT: (SPEED, ACCURACY, GRADIENTS),
    CELL_EFFECT: (SPEED, ACCURACY, GRADIENTS),  # that cell's rows only
    STATED: (),
}


@dataclass(frozen=True)
class Difference:
    """One configuration value that differs: ``what`` names it, ``a``/``b`` are its values as text."""

    what: str
    a: str
    b: str
    affects: str  # "accuracy", "speed", "model" (both), "cell" or "stated"

    def line(self) -> str:
        return f"{self.what}: {self.a} (A) vs {self.b} (B)"

    @property
    def withholds(self) -> tuple[str, ...]:
        """The tables whose verdicts this difference withholds (:data:`WITHHELD_TABLES`): a model or cell-code
        difference every table (a cell's: its own rows), a recipe difference accuracy and gradients."""
        return WITHHELD_TABLES[self.affects]


def _text(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value) or "—"
    if isinstance(value, dict):
        return "; ".join(f"{k} {_text(v)}" for k, v in value.items()) or "—"
    return "—" if value is None else str(value)


def _compare(what: str, a, b, affects: str) -> list[Difference]:
    return [] if a == b else [Difference(what, _text(a), _text(b), affects)]


def config_differences(run_a: StoredRun, run_b: StoredRun) -> list[Difference]:
    """Differences in recipe, sweep, seeds, sizes, timing and software between two runs."""
    config_a, config_b = run_a.config, run_b.config
    out: list[Difference] = []
    recipe_a, recipe_b = asdict(config_a.recipe), asdict(config_b.recipe)
    for name in recipe_a:
        if name != "lr":  # the rate is compared as the sweep below
            out += _compare(f"recipe {name}", recipe_a[name], recipe_b.get(name), ACCURACY_EFFECT)
    out += _compare("learning rates", config_a.learning_rates, config_b.learning_rates, ACCURACY_EFFECT)
    out += _compare("seeds", config_a.seeds, config_b.seeds, ACCURACY_EFFECT)
    out += _compare("parameter budget", config_a.param_budget, config_b.param_budget, ACCURACY_EFFECT)
    out += _compare("gradient probes (max)", config_a.max_probes, config_b.max_probes, ACCURACY_EFFECT)
    # Rows are matched on cell and sizes, not on depth: a 2-layer stack would be paired with the cell alone.
    out += _compare("layers", config_a.layers, config_b.layers, MODEL_EFFECT)
    out += _compare("training hidden sizes", config_a.hidden_sizes, config_b.hidden_sizes, STATED)
    out += _compare("task lengths T", config_a.task_seq_lens, config_b.task_seq_lens, STATED)
    for name in ("speed_batch_sizes", "speed_seq_lens", "speed_hidden_sizes", "speed_input_size", "impls"):
        out += _compare(name.replace("_", " "), getattr(config_a, name), getattr(config_b, name), STATED)
    timing_a, timing_b = asdict(config_a.timing), asdict(config_b.timing)
    for name in timing_a:
        out += _compare(f"timing {name}", timing_a[name], timing_b.get(name), SPEED_EFFECT)
    out += _compare("threads", config_a.threads, config_b.threads, SPEED_EFFECT)
    out += _compare("speed method (harness.speed.SPEED_METHOD)", run_a.speed_method, run_b.speed_method, SPEED_EFFECT)
    out += _compare("profile", config_a.profile, config_b.profile, STATED)
    env_a, env_b = run_a.environment, run_b.environment
    for key, label in (("rnnbench", "rnnbench version"), ("git_commit", "rnnbench commit"), ("torch", "torch"),
                       ("numpy", "NumPy"), ("python", "Python"), ("cpu_model", "CPU"), ("hostname", "host"),
                       ("gpu_name", "GPU")):
        out += _compare(label, env_a.get(key), env_b.get(key), STATED)
    return out


def cell_code_differences(rows_a: pd.DataFrame, rows_b: pd.DataFrame) -> dict[str, Difference]:
    """Cells whose plugin (distribution and version, or a plugin file's content hash) differs."""
    def versions(rows: pd.DataFrame) -> dict[str, str]:
        if rows.empty or "plugin" not in rows:
            return {}
        first = rows.drop_duplicates("cell")
        return {row.cell: f"{row.plugin} {row.plugin_version}" for row in first.itertuples()}

    found_a, found_b = versions(rows_a), versions(rows_b)
    return {cell: Difference(f"cell {cell} code", found_a[cell], found_b[cell], CELL_EFFECT)
            for cell in found_a if cell in found_b and found_a[cell] != found_b[cell]}


def trained_impl_differences(rows_a: pd.DataFrame, rows_b: pd.DataFrame) -> list[Difference]:
    """Cells trained in both runs with different implementations (``--train-impl``), read from the
    rows, so that naming a cell's default explicitly is no difference. Stated, not withheld: a
    cell's implementations compute one function (``rnnbench check``), as another machine would."""
    def used(rows: pd.DataFrame) -> dict[str, str]:
        if rows.empty or "impl" not in rows or "measurement" not in rows:
            return {}
        trained = rows[rows["measurement"] != "speed"].dropna(subset=["impl"])
        return {cell: ", ".join(sorted(set(group["impl"]))) for cell, group in trained.groupby("cell")}

    found_a, found_b = used(rows_a), used(rows_b)
    return [Difference(f"cell {cell} trained with", found_a[cell], found_b[cell], STATED)
            for cell in sorted(found_a) if cell in found_b and found_a[cell] != found_b[cell]]


def withheld_reason(differences: list[Difference], effect: str) -> str | None:
    """Why verdicts on ``effect`` rows ("accuracy" or "speed") are withheld, or None."""
    own = [d.what for d in differences if d.affects == effect]
    reasons = [f"{'recipe' if effect == ACCURACY_EFFECT else 'timing method'} differs ({', '.join(own)})"] if own else []
    model = model_difference(differences)
    return "; ".join(reasons + ([model] if model else [])) or None


def model_difference(differences: list[Difference]) -> str | None:
    """"the model differs (layers)" when the runs measured different models under the same row conditions."""
    model = [d.what for d in differences if d.affects == MODEL_EFFECT]
    return f"the model differs ({', '.join(model)})" if model else None
