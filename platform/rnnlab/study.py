"""Optuna studies from specs: samplers, pruners, the objective, workers and resume.

A study's budget, ``n_trials``, counts finished trials (complete or pruned). Every worker claims
a trial under a per-study lock, after checking that finished + running trials leave room, so any
number of workers on any number of machines stop at exactly the budget. Each trial is an MLflow
run nested under the study's parent run, whose id is kept on the study.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from rnnlab import data
from rnnlab.errors import EXIT_USER_ERROR, RnnlabError, Terminated, install_sigterm_handler
from rnnlab.launch import start_fork_server
from rnnlab.spec import StudySpec, apply_overrides, validate
from rnnlab.storage import DEFAULT_STORAGE, load_study, study_lock, study_names
from rnnlab.tracking import Tracker
from rnnlab.worker import ATTR_BUDGET, ATTR_PARENT, ATTR_SPEC, open_study, settle_parent, work


@dataclass
class StudyStatus:
    """A study's state at a glance (what ``rnnlab status`` prints)."""

    name: str
    budget: int | None
    counts: dict[str, int]
    best_value: float | None
    best_params: dict[str, Any]
    best_trial: int | None
    metric: str | None
    direction: str
    parent_run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.counts.get("COMPLETE", 0) + self.counts.get("PRUNED", 0)


def _worker_process(spec_json: dict, storage: str, index: int, threads: int | None,
                    device: str | None, cwd: str, env: dict[str, str], errors) -> None:
    # Forked from the fork server (rnnlab.launch), which kept the folder and environment of the
    # moment it started: take the caller's (relative storage paths, MLFLOW_TRACKING_URI, ...).
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    install_sigterm_handler()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = StudySpec.model_validate(spec_json)
    if threads and spec.train.threads is None:
        spec = validate(StudySpec, apply_overrides(spec.model_dump(),
                                                   {"train.threads": threads}), "worker")
    try:
        work(spec, storage, index=index, device=device)
    except RnnlabError as exc:  # the caller says it, once, as the command's one line
        errors.put(str(exc))
        raise SystemExit(EXIT_USER_ERROR) from None
    except Terminated:
        raise SystemExit(143) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


_DATA_PLACE = {"data.source", "data.dir", "data.split", "data.train_size", "data.val_size"}


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


def worker_devices(spec: StudySpec, workers: int, per_gpu: int = 1) -> list[str | None]:
    """Round-robin GPU placement when CUDA is present and the spec says auto; else None."""
    import torch

    if spec.train.device != "auto" or not torch.cuda.is_available():
        return [None] * workers
    n = torch.cuda.device_count()
    return [f"cuda:{(i // per_gpu) % n}" for i in range(workers)]


def sweep(spec: StudySpec, storage: str = DEFAULT_STORAGE, *, workers: int = 1,
          per_gpu: int = 1, on_progress: Callable[[StudyStatus], None] | None = None,
          poll_s: float = 1.0) -> StudyStatus:
    """Run a study with ``workers`` local worker processes until its budget is used.

    CPU threads are divided between the workers; with GPUs, workers are placed round-robin.
    Ctrl-C or SIGTERM reach every worker: their running trials end as interrupted (retried on
    the next run) and the interrupt is re-raised here once all workers have stopped.

    Returns:
        The study's final :class:`StudyStatus`.

    Raises:
        RnnlabError: the data, the storage or the tracking store cannot be used, or a worker
            stopped on a user error in a trial or on too many failures in a row.
        KeyboardInterrupt: interrupted (:class:`Terminated` for SIGTERM).
    """
    start_fork_server()  # its imports overlap with opening the study here
    check_data(spec)
    tracker = Tracker()
    study = open_study(spec, storage, tracker)
    parent = study.user_attrs[ATTR_PARENT]
    tracker.client.update_run(parent, status="RUNNING")
    codes, errors, interrupted = _run_workers(spec, storage, workers, per_gpu, None,
                                              on_progress, poll_s)
    settle_parent(study, tracker, interrupted=interrupted is not None or bool(errors))
    final = study_status(storage, spec.study.name)[0]
    _raise_for_exits(codes, errors, interrupted)
    if on_progress:
        on_progress(final)
    return final


# --- Local worker processes, shared by `rnnlab sweep` and `rnnlab worker --workers N` --------

ATTR_WORKERS = "rnnlab:workers_started"


def local_workers(spec: StudySpec, per_gpu: int = 1) -> int:
    """Workers that fill this machine: ``per_gpu`` on every GPU (device auto), else one."""
    import torch

    if spec.train.device != "auto" or not torch.cuda.is_available():
        return 1
    return per_gpu * torch.cuda.device_count()


def work_local(spec: StudySpec, storage: str = DEFAULT_STORAGE, *, workers: int | None = None,
               per_gpu: int = 1, device: str | None = None,
               on_progress: Callable[[StudyStatus], None] | None = None,
               poll_s: float = 1.0) -> StudyStatus:
    """Join a study from this machine with local workers until its budget is used.

    What ``rnnlab worker`` runs, on any number of machines at once: one worker runs in this
    process, several in their own processes (placed like :func:`sweep`'s). Unlike a sweep, this
    machine does not own the study: its MLflow run is settled by every worker as it stops, so
    whichever stops last closes it.

    Args:
        spec: the study spec (the study is created from it when it does not exist).
        storage: the Optuna storage every machine shares (PostgreSQL for many machines).
        workers: local workers; default ``per_gpu`` on every GPU, or one without GPUs.
        per_gpu: workers per GPU.
        device: put every worker here (``cpu``, ``cuda:N``) instead of round-robin.
        on_progress: called with the study's status while several workers run, and at the end.
        poll_s: seconds between progress calls.

    Returns:
        The study's :class:`StudyStatus` when this machine's workers stopped; for one worker,
        ``extra["trials_run"]`` is how many trials it ran.

    Raises:
        RnnlabError: the data, the storage or the tracking server cannot be used, or a worker
            stopped on a user error in a trial or on too many failures in a row.
        KeyboardInterrupt: interrupted (:class:`Terminated` for SIGTERM).
    """
    n = workers or (per_gpu if device else local_workers(spec, per_gpu))
    if n > 1:
        start_fork_server()
    check_data(spec)
    tracker = Tracker()  # fails fast on an unreachable tracking server, before the study exists
    study = open_study(spec, storage, tracker)
    parent = study.user_attrs[ATTR_PARENT]
    if study_status(storage, spec.study.name)[0].finished < spec.study.n_trials:
        tracker.client.update_run(parent, status="RUNNING")
    ran = None
    if n == 1:  # in this process; work() settles the study's run itself
        ran = work(spec, storage, index=_reserve_indices(spec, storage, 1), device=device)
    else:
        codes, errors, interrupted = _run_workers(spec, storage, n, per_gpu, device,
                                                  on_progress, poll_s)
        settle_parent(study, tracker, interrupted=interrupted is not None or bool(errors))
        _raise_for_exits(codes, errors, interrupted)
    final = study_status(storage, spec.study.name)[0]
    if ran is not None:
        final.extra["trials_run"] = ran
    if on_progress:
        on_progress(final)
    return final


def _reserve_indices(spec: StudySpec, storage: str, n: int) -> int:
    """Number ``n`` new workers of the study, counting every command on every machine.

    A worker's number offsets its sampler's seed: two machines that both numbered their workers
    from 0 would draw the same points, and so would a resumed sweep.
    """
    with study_lock(storage, spec.study.name):
        study = load_study(storage, spec.study.name)
        first = study.user_attrs.get(ATTR_WORKERS, 0)
        study.set_user_attr(ATTR_WORKERS, first + n)
    return first


def _run_workers(spec: StudySpec, storage: str, workers: int, per_gpu: int,
                 device: str | None, on_progress, poll_s: float):
    """Start ``workers`` worker processes of an existing study and wait for them all.

    CPU threads are divided between them; GPUs are used round-robin, ``per_gpu`` workers on
    each, unless ``device`` places them all. Ctrl-C or SIGTERM is forwarded to every worker.

    Returns:
        The workers' exit codes, what those that stopped on a user error said, and the
        interrupt that stopped the wait (or None).
    """
    threads = max(1, (os.cpu_count() or 1) // workers)
    devices = [device] * workers if device else worker_devices(spec, workers, per_gpu)
    first = _reserve_indices(spec, storage, workers)
    ctx = start_fork_server()
    errors = ctx.SimpleQueue()  # what a worker that stopped on a user error said
    procs = [ctx.Process(target=_worker_process, name=f"rnnlab-worker-{first + i}",
                         args=(spec.model_dump(mode="json"), storage, first + i, threads,
                               devices[i], os.getcwd(), dict(os.environ), errors))
             for i in range(workers)]
    stop = threading.Event()
    poller = threading.Thread(target=_poll, args=(storage, spec.study.name, on_progress, stop,
                                                  poll_s), daemon=True)
    interrupted: KeyboardInterrupt | None = None
    try:
        for p in procs:
            p.start()
        poller.start()
        for p in procs:
            p.join()
    except KeyboardInterrupt as exc:  # forward to workers (SIGTERM may have reached only us)
        interrupted = exc
        sig = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, sig)
        _join_all(procs)
    finally:
        stop.set()
    said = []
    while not errors.empty():
        said.append(errors.get())
    return [p.exitcode for p in procs], said, interrupted


def _raise_for_exits(codes: list[int | None], errors: list[str],
                     interrupted: KeyboardInterrupt | None) -> None:
    if interrupted is not None or any(c in (130, 143) for c in codes):
        raise interrupted or (Terminated() if 143 in codes else KeyboardInterrupt())
    if errors:
        raise RnnlabError(errors[0])
    if any(c != 0 for c in codes):
        raise RuntimeError(f"worker processes exited with codes {codes}")


def _join_all(procs, grace_s: float = 60.0) -> None:
    """Wait for interrupted workers to close their trials (they need a moment to mark them
    interrupted). A worker still alive after ``grace_s``, or a second Ctrl-C, is killed: its
    trial is then reaped by the heartbeat check of the next run."""
    deadline = time.monotonic() + grace_s
    try:
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        pass
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()


def _poll(storage, name, on_progress, stop, poll_s) -> None:
    while not stop.wait(poll_s):
        if on_progress:
            on_progress(study_status(storage, name)[0])


def effective_params(trial: optuna.trial.FrozenTrial | None) -> dict[str, Any]:
    """The values a trial trained with (a sampled L2 below ``zero_below`` is 0, not the draw)."""
    if trial is None:
        return {}
    config = trial.user_attrs.get("config", {})
    return {k: config.get(k, v) for k, v in trial.params.items()}


def study_status(storage: str = DEFAULT_STORAGE, name: str | None = None) -> list[StudyStatus]:
    """The status of one study, or of every study in the storage.

    Raises:
        RnnlabError: the storage cannot be opened or the study does not exist.
    """
    names = [name] if name else study_names(storage)
    out = []
    for n in names:
        study = load_study(storage, n)
        trials = study.get_trials(deepcopy=False)
        counts = {st.name: sum(t.state == st for t in trials) for st in TrialState}
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        best = None
        if complete:
            pick = max if study.direction.name == "MAXIMIZE" else min
            best = pick(complete, key=lambda t: t.value)
        spec = study.user_attrs.get(ATTR_SPEC, {})
        out.append(StudyStatus(
            name=n, budget=study.user_attrs.get(ATTR_BUDGET), counts=counts,
            best_value=best.value if best else None, best_params=effective_params(best),
            best_trial=best.number if best else None,
            metric=spec.get("study", {}).get("metric"),
            direction=study.direction.name.lower(),
            parent_run_id=study.user_attrs.get(ATTR_PARENT)))
    return out
