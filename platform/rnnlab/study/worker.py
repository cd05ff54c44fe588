"""One worker of a study: claims trials (see :mod:`rnnlab.study.claims`) until the budget is
used, and runs each as a ``fit`` reported to Optuna and tracked in MLflow.

A trial's route: claim -> sample its config -> start its MLflow run (nested under the study's)
-> resume from a retried trial's checkpoint, if any -> ``fit`` with three callbacks (MLflow
metrics, the objective so far, Optuna report and prune) -> close the run with the outcome ->
tell the study.

Every trial run, running, pruned or complete, carries the study's objective as it stands
after each epoch (``best_val_acc``: the best so far), so the MLflow UI's trials view ranks them
all by it, and an ``rnnlab.outcome`` tag: ``complete``, ``pruned at epoch N``, ``diverged at
epoch N``, ``failed`` or ``interrupted``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from rnnlab.core.data import SplitsCache
from rnnlab.core.spec import flatten
from rnnlab.core.study_spec import BEST_EPOCH, StudySpec, objective_key
from rnnlab.errors import RnnlabError, mask_url
from rnnlab.interrupts import uninterrupted, whole
from rnnlab.retrying import StoreDown
from rnnlab.storage.adapter import tell_running
from rnnlab.storage.keys import (
    ATTR_PARENT,
    TRIAL_CONFIG,
    TRIAL_PLACEMENT,
    TRIAL_REASON,
    TRIAL_REPLAYS,
    TRIAL_RESUME_RUN,
    TRIAL_RESUMED_FROM,
    TRIAL_RUN_ID,
)
from rnnlab.study.ablation import twin
from rnnlab.study.claims import Heartbeat, fail_trial, interrupted
from rnnlab.study.parent import budget_used, open_study, settle_parent
from rnnlab.study.parts import make_pruner, make_sampler, sample_config
from rnnlab.study.reclaim import claim_anew
from rnnlab.tracking.tracker import Tracker
from rnnlab.train import Checkpoint, FitResult, fit, free_device_memory, resolve_device

WAIT_POLL_S = 1.0  # how often a worker with no trial to claim looks again
ANALYSE_FROM = 64  # trials from which a study's doublings refresh the store's planner statistics
log = logging.getLogger(__name__)


class Worker:
    """Runs trials of one study until its budget is used (one per process)."""

    def __init__(self, spec: StudySpec, storage: str, index: int = 0, device: str | None = None,
                 threads: int | None = None, allow_spec_change: bool = False,
                 name: str | None = None, placement: dict[str, str] | None = None):
        self.storage, self.device = storage, device
        self.name, self.placement = name, placement or {}  # an engine's, kept on its trials
        self.tracker = Tracker()
        self.study = open_study(spec, storage, self.tracker,
                                sampler=make_sampler(spec, seed_offset=index),
                                pruner=make_pruner(spec), allow_spec_change=allow_spec_change)
        self.parent_run = self.study.user_attrs[ATTR_PARENT]  # set once, when the study was made
        # Read the study once now, outside its lock: on a database server the storage keeps
        # finished trials from then on, and a first read at the first claim, of 10,000 trials
        # say (seconds), would hold every other worker's claim back.
        self.study.get_trials(deepcopy=False)
        if threads and spec.train.threads is None:  # this process's placement, not the study's
            spec = spec.model_copy(update={"train": spec.train.model_copy(
                update={"threads": threads})})
        self.spec = spec
        self._data = SplitsCache()

    def run(self, deadline: float | None = None) -> int:
        """Run trials until the budget is used. While the rest of the budget is held by trials
        running elsewhere, wait: if their workers died, this one reaps and retries them.

        Raises:
            RnnlabError: a trial failed on a user error, or ``max_failures_in_a_row`` did.
        """
        done, failed_in_a_row = 0, 0
        while deadline is None or time.time() < deadline:
            trial = claim_anew(self.study, self.storage, self.spec, self.tracker, self.name)
            if trial is not None:
                reason = self.run_trial(trial)
                done += 1
                failed_in_a_row = failed_in_a_row + 1 if reason else 0
                if failed_in_a_row >= self.spec.study.max_failures_in_a_row:
                    raise RnnlabError(
                        f"study {self.spec.study.name!r}: {failed_in_a_row} trials in a row "
                        f"failed, the last with {reason}; fix the cause (`rnnlab trials "
                        f"{self.spec.study.name}` lists every reason) and run again to resume "
                        "(a spec fix that alters results needs a new study.name)")
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
        run = TrialRun()
        try:  # up to the study's tell: an interrupt anywhere before it fails the trial
            with Heartbeat(self.study, trial, s.heartbeat_interval):
                result = self._fit_trial(trial, run)
                value = _objective_value(result, s.metric, s.objective, s.direction)
                if result.status == "completed" and value is not None:
                    self._finish(trial, run, result, TrialState.COMPLETE, value, None)
                else:  # pruned by the pruner, or diverged: counts as pruned, with its reason
                    self._finish(trial, run, result, TrialState.PRUNED, None,
                                 result.stop_reason or "no finite metric value")
        except KeyboardInterrupt as exc:  # after the tell, fail_trial changes nothing
            fail_trial(self.study, self.tracker, trial, interrupted(exc), "KILLED",
                       s.max_retries, run_id=run.run_id)
            raise
        except StoreDown:  # the trial stays RUNNING: a resumed sweep's heartbeat check retries it
            if run.run_id and not run.closed:  # (a tell lost mid-way may count)
                with contextlib.suppress(StoreDown):  # the tracking server may be the one down
                    self.tracker.end_run(run.run_id, "KILLED")
            raise
        except optuna.exceptions.UpdateFinishedTrialError:  # reaped: its heartbeat looked lost
            log.warning("trial %d was failed by another worker (heartbeat lost, or the storage "
                        "was down); its retry carries on", trial.number)
            if run.run_id:
                self.tracker.end_run(run.run_id, "KILLED")  # what it still held, stored
            return None
        except Exception as exc:  # noqa: BLE001 - one trial's failure must not stop the sweep
            # (a user error does: every trial would fail the same way)
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            free_device_memory()
            fail_trial(self.study, self.tracker, trial, reason, "FAILED", 0)
            if isinstance(exc, RnnlabError):
                raise
            log.warning("trial %d failed: %s", trial.number, reason)
            return reason
        return None

    def _fit_trial(self, trial: optuna.Trial, run: TrialRun) -> FitResult:
        spec, s = self.spec, self.spec.study
        config, sampled = sample_config(trial, spec, device=self.device)
        with uninterrupted():  # a run created is a run its trial knows of
            run.run_id = self.tracker.start_run(
                s.name, f"trial-{trial.number}", config=config,
                parent_run_id=self.parent_run,
                extra_params={"rnnlab.sampled_keys": ",".join(sampled)},
                tags={"rnnlab.kind": "trial", "rnnlab.study": s.name,
                      "rnnlab.trial_number": str(trial.number),
                      "rnnlab.storage": mask_url(self.storage), **self.placement})
            trial.set_user_attr(TRIAL_RUN_ID, run.run_id)
        run_id = run.run_id
        trial.set_user_attr(TRIAL_CONFIG, flatten(config))
        if self.placement:
            trial.set_user_attr(TRIAL_PLACEMENT, self.placement)
        replays = self._replay(trial, config) if s.ablation else None
        resume = self._resume_point(trial, run_id)
        if replays and resume is not None:
            trial.set_user_attr(TRIAL_REPLAYS, replays)
            self.tracker.set_tags(run_id, {"rnnlab.replays": replays})
        log = self.tracker.epoch_logger(run_id)
        logged = [log, _Objective(log, s.metric, s.objective, s.direction == "maximize")]
        if resume is not None:  # replay the curve so far: one continuous curve in both stores
            for epoch, metrics in enumerate(resume.history, start=1):
                for log_epoch in logged:
                    log_epoch(epoch, metrics)
                if math.isfinite(metrics[s.metric]):
                    trial.report(metrics[s.metric], epoch)
        reporter = _Reporter(trial, s.metric, config.train.epochs)
        return fit(config, [*logged, reporter],
                   data=self._data.get(config.data, resolve_device(config.train.device)),
                   resume=resume,
                   on_checkpoint=lambda ckpt: self.tracker.log_checkpoint(run_id, ckpt))

    def _replay(self, trial: optuna.Trial, config: Any) -> str | None:
        """An ablation's arm that a sibling ablation trained already (:func:`twin`) resumes
        from that trial's newest checkpoint, its last epoch once complete, so its epochs are
        replayed, not trained again; returns ``study#trial`` of the twin, or None."""
        if trial.user_attrs.get(TRIAL_RESUME_RUN):  # a retry: its own run comes first
            return None
        found = twin(self.storage, self.spec, flatten(config))
        if found is None:
            return None
        name, number, run_id = found
        trial.set_user_attr(TRIAL_RESUME_RUN, run_id)
        return f"{name}#{number}"

    def _resume_point(self, trial: optuna.Trial, run_id: str) -> Checkpoint | None:
        source = trial.user_attrs.get(TRIAL_RESUME_RUN)
        if not source:
            return None
        ckpt = self.tracker.load_checkpoint(source)  # the newest that reads
        if ckpt is not None:
            trial.set_user_attr(TRIAL_RESUMED_FROM, ckpt.epoch)
            self.tracker.log_checkpoint(run_id, ckpt)  # the next retry needs one hop only
        return ckpt

    @whole
    def _finish(self, trial: optuna.Trial, run: TrialRun, result: FitResult, state: TrialState,
                value: float | None, reason: str | None) -> None:
        """Close the trial's run with its outcome, then tell the study (a run is never left
        RUNNING behind a finished trial; an interrupt waits for both)."""
        if reason:
            trial.set_user_attr(TRIAL_REASON, reason)
        tags = {"rnnlab.trial_state": state.name, "rnnlab.outcome": _outcome(state, result)}
        if state == TrialState.PRUNED:
            tags["rnnlab.pruned"] = "true"
        if reason:
            tags["rnnlab.reason"] = reason
        s = self.spec.study  # a UI column beside the objective (logged epoch by epoch)
        best = result.best_epoch(s.metric, s.direction == "maximize")
        if best is not None:
            self.tracker.log_metrics(run.run_id, {BEST_EPOCH: best})
        self.tracker.log_result(run.run_id, result, weights=False, tags=tags)
        self.tracker.end_run(run.run_id, "FINISHED")
        run.closed = True
        if trial.number + 1 >= ANALYSE_FROM and (trial.number + 1).bit_count() == 1:
            # the study has doubled (64, 128, ... trials): the store's planner statistics
            # follow it, so the MLflow UI ranks a growing study's trials in milliseconds
            self.tracker.refresh_statistics()
        if not tell_running(self.study, trial, value, state):
            log.warning("trial %d was failed by another worker (heartbeat lost) before it "
                        "finished; its retry carries on", trial.number)


@dataclass
class TrialRun:
    """A trial's MLflow run, as far as it got: its id once created, and whether it was closed
    with the trial's outcome."""

    run_id: str | None = None
    closed: bool = False


def _outcome(state: TrialState, result: FitResult) -> str:
    """The trial's outcome as its run's ``rnnlab.outcome`` tag says it."""
    if state == TrialState.COMPLETE:
        return "complete"
    if result.status == "diverged":
        return f"diverged at epoch {result.diverged_epoch or result.epochs_run}"
    if result.status == "stopped":
        return f"pruned at epoch {result.epochs_run}"
    return "no finite value"  # trained to the end, its metric never finite: counted as pruned


class _Objective:
    """Logs the trial's objective as it stands after each epoch: its metric's best finite
    value so far (objective ``best``), or the epoch's own (``last``)."""

    def __init__(self, log: Any, metric: str, objective: str, maximize: bool):
        self.log, self.metric, self.key = log, metric, objective_key(metric, objective)
        self.last, self.maximize = objective == "last", maximize
        self.value: float | None = None

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        value = metrics[self.metric]
        if not math.isfinite(value):
            return
        if self.last or self.value is None or (
                value > self.value if self.maximize else value < self.value):
            self.value = value
        self.log(epoch, {self.key: self.value})


class _Reporter:
    """Reports each epoch's metric to the trial; asks ``fit`` to stop when the pruner says so,
    except at the last epoch: its training is paid for, so the trial completes and counts."""

    def __init__(self, trial: optuna.Trial, metric: str, epochs: int):
        self.trial, self.metric, self.epochs = trial, metric, epochs

    def __call__(self, epoch: int, metrics: dict[str, float]) -> str | None:
        value = metrics[self.metric]
        if not math.isfinite(value):
            return None  # fit itself stops on divergence
        self.trial.report(value, epoch)
        if epoch < self.epochs and self.trial.should_prune():
            return f"pruned at epoch {epoch} ({self.metric}={value:.4f})"
        return None


def _objective_value(result: FitResult, metric: str, objective: str,
                     direction: str) -> float | None:
    """The trial's value: its metric's best finite value, or its last one (None if not finite)."""
    if objective == "last":
        last = result.final(metric)
        return last if last is not None and math.isfinite(last) else None
    return result.best(metric, direction == "maximize")


def work(spec: StudySpec, storage: str, *, index: int = 0, device: str | None = None,
         threads: int | None = None, allow_spec_change: bool = False,
         name: str | None = None, placement: dict[str, str] | None = None) -> int:
    """Join the study (creating it if needed) and run trials until its budget is used, on
    ``device`` and ``threads`` CPU threads where the spec leaves them open. ``name`` names the
    worker on its trials (default ``host:pid``); ``placement``, where an engine put it, is kept
    on each trial and as tags of its run.

    Returns:
        The number of trials this worker ran.

    Raises:
        RnnlabError: the study exists with another spec (see :mod:`rnnlab.study.spec_change`),
            the storage or tracking store cannot be used, or trials failed on a user error or
            too many times in a row (the study's run is then KILLED, resumable).
    """
    deadline = time.time() + spec.study.timeout if spec.study.timeout else None
    worker = Worker(spec, storage, index, device, threads, allow_spec_change, name, placement)
    try:
        worker.tracker.mark_running(worker.parent_run)
        done = worker.run(deadline)
    except (KeyboardInterrupt, RnnlabError):
        settle_parent(worker.study, worker.tracker, interrupted=True)
        raise
    settle_parent(worker.study, worker.tracker)
    return done


def work_process(spec_json: dict, storage: str, index: int, device: str | None,
                 threads: int, allow_spec_change: bool = False, **named: Any) -> int:
    """:func:`work` in a worker process of its own (see :mod:`rnnlab.engines.launch`, and Ray
    tasks: :mod:`rnnlab.engines.ray_task`), with ``threads`` CPU threads unless the spec sets
    them; ``named``: :func:`work`'s ``name`` and ``placement``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return work(StudySpec.model_validate(spec_json), storage, index=index, device=device,
                threads=threads, allow_spec_change=allow_spec_change, **named)
