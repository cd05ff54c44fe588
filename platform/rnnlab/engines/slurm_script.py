"""The batch script of a Slurm array of rnnlab workers, and the checks that come before it.

Compute nodes must reach both stores (:mod:`rnnlab.engines.shared` refuses, before anything is
written, one that only this machine reaches). The script
runs ``rnnlab worker`` in every task of the array, with this machine's interpreter, working
folder and store URLs; Slurm sets ``CUDA_VISIBLE_DEVICES`` per task from ``--gres=gpu:G``, and
``--requeue`` runs a task again when its node fails or is preempted.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from rnnlab.core.study_spec import StudySpec
from rnnlab.errors import RnnlabError, mask_url, split_password
from rnnlab.storage.adapter import is_rdb

FOLDER = Path("slurm")
_ARRAY = re.compile(r"^(\d+)(?:%(\d+))?$")
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_CARRIED = ("PYTHONPATH", "RNNLAB_DATA_DIR", "RNNLAB_CACHE_DIR")  # what the worker reads too


@dataclass(frozen=True)
class SlurmOptions:
    """What the array job asks Slurm for.

    Attributes:
        array: tasks in the array: ``"N"``, or ``"N%M"`` to run at most M at once.
        gpus_per_task: GPUs per task (``--gres=gpu:G``); 0 asks for none.
        trials_per_gpu: worker processes each task runs on every GPU it gets.
        partition: ``--partition``, when given.
        time: ``--time`` (Slurm's formats, e.g. ``4:00:00``), when given.
        account: ``--account``, when given.
        extra: further ``#SBATCH`` lines, as given.
    """

    array: str
    gpus_per_task: int = 0
    trials_per_gpu: int = 1
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    extra: tuple[str, ...] = ()


def array_size(array: str) -> tuple[int, int | None]:
    """``"N"`` or ``"N%M"`` as (N, M or None).

    Raises:
        RnnlabError: anything else, or N or M below 1.
    """
    found = _ARRAY.match(array.strip())
    size, limit = (int(found[1]), found[2] and int(found[2])) if found else (0, None)
    if size < 1 or limit == 0:
        raise RnnlabError(f"--array {array!r}: give the number of tasks, e.g. --array 4 (or "
                          "--array 4%2 to run at most 2 at once)")
    return size, limit or None


def _one_line(name: str, value: str | None) -> str | None:
    if value is not None and ("\n" in value or "\r" in value):
        raise RnnlabError(f"--{name} {value!r} spans lines; give one value (--extra takes "
                          "further #SBATCH lines, one per --extra)")
    return value


def extra_lines(extra: tuple[str, ...]) -> list[str]:
    """``--extra`` values as ``#SBATCH`` lines (a bare ``--mem=4G`` gets the prefix).

    Raises:
        RnnlabError: a line that is neither an ``#SBATCH`` line nor an sbatch option.
    """
    lines = []
    for given in extra:
        for line in filter(None, (part.strip() for part in given.splitlines())):
            if line.startswith("-"):
                line = f"#SBATCH {line}"
            if not line.startswith("#SBATCH "):
                raise RnnlabError(f"--extra {line!r}: give an #SBATCH line, e.g. "
                                  "--extra '#SBATCH --mem=8G'")
            lines.append(line)
    return lines


def batch_script(spec_path: Path, spec: StudySpec, storage: str, tracking: str,
                 opts: SlurmOptions, overrides: list[str], *, allow_spec_change: bool = False,
                 workdir: Path | None = None) -> str:
    """The array job's batch script: every task runs ``rnnlab worker`` on the shared storage.

    Args:
        spec_path: the study spec (the worker reads it on the compute node).
        spec: the spec, validated.
        storage: the Optuna storage every task shares.
        tracking: the MLflow store every task writes to (exported as MLFLOW_TRACKING_URI).
        opts: what to ask Slurm for.
        overrides: ``section.key=value`` overrides, passed on to the worker as ``--set``.
        allow_spec_change: passed on to the worker.
        workdir: the tasks' working folder (default: this one).

    Raises:
        RnnlabError: a bad ``--array``, ``--extra`` line or multi-line option.
    """
    size, limit = array_size(opts.array)
    workdir = (workdir or Path.cwd()).absolute()
    name = spec.study.name
    sbatch = [f"--job-name=rnnlab-{name}", f"--array=0-{size - 1}" + (f"%{limit}" if limit
                                                                       else ""),
              f"--output={workdir / FOLDER / name}-%A_%a.out", f"--chdir={workdir}",
              "--requeue",  # a task on a node that fails or is preempted runs again...
              "--open-mode=append"]  # ...after what its first run said
    if opts.gpus_per_task:
        sbatch.append(f"--gres=gpu:{opts.gpus_per_task}")
    for key in ("partition", "time", "account"):
        if (value := _one_line(key, getattr(opts, key))) is not None:
            sbatch.append(f"--{key}={value}")
    worker = [sys.executable, "-m", "rnnlab", "worker", str(spec_path.absolute()),
              "--storage", storage, "--trials-per-gpu", str(opts.trials_per_gpu)]
    for override in overrides:
        worker += ["--set", override]
    if allow_spec_change:
        worker.append("--allow-spec-change")
    env = {"MLFLOW_TRACKING_URI": tracking} | {k: os.environ[k] for k in _CARRIED
                                               if os.environ.get(k)}
    return "\n".join([
        "#!/bin/bash",
        f"# rnnlab workers for study {name}, written by `rnnlab slurm`; resubmit (the study "
        f"resumes) with: sbatch {FOLDER / name}.sbatch",
        *(f"#SBATCH {line}" for line in sbatch), *extra_lines(opts.extra),
        "set -eu",
        *(f"export {k}={shlex.quote(v)}" for k, v in env.items()),
        'echo "rnnlab task ${SLURM_ARRAY_JOB_ID:-}_${SLURM_ARRAY_TASK_ID:-} on $(hostname)'
        ' (restart ${SLURM_RESTART_COUNT:-0}): CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-}"',
        "# exec: Slurm's SIGTERM (preemption, time limit) reaches the worker, whose running",
        "# trials then end as interrupted and are retried from their checkpoints",
        "exec " + shlex.join(worker), ""])


def loopback_notes(storage: str, tracking: str) -> list[str]:
    """One line for each store on this machine's loopback address: only tasks that Slurm
    places on this machine reach it."""
    return [f"{what} {mask_url(url)} is on this machine's loopback address: only tasks on this "
            "machine reach it" for what, url in (("storage", storage), ("MLflow store", tracking))
            if is_rdb(url) and urlparse(split_password(url)[0]).hostname in _LOOPBACK]
