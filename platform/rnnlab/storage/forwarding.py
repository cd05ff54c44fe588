"""A storage that forwards every Optuna storage call to another, through one method that
subclasses shape (held whole against Ctrl-C, ridden through outages)."""

from __future__ import annotations

import abc
from collections.abc import Container
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from rnnlab.storage.keys import enqueued_params

# Every public method of Optuna's storage interface, abstract or not: all are forwarded, so
# the inner storage's own implementations (a cache's, a journal's) are the ones that run.
METHODS = tuple(name for name, value in vars(BaseStorage).items()
                if callable(value) and not name.startswith("_"))


class ForwardingStorage(BaseStorage):
    """Every call goes to ``inner`` through :meth:`call`."""

    def __init__(self, inner: BaseStorage):
        self.inner = inner

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Make the call ``name`` on the inner storage (subclasses wrap it)."""
        return getattr(self.inner, name)(*args, **kwargs)


def _forwarded(name: str):
    def method(self: ForwardingStorage, *args: Any, **kwargs: Any) -> Any:
        return self.call(name, *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


for _name in METHODS:
    setattr(ForwardingStorage, _name, _forwarded(_name))
abc.update_abstractmethods(ForwardingStorage)


class StratumStorage(ForwardingStorage):
    """A view of a storage that holds only the trials whose params (sampled or enqueued) match
    ``match``: what a stratified study's pruner and sampler see of it. Writes go through."""

    def __init__(self, inner: BaseStorage, match: dict[str, Any]):
        super().__init__(inner)
        self.match = match

    def _holds(self, trial: FrozenTrial) -> bool:
        params = enqueued_params(trial)
        return all(params.get(k) == v for k, v in self.match.items())

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return [t for t in self.inner.get_all_trials(study_id, deepcopy, states)
                if self._holds(t)]

    # Optuna's own implementations, over the trials above rather than the inner storage's
    get_n_trials = BaseStorage.get_n_trials
    get_best_trial = BaseStorage.get_best_trial
