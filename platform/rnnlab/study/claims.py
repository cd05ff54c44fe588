"""Claims, heartbeats and failures of trials: how a study never loses one (docs/decisions.md,
"Claims, heartbeats and failures")."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from rnnlab.core.study_spec import StudySpec, planned_trials, strata_levels
from rnnlab.errors import Terminated
from rnnlab.interrupts import uninterrupted, whole
from rnnlab.retrying import StoreDown
from rnnlab.storage.adapter import (
    StudyRead,
    fail_running,
    last_heartbeat,
    stamp_heartbeat,
    start_trial,
)
from rnnlab.storage.keys import (
    ATTR_BUDGET,
    FINISHED,
    TRIAL_REASON,
    TRIAL_RESUME_RUN,
    TRIAL_RETRIES,
    TRIAL_RETRY_OF,
    TRIAL_RUN_ID,
    TRIAL_WORKER,
)
from rnnlab.storage.locks import study_lock
from rnnlab.study.ablation import fill_plan
from rnnlab.study.strata import next_stratum
from rnnlab.tracking.tracker import Tracker

log = logging.getLogger(__name__)


@whole
def fail_trial(study: optuna.Study, tracker: Tracker, trial: FrozenTrial | optuna.Trial,
               reason: str, mlflow_status: str, retries_left: int,
               run_id: str | None = None) -> bool:
    """Mark a running trial FAIL with its reason, close its run, and enqueue a retry.

    ``run_id`` is the trial's run when the trial may not carry its id yet.

    Returns:
        False when another worker had already finished the trial (nothing was changed).
    """
    frozen = fail_running(study, trial, reason)
    if frozen is None:
        return False
    _close_failed(study, tracker, frozen, reason, mlflow_status, retries_left, run_id)
    return True


def _close_failed(study: optuna.Study, tracker: Tracker, frozen: FrozenTrial, reason: str,
                  mlflow_status: str, retries_left: int, run_id: str | None = None) -> None:
    run_id = frozen.user_attrs.get(TRIAL_RUN_ID) or run_id
    if run_id:
        tracker.set_tags(run_id, {"rnnlab.trial_state": "FAIL", "rnnlab.reason": reason,
                                  "rnnlab.outcome": "failed" if mlflow_status == "FAILED"
                                  else "interrupted"})
        tracker.end_run(run_id, mlflow_status)
    retries = frozen.user_attrs.get(TRIAL_RETRIES, 0)
    if retries < retries_left:
        study.enqueue_trial(frozen.params, user_attrs={
            TRIAL_RETRY_OF: frozen.number, TRIAL_RETRIES: retries + 1,
            TRIAL_RESUME_RUN: run_id or "",
        })


def worker_name(pid: int | None = None) -> str:
    """The name a trial keeps of the worker that claimed it: ``host:pid`` (this process's
    unless ``pid``)."""
    return f"{socket.gethostname()}:{pid or os.getpid()}"


@whole
def close_killed(study: optuna.Study, tracker: Tracker, killed: Callable[[str], bool],
                 exc: KeyboardInterrupt, max_retries: int) -> int:
    """Close the trials of the workers that ``killed`` names (it is given a trial's worker
    name), killed while running them or while closing them as interrupted: failed as
    interrupted, runs KILLED, retries queued (each step not done yet).

    Returns:
        How many trials were closed.
    """
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(TRIAL_RETRY_OF) for t in trials}
    closed = 0
    for t in trials:
        if not killed(t.user_attrs.get(TRIAL_WORKER, "")):
            continue
        if t.state == TrialState.RUNNING:
            closed += fail_trial(study, tracker, t, interrupted(exc), "KILLED", max_retries)
        elif (t.state == TrialState.FAIL and t.number not in retried
              and t.user_attrs.get(TRIAL_REASON, "").startswith("interrupted")):
            _close_failed(study, tracker, t, t.user_attrs[TRIAL_REASON], "KILLED",
                          max_retries)
            closed += 1
    return closed


def reap_stale(study: optuna.Study, tracker: Tracker, spec: StudySpec,
               running: list[FrozenTrial] | None = None) -> int:
    """Fail (and retry) running trials whose heartbeat stopped longer than the grace period;
    ``running``: the study's running trials, read just now (default: read here)."""
    now, s, reaped = time.time(), spec.study, 0
    if running is None:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in running:
        beat = last_heartbeat(t)
        if now - beat > s.grace_period:
            reaped += fail_trial(study, tracker, t,
                                 f"worker lost: no heartbeat for {now - beat:.0f} s", "KILLED",
                                 s.max_retries)
    return reaped


def claim(study: optuna.Study, storage: str, spec: StudySpec, tracker: Tracker,
          name: str | None = None) -> optuna.Trial | None:
    """Ask for a trial only while finished + running trials leave room in the budget; the
    trial keeps ``name`` as its worker's (default :func:`worker_name`)."""
    with study_lock(storage, study.study_name):
        # read once: at 10,000 trials every read is a query, and a pass over all of them
        read = StudyRead(study)
        reaped = reap_stale(study, tracker, spec, read.select((TrialState.RUNNING,)))
        planned = planned_trials(spec) is not None  # a derived study runs its plan
        if planned:  # and samples nothing
            with uninterrupted():
                fill_plan(study, spec)
        if reaped or planned:  # retries or the plan's trials were enqueued
            read = StudyRead(study)
        waiting = bool(read.select((TrialState.WAITING,)))
        taken = len(read.select((*FINISHED, TrialState.RUNNING)))
        budget = study.user_attrs.get(ATTR_BUDGET, spec.study.n_trials)
        if not waiting and taken >= budget:
            return None
        stratum = None if waiting or not spec.study.strata else next_stratum(
            strata_levels(spec), budget, read)
        trial, worker = None, {TRIAL_WORKER: name or worker_name()}
        try:  # never a RUNNING trial that no worker runs
            with uninterrupted():
                if waiting:  # a retry or an ablation's arm, queued
                    trial = study.ask()
                    stamp_heartbeat(study, trial)
                    trial.set_user_attr(TRIAL_WORKER, worker[TRIAL_WORKER])
                else:  # in the share of the stratum furthest behind, if any
                    trial = start_trial(study, stratum, worker)
        except KeyboardInterrupt as exc:
            if trial is not None:
                fail_trial(study, tracker, trial, interrupted(exc), "KILLED",
                           spec.study.max_retries)
            raise
        return trial


class Heartbeat(threading.Thread):
    """Stamps a running trial every ``interval`` seconds until stopped."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial, interval: float):
        super().__init__(daemon=True, name=f"heartbeat-{trial.number}")
        self.study, self.trial, self.interval = study, trial, interval
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            try:
                stamp_heartbeat(self.study, self.trial)
            except optuna.exceptions.UpdateFinishedTrialError:
                return
            except StoreDown:  # said once, by the worker's next write, which stops it
                continue
            except Exception as exc:  # noqa: BLE001 - a storage hiccup; the next beat retries
                log.warning("heartbeat for trial %d failed: %s", self.trial.number, exc)

    def __enter__(self) -> Heartbeat:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.halt.set()
        self.join()


def interrupted(exc: KeyboardInterrupt) -> str:
    return f"interrupted ({'SIGTERM' if isinstance(exc, Terminated) else 'Ctrl-C'})"
