"""A study's workers as tasks of a Ray cluster: ``rnnlab sweep SPEC --ray ADDRESS``; lost nodes and
Ctrl-C as docs/decisions.md ("Ray and Slurm") says. Ray is imported only here and in
:mod:`rnnlab.engines.ray_task` (the ``ray`` extra)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rnnlab.core.study_spec import StudySpec
from rnnlab.engines.ray_task import run_worker
from rnnlab.engines.shared import check_shared, without_secrets
from rnnlab.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, RnnlabError
from rnnlab.interrupts import kept_handlers, uninterrupted
from rnnlab.study.exits import Exits
from rnnlab.study.parent import budget_used
from rnnlab.study.session import Session, SweepResult
from rnnlab.study.status import StudyStatus
from rnnlab.tracking.server import tracking_uri

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


def check_stores(address: str, storage: str, uri: str) -> None:
    """Every node's workers write to both stores: refuse one only this machine reaches
    (:func:`~rnnlab.engines.shared.check_shared`), unless the cluster is this machine's.

    Raises:
        RnnlabError: a store that the nodes of the cluster cannot reach.
    """
    if address != LOCAL:
        check_shared(storage, uri, f"the nodes of --ray {address}", "; or use --ray local")


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
        allow_spec_change: as for :func:`rnnlab.engines.local.sweep`.

    Returns:
        The study's status when the workers stopped, with the trials they ran.

    Raises:
        RnnlabError: Ray is not installed or its cluster not reached, a store is not shared
            by every node, or anything :func:`rnnlab.engines.local.sweep` refuses.
        KeyboardInterrupt: interrupted (:class:`~rnnlab.errors.Terminated` for SIGTERM).
    """
    uri = tracking_uri()
    check_stores(address, storage, uri)
    ray = _import_ray()
    session = Session(spec, storage, allow_spec_change=allow_spec_change)
    try:
        with session.running():  # the study first: a spec it refuses starts no cluster
            if session.done():  # nor does a finished one
                return session.result(0, on_progress)
            if address == LOCAL:  # a local cluster's workers inherit the passwords
                os.environ.update(without_secrets(storage, uri)[2])
            _connect(ray, address)
            alive = sum(n["Alive"] for n in ray.nodes())
            plan = plan_workers(ray.cluster_resources(), alive, spec, workers, per_gpu, address)
            if on_start:
                on_start(plan)
            first = session.reserve(plan.workers)
            # A task's arguments are on view to every user of the cluster: no password in them.
            # A remote cluster's nodes hold their own (README, "Secrets").
            bare_storage, bare_uri, _ = without_secrets(storage, uri)
            env = {k: v for k, v in os.environ.items()
                   if k.startswith(_SHIPPED_ENV) and "PASSWORD" not in k}
            env["MLFLOW_TRACKING_URI"] = bare_uri
            cwd = os.getcwd() if address == LOCAL else None  # relative paths mean this folder
            args = (spec.model_dump(mode="json"), bare_storage, plan.cpus, env, cwd,
                    allow_spec_change)
            with session.progress(on_progress, poll_s):
                session.reopen()
                exits = _run(ray, plan, first, args, session)
    finally:
        ray.shutdown()
    exits.raise_for_exits()
    return session.result(exits.trials_run, on_progress)


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
    try:
        with kept_handlers():
            if address == LOCAL:  # its processes inherit this one's environment
                ray.init(include_dashboard=False, logging_level=logging.WARNING)
            else:
                ray.init(address=address, logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise RnnlabError(f"--ray {address}: no Ray cluster reached "
                          f"({str(exc).splitlines()[0][:160]}); start one with `ray start "
                          "--head`, or use --ray local") from None


def _run(ray: Any, plan: RayPlan, first: int, args: tuple, session: Session) -> Exits:
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
        exits = _exits(refs, said, interrupted, lost_ok=budget_used(session.study))
    finally:  # a killed task's trials are named after it: host:pid ray-task TASK_ID
        session.settle(exits, (lambda w: w.rsplit(" ", 1)[-1] in killed) if killed else None)
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
