"""A storage that forwards every Optuna storage call to another, through one method that
subclasses shape (held whole against Ctrl-C, ridden through outages)."""

from __future__ import annotations

import abc
import heapq
import weakref
from collections.abc import Container, Sequence
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from rnnlab.storage.cache import VIEW_FRESH_S, TrialCache
from rnnlab.storage.keys import levels_of_keys

# Every public method of Optuna's storage interface, abstract or not: all are forwarded, so
# the inner storage's own implementations (a cache's, a journal's) are the ones that run.
# So is the indexed cache's selection of a stratum (rnnlab.storage.cache), where there is one.
METHODS = (*(name for name, value in vars(BaseStorage).items()
             if callable(value) and not name.startswith("_")), "get_trials_where")


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


# Per storage, per study and tuple of keys: each trial's levels of them, by trial number.
_LEVELS: weakref.WeakKeyDictionary[BaseStorage, dict[tuple, dict[int, tuple]]] = (
    weakref.WeakKeyDictionary())


def trial_levels(storage: BaseStorage | None, study_id: int, trials: Sequence[FrozenTrial],
                 keys: tuple[str, ...]) -> list[tuple | None]:
    """Each trial's values of ``keys`` (sampled or enqueued); None for one that lacks a key.

    A trial's params never change once set, so the levels of a trial that has all of them are
    kept, by study and trial number, for as long as ``storage`` lives (None: nothing kept): a
    study of 10,000 trials is split into its strata several times per trial, and working each
    trial's params out each time cost 0.2 s a trial.
    """
    cache = (None if storage is None
             else _LEVELS.setdefault(storage, {}).setdefault((study_id, keys), {}))
    found: list[tuple | None] = []
    for t in trials:
        got = None if cache is None else cache.get(t.number)
        if got is None:
            values = levels_of_keys(t, keys)
            if values is not None:
                got = tuple(values.values())
                if cache is not None:
                    cache[t.number] = got
        found.append(got)
    return found


class ViewStorage(ForwardingStorage):
    """A view of one study of a storage, whose trials subclasses filter. Writes go through.

    The view knows its study's id: Optuna's ``Study`` asks for it by name when made, and a
    view is made for each pruner verdict and each draw (a query each on a database)."""

    def __init__(self, inner: BaseStorage, study: tuple[str, int] | None = None):
        super().__init__(inner)
        self._study = study  # (name, id)

    def get_study_id_from_name(self, study_name: str) -> int:
        if self._study is not None and study_name == self._study[0]:
            return self._study[1]
        return self.call("get_study_id_from_name", study_name)

    # Optuna's own implementations, over the view's trials rather than the inner storage's
    get_n_trials = BaseStorage.get_n_trials
    get_best_trial = BaseStorage.get_best_trial


class StratumStorage(ViewStorage):
    """A view of a storage that holds only the trials whose params (sampled or enqueued) match
    ``match``: what a stratified study's pruner and sampler see of it. Writes go through."""

    def __init__(self, inner: BaseStorage, match: dict[str, Any],
                 study: tuple[str, int] | None = None):
        super().__init__(inner, study)
        self.match = match
        self._keys, self._want = tuple(match), tuple(match.values())

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        if indexed(self.inner):
            return self.inner.get_trials_where(study_id, deepcopy, states,
                                               (self._keys, self._want), VIEW_FRESH_S)
        trials = self.inner.get_all_trials(study_id, deepcopy, states)
        want = self._want
        levels = trial_levels(self.inner, study_id, trials, self._keys)
        return [t for t, got in zip(trials, levels, strict=True) if got == want]


def indexed(storage: BaseStorage) -> bool:
    """Whether ``storage`` forwards, through no view, to an indexed cache that selects a
    stratum itself (:class:`~rnnlab.storage.cache.TrialCache`)."""
    while isinstance(storage, ForwardingStorage) and not isinstance(storage, ViewStorage):
        storage = storage.inner
    return isinstance(storage, TrialCache)


class WindowStorage(ViewStorage):
    """A view of a storage whose finished trials are the ``window`` most recent and the
    ``keep_best`` best of the others (by value, ``maximize`` or not), with every unfinished
    trial: what a windowed sampler models. Writes go through."""

    def __init__(self, inner: BaseStorage, window: int, keep_best: int, maximize: bool,
                 study: tuple[str, int] | None = None):
        super().__init__(inner, study)
        self.window, self.keep_best, self.maximize = window, keep_best, maximize

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        trials = self.inner.get_all_trials(study_id, deepcopy, states)
        finished = [t for t in trials if t.state.is_finished()]
        if len(finished) <= self.window:
            return trials
        older = finished[:-self.window]
        sign = 1.0 if self.maximize else -1.0
        best = heapq.nlargest(self.keep_best, (t for t in older if t.state == TrialState.COMPLETE
                                               and t.value is not None),
                              key=lambda t: sign * t.value)
        dropped = {t.number for t in older} - {t.number for t in best}
        return [t for t in trials if t.number not in dropped]
