"""Optuna's cache of a database's trials, indexed, so that reading a study of 10,000 trials costs
what changed since the last read rather than a pass over all of them.

Optuna's ``_CachedStorage`` keeps every finished trial in memory and reads only the new and the
unfinished ones from the database, but it sorts all of them by number at every
``get_all_trials`` and filters them by state in Python: 2-3 ms a call at 10,000 trials, and a
trial asks about ten times (its claim, its draw, each pruner verdict). A stratum's view then
filtered them again by params (as much again). Here the trials stay in number order as they
arrive; finished ones never change, so what a call with given states (and a stratum's levels)
selects among them is kept and grown as trials finish: a call costs a copy of its answer plus
the unfinished trials, a handful (benchmarks/study_machinery.py).

A stratum's view (what its pruner judges against and its sampler models) may also be read
without asking the database, when it was asked less than :data:`VIEW_FRESH_S` ago and this
process created no trial and changed no trial's state or params since: a worker of trials that
take milliseconds otherwise reads the study ten times a trial. Such a verdict or draw may miss
what another worker told in that last moment, as it would have had the other worker told a
moment later. Everything else (a claim's count of the budget above all) reads the database
every time.
"""

from __future__ import annotations

import bisect
import copy
import math
import time
from collections.abc import Container, Hashable
from typing import Any

from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import FrozenTrial, TrialState

from rnnlab.storage.keys import levels_of_keys

VIEW_FRESH_S = 1.0  # how old a stratum's view may be (see above)

# What a selection matches beyond its states: (keys, their values) of a stratum, or None.
Where = tuple[tuple[str, ...], tuple[Any, ...]] | None


def _number(trial: FrozenTrial) -> int:
    return trial.number


def _put(found: list[FrozenTrial], numbers: list[int], trial: FrozenTrial) -> None:
    """Put ``trial`` in its place in ``found`` (kept in number order, ``numbers`` beside it),
    in place of the copy read earlier if there is one."""
    at = bisect.bisect_left(numbers, trial.number)
    if at < len(numbers) and numbers[at] == trial.number:
        found[at] = trial
    else:
        numbers.insert(at, trial.number)
        found.insert(at, trial)


def _levels(trial: FrozenTrial, keys: tuple[str, ...] | None) -> tuple | None:
    """The trial's values of ``keys`` (sampled or enqueued; None when it lacks one); None for
    no keys."""
    if keys is None:
        return None
    levels = levels_of_keys(trial, keys)
    return None if levels is None else tuple(levels.values())


class _Selection:
    """The finished trials in some states, split by their values of some keys (a stratum's
    levels; all in one part for no keys), each part in number order."""

    def __init__(self, states: frozenset[TrialState] | None, keys: tuple[str, ...] | None,
                 trials: list[FrozenTrial]):
        self.states, self.keys = states, keys
        self.parts: dict[tuple | None, tuple[list[FrozenTrial], list[int]]] = {}
        for t in trials:  # in number order: each part is too
            if t.state.is_finished() and (states is None or t.state in states):
                found, numbers = self.parts.setdefault(_levels(t, keys), ([], []))
                found.append(t)
                numbers.append(t.number)

    def put(self, trial: FrozenTrial) -> None:
        """Put a finished trial (new, or read again) in its place."""
        if self.states is not None and trial.state not in self.states:
            return
        _put(*self.parts.setdefault(_levels(trial, self.keys), ([], [])), trial)


class _Index:
    """One study's trials: all of them in number order, the unfinished apart, and the finished
    ones of each selection asked for so far (kept in number order as trials finish)."""

    def __init__(self) -> None:
        self.trials: list[FrozenTrial] = []
        self.numbers: list[int] = []
        self.unfinished: dict[int, FrozenTrial] = {}
        self.selections: dict[Hashable, _Selection] = {}

    def put(self, trial: FrozenTrial) -> None:
        _put(self.trials, self.numbers, trial)
        if not trial.state.is_finished():
            self.unfinished[trial.number] = trial
            return
        self.unfinished.pop(trial.number, None)
        for selection in self.selections.values():
            selection.put(trial)

    def select(self, states: Container[TrialState] | None, where: Where) -> list[FrozenTrial]:
        if states is None and where is None:
            return list(self.trials)
        wanted = None if states is None else frozenset(s for s in TrialState if s in states)
        keys, levels = where if where is not None else (None, None)
        selection = self.selections.get((wanted, keys))
        if selection is None:
            selection = self.selections[wanted, keys] = _Selection(wanted, keys, self.trials)
        found, numbers = selection.parts.get(levels, ([], []))
        extra = sorted((t for t in self.unfinished.values()
                        if (wanted is None or t.state in wanted) and _levels(t, keys) == levels),
                       key=_number)
        out = list(found)
        for shift, trial in enumerate(extra):  # a handful, each put in its place
            out.insert(bisect.bisect_left(numbers, trial.number) + shift, trial)
        return out


class TrialCache(_CachedStorage):
    """Optuna's cached RDB storage whose reads of a study's trials come from an index of them
    (:class:`_Index`), and can select a stratum's (:meth:`get_trials_where`)."""

    def __init__(self, backend: Any):
        super().__init__(backend)
        self._indexes: dict[int, _Index] = {}
        self._changes = 0  # trials created or whose state or params this process changed
        self._read: dict[int, tuple[float, int]] = {}  # per study: when last read, _changes
        self._made: set[int] = set()  # running trials made here, not written to since

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._indexes, self._changes, self._read, self._made = {}, 0, {}, set()
        for study_id, study in self._studies.items():
            for trial in study.trials.values():
                self._indexes.setdefault(study_id, _Index()).put(trial)

    def _add_trials_to_cache(self, study_id: int, trials: list[FrozenTrial]) -> None:
        super()._add_trials_to_cache(study_id, trials)
        index = self._indexes.setdefault(study_id, _Index())
        for trial in trials:
            index.put(trial)

    def delete_study(self, study_id: int) -> None:
        super().delete_study(study_id)
        with self._lock:
            self._indexes.pop(study_id, None)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        self._changes += 1
        trial_id = super().create_new_trial(study_id, template_trial)
        if template_trial is None or template_trial.state == TrialState.RUNNING:
            self._made.add(trial_id)
        return trial_id

    def get_trial(self, trial_id: int) -> FrozenTrial:
        """The trial; a running one this process made and has not written to since is answered
        once, without a read, as the database answered its creation: ``optuna.Trial`` reads a
        trial back as soon as it is made (under the study's lock, in a claim), and no other
        worker changes a running trial before its heartbeat has been silent for the study's
        grace period."""
        with self._lock:
            if trial_id in self._made:
                self._made.discard(trial_id)
                study_id, number = self._trial_id_to_study_id_and_number[trial_id]
                return copy.deepcopy(self._studies[study_id].trials[number])
        return super().get_trial(trial_id)

    def _wrote(self, trial_id: int) -> None:
        self._made.discard(trial_id)

    def set_trial_param(self, trial_id: int, *args: Any, **kwargs: Any) -> None:
        self._changes += 1
        self._wrote(trial_id)
        super().set_trial_param(trial_id, *args, **kwargs)

    def set_trial_state_values(self, trial_id: int, *args: Any, **kwargs: Any) -> bool:
        self._changes += 1
        self._wrote(trial_id)
        return super().set_trial_state_values(trial_id, *args, **kwargs)

    def set_trial_intermediate_value(self, trial_id: int, *args: Any, **kwargs: Any) -> None:
        self._wrote(trial_id)
        super().set_trial_intermediate_value(trial_id, *args, **kwargs)

    def set_trial_user_attr(self, trial_id: int, *args: Any, **kwargs: Any) -> None:
        self._wrote(trial_id)
        super().set_trial_user_attr(trial_id, *args, **kwargs)

    def set_trial_system_attr(self, trial_id: int, *args: Any, **kwargs: Any) -> None:
        self._wrote(trial_id)
        super().set_trial_system_attr(trial_id, *args, **kwargs)

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        read = time.monotonic(), self._changes
        super()._read_trials_from_remote_storage(study_id)
        self._read[study_id] = read

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self.get_trials_where(study_id, deepcopy, states, None)

    def get_trials_where(self, study_id: int, deepcopy: bool = True,
                         states: Container[TrialState] | None = None,
                         where: Where = None, max_age_s: float = 0.0) -> list[FrozenTrial]:
        """The study's trials in ``states`` (all: None) whose params (sampled or enqueued) of
        ``where``'s keys have its values (all: None), by number: as this process read them
        last if that was under ``max_age_s`` ago and it changed no trial since, else read now
        (a stratum's view: :data:`VIEW_FRESH_S`)."""
        read_at, changes = self._read.get(study_id, (-math.inf, -1))
        if not (changes == self._changes and time.monotonic() - read_at < max_age_s):
            self._read_trials_from_remote_storage(study_id)
        with self._lock:
            index = self._indexes.get(study_id)
            trials = [] if index is None else index.select(states, where)
        return copy.deepcopy(trials) if deepcopy else trials
