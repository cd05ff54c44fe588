"""What a sweep's progress reads from the storage alone, with no help from the workers: the
epochs each running trial has reported, the finished trials' mean wall time, and the ETA."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from rnnlab.study.status import study_status
from rnnlab.study.storage import ATTR_BUDGET, ATTR_SPEC, open_storage


def test_status_reads_each_running_trials_epochs_and_the_mean_trial_time(tmp_path):
    storage = str(tmp_path / "rnnlab.journal")
    study = optuna.create_study(study_name="s", storage=open_storage(storage),
                                direction="maximize")
    study.set_user_attr(ATTR_SPEC, {"train": {"epochs": 6}, "study": {"metric": "val_acc"}})
    study.set_user_attr(ATTR_BUDGET, 5)
    for state in (TrialState.COMPLETE, TrialState.PRUNED):
        trial = study.ask()
        trial.report(0.5, 1)
        study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)
    running = study.ask()
    for epoch in (1, 2, 3):  # as a worker reports them: one value per epoch
        running.report(0.1 * epoch, epoch)
    study.ask()  # asked, nothing reported yet

    status = study_status(storage, "s")[0]

    assert status.running_epochs == {2: 3, 3: 0} and status.epochs == 6
    done = [t for t in study.get_trials() if t.state.is_finished()]
    mean = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done) / 2
    assert status.mean_trial_s == pytest.approx(mean)
    # three trials still to finish, shared by two workers
    assert status.eta_s(workers=2) == pytest.approx(mean * 3 / 2)


def test_no_eta_before_a_trial_has_finished(tmp_path):
    storage = str(tmp_path / "rnnlab.journal")
    optuna.create_study(study_name="s", storage=open_storage(storage)).ask()
    status = study_status(storage, "s")[0]
    assert status.mean_trial_s is None and status.eta_s(workers=1) is None
    assert status.running_epochs == {0: 0}
