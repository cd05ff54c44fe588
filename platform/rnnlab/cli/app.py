"""The command line: parse, call one library function, render. No logic lives here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer.core import TyperGroup

from rnnlab.cli.lines import error_line, interrupted, quiet_libraries, usage_error
from rnnlab.cli.options import AllowChangeOpt, DataDirOpt, SetOpt, StorageOpt
from rnnlab.cli.options import with_data_dir as _with_data_dir
from rnnlab.cli.slurm import slurm
from rnnlab.errors import RnnlabError
from rnnlab.interrupts import ignore_interrupts

# The command-line errors of the click that typer runs on (newer typers carry their own copy
# of click, so the installed click's classes are not the ones raised).
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class _Group(TyperGroup):
    """Catches the one domain error once: one line on stderr, exit code 2 (1 for workers that
    died), no traceback. A mistyped command line (unknown command or option, bad or missing
    value) is one line too.

    Ctrl-C and SIGTERM end in one line too, with exit codes 130 and 143.
    """

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _name_values(command, ctx)
        return command

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except UsageError as exc:
            raise typer.Exit(usage_error(exc)) from None

    def invoke(self, ctx):
        try:
            result = super().invoke(ctx)
            ignore_interrupts()  # done: a signal now would only cut the exit short
            return result
        except RnnlabError as exc:
            typer.echo(error_line(str(exc)), err=True)
            raise typer.Exit(exc.exit_code) from None
        except UsageError as exc:  # in a command's own command line
            raise typer.Exit(usage_error(exc)) from None
        except KeyboardInterrupt as exc:
            raise typer.Exit(interrupted(exc)) from None


# What a value is called in help, by its type: ``--workers N``, not ``--workers <int range>``.
_METAVARS = {"int": "N", "int range": "N", "float": "X", "float range": "X", "path": "PATH",
             "str": "TEXT", "list[str]": "TEXT"}


def _name_values(command, ctx) -> None:
    """Name each value in a command's help: an argument by its name in capitals (``SPEC``, as
    the docstrings say), an option by its type; a flag takes no value and shows none."""
    for param in command.params:
        if param.metavar is not None:
            continue
        if param.param_type_name == "argument":  # SPEC, [STUDY]: not {SPEC}, SPEC <path>
            param.metavar = name = param.name.upper()
            param._usage_display_name = (lambda n=name: n) if param.required else (
                lambda n=name: f"[{n}]")
            param.display_type_rich = lambda ctx: None
        elif getattr(param, "is_flag", False):
            param.metavar = ""
        else:
            shown = (param.display_type(ctx) or "").strip("<>")
            param.metavar = _METAVARS.get(shown, shown or "TEXT")


app = typer.Typer(cls=_Group, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None,  # plain help: flags without a type, sentences whole
                  no_args_is_help=True, help="Hyperparameter experiments for RNNs on MNIST.")
err = Console(stderr=True)


@app.callback()
def _options(verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Show the libraries' own log lines (Optuna, MLflow) too.")] = False,
             ) -> None:
    """Hyperparameter experiments for RNNs on MNIST."""
    quiet_libraries(not verbose)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Run config YAML (a study spec works too).")],
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    no_track: Annotated[bool, typer.Option("--no-track", help="Do not log to MLflow.")] = False,
) -> None:
    """Train one config and track it as an MLflow run."""
    from rnnlab.core.spec import load_config

    cfg = load_config(config, _with_data_dir(set_, data_dir))  # before the heavy imports
    from rnnlab.cli.progress import epoch_progress
    from rnnlab.cli.render import summary_table, train_summary
    from rnnlab.tracking.runs import train_run

    with epoch_progress(err, cfg.train.epochs) as progress:
        outcome = train_run(cfg, track=not no_track, callbacks=[progress])
    summary = train_summary(outcome)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        Console().print(summary_table(summary))
    if outcome.result.status == "diverged":
        raise typer.Exit(1)


def _storage(storage: str | None) -> str:
    from rnnlab.storage.adapter import DEFAULT_STORAGE

    return storage or DEFAULT_STORAGE


def _known(storage: str | None, study: str) -> None:
    """Refuse a study that is not there in a second or so, before the heavy imports."""
    from rnnlab.storage.adapter import load_study

    load_study(_storage(storage), study)


@app.command()
def sweep(
    spec: Annotated[Path, typer.Argument(help="Study spec YAML (see studies/).")],
    n_trials: Annotated[int | None, typer.Option(help="Total finished trials wanted.")] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, help="Local worker processes, or Ray tasks (default: one per CPU core with 1 "
        "thread each, at most n_trials; with GPUs, --trials-per-gpu on each).")] = None,
    trials_per_gpu: Annotated[int, typer.Option(min=1, help="Workers per GPU.")] = 1,
    storage: StorageOpt = None,
    timeout: Annotated[float | None, typer.Option(help="Stop starting trials after S s.")] = None,
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    allow_spec_change: AllowChangeOpt = False,
    ray: Annotated[str | None, typer.Option(metavar="ADDRESS", help="Run the workers as Ray "
        "tasks: auto, local (a throwaway cluster here) or the head's host:port.")] = None,
) -> None:
    """Run (or resume) an Optuna study: every trial an MLflow run under the study's run.

    A study resumes only with the spec it was made with; --n-trials extends its budget.
    """
    from rnnlab.cli.progress import StudyProgress, placement_line
    from rnnlab.cli.tables import done_line, next_commands, status_view
    from rnnlab.core.study_spec import load_study_spec

    study_spec = load_study_spec(spec, _with_data_dir(set_, data_dir), n_trials=n_trials,
                                 timeout=timeout)
    if ray is not None:
        from rnnlab.cli.ray_sweep import ray_sweep

        final = ray_sweep(err, study_spec, _storage(storage), ray, workers, trials_per_gpu,
                          allow_spec_change)
    else:
        from rnnlab.engines.placement import place_sweep

        place = place_sweep(study_spec, workers, trials_per_gpu)  # starts the fork server
        from rnnlab.engines.local import sweep as run_sweep

        with StudyProgress(err, place.workers, header=placement_line(place, workers is None)) \
                as progress:
            final = run_sweep(study_spec, _storage(storage), place, on_progress=progress,
                              allow_spec_change=allow_spec_change)
    Console().print(status_view([final], detail=True))
    if done := done_line(final, asked=study_spec.study.n_trials):
        err.print(done, markup=False, highlight=False, soft_wrap=True)
    derived: list[tuple[str, str]] = []  # the studies derived from it, for the next commands
    if final.finished >= (final.budget or 0):
        from rnnlab.core.selection import selection_name
        from rnnlab.study.ablation import derived_name

        # the search is done: its selection runs now, then its ablations (from the selection's
        # choices), on workers placed as the search's were (--workers, --trials-per-gpu)
        runner = None if ray else workers
        if study_spec.select is not None:
            _select(final.name, study_spec.select, _storage(storage), runner, trials_per_gpu)
            derived.append((selection_name(final.name),
                            "each stratum's best chosen on fresh seeds (validation)"))
        for config in study_spec.ablate:
            _ablate(final.name, config, _storage(storage), runner, trials_per_gpu)
            derived.append((derived_name(final.name, config.factor),
                            f"the paired verdict on {config.factor} (validation)"))
    typer.echo(next_commands(final.name, storage, derived=derived))


def _derived(what: str, workers: int | None, run) -> None:
    """Run a derived study (``run(on_start, on_progress)``: an ablation or a selection) with
    the sweep's progress lines headed ``what``, and show its table."""
    from rnnlab.cli.progress import StudyProgress, placement_line
    from rnnlab.cli.tables import done_line, status_view

    with StudyProgress(err) as progress:
        def started(place) -> None:
            progress.workers = place.workers
            progress.header = f"{what}: " + placement_line(place, workers is None)

        final = run(started, progress)
    Console().print(status_view([final], detail=True))
    if done := done_line(final, extends=False):
        err.print(done, markup=False, highlight=False, soft_wrap=True)


def _ablate(study: str, config, storage: str, workers: int | None, per_gpu: int) -> None:
    """Run an ablation of ``study`` with the sweep's progress lines, and show its table."""
    from rnnlab.engines.ablate import ablate as run_ablation

    _derived(f"ablation of {config.factor}", workers, lambda started, progress: run_ablation(
        storage, study, config, workers, per_gpu=per_gpu, on_start=started,
        on_progress=progress))


def _select(study: str, config, storage: str, workers: int | None, per_gpu: int) -> None:
    """Run the selection of ``study`` with the sweep's progress lines, and show its table."""
    from rnnlab.engines.select import select as run_selection

    _derived(f"choosing each stratum's best of its top {config.top} on {config.seeds} fresh "
             "seeds", workers, lambda started, progress: run_selection(
                 storage, study, config, workers, per_gpu=per_gpu, on_start=started,
                 on_progress=progress))


@app.command()
def select(
    study: Annotated[str, typer.Argument(help="The searched study.")],
    top: Annotated[int, typer.Option(help="Candidates per stratum: its best trials "
                                          "(at least 2).")] = 3,
    seeds: Annotated[int, typer.Option(help="Fresh seeds each candidate is trained with again "
                                            "(at least 1).")] = 2,
    workers: Annotated[int | None, typer.Option(
        min=1, help="Local worker processes (default: as a sweep starts).")] = None,
    trials_per_gpu: Annotated[int, typer.Option(min=1, help="Workers per GPU.")] = 1,
    storage: StorageOpt = None,
) -> None:
    """Choose each stratum's best on fresh seeds: train its TOP trials again with SEEDS fresh
    paired seeds each, in a derived study (STUDY-select); its choice (the best mean) is the
    best that ablations start from and that the report names and confirms."""
    _known(storage, study)
    from rnnlab.cli.tables import next_commands
    from rnnlab.core.selection import selection_name
    from rnnlab.engines.select import selection

    config = selection(top, seeds)
    _select(study, config, _storage(storage), workers, trials_per_gpu)
    typer.echo(next_commands(selection_name(study), storage, of=study))


@app.command()
def ablate(
    study: Annotated[str, typer.Argument(help="The searched study.")],
    factor: Annotated[str, typer.Option(help="The searched key to ablate (e.g. "
                                              "data.normalisation).")],
    levels: Annotated[str | None, typer.Option(
        help="Its levels, comma-separated (default: a categorical's every choice; L2: 0 and "
        "the best; another range: the best /3, x1, x3); each stratum's best level is always "
        "added.")] = None,
    seeds: Annotated[int, typer.Option(help="Paired seeds per level (at least 2).")] = 3,
    workers: Annotated[int | None, typer.Option(
        min=1, help="Local worker processes (default: as a sweep starts).")] = None,
    trials_per_gpu: Annotated[int, typer.Option(min=1, help="Workers per GPU.")] = 1,
    storage: StorageOpt = None,
) -> None:
    """Train each stratum's best config with FACTOR at each level, with paired seeds: a derived
    study (STUDY-ablate-FACTOR) whose report gives the paired verdict within each stratum."""
    _known(storage, study)
    from rnnlab.cli.tables import next_commands
    from rnnlab.engines.ablate import ablation
    from rnnlab.study.ablation import derived_name

    config = ablation(factor, levels, seeds)
    _ablate(study, config, _storage(storage), workers, trials_per_gpu)
    typer.echo(next_commands(derived_name(study, config.factor), storage, of=study))


@app.command()
def delete(
    study: Annotated[str, typer.Argument(help="The study to delete.")],
    storage: StorageOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Delete without asking.")] = False,
) -> None:
    """Delete a study and its MLflow runs (soft-deleted: `mlflow gc` purges them): to plan an
    ablation or a selection again, say. A study others were derived from is refused until
    they are deleted."""
    from rnnlab.cli.progress import count_progress
    from rnnlab.study.removal import delete as remove
    from rnnlab.study.removal import plan_deletion

    with count_progress(err, None, "MLflow runs read") as on_read:
        plan = plan_deletion(_storage(storage), study, on_read=on_read)
    if not yes:
        typer.confirm(f"Delete {plan}?", abort=True, err=True)
    with count_progress(err, len(plan.runs), "MLflow runs deleted") as on_run:
        remove(_storage(storage), plan, on_run=on_run)
    err.print(f"deleted {plan}", markup=False, highlight=False, soft_wrap=True)


@app.command()
def worker(
    spec: Annotated[Path, typer.Argument(help="Study spec YAML.")],
    storage: StorageOpt = None,
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    workers: Annotated[int | None, typer.Option(
        min=1, help="Local worker processes (default: --trials-per-gpu on every GPU, "
        "else 1).")] = None,
    trials_per_gpu: Annotated[int, typer.Option(min=1, help="Workers per GPU.")] = 1,
    device: Annotated[str | None, typer.Option(
        help="Put every worker here: cpu, cuda:N (default: GPUs round-robin).")] = None,
    allow_spec_change: AllowChangeOpt = False,
) -> None:
    """Join a study (creating it if needed) and run trials until its budget is used.

    Start it on any number of machines with the same --storage (PostgreSQL) and
    MLFLOW_TRACKING_URI (an MLflow server): together they finish exactly n_trials.
    """
    from rnnlab.cli.tables import status_view
    from rnnlab.core.study_spec import load_study_spec
    from rnnlab.engines.local import sweep as run_sweep

    final = run_sweep(load_study_spec(spec, _with_data_dir(set_, data_dir)),
                      _storage(storage), workers=workers, per_gpu=trials_per_gpu, device=device,
                      allow_spec_change=allow_spec_change)
    err.print(f"worker(s) on this machine ran {final.trials_run} trial(s)")
    Console().print(status_view([final], detail=True))


@app.command()
def status(
    study: Annotated[str | None, typer.Argument(help="Study name (default: every study).")] = None,
    storage: StorageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts per trial state and best value of the studies in a storage; with STUDY, its best
    params too (--json: everything)."""
    from dataclasses import asdict

    from rnnlab.cli.tables import no_studies_line, status_view
    from rnnlab.study.status import study_status

    statuses = study_status(_storage(storage), study)
    if as_json:
        typer.echo(json.dumps([asdict(s) for s in statuses], indent=1))
    elif not statuses:
        err.print(no_studies_line(_storage(storage)), markup=False, highlight=False,
                  soft_wrap=True)
    else:
        Console().print(status_view(statuses, detail=study is not None))


@app.command()
def trials(
    study: Annotated[str, typer.Argument(help="Study name.")],
    fmt: Annotated[str, typer.Option("--format", help="csv, parquet or json.")] = "csv",
    out: Annotated[Path | None, typer.Option(help="Write to this file (else stdout).")] = None,
    storage: StorageOpt = None,
) -> None:
    """Export a study's trials as a table: params and values in columns (the same columns
    whatever the trials went through: README, "Exports")."""
    from rnnlab.files import check_format, check_writable

    check_format(fmt)
    if out is not None:
        check_writable(out)
    _known(storage, study)
    from rnnlab.analysis.frames import trials_frame
    from rnnlab.files import write_frame

    text = write_frame(trials_frame(_storage(storage), study), fmt, out)
    if text is not None:
        typer.echo(text, nl=False)


@app.command()
def dashboard(
    target: Annotated[str, typer.Argument(
        help="A study's name (its default view), or a dashboard spec: dashboards/NAME.yaml.")],
    storage: StorageOpt = None,
    out: Annotated[Path | None, typer.Option(
        help="HTML file to write (default: beside the spec, or dashboards/<study>.html).")
    ] = None,
    watch: Annotated[float | None, typer.Option(
        min=1, help="Rewrite every N s until its studies are done (budget reached, nothing "
                    "running); Ctrl-C stops earlier.")] = None,
    inline: Annotated[bool, typer.Option(
        help="Put plotly.js in the page (one file to send) instead of beside it.")] = False,
) -> None:
    """Write a Plotly dashboard: one HTML page that opens offline, with plotly.js beside it."""
    from rnnlab.dashboards.spec import board_for

    board = board_for(target)
    if board.origin is None:
        _known(storage, target)
    from rnnlab.cli.render import dashboard_line
    from rnnlab.dashboards.write import watch_board, write_board

    if watch is None:
        typer.echo(str(write_board(board, _storage(storage), out, inline=inline)[0]))
        return
    try:
        path = watch_board(board, _storage(storage), out, watch,
                           inline=inline, on_write=lambda p, s: err.print(
                               dashboard_line(p, s), soft_wrap=True, highlight=False))
    except KeyboardInterrupt:
        err.print("stopped watching; the last dashboard written stays in place")
        return
    typer.echo(str(path))


@app.command()
def report(
    study: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="md, html, json or yaml (the best "
                                                     "config alone).")] = "md",
    out: Annotated[Path | None, typer.Option(
        help="File to write (default: stdout; html: reports/<study>.html).")] = None,
    confirm: Annotated[bool | None, typer.Option(
        "--confirm/--no-confirm", help="Score the chosen configs on the test set (the default, "
        "except for an ablation or a selection, whose searched study's report confirms its "
        "bests), or rank on validation only: train nothing, score nothing on the test set "
        "(while the study still runs, say).", show_default=False)] = None,
    confirm_seeds: Annotated[int, typer.Option(
        help="Seeds to re-train each confirmed config with on each training subset.")] = 3,
    confirm_splits: Annotated[int | None, typer.Option(
        help="Other training subsets to confirm on besides the study's own (default 3; none "
        "where the study trains on every image).")] = None,
    cell: Annotated[str | None, typer.Option(
        help="With --format yaml: the best config of this cell instead of the best overall.")
    ] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, help="Local worker processes for the confirmation runs (default: one per "
        "CPU).")] = None,
) -> None:
    """Best-config report: validation ranking, then confirmation on the held-out test set."""
    from rnnlab.files import REPORT_FORMATS, check_format

    check_format(fmt, REPORT_FORMATS, "report format")
    _known(storage, study)
    from rnnlab.reports.build import report as build_report

    def train(*args) -> None:
        # imported once runs are to train: training's imports (torch) cost seconds
        from rnnlab.engines.confirm import parallel

        parallel(workers)(*args)

    text, path = build_report(_storage(storage), study, fmt, out, confirm=confirm,
                              confirm_seeds=confirm_seeds,
                              confirm_splits=confirm_splits, cell=cell,
                              on_progress=lambda line: err.print(line, soft_wrap=True,
                                                                 highlight=False),
                              train=train)
    if text is not None:
        typer.echo(text, nl=False)
    else:
        err.print(f"wrote {path}", soft_wrap=True, highlight=False)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port for the MLflow UI on 127.0.0.1.")] = 5000,
    storage: StorageOpt = None,
    study: Annotated[str | None, typer.Option(
        help="Print this study's runs table only (default: every study in the storage).")] = None,
) -> None:
    """Start the MLflow UI on the store the sweeps used; print where each study's trials are."""
    if study is not None:
        _known(storage, study)
    from rnnlab.study.ui import open_ui

    def ready(base: str, links: list[tuple[str, str]], started: bool) -> None:
        typer.echo(f"MLflow UI: {base}/#/experiments" + (" (Ctrl-C to stop)" if started else
                                                          " (the tracking server)"))
        for name, url in links:
            typer.echo(f"study {name} trials: {url}")

    try:
        open_ui(_storage(storage), study, port, ready)
    except KeyboardInterrupt:
        err.print("MLflow UI stopped")


@app.command()
def keys() -> None:
    """List every config key with its type, the values it accepts and its default."""
    from rnnlab.cli.tables import keys_table
    from rnnlab.core.spec import keys as config_keys

    Console().print(keys_table(config_keys()))


app.command()(slurm)
