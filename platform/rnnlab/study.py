"""Optuna studies from specs: samplers, pruners, the objective, workers and resume.

A study's budget, ``n_trials``, counts finished trials (complete or pruned). Every worker claims
a trial under a per-study lock, after checking that finished + running trials leave room, so any
number of workers on any number of machines stop at exactly the budget. Each trial is an MLflow
run nested under the study's parent run, whose id is kept on the study.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from rnnlab.errors import RnnlabError
from rnnlab.spec import RunConfig, StudySpec, apply_overrides, flatten, validate
from rnnlab.storage import DEFAULT_STORAGE, load_study, mask_url, open_storage, study_lock
from rnnlab.study_parts import make_pruner, make_sampler, sample_config
from rnnlab.tracking import Tracker
from rnnlab.train import fit, resolve_device

ATTR_PARENT = "mlflow_parent_run_id"
ATTR_EXPERIMENT = "mlflow_experiment"
ATTR_BUDGET = "n_trials"
ATTR_SPEC = "spec"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
log = logging.getLogger("rnnlab.study")


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
            study.set_user_attr(ATTR_PARENT, run_id)
            study.set_user_attr(ATTR_EXPERIMENT, s.name)
    return study


def _claim(study: optuna.Study, storage: str, budget: int) -> optuna.Trial | None:
    """Ask for a trial only while finished + running trials leave room in the budget."""
    with study_lock(storage, study.study_name):
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        taken = sum(t.state in (*FINISHED, TrialState.RUNNING) for t in trials)
        if not waiting and taken >= budget:
            return None
        return study.ask()


class _Worker:
    """Runs trials of one study until its budget is used; one per process."""

    def __init__(self, spec: StudySpec, storage: str, index: int, device: str | None):
        self.spec, self.storage, self.index, self.device = spec, storage, index, device
        self.tracker = Tracker()
        self.study = open_study(spec, storage, self.tracker,
                                sampler=make_sampler(spec, seed_offset=index),
                                pruner=make_pruner(spec.study.pruner))
        self._data: dict[str, Any] = {}

    def run(self, deadline: float | None) -> int:
        done = 0
        while deadline is None or time.time() < deadline:
            trial = _claim(self.study, self.storage, self.spec.study.n_trials)
            if trial is None:
                break
            self.run_trial(trial)
            done += 1
        return done

    def _splits(self, config: RunConfig):
        from rnnlab.data import load_data

        key = config.data.model_dump_json() + config.train.device
        if key not in self._data:
            self._data.clear()  # one data config at a time keeps memory flat
            self._data[key] = load_data(config.data, resolve_device(config.train.device))
        return self._data[key]

    def run_trial(self, trial: optuna.Trial) -> None:
        spec, s = self.spec, self.spec.study
        run_id = None
        try:
            config, sampled = sample_config(trial, spec, device=self.device)
            run_id = self.tracker.start_run(
                s.name, f"trial-{trial.number}", config=config,
                parent_run_id=self.study.user_attrs[ATTR_PARENT],
                extra_params={"rnnlab.sampled_keys": ",".join(sampled)},
                tags={"rnnlab.kind": "trial", "rnnlab.study": s.name,
                      "rnnlab.trial_number": str(trial.number),
                      "rnnlab.storage": mask_url(self.storage)})
            trial.set_user_attr("mlflow_run_id", run_id)
            trial.set_user_attr("config", flatten(config))
            result = fit(config, [self.tracker.epoch_logger(run_id), _Reporter(trial, s.metric)],
                         data=self._splits(config))
        except KeyboardInterrupt:
            self._finish(trial, run_id, TrialState.FAIL, None, "interrupted (Ctrl-C/SIGTERM)",
                         mlflow_status="KILLED")
            raise
        except Exception as exc:  # noqa: BLE001 - a trial's failure must not stop the sweep
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log.warning("trial %d failed: %s", trial.number, reason)
            self._finish(trial, run_id, TrialState.FAIL, None, reason)
            return
        self.tracker.log_result(run_id, config, result, weights=False)
        value = _objective_value(result.history, s.metric, s.objective, s.direction)
        if result.status == "completed" and value is not None:
            self._finish(trial, run_id, TrialState.COMPLETE, value, None)
        else:  # pruned by the pruner, or diverged: counts as pruned, with its reason
            reason = result.stop_reason or "no finite metric value"
            self._finish(trial, run_id, TrialState.PRUNED, None, reason)

    def _finish(self, trial, run_id, state, value, reason, mlflow_status=None) -> None:
        if reason:
            trial.set_user_attr("reason", reason)
        if run_id is not None:
            tags = {"rnnlab.trial_state": state.name}
            if state == TrialState.PRUNED:
                tags["rnnlab.pruned"] = "true"
            if reason:
                tags["rnnlab.reason"] = reason
            self.tracker.set_tags(run_id, tags)
            self.tracker.end_run(run_id, mlflow_status or (
                "FAILED" if state == TrialState.FAIL else "FINISHED"))
        self.study.tell(trial, value, state=state)


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


def _objective_value(history, metric, objective, direction) -> float | None:
    values = [h[metric] for h in history if math.isfinite(h[metric])]
    if not values:
        return None
    if objective == "last":
        return history[-1][metric] if math.isfinite(history[-1][metric]) else None
    return max(values) if direction == "maximize" else min(values)


def work(spec: StudySpec, storage: str = DEFAULT_STORAGE, *, index: int = 0,
         device: str | None = None) -> int:
    """Join the study (creating it if needed) and run trials until its budget is used.

    Returns:
        The number of trials this worker ran.
    """
    deadline = time.time() + spec.study.timeout if spec.study.timeout else None
    return _Worker(spec, storage, index, device).run(deadline)


def _worker_process(spec_json: dict, storage: str, index: int, threads: int | None,
                    device: str | None) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = StudySpec.model_validate(spec_json)
    if threads and spec.train.threads is None:
        spec = validate(StudySpec, apply_overrides(spec.model_dump(),
                                                   {"train.threads": threads}), "worker")
    try:
        work(spec, storage, index=index, device=device)
    except KeyboardInterrupt:
        raise SystemExit(130) from None


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

    Returns:
        The study's final :class:`StudyStatus`.

    Raises:
        RnnlabError: the storage or tracking store cannot be used.
    """
    tracker = Tracker()
    study = open_study(spec, storage, tracker)
    parent = study.user_attrs[ATTR_PARENT]
    tracker.client.update_run(parent, status="RUNNING")
    threads = max(1, (os.cpu_count() or 1) // workers)
    devices = worker_devices(spec, workers, per_gpu)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker_process, name=f"rnnlab-worker-{i}",
                         args=(spec.model_dump(mode="json"), storage, i, threads, devices[i]))
             for i in range(workers)]
    stop = threading.Event()
    poller = threading.Thread(target=_poll, args=(storage, spec.study.name, on_progress, stop,
                                                  poll_s), daemon=True)
    status = "KILLED"
    try:
        for p in procs:
            p.start()
        poller.start()
        for p in procs:
            p.join()
        final = study_status(storage, spec.study.name)[0]
        status = "FINISHED" if final.finished >= spec.study.n_trials else "KILLED"
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=30)
        tracker.end_run(parent, status)
    failed = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    if failed and all(code == 130 for code in failed):
        raise KeyboardInterrupt
    if failed:
        raise RuntimeError(f"{len(failed)} worker(s) exited with codes {failed}")
    if on_progress:
        on_progress(final)
    return final


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
    names = [name] if name else [s.study_name for s in open_storage(storage).get_all_studies()]
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
