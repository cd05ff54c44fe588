"""One worker of a study: claims trials within the budget, runs them, and never loses one.

- Budget: a trial is claimed under the study's lock only while finished (complete or pruned)
  plus running trials leave room, so any number of workers stop at exactly ``n_trials``.
- Heartbeats: a running trial stamps the time every ``study.heartbeat_interval`` seconds. Any
  worker that finds a running trial silent for ``study.grace_period`` seconds (its worker was
  SIGKILLed or its machine lost) fails it, closes its MLflow run as KILLED, and enqueues a retry
  (up to ``study.max_retries``) that resumes from the trial's last checkpoint.
- Interrupts: Ctrl-C or SIGTERM fail the running trial as interrupted, close its run KILLED and
  enqueue its retry, so running the same command again continues where it stopped.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from rnnlab.data import SplitsCache
from rnnlab.errors import RnnlabError, Terminated
from rnnlab.spec import StudySpec, flatten
from rnnlab.storage import mask_url, open_storage, study_lock
from rnnlab.study_parts import make_pruner, make_sampler, sample_config
from rnnlab.tracking import Tracker
from rnnlab.train import Checkpoint, fit, resolve_device

ATTR_PARENT = "mlflow_parent_run_id"
ATTR_EXPERIMENT = "mlflow_experiment"
ATTR_BUDGET = "n_trials"
ATTR_SPEC = "spec"
HEARTBEAT = "rnnlab:heartbeat"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
WAIT_POLL_S = 1.0  # how often a worker with no trial to claim looks again
log = logging.getLogger("rnnlab.worker")


def open_study(spec: StudySpec, storage: str, tracker: Tracker, *,
               sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Create the study, or load it when the name exists (resume); keep its parent MLflow run.

    The budget stored on the study becomes this spec's ``n_trials``, so a larger ``--n-trials``
    extends a study and rerunning the same command finishes it.
    """
    s = spec.study
    with study_lock(storage, s.name):
        study = optuna.create_study(
            study_name=s.name, storage=open_storage(storage), direction=s.direction,
            load_if_exists=True, sampler=sampler, pruner=pruner,
        )
        if study.direction.name.lower() != s.direction:
            raise RnnlabError(f"study {s.name!r} exists with direction "
                              f"{study.direction.name.lower()}; the spec says {s.direction}")
        study.set_user_attr(ATTR_BUDGET, s.n_trials)
        study.set_user_attr(ATTR_SPEC, spec.model_dump(mode="json"))
        if ATTR_PARENT not in study.user_attrs:
            run_id = tracker.start_run(s.name, s.name, tags={
                "rnnlab.kind": "study", "rnnlab.study": s.name,
                "rnnlab.storage": mask_url(storage)},
                extra_params={f"study.{k}": v for k, v in flatten(s).items()} | {
                    f"search.{k}": v.model_dump(exclude_none=True) for k, v in spec.search.items()})
            tracker.flush(run_id)  # its params are in the store before any worker reads them
            study.set_user_attr(ATTR_PARENT, run_id)
            study.set_user_attr(ATTR_EXPERIMENT, s.name)
    return study


def fail_trial(study: optuna.Study, tracker: Tracker, trial: FrozenTrial | optuna.Trial,
               reason: str, mlflow_status: str, retries_left: int) -> bool:
    """Mark a running trial FAIL with its reason, close its run, and enqueue a retry.

    Returns:
        False when another worker had already finished the trial (nothing was changed).
    """
    storage = study._storage
    trial_id = trial._trial_id
    try:
        storage.set_trial_user_attr(trial_id, "reason", reason)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
        return False  # another worker got there first
    frozen = storage.get_trial(trial_id)
    run_id = frozen.user_attrs.get("mlflow_run_id")
    if run_id:
        tracker.set_tags(run_id, {"rnnlab.trial_state": "FAIL", "rnnlab.reason": reason})
        tracker.end_run(run_id, mlflow_status)
    retries = frozen.user_attrs.get("retries", 0)
    if retries < retries_left:
        study.enqueue_trial(frozen.params, user_attrs={
            "retry_of": frozen.number, "retries": retries + 1,
            "resume_run_id": run_id or "",
        })
    return True


def reap_stale(study: optuna.Study, tracker: Tracker, spec: StudySpec) -> int:
    """Fail (and retry) running trials whose heartbeat stopped longer than the grace period."""
    now, s, reaped = time.time(), spec.study, 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = t.system_attrs.get(HEARTBEAT) or t.datetime_start.timestamp()
        if now - beat > s.grace_period:
            reaped += fail_trial(study, tracker, t,
                                 f"worker lost: no heartbeat for {now - beat:.0f} s", "KILLED",
                                 s.max_retries)
    return reaped


def claim(study: optuna.Study, storage: str, spec: StudySpec,
          tracker: Tracker) -> optuna.Trial | None:
    """Ask for a trial only while finished + running trials leave room in the budget."""
    with study_lock(storage, study.study_name):
        reap_stale(study, tracker, spec)
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        taken = sum(t.state in (*FINISHED, TrialState.RUNNING) for t in trials)
        if not waiting and taken >= study.user_attrs.get(ATTR_BUDGET, spec.study.n_trials):
            return None
        trial = study.ask()
        try:
            study._storage.set_trial_system_attr(trial._trial_id, HEARTBEAT, time.time())
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        except KeyboardInterrupt as exc:  # never a RUNNING trial that no worker runs
            fail_trial(study, tracker, trial, _interrupted(exc), "KILLED", spec.study.max_retries)
            raise
        return trial


def budget_used(study: optuna.Study) -> bool:
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    return finished >= study.user_attrs.get(ATTR_BUDGET, 0)


class _Heartbeat(threading.Thread):
    """Stamps a running trial every ``interval`` seconds until stopped."""

    def __init__(self, storage, trial_id: int, interval: float):
        super().__init__(daemon=True, name=f"heartbeat-{trial_id}")
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            try:
                self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT, time.time())
            except optuna.exceptions.UpdateFinishedTrialError:
                return
            except Exception as exc:  # noqa: BLE001 - a storage hiccup; the next beat retries
                log.warning("heartbeat for trial %d failed: %s", self.trial_id, exc)

    def __enter__(self) -> _Heartbeat:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.halt.set()
        self.join()


class Worker:
    """Runs trials of one study until its budget is used (one per process)."""

    def __init__(self, spec: StudySpec, storage: str, index: int = 0, device: str | None = None):
        self.spec, self.storage, self.device = spec, storage, device
        self.tracker = Tracker()
        self.study = open_study(spec, storage, self.tracker,
                                sampler=make_sampler(spec, seed_offset=index),
                                pruner=make_pruner(spec.study.pruner))
        self._data = SplitsCache()

    def run(self, deadline: float | None = None) -> int:
        """Run trials until the budget is used. While the rest of the budget is held by trials
        running elsewhere, wait: if their workers died, this one reaps and retries them.

        Raises:
            RnnlabError: a trial failed on a user error, or ``max_failures_in_a_row`` did.
        """
        done, failed_in_a_row = 0, 0
        while deadline is None or time.time() < deadline:
            trial = claim(self.study, self.storage, self.spec, self.tracker)
            if trial is not None:
                reason = self.run_trial(trial)
                done += 1
                failed_in_a_row = failed_in_a_row + 1 if reason else 0
                if failed_in_a_row >= self.spec.study.max_failures_in_a_row:
                    raise RnnlabError(
                        f"study {self.spec.study.name!r}: {failed_in_a_row} trials in a row "
                        f"failed, the last with {reason}; fix the spec (`rnnlab trials "
                        f"{self.spec.study.name}` lists every reason) and run again to resume")
            elif budget_used(self.study):
                break
            else:  # soon: the last running trial may end any moment, and then so does this
                time.sleep(min(self.spec.study.heartbeat_interval, WAIT_POLL_S))
        return done

    def run_trial(self, trial: optuna.Trial) -> str | None:
        """Run one trial to its end. Returns why it failed, or None when it finished.

        Raises:
            RnnlabError: the trial failed on a user error (failed, not retried: the same spec
                would fail again).
        """
        s = self.spec.study
        state: dict[str, Any] = {"run_id": None}
        try:  # up to the study's tell: an interrupt anywhere before it fails the trial
            with _Heartbeat(self.study._storage, trial._trial_id, s.heartbeat_interval):
                result = self._fit_trial(trial, state)
                value = _objective_value(result.history, s.metric, s.objective, s.direction)
                if result.status == "completed" and value is not None:
                    self._finish(trial, state["run_id"], result, TrialState.COMPLETE, value,
                                 None)
                else:  # pruned by the pruner, or diverged: counts as pruned, with its reason
                    self._finish(trial, state["run_id"], result, TrialState.PRUNED, None,
                                 result.stop_reason or "no finite metric value")
        except KeyboardInterrupt as exc:  # after the tell, fail_trial changes nothing
            fail_trial(self.study, self.tracker, trial, _interrupted(exc), "KILLED",
                       s.max_retries)
            raise
        except Exception as exc:  # noqa: BLE001 - one trial's failure must not stop the sweep
            # (a user error does: every trial would fail the same way)
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            _free_cuda_cache()
            fail_trial(self.study, self.tracker, trial, reason, "FAILED", 0)
            if isinstance(exc, RnnlabError):
                raise
            log.warning("trial %d failed: %s", trial.number, reason)
            return reason
        return None

    def _fit_trial(self, trial: optuna.Trial, state: dict[str, Any]):
        spec, s = self.spec, self.spec.study
        config, sampled = sample_config(trial, spec, device=self.device)
        run_id = self.tracker.start_run(
            s.name, f"trial-{trial.number}", config=config,
            parent_run_id=self.study.user_attrs[ATTR_PARENT],
            extra_params={"rnnlab.sampled_keys": ",".join(sampled)},
            tags={"rnnlab.kind": "trial", "rnnlab.study": s.name,
                  "rnnlab.trial_number": str(trial.number),
                  "rnnlab.storage": mask_url(self.storage)})
        state["run_id"] = run_id
        trial.set_user_attr("mlflow_run_id", run_id)
        trial.set_user_attr("config", flatten(config))
        resume = self._resume_point(trial, run_id)
        if resume is not None:  # replay the curve so far: one continuous curve in both stores
            for epoch, metrics in enumerate(resume.history, start=1):
                self.tracker.epoch_logger(run_id)(epoch, metrics)
                if math.isfinite(metrics[s.metric]):
                    trial.report(metrics[s.metric], epoch)
        result = fit(config, [self.tracker.epoch_logger(run_id), _Reporter(trial, s.metric)],
                     data=self._data.get(config.data, resolve_device(config.train.device)),
                     resume=resume,
                     on_checkpoint=lambda ckpt: self.tracker.log_checkpoint(run_id, ckpt))
        return result

    def _resume_point(self, trial: optuna.Trial, run_id: str) -> Checkpoint | None:
        source = trial.user_attrs.get("resume_run_id")
        if not source:
            return None
        ckpt = self.tracker.load_checkpoint(source)
        if ckpt is not None:
            trial.set_user_attr("resumed_from_epoch", ckpt.epoch)
            self.tracker.log_checkpoint(run_id, ckpt)  # the next retry needs one hop only
        return ckpt

    def _finish(self, trial, run_id, result, state, value, reason) -> None:
        """Close the trial's run with its outcome, then tell the study (a run is never left
        RUNNING behind a finished trial)."""
        if reason:
            trial.set_user_attr("reason", reason)
        tags = {"rnnlab.trial_state": state.name}
        if state == TrialState.PRUNED:
            tags["rnnlab.pruned"] = "true"
        if reason:
            tags["rnnlab.reason"] = reason
        self.tracker.log_result(run_id, result, weights=False, tags=tags)
        self.tracker.end_run(run_id, "FINISHED")
        try:
            self.study.tell(trial, value, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            log.warning("trial %d was failed by another worker (heartbeat lost) before it "
                        "finished; its retry carries on", trial.number)


class _Reporter:
    """Reports each epoch's metric to the trial; asks ``fit`` to stop when the pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str):
        self.trial, self.metric = trial, metric

    def __call__(self, epoch: int, metrics: dict[str, float]) -> str | None:
        value = metrics[self.metric]
        if not math.isfinite(value):
            return None  # fit itself stops on divergence
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            return f"pruned at epoch {epoch} ({self.metric}={value:.4f})"
        return None


def _interrupted(exc: KeyboardInterrupt) -> str:
    return f"interrupted ({'SIGTERM' if isinstance(exc, Terminated) else 'Ctrl-C'})"


def _objective_value(history, metric, objective, direction) -> float | None:
    values = [h[metric] for h in history if math.isfinite(h[metric])]
    if not values:
        return None
    if objective == "last":
        return history[-1][metric] if math.isfinite(history[-1][metric]) else None
    return max(values) if direction == "maximize" else min(values)


def _free_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # after an out-of-memory trial, the next one starts clean


def settle_parent(study: optuna.Study, tracker: Tracker, *, interrupted: bool = False) -> str:
    """Set the study's parent run to what the study is: FINISHED once the budget is used,
    RUNNING while trials run elsewhere, else KILLED (stopped early; a rerun resumes it)."""
    running = bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    if budget_used(study):
        status = "FINISHED"
    elif running and not interrupted:
        status = "RUNNING"
    else:
        status = "KILLED"
    run_id = study.user_attrs[ATTR_PARENT]
    if status == "RUNNING":
        tracker.client.update_run(run_id, status="RUNNING")
    else:
        tracker.end_run(run_id, status)
    return status


def work(spec: StudySpec, storage: str, *, index: int = 0, device: str | None = None) -> int:
    """Join the study (creating it if needed) and run trials until its budget is used.

    Returns:
        The number of trials this worker ran.

    Raises:
        RnnlabError: the storage or tracking store cannot be used, or trials failed on a user
            error or too many times in a row (the study's run is then KILLED, resumable).
    """
    deadline = time.time() + spec.study.timeout if spec.study.timeout else None
    worker = Worker(spec, storage, index, device)
    worker.tracker.client.update_run(worker.study.user_attrs[ATTR_PARENT], status="RUNNING")
    try:
        done = worker.run(deadline)
    except (KeyboardInterrupt, RnnlabError):
        settle_parent(worker.study, worker.tracker, interrupted=True)
        raise
    settle_parent(worker.study, worker.tracker)
    return done
