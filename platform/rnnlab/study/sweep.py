"""One study lifecycle, from a spec to a finished (or resumable) study.

What ``rnnlab sweep`` and ``rnnlab worker`` both run, on one machine or on many at once: check
the data, open the study and its MLflow run (:mod:`rnnlab.study.parent`), run workers
(:mod:`rnnlab.study.worker`; one in this process, several as processes from
:mod:`rnnlab.study.launch`), then settle the study's run. A study's budget, ``n_trials``,
counts finished trials, so any number of commands on any number of machines stop at exactly it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import optuna

from rnnlab.core import data
from rnnlab.core.study_spec import StudySpec
from rnnlab.retrying import StoreDown, impatient
from rnnlab.study.claims import close_killed, worker_name
from rnnlab.study.launch import Exits, run_workers, start_fork_server
from rnnlab.study.parent import open_study, reopen_parent, reserve_indices, settle_parent
from rnnlab.study.status import StudyStatus, study_status
from rnnlab.study.storage import ATTR_PARENT, DEFAULT_STORAGE, load_study, study_names
from rnnlab.study.worker import work, work_process
from rnnlab.tracking.tracker import Tracker
from rnnlab.train import auto_gpus

_DATA_PLACE = {"data.source", "data.dir", "data.split", "data.train_size", "data.val_size"}


@dataclass
class SweepResult(StudyStatus):
    """The study's status when this command's workers stopped, and how many trials they ran."""

    trials_run: int = 0


def check_data(spec: StudySpec) -> None:
    """Find (downloading once, if need be) and verify the study's data, and check its split,
    before any worker starts: a wrong folder, a corrupt file or a split too big ends the
    command before a study exists (when the search varies where data comes from, each trial
    checks its own).

    Raises:
        RnnlabError: the data is missing or corrupt, or the split does not fit.
    """
    if not _DATA_PLACE & set(spec.search):
        data.check(spec.data)


def local_workers(spec: StudySpec, per_gpu: int = 1) -> int:
    """Workers that fill this machine: ``per_gpu`` on every GPU (device auto), else one."""
    return per_gpu * auto_gpus(spec.train.device) or 1


def worker_devices(spec: StudySpec, workers: int, per_gpu: int = 1) -> list[str | None]:
    """Round-robin GPU placement when CUDA is present and the spec says auto; else None."""
    n = auto_gpus(spec.train.device)
    return [f"cuda:{(i // per_gpu) % n}" if n else None for i in range(workers)]


def sweep(spec: StudySpec, storage: str = DEFAULT_STORAGE, *, workers: int | None = 1,
          per_gpu: int = 1, device: str | None = None,
          on_progress: Callable[[StudyStatus], None] | None = None,
          poll_s: float = 1.0, allow_spec_change: bool = False) -> SweepResult:
    """Run (or join, or resume) a study from this machine until its budget is used.

    One worker runs in this process; several run as processes, with CPU threads divided
    between them and GPUs used round-robin (``per_gpu`` workers on each) unless ``device``
    places them all. Ctrl-C or SIGTERM reach every worker: their running trials end as
    interrupted (retried on the next run) and the interrupt is re-raised here.

    Args:
        spec: the study spec (the study is created from it when it does not exist).
        storage: the Optuna storage every machine shares (PostgreSQL for many machines).
        workers: local workers; None fills this machine (``per_gpu`` on every GPU, else one).
        per_gpu: workers per GPU.
        device: put every worker here (``cpu``, ``cuda:N``) instead of round-robin.
        on_progress: called with the study's status every ``poll_s`` seconds and at the end.
        poll_s: seconds between progress calls.
        allow_spec_change: resume a study whose spec changed keys that cannot alter results
            (:data:`~rnnlab.study.spec_change.ALLOWED`); other changes are refused regardless.

    Returns:
        The study's status when this command's workers stopped, with the trials they ran.

    Raises:
        RnnlabError: the study exists with another spec (before anything is written), the
            data, the storage or the tracking store cannot be used, or a worker stopped on a
            user error in a trial or on too many failures in a row.
        KeyboardInterrupt: interrupted (:class:`~rnnlab.errors.Terminated` for SIGTERM).
    """
    n = workers or (per_gpu if device else local_workers(spec, per_gpu))
    if n > 1:
        start_fork_server()  # its imports overlap with opening the study here
    check_data(spec)
    tracker = Tracker()  # fails fast on an unreachable tracking server, before the study exists
    try:
        study = open_study(spec, storage, tracker, allow_spec_change=allow_spec_change)
        first = reserve_indices(storage, study, n)
        devices = [device] * n if device else worker_devices(spec, n, per_gpu)
        with polling(storage, spec.study.name, on_progress, poll_s):
            if n == 1:  # work() opens and settles the study's run itself
                ran = work(spec, storage, index=first, device=devices[0],
                           allow_spec_change=allow_spec_change)
            else:
                ran = _processes(spec, storage, study, tracker, first, devices,
                                 allow_spec_change)
    except KeyboardInterrupt:  # at any moment: the study's run is not left RUNNING
        settle_interrupted(storage, spec.study.name, tracker)
        raise
    final = SweepResult(**vars(study_status(storage, spec.study.name)[0]), trials_run=ran)
    if on_progress:
        on_progress(final)
    return final


def settle_interrupted(storage: str, name: str, tracker: Tracker) -> None:
    """Settle the study's run, if the study and its run exist by now."""
    if name in study_names(storage):
        study = load_study(storage, name)
        if ATTR_PARENT in study.user_attrs:
            settle_parent(study, tracker, interrupted=True)


def _processes(spec: StudySpec, storage: str, study: optuna.Study, tracker: Tracker,
               first: int, devices: list[str | None], allow_spec_change: bool) -> int:
    """Run one worker process per device and return the trials they ran. However they end,
    the trials of workers killed on a second Ctrl-C are closed as interrupted, and the study's
    run is settled (KILLED when interrupted, unless the budget is used)."""
    threads = max(1, (os.cpu_count() or 1) // len(devices))  # CPU threads divided between them
    exits = None
    try:
        reopen_parent(study, tracker)
        exits = run_workers(work_process, [
            (spec.model_dump(mode="json"), storage, first + i, d, threads, allow_spec_change)
            for i, d in enumerate(devices)],
            [f"rnnlab-worker-{first + i}" for i in range(len(devices))])
    finally:
        if exits is not None and exits.killed:
            names = {worker_name(pid) for pid in exits.killed}
            close_killed(study, tracker, names.__contains__,
                         exits.interrupted or KeyboardInterrupt(), spec.study.max_retries)
        settle_workers(study, tracker, exits)
    exits.raise_for_exits()
    return exits.trials_run


def settle_workers(study: optuna.Study, tracker: Tracker, exits: Exits | None) -> None:
    """Settle the study's run after the worker processes (or an engine's tasks) stopped
    (``exits`` None: they never ran). After a worker stopped on an error, a store that is
    down is not waited for again: the worker's line says what stopped."""
    errors = exits is not None and bool(exits.errors)
    try:
        with impatient(errors):
            settle_parent(study, tracker, interrupted=exits is None or errors
                          or exits.interrupted is not None)
    except StoreDown:
        if not errors:
            raise


@contextlib.contextmanager
def polling(storage: str, name: str, on_progress: Callable[[StudyStatus], None] | None,
             poll_s: float) -> Iterator[None]:
    """Call ``on_progress`` with the study's status every ``poll_s`` seconds meanwhile."""
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(poll_s):
            with contextlib.suppress(StoreDown):  # the workers say it, in one line each
                on_progress(study_status(storage, name)[0])

    thread = threading.Thread(target=poll, daemon=True) if on_progress else None
    if thread:
        thread.start()
    try:
        yield
    finally:
        stop.set()

