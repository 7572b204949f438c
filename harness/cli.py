"""The command line: parse, call the library, print. Tables go to stdout, everything else to stderr."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import click

from harness.cli_types import NUMBER, RATES, SEEDS, SIZES, THREAD_COUNT, NameList, Percent
from harness.errors import RnnbenchError, UsageError
from harness.executor_choice import AUTO as AUTO_WORKERS
from harness.executor_choice import WORKERS_ENV
from harness.names import (ALL, AUTO, BACKENDS, DEVICE_CHOICES, MEASUREMENTS, REPORT_FORMAT_ALIASES,
                           RUN_REPORT_FORMAT, TORCH, split_list)

plugin_option = click.option(
    "--plugin", "plugin_files", multiple=True, type=click.Path(dir_okay=False), metavar="PATH.py",
    help="Load a plugin from a Python file (repeatable).",
)


def _warn(message: str) -> None:
    click.echo(f"rnnbench: warning: {message}", err=True)


def _load(plugin_files):
    from harness.plugins import load_plugins

    registry = load_plugins(plugin_files)
    for error in registry.errors:
        _warn(error)
    return registry


def _open_store(db_path, *, create: bool = True, write: bool | None = None):
    """The results database, brought up to date; what the upgrade could not fill in is warned about."""
    from harness.store import ResultStore

    store = ResultStore(db_path, create=create, write=write, notify=_warn)
    for note in store.notes:
        _warn(note)
    return store


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rnnbench", prog_name="rnnbench")
def cli():
    """rnnbench: compare recurrent cells on speed, long-dependency accuracy and gradient decay."""


@cli.command()
@click.option("--cells", type=NameList(), default=(ALL,), show_default="all", help="Cells to compare, comma-separated, or 'all' (every registered cell).")
@click.option("--tasks", type=NameList(), default=None, show_default="the profile's: copy,adding", help="Tasks, comma-separated, or 'all'.")
@click.option("--device", "devices", type=NameList(DEVICE_CHOICES), default=(AUTO,), show_default="auto", help="cpu, cuda or auto (cpu, plus cuda when present).")
@click.option("--measure", "measures", type=NameList(MEASUREMENTS), default=MEASUREMENTS, show_default="speed,accuracy,gradients", help="Measurements to run.")
@click.option("--profile", "profile_name", default="default", show_default=True, help="Sizes and budgets: smoke (<30 s, for tests), default (~3 min on 2 CPU cores), paper (literature settings, for a GPU), literature (published outcomes at CPU sizes, ~30 min with --workers 2), tasks (every built-in task, ~15 min with --workers 2).")
@click.option("--seq-len", type=SIZES, help="Sequence length(s) T for speed and for every task (overrides the profile).")
@click.option("--hidden-size", type=SIZES, help="Hidden size(s) H for speed and training.")
@click.option("--batch-size", type=SIZES, help="Batch size(s) B: speed sweeps every value; training uses the first.")
@click.option("--input-size", type=NUMBER, help="Input size I for the speed measurement (tasks fix their own).")
@click.option("--steps", type=NUMBER, help="Training step budget per cell and task.")
@click.option("--seeds", type=SEEDS, help="Training seeds: a count (3: seeds 0..2), a range (5..9) or a list (0,4,7). "
              "With --resume: seeds to add to the run.")
@click.option("--lr", "lrs", type=RATES, help="Learning rate, or rates to sweep (1e-3,3e-3,1e-2): every cell is trained at "
              "each and the rate is chosen per cell and task on validation loss. With --resume: rates to add.")
@click.option("--param-budget", type=NUMBER, metavar="N", help="Choose each cell's hidden size so that its parameter count "
              "(training: cell plus readout; speed: the cell) is closest to N; overrides --hidden-size.")
@click.option("--impl", "impls", type=NameList(), help="Speed implementations to time [default: every one a cell registers "
              "(e.g. fused, unrolled; scan, step), and graphed on cuda]; see 'rnnbench cells'.")
@click.option("--train-impl", "train_impls", type=NameList(), metavar="NAME|CELL=NAME[,...]",
              help="Implementation to train with: NAME for every selected cell, CELL=NAME for one [default: each cell's "
                   "default for the device]; 'rnnbench cells' lists them.")
@click.option("--layers", type=NUMBER, default=1, show_default=True,
              help="Stack every cell N layers deep (pre-norm, residual; the first layer is the cell alone).")
@click.option("--threads", type=THREAD_COUNT, default=1, show_default=True, help="CPU threads for torch and NumPy's BLAS, recorded in every row.")
@click.option("--ignore-memory-estimate", "allow_large", is_flag=True,
              help="Run even when the sizes need more memory than the machine has (by a lower-bound estimate).")
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="Results database [default: $RNNBENCH_DB or rnnbench-results/results.sqlite].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Report folder [default: rnnbench-results/run-<ID>/].")
@click.option("--json", "as_json", is_flag=True, help="Print the run's rows as JSON on stdout instead of tables.")
@click.option("--resume", "resume_run", type=int, metavar="RUN_ID", help="Continue an interrupted run: measure only what it does not have yet.")
@click.option("--retry-failed", is_flag=True, help="With --resume: measure failed items again (by default they stay failed).")
@click.option("--workers", default=AUTO_WORKERS, envvar=WORKERS_ENV, show_default=True, metavar="N|auto",
              help="Worker processes on this machine: auto = one per CPU core / --threads (and one per GPU); "
                   "1 = every item in this process, as before. Timing items always run alone. [env: RNNBENCH_WORKERS]")
@click.option("--cluster", metavar="ADDRESS", help="Run the items on the Dask cluster whose scheduler is at ADDRESS "
              "(tcp://HOST:8786); see docs/scale-out.md.")
@click.option("--item-timeout", metavar="SECONDS|none", help="Wall-clock limit per item; an item past it is ended and "
              "stored as failed. [default: the profile's: smoke 600, default, literature and tasks 3600, paper 43200]")
@click.option("--task-option", "task_option_pairs", multiple=True, metavar="TASK.OPTION=VALUE",
              help="A task's option, e.g. associative-recall.num_pairs=4 (repeatable); "
                   "'rnnbench tasks' lists each task's options.")
@click.option("--text", "text_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Train the text task on this UTF-8 file (its size and SHA-256 are recorded) instead of Python's help text.")
@click.option("--eval-lengths", metavar="2x,4x|T,...",
              help="After training at T, also evaluate each model at these lengths: multiples of T (2x) or lengths (200).")
@plugin_option
@click.pass_context
def run(ctx, cells, tasks, devices, measures, profile_name, seq_len, hidden_size, batch_size, input_size, steps, seeds, lrs,
        param_budget, impls, train_impls, layers, threads, allow_large, db_path, out_dir, as_json, resume_run, retry_failed, workers, cluster,
        item_timeout, task_option_pairs, text_file, eval_lengths, plugin_files):
    """Train, time and probe every selected cell on every selected task and device."""
    from harness.executor_choice import (early_pool, execution_request, executor_for, item_timeout_in_force,
                                         worker_warnings)

    if cluster and ctx.get_parameter_source("workers") != click.core.ParameterSource.COMMANDLINE:
        workers = AUTO_WORKERS  # RNNBENCH_WORKERS is for this machine; a cluster's workers are its own
    request = execution_request(workers, cluster, item_timeout)
    from harness.driver import RunInterrupted, execute, sigterm_as_interrupt
    from harness.preflight import check_out_dir, count_side_by_side, thread_warnings
    from harness.results import Results
    from harness.runner import resolve_devices
    from harness.settings import build_config, cells_without_impls, grow_config, train_impl_left_out
    from harness.task_options import option_flags, parse_task_options, with_text_file
    from reports.terminal import Progress, rows_json, run_tables

    started = time.perf_counter()
    check_out_dir(out_dir)
    for warning in thread_warnings(threads) if resume_run is None else ():
        _warn(warning)
    if retry_failed and resume_run is None:
        raise UsageError("--retry-failed goes with --resume RUN_ID (it measures a stored run's failed items again)")
    if resume_run is not None:
        store = _open_store(db_path, create=False, write=True)
        stored = store.run(resume_run)
        store.check_resumable(resume_run)
        config, argv = grow_config(stored.config, seeds, lrs), list(stored.argv)
        if config != stored.config:
            store.update_config(resume_run, config)
        ignored = [f"--{name.replace('_', '-')}" for name in ctx.params
                   if name not in RESUME_OPTIONS and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
        if ignored:
            _warn(f"--resume continues run {resume_run} with its stored settings; ignored: {', '.join(ignored)}")
        plugin_files = tuple(dict.fromkeys([*stored.plugin_files, *plugin_files]))
        out_dir = out_dir or stored.out_dir
        check_out_dir(out_dir)
        registry = _load(plugin_files)
    else:
        registry = _load(plugin_files)
        # Validate every name and size before the database is touched.
        typed_options = parse_task_options(task_option_pairs, registry)
        task_options = with_text_file(typed_options, text_file)
        if text_file and tasks is None:
            tasks = ("text",)
        config = build_config(
            registry, cells=cells, tasks=tasks, devices=resolve_devices(list(devices)), measures=measures,
            profile_name=profile_name, seq_len=seq_len, hidden_size=hidden_size, batch_size=batch_size,
            input_size=input_size, steps=steps, seeds=seeds, lr=lrs, threads=threads, impls=impls,
            param_budget=param_budget, allow_large_memory=allow_large, train_impls=train_impls or (), layers=layers, task_options=task_options,
            eval_lengths=eval_lengths, task_option_flags=option_flags(typed_options, text_file),
        )
        argv = ["rnnbench", *sys.argv[1:]] if ctx.obj is None else ctx.obj
        left_out = cells_without_impls(registry, config)
        if left_out:
            _warn(f"--impl {','.join(config.impls)}: not in the speed table: {'; '.join(left_out)}")
        defaults = train_impl_left_out(registry, config, train_impls or ())
        if defaults:
            _warn(defaults)
    # Worker processes start up (import torch) while this process plans, once every name and size is
    # known good: started before, they took the driver's cores from a usage error's one line.
    for warning in worker_warnings(request):
        _warn(warning)
    early = early_pool(request, threads=threads, devices=devices, resuming=resume_run is not None,
                       side_by_side=count_side_by_side(config))
    if early is not None:
        ctx.call_on_close(early.close)
    # The executor before a new run's database is touched: an unreachable cluster stores nothing.
    executor = executor_for(request, config, registry, early)
    ctx.call_on_close(executor.close)
    if resume_run is None:
        store = _open_store(db_path)
    ctx.call_on_close(store.close)
    timeout_s = item_timeout_in_force(request, config, executor)
    progress = Progress()
    try:
        with sigterm_as_interrupt():
            outcome = execute(config, registry, store, argv, on_item=progress, resume_run=resume_run,
                              plugin_files=plugin_files, out_dir=out_dir, executor=executor, item_timeout_s=timeout_s,
                              retry_failed=retry_failed)
        exit_code = 1 if outcome.status == "failed" else 0
    except RunInterrupted as interrupted:
        outcome = interrupted.outcome
        exit_code = 130
        resume = f"rnnbench run --resume {outcome.run_id}" + (f" --db {store.path}" if db_path else "")
        _warn(f"interrupted: run {outcome.run_id} keeps every item finished so far; continue it with '{resume}'")
    finally:
        progress.close()
    results = Results.from_store(store, outcome.run_id)
    click.echo(rows_json(results) if as_json else run_tables(results))
    target = Path(out_dir) if out_dir else store.path.parent / f"run-{outcome.run_id}"
    written = _write_run_report(registry, results, target, store.path, db_path)
    exit_code = exit_code or (0 if written else 1)
    minutes, seconds = divmod(time.perf_counter() - started, 60)
    click.echo(
        f"run {outcome.run_id}: {outcome.counts['ok']} ok, {outcome.counts['failed']} failed, "
        f"{outcome.counts['skipped']} skipped in {int(minutes)}m{seconds:04.1f}s"
        + (f" (run {outcome.status}: {outcome.reason})" if outcome.reason else "") + f"; results in {store.path}",
        err=True,
    )
    return exit_code


def _write_run_report(registry, results, target: Path, db: Path, db_given) -> bool:
    """The run's report into ``target``; where that fails (a full disk, a folder removed during the
    run), one line saying that the results are safe in the database and how to write it later."""
    try:
        path = registry.reporter(RUN_REPORT_FORMAT).render(results, target)
    except OSError as exc:
        later = f"rnnbench report {results.run.run_id} --format {RUN_REPORT_FORMAT}"
        later += f" --db {shlex.quote(str(db))}" if db_given else ""
        click.echo(f"rnnbench: error: cannot write the report to {str(target)!r} ({exc.strerror or exc}); "
                   f"the results are in {db}: write the report later with '{later} --out DIR'", err=True)
        return False
    click.echo(f"report: {path}", err=True)
    return True


# What --resume takes from the command line; everything else comes from the stored run.
RESUME_OPTIONS = ("resume_run", "db_path", "plugin_files", "out_dir", "as_json", "retry_failed", "workers", "cluster",
                  "item_timeout", "seeds", "lrs")


def _print_table(rows: list[dict]) -> None:
    from reports.terminal import listing

    click.echo(listing(rows))


@cli.command()
@plugin_option
def cells(plugin_files):
    """List registered cells, with backend and source plugin."""
    from reports.terminal import cell_rows

    _print_table(cell_rows(_load(plugin_files)))
    return 0


@cli.command()
@plugin_option
def tasks(plugin_files):
    """List registered tasks, with source plugin, then each task's options: default and meaning."""
    from harness.task_options import TEXT_OPTION, TEXT_TASK, declared_options
    from reports.terminal import task_option_rows, task_rows

    registry = _load(plugin_files)
    _print_table(task_rows(registry))
    text_flag = f" (--text FILE sets {TEXT_TASK}.{TEXT_OPTION})" if TEXT_TASK in registry.tasks else ""
    click.echo(f"\nTask options, set with 'rnnbench run --task-option TASK.OPTION=VALUE'{text_flag}:")
    _print_table(task_option_rows(registry))
    without = [t.name for t in registry.tasks.values() if not declared_options(t.factory)]
    if without:
        click.echo(f"\nNo options: {', '.join(without)}")
    return 0


@cli.command()
@plugin_option
def plugins(plugin_files):
    """List loaded plugins: where each came from and what it registered."""
    from reports.terminal import plugin_rows

    registry = _load(plugin_files)
    _print_table(plugin_rows(registry))
    return 1 if registry.errors else 0


db_option = click.option(
    "--db", "db_path", type=click.Path(dir_okay=False),
    help="Results database to read [default: $RNNBENCH_DB or rnnbench-results/results.sqlite].",
)


@cli.command()
@click.argument("run_ref", metavar="[RUN|latest]", required=False, default="latest")
@click.option("--format", "formats", type=NameList(), default=("html",), show_default=True,
              help="Report format(s), comma-separated: html, md (markdown), csv, json, or one a plugin registers.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Report folder [default: run-<ID>/ beside the database].")
@db_option
@plugin_option
def report(run_ref, formats, out_dir, db_path, plugin_files):
    """Render a stored run as HTML (with plots), Markdown, CSV or JSON, from the results database alone."""
    from harness.results import Results

    registry = _load(plugin_files)
    reporters = [registry.reporter(REPORT_FORMAT_ALIASES.get(name, name)) for name in formats]
    with _open_store(db_path, create=False) as store:
        run_id = store.resolve_run(run_ref)
        results = Results.from_store(store, run_id)
        target = Path(out_dir) if out_dir else store.path.parent / f"run-{run_id}"
    for reporter in reporters:
        try:
            path = reporter.render(results, target)
        except OSError as exc:
            raise UsageError(f"cannot write the {reporter.name} report to {str(target)!r}: {exc}") from None
        click.echo(str(path))
    return 0


@cli.command()
@db_option
def runs(db_path):
    """List stored runs: id, start time, status, what was measured and on which machine."""
    from reports.terminal import runs_table

    with _open_store(db_path, create=False) as store:
        click.echo(runs_table(store.runs()))
    return 0


@cli.command()
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@click.option("--fail-above", type=Percent(), metavar="PCT",
              help="Exit 1 when a speed timing of RUN_B is significantly slower than RUN_A's by more than PCT (e.g. 5%); "
              "exit 2 when every timing's verdict is withheld (nothing to gate without --force).")
@click.option("--force", is_flag=True, help="Give verdicts and differences even for rows the two runs measured "
              "differently (another recipe or timing method, or an edited cell).")
@db_option
def compare(run_a, run_b, fail_above, force, db_path):
    """Compare two stored runs (ids or 'latest'): speed ratios B/A with noise-aware verdicts, accuracy and gradient differences.

    A side may pool several runs of one configuration and code, ids separated by commas (rnnbench compare
    1,3,5 2,4,6): each run then counts once in the speed verdicts, so that a host that slows down in spells is
    sampled run by run (on a noisy machine about 20 runs a side find a 10% change); accuracy and gradients
    come from the first run of each side. Run A and B alternately so that the machine's drift falls on both
    sides alike.
    """
    from harness.compare import compare_runs, min_change_for_gate
    from reports.compare_text import format_comparison, nothing_to_gate, regression_lines

    with _open_store(db_path, create=False) as store:
        comparison = compare_runs(store, run_a, run_b, min_change=min_change_for_gate(fail_above), force=force)
    click.echo(format_comparison(comparison))
    if fail_above is None:
        return 0
    unjudged = nothing_to_gate(comparison)
    if unjudged:  # neither a pass (nothing was checked) nor a regression (nothing was measured as one)
        click.echo(f"rnnbench: error: {unjudged}", err=True)
        return UsageError.exit_code
    lines = regression_lines(comparison, fail_above)
    for line in lines:
        click.echo(f"rnnbench: {line}", err=True)
    return 1 if lines else 0


@cli.command()
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@plugin_option
def check(names, plugin_files):
    """Run the conformance checks on cells and tasks (names, comma lists, or 'all' for every cell and task): one line per check.

    Exit 1 when any check fails. The same checks are importable for a plugin's own tests:
    harness.testing.assert_conforms(CELL), harness.task_checks.assert_task_conforms(TASK).
    """
    from harness.plugins import describe
    from harness.task_checks import iter_task_checks
    from harness.testing import FAIL, iter_checks, summary

    registry = _load(plugin_files)
    cells, tasks = registry.select_checked(split_list(names))
    any_failed = False
    for kind, spec, checks in [("cell", s, iter_checks) for s in cells] + [("task", s, iter_task_checks) for s in tasks]:
        what = f"{spec.backend} backend, {spec.form} form" if kind == "cell" else "task"
        click.echo(f"{spec.name} ({what}) from {describe(spec.plugin)}")
        results = []
        for result in checks(spec):
            click.echo(f"  {result.line()}")
            results.append(result)
        any_failed |= any(r.status == FAIL for r in results)
        click.echo(f"{spec.name}: {summary(results)}\n")
    return 1 if any_failed else 0


@cli.command("new-cell")
@click.argument("name")
@click.option("--backend", type=click.Choice(BACKENDS), default=TORCH, show_default=True,
              help="torch: a step-form nn.Module; numpy: params, forward and a hand-written backward.")
@click.option("--with-scan", "scan", is_flag=True,
              help="A cell with two implementations: a parallel scan and the step form it is checked against (torch).")
@click.option("--dir", "parent", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Folder in which to create rnnbench-NAME/.")
def new_cell(name, backend, scan, parent):
    """Write a cell plugin package, rnnbench-NAME/, that works after 'pip install -e .'."""
    from harness.plugins import describe, load_plugins
    from harness.scaffold import Scaffold, validate_name, write_scaffold

    validate_name(name)
    registry = load_plugins()
    if name in registry.cells:
        raise UsageError(f"a cell named {name!r} is already registered by {describe(registry.cells[name].plugin)}; "
                         "choose another name")
    root = write_scaffold(name, backend, parent, scan=scan)
    for relative in Scaffold(name, backend, scan).files():
        click.echo(f"wrote {root / relative}")
    click.echo(f"\nnext:\n  cd {root}\n  pip install -e \".[test]\"\n  rnnbench check {name}\n  "
               f"pytest\n  rnnbench run --cells {name},lstm,gru")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point: one clear line and an exit code for every user error."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args=args, prog_name="rnnbench", standalone_mode=False, obj=["rnnbench", *args])
    except click.exceptions.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:  # bare "rnnbench" (click >= 8.2)
            click.echo(exc.ctx.get_help(), err=True)
        else:
            click.echo(f"rnnbench: error: {exc.format_message()}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("rnnbench: aborted", err=True)
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except RnnbenchError as exc:
        click.echo(f"rnnbench: error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("rnnbench: interrupted", err=True)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
