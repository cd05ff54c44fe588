"""The command line: parse, call one library function, render. No logic lives here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from rnnlab.errors import EXIT_USER_ERROR, RnnlabError


class _Group(TyperGroup):
    """Catches the one domain error once: one line on stderr, exit code 2, no traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RnnlabError as exc:
            typer.echo(f"rnnlab: error: {exc}", err=True)
            raise typer.Exit(EXIT_USER_ERROR) from None


app = typer.Typer(cls=_Group, add_completion=False, pretty_exceptions_enable=False,
                  no_args_is_help=True, help="Hyperparameter experiments for RNNs on MNIST.")
err = Console(stderr=True)

SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a config key: section.key=value (repeatable).")]
DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="Folder with the four MNIST IDX files (else $RNNLAB_DATA_DIR).")]


def _with_data_dir(overrides: list[str] | None, data_dir: Path | None) -> list[str]:
    return [*(overrides or []), *([f"data.dir={data_dir}"] if data_dir else [])]


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Run config YAML (a study spec works too).")],
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    no_track: Annotated[bool, typer.Option("--no-track", help="Do not log to MLflow.")] = False,
) -> None:
    """Train one config and track it as an MLflow run."""
    from rnnlab.render import epoch_progress, train_summary
    from rnnlab.runs import train_run
    from rnnlab.spec import load_config

    cfg = load_config(config, _with_data_dir(set_, data_dir))
    with epoch_progress(err, cfg.train.epochs) as progress:
        outcome = train_run(cfg, track=not no_track, callbacks=[progress])
    summary = train_summary(outcome)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        Console().print(_summary_table(summary))
    if outcome.result.status == "diverged":
        raise typer.Exit(1)


def _summary_table(summary: dict) -> Table:
    table = Table(title="rnnlab train", show_header=False)
    for key, value in summary.items():
        if key != "history":
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


StorageOpt = Annotated[str | None, typer.Option(
    "--storage", help="Optuna storage: a journal file path or an RDB URL (default rnnlab.journal).")]


def _storage(storage: str | None) -> str:
    from rnnlab.storage import DEFAULT_STORAGE

    return storage or DEFAULT_STORAGE


@app.command()
def sweep(
    spec: Annotated[Path, typer.Argument(help="Study spec YAML (see studies/).")],
    n_trials: Annotated[int | None, typer.Option(help="Total finished trials wanted.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Local worker processes.")] = 1,
    trials_per_gpu: Annotated[int, typer.Option(min=1, help="Workers per GPU.")] = 1,
    storage: StorageOpt = None,
    timeout: Annotated[float | None, typer.Option(help="Stop starting trials after S s.")] = None,
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Run (or resume) an Optuna study: every trial an MLflow run under the study's run."""
    from rnnlab.render import StudyProgress, status_table
    from rnnlab.spec import load_study_spec
    from rnnlab.study import sweep as run_sweep

    study_spec = load_study_spec(spec, _with_data_dir(set_, data_dir), n_trials=n_trials,
                                 timeout=timeout)
    with StudyProgress(err) as progress:
        final = run_sweep(study_spec, _storage(storage), workers=workers,
                          per_gpu=trials_per_gpu, on_progress=progress)
    Console().print(status_table([final]))


@app.command()
def worker(
    spec: Annotated[Path, typer.Argument(help="Study spec YAML.")],
    storage: StorageOpt = None,
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    device: Annotated[str | None, typer.Option(help="Place this worker: cpu, cuda:N.")] = None,
) -> None:
    """Join a study (creating it if needed) and run trials until its budget is used."""
    from rnnlab.spec import load_study_spec
    from rnnlab.study import work

    done = work(load_study_spec(spec, _with_data_dir(set_, data_dir)), _storage(storage),
                device=device)
    err.print(f"worker ran {done} trial(s)")


@app.command()
def status(
    study: Annotated[str | None, typer.Argument(help="Study name (default: every study).")] = None,
    storage: StorageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts per trial state, best value and best params of the studies in a storage."""
    from dataclasses import asdict

    from rnnlab.render import status_table
    from rnnlab.study import study_status

    statuses = study_status(_storage(storage), study)
    if as_json:
        typer.echo(json.dumps([asdict(s) for s in statuses], indent=1))
    else:
        Console().print(status_table(statuses))


@app.command()
def trials(
    study: Annotated[str, typer.Argument(help="Study name.")],
    fmt: Annotated[str, typer.Option("--format", help="csv, parquet or json.")] = "csv",
    out: Annotated[Path | None, typer.Option(help="Write to this file (else stdout).")] = None,
    storage: StorageOpt = None,
) -> None:
    """Export a study's trials as a table: params and values in columns."""
    from rnnlab.results import trials_frame, write_frame

    text = write_frame(trials_frame(_storage(storage), study), fmt, out)
    if text is not None:
        typer.echo(text, nl=False)


@app.command()
def keys() -> None:
    """List every config key with its default value."""
    from rnnlab.spec import RunConfig, flatten

    for key, value in flatten(RunConfig()).items():
        typer.echo(f"{key} = {value}")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="rnnlab")


if __name__ == "__main__":
    main()
    sys.exit(0)
