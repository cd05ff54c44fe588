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
    """Any sampler, given the study as :meth:`_view` shows it.

    A trial's draw (its search space, its relative and independent params) sees one view,
    made at its first call: Optuna's own cache of a study's trials, which TPE reads three times
    a draw, lives with the view, and a view made at every call read the study every time
    (a query of every unfinished trial each, on a database). ``before_trial`` and
    ``after_trial`` get a view of their own, made then.
    """

    def __init__(self, inner: optuna.samplers.BaseSampler):
        self.inner = inner
        self._drawing: tuple[tuple[str, int], optuna.Study] | None = None

    def _view(self, study: optuna.Study, trial: FrozenTrial) -> optuna.Study:
        raise NotImplementedError

    def _draw_view(self, study: optuna.Study, trial: FrozenTrial) -> optuna.Study:
        key = (study.study_name, trial.number)
        if self._drawing is None or self._drawing[0] != key:
            self._drawing = key, self._view(study, trial)
        return self._drawing[1]

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.inner.infer_relative_search_space(self._draw_view(study, trial), trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.inner.sample_relative(self._draw_view(study, trial), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.inner.sample_independent(self._draw_view(study, trial), trial, param_name,
                                             param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(self._view(study, trial), trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._drawing = None  # the trial's view is done with
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
