"""What a sweep's progress reads from the storage alone, with no help from the workers: the
epochs each running trial has reported, the finished trials' mean wall time, and the ETA."""

from __future__ import annotations

from datetime import datetime, timedelta

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from rnnlab.storage.adapter import open_storage
from rnnlab.storage.keys import ATTR_BUDGET, ATTR_SPEC
from rnnlab.study.status import study_status


def _finished(state: TrialState, seconds: float) -> FrozenTrial:
    start = datetime(2026, 1, 1, 12, 0, 0)
    return FrozenTrial(number=-1, state=state, value=0.5 if state == TrialState.COMPLETE else None,
                       values=None, datetime_start=start,
                       datetime_complete=start + timedelta(seconds=seconds), params={},
                       distributions={}, user_attrs={}, system_attrs={},
                       intermediate_values={1: 0.5}, trial_id=-1)


def test_status_reads_each_running_trials_epochs_and_the_mean_trial_time(tmp_path):
    storage = str(tmp_path / "rnnlab.journal")
    study = optuna.create_study(study_name="s", storage=open_storage(storage),
                                direction="maximize")
    study.set_user_attr(ATTR_SPEC, {"train": {"epochs": 6}, "study": {"metric": "val_acc"}})
    study.set_user_attr(ATTR_BUDGET, 5)
    study.add_trial(_finished(TrialState.COMPLETE, 10.0))  # 10 s and 30 s: a mean of 20 s
    study.add_trial(_finished(TrialState.PRUNED, 30.0))
    running = study.ask()
    for epoch in (1, 2, 3):  # as a worker reports them: one value per epoch
        running.report(0.1 * epoch, epoch)
    study.ask()  # asked, nothing reported yet

    status = study_status(storage, "s")[0]

    assert status.running_epochs == {2: 3, 3: 0} and status.epochs == 6
    assert status.mean_trial_s == pytest.approx(20.0)
    assert status.eta_s(workers=2) == pytest.approx(30.0)  # 3 trials to go, 2 workers
    assert (status.best_trial, status.best_value) == (0, 0.5)


def test_no_eta_before_a_trial_has_finished(tmp_path):
    storage = str(tmp_path / "rnnlab.journal")
    optuna.create_study(study_name="s", storage=open_storage(storage)).ask()
    status = study_status(storage, "s")[0]
    assert status.mean_trial_s is None and status.eta_s(workers=1) is None
    assert status.running_epochs == {0: 0}
