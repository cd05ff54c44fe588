"""A study's state at a glance: what ``rnnlab status`` prints and a sweep returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from rnnlab.core.selection import plan_strata, stale_advice, went_on
from rnnlab.core.study_spec import StudySpec, shares, strata_levels, stratum_name
from rnnlab.storage.adapter import (
    DEFAULT_STORAGE,
    load_study,
    stratum_results,
    stratum_study,
    study_names,
)
from rnnlab.storage.keys import ATTR_BUDGET, ATTR_PARENT, ATTR_SPEC, FINISHED_NAMES, trained_params
from rnnlab.study.strata import stratum_of


@dataclass
class StratumStatus:
    """One stratum of a stratified study: its share of the budget, and how far it got."""

    name: str  # model.cell=gru
    share: int
    finished: int  # complete or pruned
    running: int
    best_value: float | None
    best_trial: int | None


@dataclass
class StudyStatus:
    """Counts per trial state, the best complete trial, and where the study's run is."""

    name: str
    budget: int | None
    counts: dict[str, int]
    best_value: float | None
    best_params: dict[str, Any]
    best_trial: int | None
    metric: str | None
    direction: str
    parent_run_id: str | None = None
    epochs: int | None = None  # each trial's epochs (the spec's train.epochs)
    running_epochs: dict[int, int] = field(default_factory=dict)  # running trial: epochs done
    mean_trial_s: float | None = None  # mean wall time of the finished trials
    strata: list[StratumStatus] = field(default_factory=list)  # a stratified study's, in order
    # a selection planned before its search went on (other top trials now): its choices are
    # stale and not used; what to do about it. None for any other study
    stale: str | None = None

    @property
    def finished(self) -> int:
        """Trials that count against the budget (complete or pruned)."""
        return sum(self.counts.get(s, 0) for s in FINISHED_NAMES)

    def eta_s(self, workers: int) -> float | None:
        """Seconds until the budget is used: the mean wall time of the finished trials (pruned
        ones included, as the trials to come will be pruned as often) times the trials still
        to finish, divided between ``workers``; None before any trial has finished."""
        if self.mean_trial_s is None or self.budget is None:
            return None
        return self.mean_trial_s * max(0, self.budget - self.finished) / max(1, workers)


def duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3725`` -> ``1h02m``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def study_status(storage: str = DEFAULT_STORAGE, name: str | None = None) -> list[StudyStatus]:
    """The status of one study, or of every study in the storage.

    Raises:
        RnnlabError: the storage cannot be opened or the study does not exist.
    """
    names = [name] if name else study_names(storage)
    return [_status(load_study(storage, n), n, storage) for n in names]


def _status(study: optuna.Study, name: str, storage: str) -> StudyStatus:
    trials = study.get_trials(deepcopy=False)
    counts = {st.name: sum(t.state == st for t in trials) for st in TrialState}
    best = study.best_trial if counts[TrialState.COMPLETE.name] else None
    attrs = study.user_attrs  # one read of the storage
    spec = attrs.get(ATTR_SPEC, {})
    took = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials
            if t.state.name in FINISHED_NAMES and t.datetime_start and t.datetime_complete]
    return StudyStatus(
        name=name, budget=attrs.get(ATTR_BUDGET), counts=counts,
        best_value=best.value if best else None, best_params=trained_params(best),
        best_trial=best.number if best else None, metric=spec.get("study", {}).get("metric"),
        direction=study.direction.name.lower(), parent_run_id=attrs.get(ATTR_PARENT),
        epochs=spec.get("train", {}).get("epochs"),
        running_epochs={t.number: len(t.intermediate_values) for t in trials
                        if t.state == TrialState.RUNNING},
        mean_trial_s=sum(took) / len(took) if took else None,
        strata=_strata(study, spec, trials, attrs.get(ATTR_BUDGET)),
        stale=_stale(storage, spec, study.direction.name.lower()))


def _stale(storage: str, stored: dict[str, Any], direction: str) -> str | None:
    """For a selection (its spec ``stored``) planned before its search went on: how the search
    went on (:func:`~rnnlab.core.selection.went_on`) and what to do. None for any other study,
    and where the searched study is not in ``storage`` (a selection planned from a report)."""
    plan = stored.get("study", {}).get("selection")
    if not plan or plan["of"] not in study_names(storage):
        return None
    how = went_on(plan, stratum_results(load_study(storage, plan["of"]), plan_strata(plan)),
                  direction)
    return None if how is None else stale_advice(plan["of"], how)


def _strata(study: optuna.Study, stored: dict[str, Any], trials: list[FrozenTrial],
            budget: int | None) -> list[StratumStatus]:
    if not stored.get("study", {}).get("strata"):
        return []
    levels = strata_levels(StudySpec.model_validate(stored))
    plan = (stored["study"].get("ablation") or stored["study"].get("selection") or {}).get(
        "trials")
    # a derived study's strata hold what its plan gives each (an ablation's level outside the
    # searched range is dropped for one stratum only; a stratum with fewer complete trials
    # than a selection's top has fewer candidates), not equal shares
    held = shares(budget or 0, len(levels)) if plan is None else [
        sum(all(p.get(k) == v for k, v in match.items()) for p in plan) for match in levels]
    out = []
    for share, match in zip(held, levels, strict=True):
        mine = [t for t in trials if stratum_of(t, list(match)) == match]
        done = any(t.state == TrialState.COMPLETE for t in mine)
        best = stratum_study(study, match, study.sampler).best_trial if done else None
        out.append(StratumStatus(
            stratum_name(match), share, sum(t.state.name in FINISHED_NAMES for t in mine),
            sum(t.state == TrialState.RUNNING for t in mine),
            best.value if best else None, best.number if best else None))
    return out
