"""Claims and failures of trials (:mod:`rnnlab.study.claims`) on a real study: a trial that keeps
losing its worker is retried at most ``study.max_retries`` times, and the study still ends with
its budget of finished trials."""

from __future__ import annotations

import time

import pytest
import yaml
from optuna.trial import TrialState

from rnnlab.core.study_spec import load_study_spec
from rnnlab.storage.adapter import last_heartbeat, load_study, tell_running
from rnnlab.storage.keys import (
    TRIAL_REASON,
    TRIAL_RETRIES,
    TRIAL_RETRY_OF,
    TRIAL_WORKER,
    enqueued_params,
)
from rnnlab.study import worker as worker_module
from rnnlab.study.claims import claim, fail_trial, interrupted, reap_stale
from rnnlab.study.parent import open_study
from rnnlab.study.parts import sample_config
from rnnlab.study.status import study_status
from rnnlab.study.worker import work
from rnnlab.tracking.tracker import Tracker

STORAGE, MAX_RETRIES = "rnnlab.journal", 2


def _spec(tmp_path):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "data": {"source": "mnist-5k", "train_size": 100, "val_size": 50, "patch": 28},
        "model": {"hidden": 4},
        "train": {"epochs": 1, "threads": 1},
        "study": {"name": "dying", "n_trials": 1, "max_retries": MAX_RETRIES,
                  "heartbeat_interval": 0.05, "grace_period": 0.2,
                  "sampler": {"name": "random", "seed": 0}, "pruner": {"name": "none"}},
        "search": {"model.cell": {"choices": ["rnn", "gru"]},
                   "train.lr": {"low": 1e-3, "high": 1e-2, "log": True}},
    }))
    return load_study_spec(tmp_path / "s.yaml")


def _silent_past_grace(study, number: int, grace: float) -> None:
    """Wait until the trial's last heartbeat is older than the grace period (nothing stamps it:
    its worker is gone)."""
    beat = last_heartbeat(study.get_trials(deepcopy=False)[number])
    time.sleep(max(0.0, beat + grace - time.time()) + 0.05)


@pytest.mark.parametrize("how", ["worker lost", "interrupted"])
def test_a_trial_that_keeps_dying_is_retried_max_retries_times_then_not_again(tmp_path,
                                                                               mlflow_db, how):
    spec = _spec(tmp_path)
    tracker = Tracker()
    study = open_study(spec, STORAGE, tracker)
    for attempt in range(MAX_RETRIES + 1):
        trial = claim(study, STORAGE, spec, tracker)  # the retry enqueued by the last failure
        assert trial is not None and trial.number == attempt
        sample_config(trial, spec)  # as the worker does first; then it dies, before the tell
        if how == "worker lost":  # SIGKILLed: any worker's next claim reaps it, this one too
            _silent_past_grace(study, trial.number, spec.study.grace_period)
            assert reap_stale(study, tracker, spec) == 1
        else:  # Ctrl-C or SIGTERM, as the worker closes its trial
            assert fail_trial(study, tracker, trial, interrupted(KeyboardInterrupt()), "KILLED",
                              spec.study.max_retries)
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        assert len(waiting) == (attempt < MAX_RETRIES)  # a retry, until the cap

    assert work(spec, STORAGE) == 1  # the budget counts finished trials: one more, a new one
    *failed, done = load_study(STORAGE, "dying").get_trials()
    assert [t.state.name for t in failed] == ["FAIL"] * (MAX_RETRIES + 1)
    reason = "worker lost: no heartbeat for " if how == "worker lost" else "interrupted (Ctrl-C)"
    assert all(t.user_attrs[TRIAL_REASON].startswith(reason) for t in failed)
    for i, t in enumerate(failed):  # one chain of retries of the same point
        assert t.params == failed[0].params and set(t.params) == set(spec.search)
        assert t.user_attrs.get(TRIAL_RETRIES, 0) == i
        assert t.user_attrs.get(TRIAL_RETRY_OF) == (i - 1 if i else None)
    assert done.state.name == "COMPLETE" and TRIAL_RETRY_OF not in done.user_attrs
    status = study_status(STORAGE, "dying")[0]
    assert (status.finished, status.counts["FAIL"], status.counts["WAITING"]) == (1, 3, 0)


def test_a_claim_starts_its_trial_in_its_stratum_in_one_write(tmp_path, mlflow_db,
                                                               monkeypatch):
    """No waiting trial in between: the claimed trial is made RUNNING, stamped, its worker's,
    its stratum's levels enqueued (what the stratum's sampler and pruner select it by)."""
    spec = _spec(tmp_path)
    spec = spec.model_copy(update={"study": spec.study.model_copy(update={
        "strata": ["model.cell"], "n_trials": 2})})
    tracker = Tracker()
    study = open_study(spec, STORAGE, tracker)
    writes = []
    for name in ("create_new_trial", "set_trial_state_values", "set_trial_system_attr",
                 "set_trial_user_attr"):
        real = getattr(study._storage, name)
        monkeypatch.setattr(study._storage, name, lambda *a, _n=name, _r=real, **k: (
            writes.append(_n), _r(*a, **k))[1])
    before = time.time()
    trial = claim(study, STORAGE, spec, tracker, name="host:1")
    assert writes == ["create_new_trial"]
    frozen = study.get_trials(deepcopy=False)
    assert [(t.number, t.state) for t in frozen] == [(0, TrialState.RUNNING)]
    assert enqueued_params(frozen[0]) == {"model.cell": "rnn"}  # the first stratum's turn
    assert frozen[0].user_attrs[TRIAL_WORKER] == "host:1"
    assert before <= last_heartbeat(frozen[0]) <= time.time()
    config, _ = sample_config(trial, spec)
    assert config.model.cell == "rnn" and trial.params["model.cell"] == "rnn"
    other = claim(study, STORAGE, spec, tracker)
    assert enqueued_params(study.get_trials()[1]) == {"model.cell": "gru"}  # the next behind
    assert claim(study, STORAGE, spec, tracker) is None  # the budget of 2 is taken
    assert [t.number for t in (trial, other)] == [0, 1]


def test_a_trial_reaped_while_it_trained_is_not_counted_as_its_workers_failure(
        tmp_path, mlflow_db, monkeypatch, caplog):
    """A worker too slow to stamp its heartbeat (an overloaded machine) finds its trial failed
    by another worker when it tells the outcome: it says so and carries on, and the retry the
    other worker queued finishes the budget; no failure of its own is counted or recorded."""
    spec = _spec(tmp_path)
    tracker = Tracker()
    reaper = open_study(spec, STORAGE, tracker)
    real_fit, reaped = worker_module.fit, []

    def fit_then_reaped(config, callbacks=(), **kwargs):
        result = real_fit(config, callbacks, **kwargs)
        if not reaped:  # meanwhile, another worker gave up on this one
            running = reaper.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            reaped.append(fail_trial(reaper, tracker, running[0], "worker lost: no heartbeat "
                                     "for 9 s", "KILLED", spec.study.max_retries))
        return result

    monkeypatch.setattr(worker_module, "fit", fit_then_reaped)
    with caplog.at_level("WARNING"):
        assert work(spec, STORAGE) == 2
    first, retry = load_study(STORAGE, "dying").get_trials()
    assert reaped == [True]
    assert (first.state, first.user_attrs[TRIAL_REASON]) == (
        TrialState.FAIL, "worker lost: no heartbeat for 9 s")
    assert retry.state == TrialState.COMPLETE and retry.user_attrs[TRIAL_RETRY_OF] == 0
    assert "trial 0 was failed by another worker" in caplog.text
    assert "Cannot tell" not in caplog.text


def test_telling_a_trial_reads_it_once(tmp_path, mlflow_db):
    """The tell checks the trial's state (one read) and writes the outcome; Optuna's own
    Study.tell reads it again to return a copy, which no worker uses."""
    study = open_study(_spec(tmp_path), STORAGE, Tracker())
    trial = study.ask()
    storage, reads = study._storage, []
    real = storage.get_trial
    storage.get_trial = lambda trial_id: reads.append(trial_id) or real(trial_id)
    assert tell_running(study, trial, 0.5, TrialState.COMPLETE)
    assert reads == [trial._trial_id]
    del storage.get_trial
    told = study.get_trials()[0]
    assert (told.state, told.value) == (TrialState.COMPLETE, 0.5)
    # A trial another worker finished first is not told twice.
    assert not tell_running(study, trial, 0.7, TrialState.COMPLETE)
    assert study.get_trials()[0].value == 0.5
