"""Confirmation runs: a chosen config re-trained on the study's training subset and others, with
K seeds each, and scored on the test set.

Each run is an MLflow run nested under the study's run, tagged ``rnnlab.kind=confirm`` and
``rnnlab.config_hash`` (the hash of the whole config, seed included). Before training, the
finished confirmation runs of the study are looked up by that hash, so asking twice trains once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from rnnlab.analysis.frames import StudyFrames
from rnnlab.core.data import SplitsCache
from rnnlab.core.spec import RunConfig
from rnnlab.errors import RnnlabError
from rnnlab.reports.info import (
    Changes,
    Confirmation,
    ReportInfo,
    candidates,
    changed_config,
    config_hash,
    scored_weights,
)
from rnnlab.tracking.store import CONFIRM_KIND, LAST_EPOCH, RunReader
from rnnlab.tracking.tracker import Tracker
from rnnlab.train import evaluate, fit, resolve_device


@dataclass(frozen=True)
class Job:
    """One confirmation run to train: a candidate's config on one subset with one seed."""

    roles: tuple[str, ...]
    trial: int
    config: dict[str, Any]  # the RunConfig, as JSON (it crosses to worker processes)
    key: str  # its config hash
    changes: str = ""  # what was set on the trial's config (``train.l2=0``), if anything


@dataclass(frozen=True)
class Target:
    """Where confirmation runs go and what they keep: the study's MLflow run and objective."""

    study: str
    experiment: str
    parent_run_id: str
    metric: str
    maximize: bool
    weights: str  # which weights each run scores (:func:`scored_weights`)


Trainer = Callable[[list[Job], Target, "str | None", Callable[[str], None]], None]


def confirm(info: ReportInfo, frames: StudyFrames, seeds: int, splits: int = 0, *,
            tracking_uri: str | None = None,
            on_progress: Callable[[str], None] | None = None,
            train: Trainer | None = None) -> tuple[Confirmation, ...]:
    """Re-train every candidate config (see :func:`rnnlab.reports.info.candidates`) on the
    study's own training subset and on ``splits`` others (``data.split_seed + 1 ...``), each
    with seeds ``train.seed + i`` for ``i < seeds``, and score each run on the test set,
    reusing finished runs.

    Args:
        train: trains the runs not found yet (default :func:`train_here`, one after another in
            this process); an engine may train them in parallel.

    Raises:
        RnnlabError: the study has no MLflow run to nest under, or data cannot be loaded.
    """
    if not info.parent_run_id or not info.experiment:
        raise RnnlabError(f"study {info.study!r} has no MLflow parent run to record "
                          "confirmation runs under; it was not made by `rnnlab sweep`")
    say = on_progress or (lambda _msg: None)
    target = Target(info.study, info.experiment, info.parent_run_id, info.metric,
                    info.direction == "maximize", scored_weights(info))
    planned = [(roles, number, _runs(changed_config(frames, number, changes), seeds, splits),
                changes) for roles, number, changes in candidates(info)]
    found = finished(target, tracking_uri)
    pending = [Job(roles, number, config.model_dump(mode="json"), key, _said(changes))
               for roles, number, runs, changes in planned for config, key in runs
               if key not in found]
    if pending:
        say(f"confirmation: {len(pending)} run(s) to train, "
            f"{sum(len(r) for _, _, r, _ in planned) - len(pending)} found already")
        (train or train_here)(pending, target, tracking_uri, say)
        trained = finished(target, tracking_uri)
    else:
        trained = found
    return tuple(_confirmation(roles, number, runs, trained, found, changes)
                 for roles, number, runs, changes in planned)


def _said(changes: Changes) -> str:
    return ",".join(f"{k}={v}" for k, v in changes)


def _runs(base: RunConfig, seeds: int, splits: int) -> list[tuple[RunConfig, str]]:
    """The candidate's runs: each (subset, seed), the study's own subset first."""
    out = []
    for j in range(splits + 1):
        for i in range(seeds):
            config = base.model_copy(update={
                "data": base.data.model_copy(update={"split_seed": base.data.split_seed + j}),
                "train": base.train.model_copy(update={"seed": base.train.seed + i})})
            out.append((config, config_hash(config)))
    return out


def finished(target: Target, tracking_uri: str | None) -> dict[str, dict[str, Any]]:
    """The study's finished confirmation runs that scored ``target.weights``, by config hash."""
    found = RunReader(tracking_uri).confirmations(target.parent_run_id)
    return {row["config_hash"]: row for row in found.to_dict("records")
            if row["weights"] == target.weights}


def _confirmation(roles: tuple[str, ...], number: int, runs: list[tuple[RunConfig, str]],
                  trained: dict[str, dict[str, Any]], found: dict,
                  changes: Changes) -> Confirmation:
    rows = [trained[key] for _, key in runs]
    base = runs[0][0]
    return Confirmation(
        roles=roles, trial=number, config_hash=config_hash(base), own_split=base.data.split_seed,
        splits=tuple(c.data.split_seed for c, _ in runs),
        seeds=tuple(c.train.seed for c, _ in runs),
        test_acc=tuple(float(r["test_acc"]) for r in rows),
        test_loss=tuple(float(r["test_loss"]) for r in rows),
        run_ids=tuple(r["run_id"] for r in rows), reused=sum(key in found for _, key in runs),
        test_set=rows[0]["test_set"], changes=changes)


def train_here(jobs: list[Job], target: Target, tracking_uri: str | None,
               say: Callable[[str], None]) -> None:
    """Train ``jobs`` one after another in this process, a line each."""
    tracker, cache = Tracker(tracking_uri), SplitsCache()
    for job in jobs:
        config = RunConfig.model_validate(job.config)
        what = (f"confirm trial {job.trial}{_with(job)} ({', '.join(job.roles)}) subset "
                f"{config.data.split_seed} seed {config.train.seed}")
        say(f"{what}: training {config.train.epochs} epoch(s)")
        say(f"{what}: test accuracy {train_one(tracker, target, job, cache):.4f}")


def train_share(target: dict[str, Any], jobs: list[dict[str, Any]], tracking_uri: str | None,
                threads: int) -> int:
    """A worker process's share of the confirmation runs (see :mod:`rnnlab.engines.confirm`),
    trained with ``threads`` CPU threads; returns how many it trained."""
    torch.set_num_threads(threads)
    tracker, cache, where = Tracker(tracking_uri), SplitsCache(), Target(**target)
    for job in jobs:
        train_one(tracker, where, Job(**{**job, "roles": tuple(job["roles"])}), cache)
    return len(jobs)


def train_one(tracker: Tracker, target: Target, job: Job, cache: SplitsCache) -> float:
    """One tracked confirmation run: fit, then one pass over the test set; its test accuracy.
    An interrupt or an error closes the run KILLED or FAILED, never RUNNING."""
    config = RunConfig.model_validate(job.config)
    device = resolve_device(config.train.device)
    data = cache.get(config.data, device)
    run_id = tracker.start_run(
        target.experiment,
        f"confirm-trial-{job.trial}{_with(job).replace(' ', '-')}-split-"
        f"{config.data.split_seed}-seed-{config.train.seed}",
        config=config, parent_run_id=target.parent_run_id, tags={
            "rnnlab.kind": CONFIRM_KIND, "rnnlab.study": target.study,
            "rnnlab.config_hash": job.key, "rnnlab.confirm_trial": str(job.trial),
            "rnnlab.confirm_seed": str(config.train.seed),
            "rnnlab.confirm_split": str(config.data.split_seed),
            "rnnlab.confirm_roles": ", ".join(job.roles),
            **({"rnnlab.confirm_changes": job.changes} if job.changes else {}),
            "rnnlab.confirm_weights": target.weights, **data.info})
    with tracker.closing_on_error(run_id):
        keep = None if target.weights == LAST_EPOCH else (target.metric, target.maximize)
        result = fit(config, [tracker.epoch_logger(run_id)], data=data, keep_best=keep)
        test_loss, test_acc = evaluate(result.model, data.test_x, data.test_y)
        tracker.log_metrics(run_id, {"test_acc": test_acc, "test_loss": test_loss,
                                     "weights_epoch": result.weights_epoch or result.epochs_run})
        tracker.log_result(run_id, result)
    tracker.end_run(run_id, tracker.status_for(result))
    return test_acc


def _with(job: Job) -> str:
    return f" with {job.changes}" if job.changes else ""
