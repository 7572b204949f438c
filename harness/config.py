"""The records that decide what a run measures: the training recipe, the timing method and the
run configuration. Plain frozen dataclasses with no torch import, so that reading a stored
run (``rnnbench runs``, ``compare``, reports) stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

# Every step for sequences up to 1024 long (the paper profile's copy T=1000 is 1020 steps).
DEFAULT_MAX_PROBES = 1024


@dataclass(frozen=True)
class Recipe:
    """The training recipe shared by every cell (stated in every report)."""

    optimizer: str = "adam"
    lr: float = 1e-3
    clip_norm: float = 1.0
    batch_size: int = 64
    steps: int = 1000
    eval_every: int = 100
    eval_size: int = 512

    def describe(self, lrs: tuple[float, ...] = ()) -> str:
        """The recipe in words; ``lrs``: the swept rates, when there is a sweep."""
        rate = (f"lr chosen per cell and task on validation loss from {', '.join(f'{lr:g}' for lr in lrs)}"
                if len(lrs) > 1 else f"lr {(lrs[0] if lrs else self.lr):g}")
        return (
            f"{self.optimizer.capitalize()} {rate}, gradient-norm clip {self.clip_norm:g}, "
            f"batch {self.batch_size}, up to {self.steps} steps; a validation set of {self.eval_size} "
            f"sequences evaluated every {self.eval_every} steps (training stops once it is solved), "
            f"a separate test set of {self.eval_size} evaluated once after training"
        )


@dataclass(frozen=True)
class TimingConfig:
    """How :func:`harness.speed.time_calls` repeats a call: ``warmup`` untimed calls, then at
    least ``min_repeats`` and at most ``max_repeats`` timed ones, until they add up to ``min_time_s``.

    ``rounds`` > 1 splits that budget into rounds (forward, then forward+backward, then again):
    each round times at least ``max(3, min_repeats / rounds)`` calls for ``min_time_s / rounds``,
    and keeps its median and its minimum, so that ``rnnbench compare`` can judge a change by the
    spread *between* rounds (:mod:`harness.speed_verdict`) rather than between repeats of one
    stretch of time.

    ``spread``: the rounds are passes over the run's speed items — round 1 of every item, then
    round 2 of every item, ... — each pass an item of its own (a fresh build, ``warmup`` calls on
    the first pass and one on the others; peak memory measured on the first). An item's rounds
    are then tens of seconds apart in a run of every cell (seconds, for a few cells) instead of back to back, so that a slow spell of a shared machine
    falls on one of them, where the verdict's rank interval sees it, rather than on all of them.
    Rows are stored per pass and read back merged (:func:`harness.results.merge_speed_passes`).
    """

    warmup: int = 2
    min_repeats: int = 5
    max_repeats: int = 200
    min_time_s: float = 0.5
    rounds: int = 1
    spread: bool = False

    @property
    def passes(self) -> int:
        """Speed items per condition: one per round when the rounds are spread, else one."""
        return self.rounds if self.spread and self.rounds > 1 else 1

    def per_round(self) -> "TimingConfig":
        """The budget of one round (itself when there is one round); warm-up is done once, before round 1."""
        if self.rounds <= 1:
            return self
        return TimingConfig(warmup=0, min_repeats=max(3, -(-self.min_repeats // self.rounds)),
                            max_repeats=max(3, -(-self.max_repeats // self.rounds)),
                            min_time_s=self.min_time_s / self.rounds, rounds=1)


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what a run measures (stored with the run).

    ``task_seq_lens`` gives each task's difficulties T; ``speed_*`` the sizes the speed
    measurement sweeps; ``impls`` the speed implementations to time (None: all a cell has).
    ``lrs``: the learning rates every (cell, task, T, seed) is trained at (empty: just
    ``recipe.lr``; see :attr:`learning_rates`). ``param_budget``: when set, each cell's hidden
    size is the one whose parameter count is closest to it (``hidden_sizes`` and
    ``speed_hidden_sizes`` are then not used). ``task_options``: per task name, the keyword
    options its factory is built with (``--task-option``, ``--text``). ``eval_lengths``: the
    lengths a trained model is also evaluated at, as typed (``"2x"``: twice the trained T;
    ``"200"``: T = 200; :mod:`harness.lengths`). ``task_hidden_sizes`` and ``task_steps``: a
    profile's per-task hidden sizes and step budgets (the rest of the recipe is shared).
    """

    cells: tuple[str, ...]
    tasks: tuple[str, ...]
    devices: tuple[str, ...]
    measures: tuple[str, ...]
    seeds: tuple[int, ...]
    task_seq_lens: dict[str, tuple[int, ...]]
    hidden_sizes: tuple[int, ...]
    recipe: Recipe
    speed_batch_sizes: tuple[int, ...]
    speed_seq_lens: tuple[int, ...]
    speed_hidden_sizes: tuple[int, ...]
    speed_input_size: int
    timing: TimingConfig
    threads: int = 1
    impls: tuple[str, ...] | None = None
    max_probes: int = DEFAULT_MAX_PROBES
    profile: str = "custom"
    lrs: tuple[float, ...] = ()
    param_budget: int | None = None
    train_impls: dict[str, str] = field(default_factory=dict)
    layers: int = 1
    task_options: dict[str, dict[str, object]] = field(default_factory=dict)
    eval_lengths: tuple[str, ...] = ()
    task_hidden_sizes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    task_steps: dict[str, int] = field(default_factory=dict)

    def hidden_sizes_for(self, task: str) -> tuple[int, ...]:
        """The hidden sizes ``task`` is trained at: the task's own (a profile's), else :attr:`hidden_sizes`."""
        return tuple(self.task_hidden_sizes.get(task, self.hidden_sizes))

    def recipe_for(self, task: str) -> Recipe:
        """The recipe ``task`` is trained with: :attr:`recipe`, with the task's own step budget if it has one."""
        steps = self.task_steps.get(task)
        if steps is None:
            return self.recipe
        return Recipe(**{**self.recipe.__dict__, "steps": steps, "eval_every": min(self.recipe.eval_every, steps)})

    def options_for(self, task: str) -> dict[str, object]:
        """The keyword options ``task``'s factory is built with (empty: its defaults)."""
        return dict(self.task_options.get(task, {}))

    @property
    def learning_rates(self) -> tuple[float, ...]:
        """The rates trained at, ascending: the sweep, or the recipe's one rate."""
        return tuple(sorted(self.lrs)) if self.lrs else (self.recipe.lr,)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        """Rebuild a configuration stored as ``dataclasses.asdict`` JSON (JSON turned tuples into lists). Keys this version
        does not know are left out, so that a run stored by a newer rnnbench still reads."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["recipe"] = Recipe(**values["recipe"])
        values["timing"] = TimingConfig(**values["timing"])
        values["task_seq_lens"] = {task: tuple(lengths) for task, lengths in values["task_seq_lens"].items()}
        for key, value in list(values.items()):
            if isinstance(value, list):
                values[key] = tuple(value)
        return cls(**values)
