"""How many local workers a sweep starts when not told: the fast way on this machine.

Measured with ``benchmarks/parallel_scaling.py`` on a 2-core CPU: the quickstart's small models
keep one core busy per worker and gain little from a second thread, so one worker with 2
threads took 53.6 s where two workers with 1 thread each took 24.5 s (2.19x); the quickstart
cut to 6 trials of 3 epochs took 345-387 s against 48-66 s on a machine shared with other jobs
(README). On a CPU the default is therefore one worker per CPU this process may use, one thread
each (fewer when the spec sets ``train.threads``), and never more workers than the study's
budget; on GPUs it is ``per_gpu`` workers on each GPU, as ``rnnlab worker`` places them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from rnnlab.core.study_spec import StudySpec


@dataclass(frozen=True)
class Placement:
    """Local worker processes and the CPU threads each trains with."""

    workers: int
    threads: int


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def default_placement(spec: StudySpec, per_gpu: int = 1) -> Placement:
    """The local workers that run ``spec`` fastest here, by the rule in this module's doc."""
    from rnnlab.train import auto_gpus  # imports torch

    cpus = usable_cpus()
    gpus = auto_gpus(spec.train.device)
    if gpus:
        workers = per_gpu * gpus
    else:
        workers = max(1, min(cpus // (spec.train.threads or 1), spec.study.n_trials))
    return Placement(workers, threads_per_worker(spec, workers))


def threads_per_worker(spec: StudySpec, workers: int) -> int:
    """The CPU threads each of ``workers`` trains with: the spec's ``train.threads``, else the
    CPUs divided between the workers (as the sweep divides them)."""
    return spec.train.threads or max(1, (os.cpu_count() or 1) // workers)


def place_workers(spec: StudySpec, workers: int | None, per_gpu: int = 1) -> Placement:
    """``workers`` local workers, or the default placement when None. When there may be more
    than one, the fork server starts first: its imports (torch, MLflow) then run while this
    process imports torch to look for GPUs."""
    if (workers or 0) > 1 or (workers is None and usable_cpus() > 1
                              and spec.study.n_trials > 1):
        from rnnlab.study.launch import start_fork_server

        start_fork_server()
    if workers is None:
        return default_placement(spec, per_gpu)
    return Placement(workers, threads_per_worker(spec, workers))
