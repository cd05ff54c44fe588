"""Optuna's storage on a database server, through outages of the server: every call is tried
again while the database cannot be reached, and the two writes that cannot simply be repeated
are made safe (docs/decisions.md, "Outages")."""

from __future__ import annotations

import copy
import threading
import uuid
from datetime import datetime
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from rnnlab.errors import mask_url
from rnnlab.retrying import Store, chain, store
from rnnlab.storage.cache import TrialCache
from rnnlab.storage.forwarding import ForwardingStorage
from rnnlab.storage.keys import DUPLICATE_OF, TOKEN

_POSTGRES_DOWN = {"57P01", "57P02", "57P03"}  # admin or crash shutdown, cannot connect now
_DIALECTS = {"postgresql": "PostgreSQL", "mysql": "MySQL", "mariadb": "MariaDB"}
_DATABASES: list[Store] = []


def is_db_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached (refused, dropped, shutting down),
    not that a statement was wrong."""
    from sqlalchemy import exc as sa

    for e in chain(exc):
        if isinstance(e, sa.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, (sa.DisconnectionError, ConnectionError)):
            return True
        if isinstance(e, sa.OperationalError):
            code = getattr(e.orig, "sqlstate", None) or getattr(e.orig, "pgcode", None)
            return code is None or code.startswith("08") or code in _POSTGRES_DOWN
    return False


def database(url: str) -> Store:
    """The outage record of the database ``url`` names, in this process."""
    kind = _DIALECTS.get(url.split(":", 1)[0].split("+", 1)[0], "database")
    found = store(f"{kind} at {mask_url(url)}", is_db_outage)
    if found not in _DATABASES:
        _DATABASES.append(found)
    return found


def back_at() -> float:
    """When a database of this process last came back from an outage (0: never down). Nobody
    could stamp a heartbeat while it was down, so silence counts from then."""
    return max((s.back_at for s in _DATABASES), default=0.0)


class RidingStorage(ForwardingStorage):
    """Optuna's cached RDB storage, every call of which rides out outages of the database."""

    def __init__(self, rdb: RDBStorage, url: str):
        super().__init__(TrialCache(rdb))  # Optuna's cache, indexed, before the database
        self.rdb, self.store = rdb, database(url)
        self._prepared = _count_prepared(rdb)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.store.call(getattr(self.inner, name), *args, **kwargs)

    @property
    def engine(self):
        return self.rdb.engine

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        token, tries = uuid.uuid4().hex, []

        state = TrialState.RUNNING if template_trial is None else template_trial.state

        def attempt() -> int | list[FrozenTrial]:
            if tries and (found := self._created(study_id, token, state)):
                return found  # the attempt whose answer was lost created it
            tries.append(1)
            prepared = None if self._prepared is None else getattr(self._prepared, "n", 0)
            trial_id = self.inner.create_new_trial(study_id, _tokened(template_trial, token))
            if len(tries) == 1 and prepared is not None and self._prepared.n == prepared + 1:
                return trial_id  # made once, by the one attempt: no copy to look for
            return self._created(study_id, token, state)

        created = self.store.call(attempt)
        if isinstance(created, int):
            return created
        first, *copies = created
        for trial in copies:  # never handed to anyone: failed before a worker claims one
            if not trial.state.is_finished():
                copy_id = self._id(study_id, trial)
                self.store.call(self.inner.set_trial_system_attr, copy_id, DUPLICATE_OF,
                                first.number)
                self.store.call(self.inner.set_trial_state_values, copy_id, TrialState.FAIL)
        return self._id(study_id, first)

    def _created(self, study_id: int, token: str, state: TrialState) -> list[FrozenTrial]:
        """The trials created with ``token``, by number: looked for first among the trials in
        the ``state`` they were made in (in a large study, far fewer than all), then among all
        (a waiting one may have been taken by another worker's claim meanwhile)."""
        for states in ((state,), None):
            found = [t for t in self.inner.get_all_trials(study_id, deepcopy=False,
                                                          states=states)
                     if t.system_attrs.get(TOKEN) == token]
            if found:
                return found
        return []

    def _id(self, study_id: int, trial: FrozenTrial) -> int:
        return self.store.call(self.inner.get_trial_id_from_study_id_trial_number, study_id,
                               trial.number)

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values=None) -> bool:
        tries = []

        def attempt() -> bool:
            if not tries:
                tries.append(1)
                return self.inner.set_trial_state_values(trial_id, state, values)
            try:  # an earlier attempt's answer was lost: it may have changed the state
                done = self.inner.set_trial_state_values(trial_id, state, values)
            except UpdateFinishedTrialError:
                if state in (TrialState.COMPLETE, TrialState.PRUNED) and self._now(
                        trial_id) == state:
                    return True
                raise
            return done or (state == TrialState.RUNNING and self._now(trial_id) == state)

        return self.store.call(attempt)

    def _now(self, trial_id: int) -> TrialState:
        return self.inner.get_trial(trial_id).state


def _count_prepared(rdb: RDBStorage) -> threading.local | None:
    """Counts, per thread, the trials ``rdb`` prepared for creation (Optuna's storage tries a
    creation up to five times itself, each try a trial that may have been committed): a
    creation that prepared one trial in one attempt made no copy, and is not looked for among
    the study's trials (a read of them per trial). None where Optuna's storage has no such step
    to count: every creation is then looked for."""
    prepare = getattr(rdb, "_get_prepared_new_trial", None)
    if prepare is None:
        return None
    prepared = threading.local()

    def counted(*args: Any, **kwargs: Any) -> Any:
        prepared.n = getattr(prepared, "n", 0) + 1
        return prepare(*args, **kwargs)

    rdb._get_prepared_new_trial = counted
    return prepared


def _tokened(template: FrozenTrial | None, token: str) -> FrozenTrial:
    """The template with the token among its system attributes (a plain RUNNING trial, as
    Optuna makes one, when there is none)."""
    if template is None:
        return FrozenTrial(number=-1, state=TrialState.RUNNING, value=None, values=None,
                           datetime_start=datetime.now(), datetime_complete=None, params={},
                           distributions={}, user_attrs={}, system_attrs={TOKEN: token},
                           intermediate_values={}, trial_id=-1)
    tokened = copy.deepcopy(template)
    tokened.system_attrs = {**template.system_attrs, TOKEN: token}
    return tokened
