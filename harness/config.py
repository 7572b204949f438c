"""The records that decide what a run measures: the training recipe, the timing method and the
run configuration. Plain frozen dataclasses with no torch import, so that reading a stored
run (``rnnbench runs``, ``compare``, reports) stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

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

    def describe(self) -> str:
        return (
            f"{self.optimizer.capitalize()} lr {self.lr:g}, gradient-norm clip {self.clip_norm:g}, "
            f"batch {self.batch_size}, up to {self.steps} steps, held-out set of {self.eval_size} "
            f"sequences evaluated every {self.eval_every} steps (training stops once solved)"
        )


@dataclass(frozen=True)
class TimingConfig:
    """How :func:`harness.speed.time_calls` repeats a call: ``warmup`` untimed calls, then at
    least ``min_repeats`` and at most ``max_repeats`` timed ones, until they add up to ``min_time_s``."""

    warmup: int = 2
    min_repeats: int = 5
    max_repeats: int = 200
    min_time_s: float = 0.5


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what a run measures (stored with the run).

    ``task_seq_lens`` gives each task's difficulties T; ``speed_*`` the sizes the speed
    measurement sweeps; ``impls`` the speed implementations to time (None: all a cell has).
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
