"""Optuna's storage on a database server, through outages of the server (see
:mod:`rnnlab.retrying`): every call is tried again while the database cannot be reached.

Only what can be repeated safely is repeated as it is (reads; attributes, params and
intermediate values, which are written by key). The two writes that cannot be are made safe:

- creating a trial (``ask``, ``enqueue_trial``) carries a token, and a retry first looks for a
  trial with it: the attempt whose answer was lost may have created one. Copies that Optuna's
  own retries made are failed at once (no budget counts a failed trial).
- a state change whose answer was lost is taken as done when the trial is found in that state,
  where only this worker can have put it there: COMPLETE or PRUNED (only a trial's own worker
  tells), or RUNNING from WAITING (popped only under the study's lock, whose loss voids the
  claim: :mod:`rnnlab.study.reclaim`). A trial found FAIL was failed by someone else.
"""

from __future__ import annotations

import abc
import copy
import uuid
from datetime import datetime

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from rnnlab.errors import mask_url
from rnnlab.retrying import Store, chain, store

TOKEN = "rnnlab:created"  # trial system attribute: the token it was created with
DUPLICATE_OF = "rnnlab:duplicate_of"  # on a copy failed at once: the trial it copies
_POSTGRES_DOWN = {"57P01", "57P02", "57P03"}  # admin or crash shutdown, cannot connect now
_DIALECTS = {"postgresql": "PostgreSQL", "mysql": "MySQL", "mariadb": "MariaDB"}
_DATABASES: list[Store] = []
_REPEATABLE = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_all_studies", "set_trial_param",
    "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id", "get_trial_param",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial", "get_all_trials", "get_n_trials", "get_best_trial", "get_trial_params",
    "get_trial_user_attrs", "get_trial_system_attrs", "check_trial_is_updatable",
)


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


def _repeated(name: str):
    def method(self: RidingStorage, *args, **kwargs):
        return self.store.call(getattr(self._inner, name), *args, **kwargs)

    method.__name__ = name
    return method


class RidingStorage(BaseStorage):
    """Optuna's cached RDB storage, every call of which rides out outages of the database."""

    def __init__(self, rdb: RDBStorage, url: str):
        self.rdb, self.store = rdb, database(url)
        self._inner = optuna.storages.get_storage(rdb)  # Optuna's cache in front of the database

    @property
    def engine(self):
        return self.rdb.engine

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        token, tries = uuid.uuid4().hex, []

        def attempt() -> list[FrozenTrial]:
            if tries and (found := self._created(study_id, token)):
                return found  # the attempt whose answer was lost created it
            tries.append(1)
            self._inner.create_new_trial(study_id, _tokened(template_trial, token))
            return self._created(study_id, token)

        first, *copies = self.store.call(attempt)
        for trial in copies:  # never handed to anyone: failed before a worker claims one
            if not trial.state.is_finished():
                copy_id = self._id(study_id, trial)
                self.store.call(self._inner.set_trial_system_attr, copy_id, DUPLICATE_OF,
                                first.number)
                self.store.call(self._inner.set_trial_state_values, copy_id, TrialState.FAIL)
        return self._id(study_id, first)

    def _created(self, study_id: int, token: str) -> list[FrozenTrial]:
        """The trials created with ``token``, by number."""
        return [t for t in self._inner.get_all_trials(study_id, deepcopy=False)
                if t.system_attrs.get(TOKEN) == token]

    def _id(self, study_id: int, trial: FrozenTrial) -> int:
        return self.store.call(self._inner.get_trial_id_from_study_id_trial_number, study_id,
                               trial.number)

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values=None) -> bool:
        tries = []

        def attempt() -> bool:
            if not tries:
                tries.append(1)
                return self._inner.set_trial_state_values(trial_id, state, values)
            try:  # an earlier attempt's answer was lost: it may have changed the state
                done = self._inner.set_trial_state_values(trial_id, state, values)
            except UpdateFinishedTrialError:
                if state in (TrialState.COMPLETE, TrialState.PRUNED) and self._now(
                        trial_id) == state:
                    return True
                raise
            return done or (state == TrialState.RUNNING and self._now(trial_id) == state)

        return self.store.call(attempt)

    def _now(self, trial_id: int) -> TrialState:
        return self._inner.get_trial(trial_id).state


for _name in _REPEATABLE:
    setattr(RidingStorage, _name, _repeated(_name))
abc.update_abstractmethods(RidingStorage)


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
