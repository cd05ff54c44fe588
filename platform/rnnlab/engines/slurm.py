"""Slurm job arrays of rnnlab workers: ``rnnlab slurm SPEC --array N`` writes
``slurm/<study>.sbatch`` and submits it, once the study exists (docs/decisions.md, "Ray and
Slurm")."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from rnnlab.core.study_spec import StudySpec, load_study_spec
from rnnlab.engines.shared import check_shared, without_secrets
from rnnlab.engines.slurm_script import (
    FOLDER,
    SlurmOptions,
    array_size,
    batch_script,
    loopback_notes,
)
from rnnlab.errors import RnnlabError, mask_url
from rnnlab.files import atomic_write
from rnnlab.storage.adapter import DEFAULT_STORAGE
from rnnlab.study.parent import budget_used, finished_count, open_study, settle_parent
from rnnlab.tracking.tracker import Tracker

SBATCH_TIMEOUT_S = 120


@dataclass(frozen=True)
class Submission:
    """A written (and, unless a dry run, submitted) array job.

    Attributes:
        script: the batch script's path.
        text: the script (it names no password).
        study: the study's name.
        tasks: tasks in the array.
        storage: the storage URL, masked.
        job_id: Slurm's job id; None for a dry run.
        notes: things to know, one line each (a store on this machine's loopback address).
    """

    script: Path
    text: str
    study: str
    tasks: int
    storage: str
    job_id: str | None = None
    notes: list[str] = field(default_factory=list)


def submit(spec_path: Path, storage: str | None, opts: SlurmOptions,
           overrides: list[str] | None = None, *, dry_run: bool = False,
           allow_spec_change: bool = False) -> Submission:
    """Write the study's array job to ``slurm/<study>.sbatch`` and submit it with ``sbatch``.

    Args:
        spec_path: the study spec.
        storage: the Optuna storage every task shares (``--storage``; None is refused: the
            default journal is this machine's).
        opts: what to ask Slurm for.
        overrides: ``section.key=value`` overrides, for this check and for every worker.
        dry_run: write the script, reach no store and submit nothing.
        allow_spec_change: let a resumed study take a spec that changed only keys that cannot
            alter results (here and in every worker).

    Returns:
        The script written, and Slurm's job id unless a dry run.

    Raises:
        RnnlabError: a store that compute nodes cannot reach, a bad spec or ``--array``, no
            sbatch here, a spec the study cannot resume with, a study whose budget is used,
            or a job that sbatch refused.
    """
    tasks, _ = array_size(opts.array)
    tracking = os.environ.get("MLFLOW_TRACKING_URI")
    storage = storage or DEFAULT_STORAGE
    check_shared(storage, tracking, "compute nodes")
    overrides = list(overrides or [])
    spec = load_study_spec(spec_path, overrides)
    # the script and the tasks' command lines name no password: the tasks inherit it from
    # sbatch's environment
    bare_storage, bare_tracking, secrets = without_secrets(storage, tracking)
    text = batch_script(spec_path, spec, bare_storage, bare_tracking, opts, overrides,
                        allow_spec_change=allow_spec_change)
    if not dry_run:
        find_sbatch()  # before the study is made: nothing to do without it
        _open(spec, storage, allow_spec_change)
    script = write_script(text, spec.study.name)
    job_id = None if dry_run else sbatch(script, secrets)
    return Submission(script, text, spec.study.name, tasks, mask_url(storage), job_id,
                      loopback_notes(storage, tracking))


def _open(spec: StudySpec, storage: str, allow_spec_change: bool) -> None:
    """Create the study, or check that it resumes with this spec; refuse a used budget."""
    tracker = Tracker()
    study = open_study(spec, storage, tracker, allow_spec_change=allow_spec_change)
    # Until a task starts, the study's run is not RUNNING (KILLED: resumable); the first
    # worker marks it running again.
    settle_parent(study, tracker)
    if budget_used(study):
        raise RnnlabError(
            f"study {spec.study.name!r} has {finished_count(study)} trials finished already, "
            "its whole budget; nothing to submit (raise its budget with --set study.n_trials=N)")


def write_script(text: str, name: str) -> Path:
    """Write ``slurm/<name>.sbatch`` whole, readable by its owner alone (mode 0600)."""
    FOLDER.mkdir(exist_ok=True)
    return atomic_write(FOLDER / f"{name}.sbatch", lambda tmp: Path(tmp).write_text(text),
                        mode=0o600)


def sbatch(script: Path, secrets: dict[str, str] | None = None) -> str:
    """Submit ``script`` with ``sbatch --parsable``, ``secrets`` added to the environment its
    tasks inherit; returns the job id.

    Raises:
        RnnlabError: sbatch is not installed here, or refused the job.
    """
    exe = find_sbatch()
    try:
        done = subprocess.run([exe, "--parsable", str(script)], capture_output=True, text=True,
                              timeout=SBATCH_TIMEOUT_S, env={**os.environ, **(secrets or {})})
    except subprocess.TimeoutExpired:
        raise RnnlabError(f"sbatch gave no answer within {SBATCH_TIMEOUT_S} s (is slurmctld "
                          f"up? try `sinfo`); the script is {script}") from None
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip() or "no message").splitlines()[-1]
        said = said.removeprefix("sbatch: ").removeprefix("error: ")
        raise RnnlabError(f"sbatch refused {script}: {said}")
    return done.stdout.strip().split(";")[0]


def find_sbatch() -> str:
    """The ``sbatch`` on PATH.

    Raises:
        RnnlabError: there is none.
    """
    exe = shutil.which("sbatch")
    if exe is None:
        raise RnnlabError("sbatch not found: run `rnnlab slurm` on the cluster's login node, "
                          "or pass --dry-run to only write and print the script")
    return exe
