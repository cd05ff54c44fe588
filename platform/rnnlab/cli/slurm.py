"""``rnnlab slurm``: a study's workers as a Slurm job array (registered on the app in app.py)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from rnnlab.cli.options import AllowChangeOpt, DataDirOpt, SetOpt, StorageOpt, with_data_dir


def slurm(
    spec: Annotated[Path, typer.Argument(help="Study spec YAML.")],
    array: Annotated[str, typer.Option(
        help="Tasks in the job array, each an `rnnlab worker`: N, or N%M to run at most M at "
        "once.")],
    gpus_per_task: Annotated[int, typer.Option(
        min=0, help="GPUs per task (--gres=gpu:G); Slurm sets CUDA_VISIBLE_DEVICES.")] = 0,
    trials_per_gpu: Annotated[int, typer.Option(
        min=1, help="Worker processes per GPU in each task.")] = 1,
    partition: Annotated[str | None, typer.Option(help="Slurm partition.")] = None,
    time: Annotated[str | None, typer.Option(
        help="Time limit per task, in Slurm's format (e.g. 4:00:00).")] = None,
    account: Annotated[str | None, typer.Option(help="Slurm account to charge.")] = None,
    extra: Annotated[list[str] | None, typer.Option(
        help="A further '#SBATCH ...' line (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Write and print the script; submit nothing, reach no store.")] = False,
    storage: StorageOpt = None,
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    allow_spec_change: AllowChangeOpt = False,
) -> None:
    """Run a study's workers as a Slurm job array: write slurm/<study>.sbatch and sbatch it.

    Every task runs `rnnlab worker` on the shared --storage (an absolute path on a shared
    filesystem, or PostgreSQL) and MLFLOW_TRACKING_URI; together they finish exactly n_trials.
    Tasks on a failed or preempted node are requeued and their trials resumed.
    """
    from rnnlab.engines.slurm import submit
    from rnnlab.engines.slurm_script import SlurmOptions

    opts = SlurmOptions(array, gpus_per_task, trials_per_gpu, partition, time, account,
                        tuple(extra or ()))
    done = submit(spec, storage, opts, with_data_dir(set_, data_dir), dry_run=dry_run,
                  allow_spec_change=allow_spec_change)
    for note in done.notes:
        typer.echo(f"note: {note}", err=True)
    if done.job_id is None:
        typer.echo(done.text, nl=False)
        typer.echo(f"wrote {done.script} (dry run: nothing submitted; `sbatch {done.script}` "
                   "submits it)", err=True)
        return
    job, name = done.job_id, done.study
    typer.echo(f"submitted job {job}: {done.tasks} task(s) of `rnnlab worker` for study {name} "
               f"({done.script})\n"
               f"watch: squeue -j {job}\n"
               f"       rnnlab status {name} --storage {shlex.quote(done.storage)}\n"
               f"       tail -f {done.script.parent}/{name}-{job}_*.out\n"
               f"stop:  scancel {job} (the study stays resumable: sbatch {done.script} "
               "resubmits it)")
