"""A study's workers as tasks of a Ray cluster: ``rnnlab sweep SPEC --ray ADDRESS``.

Ray places each worker (rnnlab's own, :func:`rnnlab.study.worker.work`, the one ``rnnlab
worker`` runs) on a node and on a share of a GPU, and sets ``CUDA_VISIBLE_DEVICES``: the worker
trains on ``train.device`` auto, which is then that GPU (or the CPU, where torch sees none). The
study's storage does the rest, as for ``rnnlab worker`` on many machines: budget claims,
heartbeats, retries from checkpoints (:mod:`rnnlab.study.claims`). So every node must reach the
storage and the tracking store (:func:`check_shared`).

- A node lost mid-trial: Ray runs its task again on a node that is left (``NODE_RETRIES``),
  and the trial, silent, is failed after ``study.grace_period`` and resumed from its last
  checkpoint by the next worker that claims (any of them).
- Ctrl-C or SIGTERM: every task is cancelled (a KeyboardInterrupt in it: its trial closes as
  interrupted, retry queued); one still running after ``CANCEL_GRACE_S`` (or at a second
  Ctrl-C) is killed, and its trials are closed for it, as local worker processes' are.

Ray is imported only here and in the tasks (:mod:`rnnlab.study.ray_task`): the ``ray`` extra.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnlab.core.study_spec import StudySpec
from rnnlab.errors import EXIT_USER_ERROR, RnnlabError, mask_url
from rnnlab.interrupts import uninterrupted
from rnnlab.study.claims import close_killed
from rnnlab.study.launch import EXIT_INTERRUPTED, Exits
from rnnlab.study.parent import budget_used, open_study, reopen_parent, reserve_indices
from rnnlab.study.ray_task import run_worker
from rnnlab.study.status import StudyStatus, study_status
from rnnlab.study.storage import is_rdb
from rnnlab.study.sweep import SweepResult, check_data, polling, settle_interrupted, settle_workers
from rnnlab.tracking.server import is_server, tracking_uri
from rnnlab.tracking.tracker import Tracker

LOCAL = "local"  # a throwaway cluster on this machine, started by ray.init()
NODE_RETRIES = 3  # runs of a task again after its node (or worker process) was lost
CANCEL_GRACE_S = 60.0  # for cancelled tasks to close their trials, before they are killed
_SHIPPED_ENV = ("MLFLOW_", "RNNLAB_")  # the environment a task works in, from this command's
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayPlan:
    """The Ray workers of a sweep: how many, and what each asks Ray for."""

    address: str
    nodes: int
    workers: int
    gpus: float  # a share of one GPU per worker (1 / trials_per_gpu); 0 on CPUs
    cpus: int  # CPUs per worker, and the threads it trains with
    defaulted: bool  # workers not given: as many as the cluster holds


def check_shared(address: str, storage: str, uri: str) -> None:
    """Refuse, in one line, a store that only this machine can reach, unless the cluster is a
    local one: every node's workers write to the study's storage and tracking store.

    Raises:
        RnnlabError: the storage is a relative journal path or SQLite, or the tracking store
            is SQLite or a relative file store.
    """
    if address == LOCAL:
        return
    fix = "every node must reach it, or use --ray local"
    local = not is_rdb(storage) and not Path(storage).expanduser().is_absolute()
    if storage.startswith("sqlite") or local:
        raise RnnlabError(
            f"--ray {address}: the Optuna storage {mask_url(storage)} is a file on this "
            "machine; use --storage postgresql://... (or a journal file's absolute path on a "
            f"filesystem every node mounts): {fix}")
    scheme = re.match(r"^([a-z][a-z0-9+.-]*):", uri)
    if is_server(uri) or scheme and scheme[1] not in ("sqlite", "file"):
        return
    path = uri.removeprefix("file://").removeprefix("file:")
    if uri.startswith("sqlite") or not Path(path).expanduser().is_absolute():
        raise RnnlabError(
            f"--ray {address}: the MLflow tracking store {mask_url(uri)} is a file on this "
            "machine; set MLFLOW_TRACKING_URI to an MLflow server (http://...) or a file: "
            f"store's absolute path on a filesystem every node mounts: {fix}")


def plan_workers(resources: dict[str, float], nodes: int, spec: StudySpec,
                 workers: int | None, per_gpu: int, address: str) -> RayPlan:
    """``workers`` Ray workers, or as many as the cluster holds: ``per_gpu`` on each of its
    GPUs (unless the spec trains on the CPU), else one per ``train.threads`` CPUs (1 unless
    set), at most the study's budget."""
    cpus = spec.train.threads or 1
    gpus = 0 if spec.train.device == "cpu" else int(resources.get("GPU", 0))
    fit = gpus * per_gpu if gpus else int(resources.get("CPU", 0)) // cpus
    n = workers or max(1, min(fit, spec.study.n_trials))
    return RayPlan(address, nodes, n, 1 / per_gpu if gpus else 0.0, cpus, workers is None)


def ray_sweep(spec: StudySpec, storage: str, address: str, *, workers: int | None = None,
              per_gpu: int = 1, on_start: Callable[[RayPlan], None] | None = None,
              on_progress: Callable[[StudyStatus], None] | None = None, poll_s: float = 1.0,
              allow_spec_change: bool = False) -> SweepResult:
    """Run (or join, or resume) a study with its workers as tasks of the Ray cluster at
    ``address`` until its budget is used.

    Args:
        spec: the study spec (the study is created from it when it does not exist).
        storage: the Optuna storage every node shares.
        address: ``auto`` (the cluster this machine is in), ``local`` (a throwaway one here)
            or the head's ``host:port`` (any address ``ray.init`` takes).
        workers: Ray workers; None: as many as the cluster holds (:func:`plan_workers`).
        per_gpu: workers per GPU, each asking Ray for 1/per_gpu of one.
        on_start: called with the plan once the cluster is reached.
        on_progress: called with the study's status every ``poll_s`` seconds and at the end.
        poll_s: seconds between progress calls.
        allow_spec_change: as for :func:`rnnlab.study.sweep.sweep`.

    Returns:
        The study's status when the workers stopped, with the trials they ran.

    Raises:
        RnnlabError: Ray is not installed or its cluster not reached, a store is not shared
            by every node, or anything :func:`rnnlab.study.sweep.sweep` refuses.
        KeyboardInterrupt: interrupted (:class:`~rnnlab.errors.Terminated` for SIGTERM).
    """
    uri = tracking_uri()
    check_shared(address, storage, uri)
    ray = _import_ray()
    check_data(spec)
    tracker = Tracker()  # fails fast on an unreachable tracking server, before the study exists
    try:  # the study first: a spec it refuses starts no cluster
        study = open_study(spec, storage, tracker, allow_spec_change=allow_spec_change)
        _connect(ray, address)
        alive = sum(n["Alive"] for n in ray.nodes())
        plan = plan_workers(ray.cluster_resources(), alive, spec, workers, per_gpu, address)
        if on_start:
            on_start(plan)
        first = reserve_indices(storage, study, plan.workers)
        env = {k: v for k, v in os.environ.items() if k.startswith(_SHIPPED_ENV)}
        env["MLFLOW_TRACKING_URI"] = uri
        cwd = os.getcwd() if address == LOCAL else None  # relative paths mean this folder
        args = (spec.model_dump(mode="json"), storage, plan.cpus, env, cwd, allow_spec_change)
        with polling(storage, spec.study.name, on_progress, poll_s):
            reopen_parent(study, tracker)
            exits = _run(ray, plan, first, args, study, tracker, spec.study.max_retries)
    except KeyboardInterrupt:
        settle_interrupted(storage, spec.study.name, tracker)
        raise
    finally:
        ray.shutdown()
    exits.raise_for_exits()
    final = SweepResult(**vars(study_status(storage, spec.study.name)[0]),
                        trials_run=exits.trials_run)
    if on_progress:
        on_progress(final)
    return final


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RnnlabError("--ray needs Ray, which is not installed: pip install "
                          "'rnnlab[ray]' (on every node of the cluster too)") from None
    return ray


def _connect(ray: Any, address: str) -> None:
    """Join the cluster (or start a local one). Ray's own SIGTERM handler (a stack dump,
    then death) is replaced by the one this process had, so SIGTERM cancels as Ctrl-C does."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if address == LOCAL:
            ray.init(include_dashboard=False, logging_level=logging.WARNING)
        else:
            ray.init(address=address, logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise RnnlabError(f"--ray {address}: no Ray cluster reached "
                          f"({str(exc).splitlines()[0][:160]}); start one with `ray start "
                          "--head`, or use --ray local") from None
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in handlers.items():
                if handler is not None:
                    signal.signal(sig, handler)


def _run(ray: Any, plan: RayPlan, first: int, args: tuple, study: Any, tracker: Tracker,
         max_retries: int) -> Exits:
    """Run one task per worker and wait for them; Ctrl-C cancels them (see the module's
    doc). However they end, the study's run is settled."""
    remote = ray.remote(run_worker)
    with uninterrupted():  # every task started is one a Ctrl-C cancels
        refs = [remote.options(num_cpus=plan.cpus, num_gpus=plan.gpus,
                               max_retries=NODE_RETRIES, retry_exceptions=False,
                               name=f"rnnlab-worker-{first + i}")
                .remote(first + i, *args) for i in range(plan.workers)]
    said: dict[Any, tuple[str, Any]] = {}
    interrupted, killed = None, set()
    try:
        _wait(ray, refs, said, deadline=None)
    except KeyboardInterrupt as exc:
        interrupted = exc
        killed = _cancel(ray, refs, said)
    exits = None
    try:
        if killed:
            close_killed(study, tracker, lambda w: w.rsplit(" ", 1)[-1] in killed,
                         interrupted, max_retries)
        exits = _exits(refs, said, interrupted, lost_ok=budget_used(study))
    finally:
        settle_workers(study, tracker, exits)
    return exits


def _wait(ray: Any, refs: list, said: dict, deadline: float | None) -> None:
    """Collect what each task said as it ends, until all have or ``deadline`` passes."""
    pending = [r for r in refs if r not in said]
    while pending and (deadline is None or time.monotonic() < deadline):
        # Not a blocking ray.wait: it turns any signal into a plain KeyboardInterrupt, and
        # SIGTERM must stay Terminated.
        done, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
        for ref in done:
            said[ref] = _outcome(ray, ref)
        if pending:
            time.sleep(0.25)


def _outcome(ray: Any, ref: Any) -> tuple[str, Any]:
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return "interrupted", 0
    except ray.exceptions.RayTaskError as exc:  # a bug: its traceback, from the node
        log.error("rnnlab: a Ray worker crashed: %s", exc)
        return "crashed", str(exc)
    except ray.exceptions.RayError as exc:  # its node or process lost, NODE_RETRIES times
        log.warning("rnnlab: a Ray worker was lost: %s", str(exc).splitlines()[0])
        return "lost", str(exc)


def _cancel(ray: Any, refs: list, said: dict) -> set[str]:
    """Cancel the tasks still running, wait for them to close their trials, kill those that
    do not within the grace (or at a second Ctrl-C). Returns the killed tasks' ids."""
    pending = [r for r in refs if r not in said]
    with uninterrupted():
        for ref in pending:
            ray.cancel(ref)
    try:
        _wait(ray, refs, said, deadline=time.monotonic() + CANCEL_GRACE_S)
    except KeyboardInterrupt:
        pass
    left = [r for r in refs if r not in said]
    with uninterrupted():
        for ref in left:
            ray.cancel(ref, force=True)
            said[ref] = ("interrupted", 0)
    return {ref.task_id().hex() for ref in left}


def _exits(refs: list, said: dict, interrupted: KeyboardInterrupt | None,
           lost_ok: bool) -> Exits:
    code = {"ran": 0, "error": EXIT_USER_ERROR, "interrupted": EXIT_INTERRUPTED,
            "crashed": 1, "lost": 0 if lost_ok else 1}
    outcomes = [said[r] for r in refs]
    return Exits([code[kind] for kind, _ in outcomes],
                 [m for kind, m in outcomes if kind == "error"],
                 sum(m for kind, m in outcomes if kind == "ran"), interrupted)
