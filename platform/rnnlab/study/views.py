"""Samplers that model a view of the study rather than all of it: a stratum's trials
(:class:`~rnnlab.study.strata.StratifiedSampler`), or a window of the most recent ones
(:class:`WindowedSampler`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from rnnlab.storage.adapter import window_study


class ViewSampler(optuna.samplers.BaseSampler):
    """Any sampler, given the study as :meth:`_view` shows it at every call."""

    def __init__(self, inner: optuna.samplers.BaseSampler):
        self.inner = inner

    def _view(self, study: optuna.Study, trial: FrozenTrial) -> optuna.Study:
        raise NotImplementedError

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.inner.infer_relative_search_space(self._view(study, trial), trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.inner.sample_relative(self._view(study, trial), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.inner.sample_independent(self._view(study, trial), trial, param_name,
                                             param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(self._view(study, trial), trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.inner.after_trial(self._view(study, trial), trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


class WindowedSampler(ViewSampler):
    """A model-based sampler (TPE, GP) that models the ``window`` most recent finished trials
    and the ``keep_best`` best of the others, not the whole history: its cost per trial stops
    growing with the study (benchmarks/study_machinery.py). TPE models the best 10% of what it
    sees, at most 25, against the rest: with ``keep_best`` 25 and a window of 250 or more, its
    good trials are the ones it would pick from the whole study, and only the rest is a
    sample (the most recent)."""

    def __init__(self, inner: optuna.samplers.BaseSampler, window: int, keep_best: int):
        super().__init__(inner)
        self.window, self.keep_best = window, keep_best

    def _view(self, study: optuna.Study, trial: FrozenTrial) -> optuna.Study:
        return window_study(study, self.window, self.keep_best, self.inner)
