"""Strata: a study's budget shared out equally between the levels of ``study.strata`` (say, each
cell), each stratum pruned against and sampled from its own trials only.

Without them the median pruner judges a slow-starting vanilla RNN against GRUs, and TPE spends
the budget on the cell that looked best first. A claim picks the stratum furthest below its
share (:func:`next_stratum`) and enqueues the trial with that stratum's levels; the pruner and
the model-based samplers then see the study through :func:`~rnnlab.storage.adapter.stratum_study`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from rnnlab.core.study_spec import shares
from rnnlab.storage.adapter import StudyRead, stratum_study
from rnnlab.storage.forwarding import trial_levels
from rnnlab.storage.keys import FINISHED, levels_of_keys
from rnnlab.study.views import ViewSampler

COUNTED = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)  # what holds a share of the budget


def stratum_of(trial: FrozenTrial, keys: Sequence[str]) -> dict[str, Any] | None:
    """The trial's levels of ``keys`` (sampled or enqueued); None when it has not all of them."""
    return levels_of_keys(trial, keys) if keys else None


def next_stratum(strata: list[dict[str, Any]], budget: int,
                 trials: Sequence[FrozenTrial] | StudyRead) -> dict[str, Any] | None:
    """The stratum the next trial belongs to: the one furthest below its share of ``budget``
    (finished, running and queued trials count; failed ones are retried), the first of equals;
    None when every stratum has its share. ``trials``: the study's, or its read
    (:class:`~rnnlab.storage.adapter.StudyRead`, whose storage keeps each stratum's apart)."""
    keys = tuple(strata[0])
    if isinstance(trials, StudyRead):
        held = [len(trials.select(COUNTED, (keys, tuple(s.values())))) for s in strata]
    else:
        index = {tuple(s.values()): i for i, s in enumerate(strata)}
        held = [0] * len(strata)
        for levels in trial_levels(None, 0, [t for t in trials if t.state in COUNTED], keys):
            if (i := index.get(levels)) is not None:
                held[i] += 1
    room = [share - n for share, n in zip(shares(budget, len(strata)), held, strict=True)]
    best = max(range(len(strata)), key=lambda i: (room[i], -i))
    return dict(strata[best]) if room[best] > 0 else None


class StratifiedPruner(optuna.pruners.BasePruner):
    """Any pruner, judging a trial against the trials of its own stratum only (its startup
    trials and warm-up counted there too)."""

    def __init__(self, inner: optuna.pruners.BasePruner, keys: Sequence[str]):
        self.inner, self.keys = inner, list(keys)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        levels = stratum_of(trial, self.keys)
        if levels is None:
            return self.inner.prune(study, trial)
        return self.inner.prune(stratum_study(study, levels, study.sampler), trial)


class StratifiedSampler(ViewSampler):
    """Any sampler, modelling each stratum from its own trials only. The strata keys are fixed
    by the claim (an enqueued trial), never sampled."""

    def __init__(self, inner: optuna.samplers.BaseSampler, keys: Sequence[str]):
        super().__init__(inner)
        self.keys = list(keys)

    def _view(self, study: optuna.Study, trial: FrozenTrial) -> optuna.Study:
        levels = stratum_of(trial, self.keys)
        return study if levels is None else stratum_study(study, levels, self.inner)

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        space = super().infer_relative_search_space(study, trial)
        return {k: d for k, d in space.items() if k not in self.keys}
