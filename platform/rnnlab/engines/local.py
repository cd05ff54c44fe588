"""The local engine: a study's workers on this machine, one in this process or several as
processes (:mod:`rnnlab.engines.launch`), inside one :class:`~rnnlab.study.session.Session`.

What ``rnnlab sweep`` and ``rnnlab worker`` run, on one machine or on many at once.
"""

from __future__ import annotations

from collections.abc import Callable

from rnnlab.core.study_spec import StudySpec
from rnnlab.engines.launch import run_workers, start_fork_server
from rnnlab.engines.placement import Placement, place_workers
from rnnlab.storage.adapter import DEFAULT_STORAGE
from rnnlab.study.claims import worker_name
from rnnlab.study.session import Exits, Session, SweepResult
from rnnlab.study.status import StudyStatus
from rnnlab.study.worker import work, work_process


def sweep(spec: StudySpec, storage: str = DEFAULT_STORAGE, workers: int | Placement | None = 1,
          *, per_gpu: int = 1, device: str | None = None,
          on_progress: Callable[[StudyStatus], None] | None = None,
          poll_s: float = 1.0, allow_spec_change: bool = False) -> SweepResult:
    """Run (or join, or resume) a study from this machine until its budget is used.

    One worker runs in this process; several run as processes, each with its share of the
    CPU threads and GPUs round-robin (``per_gpu`` workers on each) unless ``device`` places
    them all. Ctrl-C or SIGTERM reach every worker: their running trials end as interrupted
    (retried on the next run) and the interrupt is re-raised here.

    Args:
        spec: the study spec (the study is created from it when it does not exist).
        storage: the Optuna storage every machine shares (PostgreSQL for many machines).
        workers: local workers, or the :class:`~rnnlab.engines.placement.Placement` a command
            chose already; None: ``per_gpu`` on every GPU, else one.
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
    place = (workers if isinstance(workers, Placement)
             else place_workers(spec, workers, per_gpu, device, fill_cpus=False))
    if place.workers > 1:
        start_fork_server()  # its imports overlap with opening the study here
    session = Session(spec, storage, allow_spec_change=allow_spec_change)
    with session.running():
        if session.done():  # a finished study starts no worker
            return session.result(0, on_progress)
        first = session.reserve(place.workers)
        with session.progress(on_progress, poll_s):
            if place.workers == 1:  # work() opens and settles the study's run itself
                ran = work(spec, storage, index=first, device=place.devices[0],
                           allow_spec_change=allow_spec_change)
            else:
                ran = _processes(session, first, place)
    return session.result(ran, on_progress)


def _processes(session: Session, first: int, place: Placement) -> int:
    """Run one worker process per device and return the trials they ran. However they end,
    the trials of workers killed on a second Ctrl-C are closed as interrupted, and the study's
    run is settled (KILLED when interrupted, unless the budget is used)."""
    spec = session.spec
    exits: Exits | None = None
    try:
        session.reopen()
        exits = run_workers(work_process, [
            (spec.model_dump(mode="json"), session.storage, first + i, d, place.threads,
             session.allow_spec_change) for i, d in enumerate(place.devices)],
            [f"rnnlab-worker-{first + i}" for i in range(place.workers)])
    finally:
        killed = {worker_name(pid) for pid in exits.killed} if exits is not None else set()
        session.settle(exits, killed.__contains__ if killed else None)
    exits.raise_for_exits()
    return exits.trials_run
