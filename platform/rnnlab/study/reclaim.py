"""A claim made while an outage took the study's lock away: voided, then made again.

On a database server the study's lock (:mod:`rnnlab.storage.locks`) lives as long as the
connection that holds it. When the server restarts in the middle of a claim, the lock is gone,
and another worker may have claimed the same place in the budget meanwhile. So a claim counts
only when its lock is released whole; otherwise (:class:`~rnnlab.storage.locks.LockLost`) its
trial is failed, which no budget counts, the retry it carried (if it was one) is enqueued again
as it was, and the worker claims anew.
"""

from __future__ import annotations

import logging

import optuna
from optuna.trial import FrozenTrial, TrialState

from rnnlab.core.study_spec import StudySpec
from rnnlab.storage.adapter import fail_running
from rnnlab.storage.keys import (
    TRIAL_RESUME_RUN,
    TRIAL_RETRIES,
    TRIAL_RETRY_OF,
    TRIAL_WORKER,
    enqueued_params,
)
from rnnlab.storage.locks import LockLost
from rnnlab.study.claims import claim, worker_name
from rnnlab.tracking.tracker import Tracker

VOIDED = "claimed while an outage of the study's database took its lock away (not counted)"
_RETRY_KEYS = (TRIAL_RETRY_OF, TRIAL_RETRIES, TRIAL_RESUME_RUN)
log = logging.getLogger(__name__)


def claim_anew(study: optuna.Study, storage: str, spec: StudySpec, tracker: Tracker,
               name: str | None = None) -> optuna.Trial | None:
    """:func:`~rnnlab.study.claims.claim`; None when its lock was lost and it was voided (the
    worker then claims again, as after finding no room)."""
    try:
        return claim(study, storage, spec, tracker, name)
    except LockLost:
        me = name or worker_name()  # as claim() stamps its trial
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.user_attrs.get(TRIAL_WORKER) == me:  # between trials: only that claim's
                _void(study, trial)
        return None


def _void(study: optuna.Study, trial: FrozenTrial) -> None:
    failed = fail_running(study, trial, VOIDED)
    if failed is None:
        return  # another worker failed it first (and enqueued its retry, if any)
    retry = {k: failed.user_attrs[k] for k in _RETRY_KEYS if k in failed.user_attrs}
    if TRIAL_RETRY_OF in retry:
        study.enqueue_trial(enqueued_params(failed), user_attrs=retry)
    log.warning("rnnlab: trial %d was %s; claiming again", failed.number, VOIDED)
