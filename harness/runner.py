"""Sweeps: plan every (cell x task x device x size x seed x learning rate) item and measure one item into rows.

:mod:`harness.driver` runs the planned items on an executor and stores their rows as they
arrive. A cell that raises or diverges is stored as failed, with its error, and the sweep
goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from harness.cells import SequenceModel, available_impls, build_impl
from harness.config import RunConfig
from harness.contract import check_contract
from harness.errors import UsageError
from harness.gradients import GradientProfile, measure_profile, probe_steps
from harness.lengths import length_rows
from harness.names import (ACCURACY, AUTO, CPU, CUDA, DEVICE_CHOICES, GRADIENTS, GRAPHED, LENGTH, NUMPY_BACKEND,
                           SAMPLE, SPEED, TRAIN_MEASUREMENTS)
from harness.plugins import CellSpec, Registry, TaskSpec
from harness.results import ResultRow, pass_suffix
from harness.samples import can_generate, sample_rows
from harness.sizing import hidden_size_for, param_count
from harness.speed import measure_speed
from harness.stacking import stack
from harness.task_options import build_task
from harness.training import VALIDATION_STREAM, held_out, train


@dataclass(frozen=True)
class SpeedItem:
    """One speed condition, or one pass of it when the run's timing rounds are spread
    (``rounds`` > 1: this item times round ``round_index + 1`` of ``rounds``; see
    :class:`harness.config.TimingConfig`)."""

    cell: CellSpec
    impl: str
    device: str
    batch_size: int
    seq_len: int
    input_size: int
    hidden_size: int
    round_index: int = 0
    rounds: int = 1

    @property
    def key(self) -> str:
        key = (f"speed|{self.cell.name}|{self.impl}|{self.device}|B{self.batch_size}|T{self.seq_len}"
               f"|I{self.input_size}|H{self.hidden_size}")
        return key if self.rounds == 1 else f"{key}{pass_suffix(self.round_index, self.rounds)}"

    def label(self) -> str:
        label = f"speed {self.cell.name} {self.impl} {self.device} B={self.batch_size} T={self.seq_len} H={self.hidden_size}"
        return label if self.rounds == 1 else f"{label} round {self.round_index + 1}/{self.rounds}"


@dataclass(frozen=True)
class TrainItem:
    cell: CellSpec
    task: TaskSpec
    device: str
    seq_len: int
    hidden_size: int
    seed: int
    measures: tuple[str, ...]
    lr: float
    impl: str = ""  # the implementation trained; "" = the cell's default for the device

    @property
    def trained_impl(self) -> str:
        return self.impl or self.cell.default_impl(self.device)

    @property
    def key(self) -> str:
        # the implementation is part of the key only when --train-impl chose another than the
        # default, so that runs stored before implementations were named still resume
        chosen = "" if self.trained_impl == self.cell.default_impl(self.device) else f"|impl={self.trained_impl}"
        return (f"train|{self.cell.name}|{self.task.name}|{self.device}|T{self.seq_len}|H{self.hidden_size}"
                f"|seed{self.seed}|lr{self.lr!r}{chosen}")

    def label(self) -> str:
        what = "+".join(m for m in TRAIN_MEASUREMENTS if m in self.measures)
        return (f"{what} {self.cell.name} {self.task.name} T={self.seq_len} {self.device} seed={self.seed} "
                f"lr={self.lr:g}")


def resolve_devices(requested: list[str]) -> tuple[str, ...]:
    """``auto`` -> cpu, plus cuda when present. ``cuda`` without a GPU is a usage error."""
    devices: list[str] = []
    for name in requested:
        if name == AUTO:
            devices += [CPU] + ([CUDA] if torch.cuda.is_available() else [])
        elif name == CPU:
            devices.append(CPU)
        elif name == CUDA:
            if not torch.cuda.is_available():
                raise UsageError(f"device 'cuda' requested but no CUDA GPU is available to torch {torch.__version__}; allowed here: cpu, auto")
            devices.append(CUDA)
        else:
            raise UsageError(f"unknown device {name!r}; allowed: {', '.join(DEVICE_CHOICES)}")
    return tuple(dict.fromkeys(devices))


def _speed_hidden_sizes(config: RunConfig, cell: CellSpec) -> tuple[int, ...]:
    """H for the speed rows: the configured sizes, or the one matching the parameter budget (cell alone)."""
    if config.param_budget is None:
        return config.speed_hidden_sizes
    return (hidden_size_for(cell, config.param_budget, config.speed_input_size, layers=config.layers),)


def _train_hidden_sizes(config: RunConfig, cell: CellSpec, task_spec: TaskSpec, seq_len: int) -> tuple[int, ...]:
    """H for training: the configured sizes, or the one matching the budget (cell plus readout)."""
    if config.param_budget is None:
        return config.hidden_sizes_for(task_spec.name)
    task = build_task(task_spec, seq_len, config.options_for(task_spec.name))
    return (hidden_size_for(cell, config.param_budget, task.input_size, task.output_size, config.layers),)


def plan(config: RunConfig, registry: Registry) -> list[SpeedItem | TrainItem]:
    """Every item of the run. Train items come seed-major and then by rate, so that the seeds
    of one rate finish together and an added seed or rate (``--resume``) only adds items."""
    # build_config chose these names: a duplicate asked for by name was refused there, and with
    # "all" the first registration stands (as the load warning says), so look names up directly.
    cells = [registry.cell(name) for name in config.cells]
    items: list[SpeedItem | TrainItem] = []
    if SPEED in config.measures:
        for device in config.devices:
            for cell in cells:
                impls = [i for i in available_impls(cell, device) if config.impls is None or i in config.impls]
                for impl in impls:
                    for batch in config.speed_batch_sizes:
                        for seq_len in config.speed_seq_lens:
                            for hidden in _speed_hidden_sizes(config, cell):
                                items.append(SpeedItem(cell, impl, device, batch, seq_len, config.speed_input_size, hidden))
        passes = config.timing.passes
        if passes > 1:  # round r of every condition, then round r + 1: an item's rounds a pass apart
            items = [replace(item, round_index=r, rounds=passes) for r in range(passes) for item in items]
    train_measures = tuple(m for m in config.measures if m in TRAIN_MEASUREMENTS)
    if train_measures:
        tasks = registry.select_tasks(list(config.tasks))
        for device in config.devices:
            for task in tasks:
                for seq_len in config.task_seq_lens[task.name]:
                    sizes = {cell.name: _train_hidden_sizes(config, cell, task, seq_len) for cell in cells}
                    for size_index in range(max(len(s) for s in sizes.values())):
                        for seed in config.seeds:
                            for lr in config.learning_rates:
                                for cell in cells:
                                    hidden = sizes[cell.name][size_index]
                                    impl = config.train_impls.get(cell.name, cell.default_impl(device))
                                    items.append(TrainItem(cell, task, device, seq_len, hidden, seed, train_measures, lr,
                                                           impl))
    return items


def _base(item, measurement: str, threads: int, **extra) -> dict:
    cell = item.cell
    return dict(
        item=item.key,
        measurement=measurement,
        cell=cell.name,
        plugin=cell.plugin.distribution if cell.plugin.source != "builtin" else f"rnnbench:{cell.plugin.name}",
        plugin_version=cell.plugin.version,
        backend=cell.backend,
        device=item.device,
        threads=threads,
        **extra,
    )


def _speed_base(item: SpeedItem, threads: int, layers: int = 1) -> dict:
    return _base(item, SPEED, threads, impl=item.impl, batch_size=item.batch_size, seq_len=item.seq_len,
                 length=item.seq_len, input_size=item.input_size, hidden_size=item.hidden_size,
                 param_count=_count_or_none(item.cell, item.input_size, item.hidden_size, layers=layers))


def _count_or_none(cell: CellSpec, input_size: int, hidden_size: int, output_size: int | None = None,
                   layers: int = 1) -> int | None:
    """The parameter count for a row; None when the cell cannot even be built (its row says why)."""
    try:
        return param_count(cell, input_size, hidden_size, output_size, layers)
    except Exception:
        return None


def build_model_cell(spec: CellSpec, impl: str, input_size: int, hidden_size: int, layers: int = 1):
    """Implementation ``impl`` of the cell, stacked ``layers`` deep (:mod:`harness.stacking`), as a run times
    and trains it; every layer runs the same implementation."""
    return stack(lambda inputs, hidden: build_impl(spec, impl, inputs, hidden), input_size, hidden_size, layers)


def _speed_rows(item: SpeedItem, config: RunConfig, threads: int) -> list[ResultRow]:
    base = _speed_base(item, threads, config.layers)
    if item.cell.backend == NUMPY_BACKEND and item.device != CPU:
        return [ResultRow(**base, status="skipped", error=f"not supported on {item.device}")]
    torch.manual_seed(0)
    cell = build_model_cell(item.cell, item.impl, item.input_size, item.hidden_size, config.layers).to(item.device)
    first_pass = item.round_index == 0
    if first_pass:  # a later pass builds the same cell again; a breach fails the first pass, and the condition
        check_contract(cell, item.input_size, item.hidden_size, torch.device(item.device), name=item.cell.name,
                       spec=item.cell)
    timing = config.timing
    if item.rounds > 1:  # one round of the spread timing; the first pass warms up in full, later ones once
        timing = replace(timing.per_round(), warmup=timing.warmup if first_pass else 1)
    try:
        result = measure_speed(cell, item.batch_size, item.seq_len, item.input_size, item.device, timing,
                               graphed=item.impl == GRAPHED, measure_memory=first_pass)
    except Exception as exc:
        if item.impl != GRAPHED:
            raise
        return [ResultRow(**base, status="skipped", error=f"CUDA graph capture failed: {type(exc).__name__}: {exc}")]
    fwd, fb = result.forward, result.forward_backward
    return [
        ResultRow(**base, metric="forward_s", value=fwd.median, unit="s",
                  stats={**fwd.as_dict(), "round_medians": list(result.forward_round_medians),
                         "round_minima": list(result.forward_round_minima)}),
        ResultRow(**base, metric="forward_backward_s", value=fb.median, unit="s",
                  stats={**fb.as_dict(), "round_medians": list(result.forward_backward_round_medians),
                         "round_minima": list(result.forward_backward_round_minima)}),
        ResultRow(**base, metric="steps_per_s", value=result.steps_per_s, unit="(B*T)/s", stats={"basis": "forward_backward median"}),
    ] + ([ResultRow(**base, metric="peak_memory_bytes", value=result.peak_memory_bytes, unit="bytes",
                    stats={"method": result.memory_method})] if first_pass else [])


def _gradient_rows(base: dict, phase: str, measured: tuple[GradientProfile, str], length: int) -> list[ResultRow]:
    profile, dtype = measured
    rows = [
        ResultRow(**base, phase=phase, step=d, metric="grad_norm", value=n, unit="norm", stats={"dtype": dtype})
        for d, n in zip(profile.distances, profile.norms)
    ]
    horizon = profile.horizon
    zeros = sum(n == 0 for n in profile.norms)
    rows += [
        ResultRow(**base, phase=phase, metric="decay_rate", value=profile.decay_rate, unit="ln(norm)/step",
                  stats={"dtype": dtype, "points": len(profile.norms) - zeros, "zero_norms_left_out": zeros}),
        ResultRow(**base, phase=phase, metric="first_last_ratio", value=profile.first_last_ratio, unit="ratio"),
        ResultRow(
            **base, phase=phase, metric="horizon", value=horizon, unit="steps",
            stats={"threshold": 1e-3, "censored": horizon is None, "length": length},
        ),
    ]
    return rows


def _accuracy_rows(base: dict, result) -> list[ResultRow]:
    """Test-set figures (loss, accuracy, solved), the validation figures the rate is chosen on,
    and the validation learning curve."""
    rows = [
        ResultRow(**base, metric="loss", value=result.loss, unit="loss"),
        ResultRow(**base, metric="val_loss", value=result.val_loss, unit="loss"),
        ResultRow(**base, metric="val_accuracy", value=result.val_accuracy, unit="fraction"),
        ResultRow(**base, metric="baseline", value=result.baseline, unit="loss"),
        ResultRow(**base, metric="loss_ratio", value=result.loss_ratio, unit="ratio"),
        ResultRow(**base, metric="accuracy", value=result.accuracy, unit="fraction"),
        ResultRow(**base, metric="solved", value=float(result.solved), unit="bool"),
        ResultRow(**base, metric="steps_to_solve", value=result.steps_to_solve, unit="steps"),
        ResultRow(**base, metric="time_to_solve_s", value=result.time_to_solve_s, unit="s"),
        ResultRow(**base, metric="steps_run", value=result.steps_run, unit="steps"),
        ResultRow(**base, metric="train_time_s", value=result.train_time_s, unit="s"),
    ]
    for point in result.curve:
        rows.append(ResultRow(**base, phase="curve", step=point.step, metric="curve_loss", value=point.loss, unit="loss",
                              stats={"train_time_s": point.train_time_s}))
        rows.append(ResultRow(**base, phase="curve", step=point.step, metric="curve_accuracy", value=point.accuracy, unit="fraction"))
    return rows


def _train_bases(item: TrainItem, config: RunConfig, threads: int) -> dict[str, dict]:
    """The fields every row of a train item shares, one dict per measurement."""
    task = build_task(item.task, item.seq_len, config.options_for(item.task.name))
    sizes = dict(task=item.task.name, batch_size=config.recipe.batch_size, seq_len=item.seq_len, length=task.length,
                 input_size=task.input_size, hidden_size=item.hidden_size, seed=item.seed, lr=item.lr,
                 impl=item.trained_impl,
                 param_count=_count_or_none(item.cell, task.input_size, item.hidden_size, task.output_size, config.layers))
    return {m: _base(item, m, threads, **sizes) for m in item.measures}


def _train_rows(item: TrainItem, config: RunConfig, threads: int) -> list[ResultRow]:
    """Measure one train item. On failure, the rows measured so far are kept and a failed
    row, with the error, is added for each measurement that did not finish."""
    task = build_task(item.task, item.seq_len, config.options_for(item.task.name))
    bases = _train_bases(item, config, threads)
    if item.cell.backend == NUMPY_BACKEND and item.device != CPU:
        return [ResultRow(**b, status="skipped", error=f"not supported on {item.device}") for b in bases.values()]
    rows: list[ResultRow] = []
    pending = list(item.measures)
    try:
        torch.manual_seed(item.seed)
        cell = build_model_cell(item.cell, item.trained_impl, task.input_size, item.hidden_size, config.layers)
        model = SequenceModel(cell, item.hidden_size, task.output_size).to(item.device)
        check_contract(model.cell, task.input_size, item.hidden_size, torch.device(item.device), name=item.cell.name,
                       spec=item.cell)
        test_x, test_target = held_out(task, config.recipe, item.seed, item.device, torch.float32)
        validation = held_out(task, config.recipe, item.seed, item.device, torch.float32, VALIDATION_STREAM)
        # The probe batch: the first B test sequences, the same for every cell (a measurement, not a choice).
        probe_x, probe_target = test_x[:, : config.recipe.batch_size], test_target[..., : config.recipe.batch_size]
        probes = probe_steps(task.length, config.max_probes)
        if GRADIENTS in item.measures:
            # Kept even if training fails later: the rows say phase "init".
            init_profile = measure_profile(model, task, probe_x, probe_target, probes)
            rows += _gradient_rows(bases[GRADIENTS], "init", init_profile, task.length)
        recipe = replace(config.recipe_for(item.task.name), lr=item.lr)
        result = train(model, task, recipe, item.seed, item.device, test_data=(test_x, test_target),
                       validation_data=validation)
        if ACCURACY in item.measures:
            rows += _accuracy_rows(bases[ACCURACY], result)
            pending.remove(ACCURACY)
        if GRADIENTS in item.measures:
            trained_profile = measure_profile(model, task, probe_x, probe_target, probes)
            rows += _gradient_rows(bases[GRADIENTS], "trained", trained_profile, task.length)
            pending.remove(GRADIENTS)
        if ACCURACY in item.measures:
            rows += _trained_model_rows(model, task, item, config, bases[ACCURACY])
    except (KeyboardInterrupt, UsageError):
        raise
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        rows += [ResultRow(**bases[m], status="failed", error=message) for m in pending]
    return rows


def _trained_model_rows(model, task, item: TrainItem, config: RunConfig, base: dict) -> list[ResultRow]:
    """What else a trained model is asked: its accuracy at other lengths (``--eval-lengths``) and,
    for a task that generates text, a sample. An error here fails these rows, not the item's others."""
    rows: list[ResultRow] = []
    try:
        if config.eval_lengths:
            rows += length_rows(model, item.task, config.options_for(item.task.name), item.seq_len,
                                config.eval_lengths, base, seed=item.seed, eval_size=config.recipe.eval_size,
                                device=item.device)
        if can_generate(task):
            rows += sample_rows(model, task, base)
    except (KeyboardInterrupt, UsageError):
        raise
    except Exception as exc:
        rows.append(ResultRow(**{**base, "measurement": LENGTH if config.eval_lengths else SAMPLE}, status="failed",
                              error=f"{type(exc).__name__}: {exc}"))
    return rows


def measure_item(item: SpeedItem | TrainItem, config: RunConfig, threads: int) -> list[ResultRow]:
    """One item's rows, wherever it runs (the work function :func:`harness.item_work.run_item`
    calls it in worker processes; the in-process executor in the driver)."""
    if isinstance(item, TrainItem):
        return _train_rows(item, config, threads)
    try:
        return _speed_rows(item, config, threads)
    except (KeyboardInterrupt, UsageError):
        raise
    except Exception as exc:
        return [ResultRow(**_speed_base(item, threads, config.layers), status="failed", error=f"{type(exc).__name__}: {exc}")]


def failed_rows(item: SpeedItem | TrainItem, config: RunConfig, threads: int, error: str) -> list[ResultRow]:
    """What the driver stores for an item that returned no rows (timed out, its worker died,
    its code escaped the measurement): one failed row per measurement, with the reason."""
    if isinstance(item, SpeedItem):
        return [ResultRow(**_speed_base(item, threads, config.layers), status="failed", error=error)]
    try:
        bases = _train_bases(item, config, threads)
    except Exception:  # the task cannot even be built here: store what is known
        bases = {m: _base(item, m, threads, task=item.task.name, seq_len=item.seq_len, hidden_size=item.hidden_size,
                          seed=item.seed, lr=item.lr, impl=item.trained_impl) for m in item.measures}
    return [ResultRow(**b, status="failed", error=error) for b in bases.values()]


def strict_float32(device: str) -> None:
    """float32 means float32: no silent TF32 in cuBLAS or cuDNN."""
    if device == CUDA:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


ITEM_TYPES = {"speed": SpeedItem, "train": TrainItem}
