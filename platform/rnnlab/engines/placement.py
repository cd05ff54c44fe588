"""How many local workers a command starts, where each trains, and with how many threads.

On a CPU ``rnnlab sweep`` fills the machine: one worker per usable CPU, one thread each (fewer
workers when the spec sets ``train.threads``), never more workers than the study's budget; the
measurements behind this rule are in docs/decisions.md. ``rnnlab worker`` (one of many machines)
starts one. On GPUs both start ``per_gpu`` workers on every GPU, round-robin.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from rnnlab.core.study_spec import StudySpec


@dataclass(frozen=True)
class Placement:
    """Local worker processes, the CPU threads each trains with, and each one's device."""

    workers: int
    threads: int
    devices: tuple[str | None, ...]  # cuda:N, or None: the spec's train.device


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def place_workers(spec: StudySpec, workers: int | None, per_gpu: int = 1,
                  device: str | None = None, *, fill_cpus: bool = True,
                  cpus: int | None = None) -> Placement:
    """``workers`` local workers (None: the default, by the rule in this module's doc), each
    with ``train.threads`` threads, else the CPUs shared out between them.

    Args:
        spec: the study spec.
        workers: how many; None for the default.
        per_gpu: workers per GPU.
        device: put every worker here (``cpu``, ``cuda:N``) instead of GPUs round-robin.
        fill_cpus: the default fills this machine's CPUs (``rnnlab sweep``), else one worker.
        cpus: the CPUs to share out (default :func:`usable_cpus`).
    """
    cpus = cpus or usable_cpus()
    from rnnlab.train import auto_gpus  # imports torch

    gpus = 0 if device else auto_gpus(spec.train.device)
    if workers is None:
        if device or gpus:
            workers = per_gpu * max(1, gpus)
        elif fill_cpus:
            workers = max(1, min(cpus // (spec.train.threads or 1), spec.study.n_trials))
        else:
            workers = 1
    devices = tuple(device or (f"cuda:{(i // per_gpu) % gpus}" if gpus else None)
                    for i in range(workers))
    return Placement(workers, spec.train.threads or max(1, cpus // workers), devices)


def place_sweep(spec: StudySpec, workers: int | None, per_gpu: int = 1) -> Placement:
    """``rnnlab sweep``'s placement (:func:`place_workers`, filling the CPUs). When several
    workers may run, the fork server starts first: its imports (torch, MLflow) then run while
    this process imports torch to look for GPUs."""
    if (workers or 0) > 1 or (workers is None and usable_cpus() > 1 and spec.study.n_trials > 1):
        from rnnlab.engines.launch import start_fork_server

        start_fork_server()
    return place_workers(spec, workers, per_gpu)
