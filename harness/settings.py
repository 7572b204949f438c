"""Turn a profile plus command-line overrides into a :class:`harness.config.RunConfig`."""

from __future__ import annotations

from dataclasses import replace

from harness.cells import available_impls, unknown_impl_message
from harness.config import RunConfig
from harness.errors import UsageError
from harness.names import ACCURACY, GRAPHED, SPEED, SQLITE_INT_MAX, TRAIN_MEASUREMENTS
from harness.lengths import MAX_EVAL_SIZE, parse_eval_lengths, resolve_length, task_at_length
from harness.preflight import check_item_count, check_memory
from harness.profiles import get_profile
from harness.stacking import check_layers
from harness.task_options import build_task


def _profile_seq_lens(profile, task) -> tuple[int, ...]:
    """The profile's lengths for ``task``; a task it does not name runs at its own default T if it has one."""
    own = getattr(task.factory, "default_seq_len", None)
    if task.name in profile.task_seq_lens or own is None:
        return profile.seq_lens_for(task.name)
    return (own,)


def resolve_train_impls(registry, cell_names, entries) -> dict[str, str]:
    """``--train-impl`` entries -> {cell: implementation}: ``NAME`` applies to every selected cell
    that has it (the others train with their default, :func:`train_impl_left_out` says which),
    ``CELL=NAME`` to one (and wins over a plain ``NAME``). A ``NAME`` no selected cell has, two
    plain names for one cell, a ``CELL=NAME`` the cell lacks, or a CELL that is not selected is a
    :class:`UsageError` listing what is allowed."""
    chosen: dict[str, str] = {}
    plain: dict[str, str] = {}  # cell -> the plain entry that chose for it
    for entry in sorted(entries, key=lambda e: "=" in e):  # plain names first, per-cell ones override
        cell, _, impl = entry.rpartition("=")
        if cell and cell not in cell_names:
            raise UsageError(f"--train-impl {entry}: cell {cell!r} is not selected; selected: {', '.join(cell_names)}")
        targets = [cell] if cell else [name for name in cell_names if impl in registry.cell(name).impls.names]
        if not targets:
            if len(cell_names) == 1 or impl == GRAPHED:
                raise UsageError(f"--train-impl {entry}: {unknown_impl_message(registry.cell(cell_names[0]), impl, training=True)}")
            offered = sorted({i for name in cell_names for i in registry.cell(name).impls.names})
            raise UsageError(f"--train-impl {entry}: no selected cell has an implementation {impl!r} to train with; "
                             f"they have: {', '.join(offered)}")
        for name in targets:
            spec = registry.cell(name)
            if impl not in spec.impls.names:
                raise UsageError(f"--train-impl {entry}: {unknown_impl_message(spec, impl, training=True)}")
            if not cell and name in plain:
                raise UsageError(f"--train-impl {plain[name]},{entry}: cell {name!r} has both; "
                                 f"choose one for it with {name}={impl} or {name}={plain[name]}")
            if not cell:
                plain[name] = entry
            chosen[name] = impl
    return chosen


def train_impl_left_out(registry, config, entries) -> str | None:
    """The warning for selected cells that a plain ``--train-impl NAME`` did not reach (they have
    no such implementation, and no ``CELL=NAME`` chose one for them), in one line, e.g.
    ``"--train-impl step: lstm trains with its default, fused (it has fused, unrolled)"``, or for
    several ``"--train-impl step: 2 cells train with their default: lstm with fused (it has …); gru
    with fused (it has …)"``; ``None`` when every cell was reached or nothing trains."""
    plain = [entry for entry in entries if "=" not in entry]
    if not plain or not any(m in config.measures for m in TRAIN_MEASUREMENTS):
        return None
    left = {name: registry.cell(name).impls for name in config.cells if name not in config.train_impls}
    if not left:
        return None

    def default_of(name):  # the implementation it trains with, per device where they differ
        defaults = dict.fromkeys(left[name].default_for(device) for device in config.devices)
        return f"{' or '.join(defaults)} (it has {', '.join(left[name].names)})"
    asked = f"--train-impl {','.join(plain)}"
    if len(left) == 1:
        name = next(iter(left))
        return f"{asked}: {name} trains with its default, {default_of(name)}"
    return f"{asked}: {len(left)} cells train with their default: {'; '.join(f'{n} with {default_of(n)}' for n in left)}"


def cells_without_impls(registry, config) -> list[str]:
    """One phrase per selected cell and device that ``--impl`` leaves out of the speed table
    entirely (it has none of the implementations asked for), e.g. ``"lstm on cpu (it has fused, unrolled)"``."""
    if not config.impls or SPEED not in config.measures:
        return []
    found = []
    for device in config.devices:
        for name in config.cells:
            offered = available_impls(registry.cell(name), device)
            if not set(offered) & set(config.impls):
                found.append(f"{name} on {device} (it has {', '.join(offered)})")
    return found


def build_config(registry, *, cells, tasks, devices, measures, profile_name="default", seq_len=None, hidden_size=None,
                 batch_size=None, input_size=None, steps=None, seeds=None, lr=None, threads=1, impls=None,
                 param_budget=None, allow_large_memory=False, train_impls=(), layers=1, task_options=None, eval_lengths=(),
                 task_option_flags=None) -> RunConfig:
    """Names are validated against the registry here, and sizes against the machine
    (:mod:`harness.preflight`; ``allow_large_memory`` skips the memory estimate), before anything runs.

    ``seeds``: a tuple of seeds (or a count, meaning 0..N-1); ``lr``: one rate, or a tuple of
    rates to sweep (one rate becomes the recipe's); ``param_budget``: parameters per cell;
    ``task_options``: per task, factory keyword options (over the profile's), ``task_option_flags``:
    per task, the flag that set them where it was not ``--task-option`` (``--text FILE``); ``eval_lengths``:
    lengths to evaluate trained models at (``"2x"`` or ``"200"``, :mod:`harness.lengths`).
    """
    profile = get_profile(profile_name)
    cell_names = tuple(c.name for c in registry.select_cells(list(cells)))
    task_names = tuple(t.name for t in registry.select_tasks(list(tasks or profile.tasks)))
    recipe = profile.recipe
    if batch_size:
        recipe = replace(recipe, batch_size=batch_size[0])
    if steps:
        recipe = replace(recipe, steps=steps, eval_every=min(recipe.eval_every, steps))
    rates = (lr,) if isinstance(lr, (int, float)) else tuple(lr or profile.lrs)
    if len(rates) == 1:
        recipe = replace(recipe, lr=rates[0])
    if isinstance(seeds, int):
        seeds = tuple(range(seeds))
    task_seq_lens = {t: tuple(seq_len) if seq_len else _profile_seq_lens(profile, registry.task(t)) for t in task_names}
    options = _task_options(profile, task_names, task_options or {}, task_option_flags or {})
    task_shapes = {}  # (task, T) -> (steps the cell sees L, input size I), for the memory estimate
    for name, lengths in task_seq_lens.items():
        for length in lengths:
            try:
                task = build_task(registry.task(name), length, options.get(name))
            except ValueError as exc:  # e.g. adding needs T >= 2
                if name in options:
                    raise UsageError(f"task {name!r} at T={length} with options {_shown(options[name])}: {exc}") from None
                raise UsageError(f"--seq-len {length} does not suit task {name!r}: {exc}") from None
            task_shapes[(name, length)] = (int(task.length), int(task.input_size))
    if impls and SPEED in measures:
        offered = {i for c in cell_names for d in devices for i in available_impls(registry.cell(c), d)}
        unknown = [impl for impl in impls if impl not in offered]
        if unknown:
            raise UsageError(f"--impl {','.join(unknown)}: no selected cell has {'this implementation' if len(unknown) == 1 else 'these implementations'} "
                             f"on {', '.join(devices)}; available: {', '.join(sorted(offered))}")
    chosen_impls = resolve_train_impls(registry, cell_names, train_impls)
    config = RunConfig(
        cells=cell_names,
        tasks=task_names,
        devices=tuple(devices),
        measures=tuple(measures),
        seeds=tuple(seeds) if seeds else tuple(range(profile.seeds)),
        task_seq_lens=task_seq_lens,
        hidden_sizes=tuple(hidden_size) if hidden_size else profile.hidden_sizes,
        recipe=recipe,
        speed_batch_sizes=tuple(batch_size) if batch_size else profile.speed_batch_sizes,
        speed_seq_lens=tuple(seq_len) if seq_len else profile.speed_seq_lens,
        speed_hidden_sizes=tuple(hidden_size) if hidden_size else profile.speed_hidden_sizes,
        speed_input_size=input_size or profile.speed_input_size,
        timing=profile.timing,
        threads=threads,
        impls=tuple(impls) if impls else None,
        profile=profile.name,
        lrs=tuple(sorted(rates)) if len(rates) > 1 else (),
        param_budget=param_budget,
        task_options=options,
        eval_lengths=tuple(parse_eval_lengths(eval_lengths or profile.eval_lengths)),
        train_impls=chosen_impls,
        layers=check_layers(layers),
        # A size or budget typed on the command line holds for every task.
        task_hidden_sizes={} if hidden_size else {t: profile.task_hidden_sizes[t] for t in task_names
                                                  if t in profile.task_hidden_sizes},
        task_steps={} if steps else {t: profile.task_steps[t] for t in task_names if t in profile.task_steps},
    )
    check_item_count(config)
    check_memory(config, task_shapes, allow_large=allow_large_memory,
                 eval_shapes=_eval_shapes(registry, config) if ACCURACY in config.measures else None)
    return config


def _eval_shapes(registry, config: RunConfig) -> dict[tuple[str, int], tuple[int, int, int]]:
    """``(task, T) -> (L, I, E)`` for every length a trained model is evaluated at (``--eval-lengths``),
    for the memory estimate. A length past what SQLite stores is refused here; one the task cannot
    be built at (:func:`harness.lengths.task_at_length`) is left out, as the run stores a skipped row
    saying why. A factory that fails otherwise is left out too: the estimate must not stop the run,
    whose item then fails and is recorded with the error."""
    shapes = {}
    for name, trained_lengths in config.task_seq_lens.items():
        for trained in trained_lengths:
            for spec in config.eval_lengths:
                seq_len = resolve_length(spec, trained)
                if seq_len > SQLITE_INT_MAX:
                    raise UsageError(f"--eval-lengths {spec}: T={seq_len} for task {name!r} (trained at T={trained}) "
                                     f"is too large: at most {SQLITE_INT_MAX} (the largest integer SQLite stores)")
                if seq_len == trained or (name, seq_len) in shapes:
                    continue
                try:
                    task, _ = task_at_length(registry.task(name), seq_len, config.options_for(name))
                except Exception:  # noqa: BLE001 -- a plugin's own failure; the item reports it
                    continue
                if task is None:
                    continue
                shapes[(name, seq_len)] = (int(task.length), int(task.input_size),
                                           min(config.recipe.eval_size, MAX_EVAL_SIZE))
    return shapes


def _task_options(profile, task_names, typed: dict[str, dict], flags: dict[str, str]) -> dict[str, dict]:
    """The options of the selected tasks: the profile's, with what was typed on top. ``flags``: the
    flag that set a task's options where it was not ``--task-option`` (``{"text": "--text FILE"}``),
    so that an error names what the user typed."""
    merged = {}
    for name in task_names:
        chosen = {**profile.task_options.get(name, {}), **typed.get(name, {})}
        if chosen:
            merged[name] = chosen
    unused = sorted(set(typed) - set(task_names))
    if unused:
        typed_as = "; ".join(f"{flags[t]} is for task {t!r}" if t in flags else f"--task-option for {t}" for t in unused)
        raise UsageError(f"{typed_as}: not among the tasks of this run ({', '.join(task_names)}); "
                         f"add {'it' if len(unused) == 1 else 'them'} to --tasks")
    return merged


def _shown(options: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in options.items())


def grow_config(config: RunConfig, seeds, lrs) -> RunConfig:
    """A stored run's configuration with the seeds and learning rates ``--resume`` adds."""
    if seeds:
        config = replace(config, seeds=tuple(dict.fromkeys([*config.seeds, *seeds])))
    if lrs:
        rates = tuple(sorted(set(config.learning_rates) | set(lrs)))
        config = replace(config, lrs=rates if len(rates) > 1 else ())
    return config
