"""The Optuna storage on PostgreSQL through outages: what an outage looks like, and the writes
whose answer an outage took away (the commit landed, the reply did not) done exactly once.

The database here stays up (it is the shared one); the lost answer is the real call, followed
by the error a dropped connection raises. Whole outages: tests/study/test_outages.py.
"""

from __future__ import annotations

import optuna
import psycopg2
import pytest
import yaml
from conftest import PG
from optuna.trial import TrialState
from servers import free_port
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from rnnlab.core.study_spec import load_study_spec
from rnnlab.retrying import DEFAULT_LIMIT_S, MAX_WAIT_S, configure, reason
from rnnlab.storage import locks
from rnnlab.storage.adapter import open_database, open_storage
from rnnlab.storage.keys import DUPLICATE_OF, enqueued_params
from rnnlab.storage.locks import study_lock
from rnnlab.storage.riding import is_db_outage
from rnnlab.study import claims
from rnnlab.study.parent import open_study
from rnnlab.study.reclaim import VOIDED, claim_anew
from rnnlab.tracking.tracker import Tracker


@pytest.fixture(autouse=True)
def _quick():
    configure(limit_s=30, max_wait_s=0.05)
    yield
    configure(DEFAULT_LIMIT_S, MAX_WAIT_S)


def dropped() -> OperationalError:
    """What SQLAlchemy raises when the server drops the connection mid-commit."""
    return OperationalError("COMMIT", {}, ConnectionResetError(104, "Connection reset by peer"))


def answer_lost(monkeypatch, obj, name: str, times: int = 1) -> None:
    """``obj.name`` does its work, then loses its answer ``times`` times."""
    real = getattr(obj, name)
    left = [times]

    def call(*args, **kwargs):
        result = real(*args, **kwargs)
        if left[0]:
            left[0] -= 1
            raise dropped()
        return result

    monkeypatch.setattr(obj, name, call)


def study_on(url: str) -> optuna.Study:
    return optuna.create_study(study_name="riding", storage=open_storage(url))


def test_a_database_that_is_down_is_told_from_a_wrong_statement(databases):
    engine = create_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    with pytest.raises(OperationalError) as refused:
        engine.connect()
    assert is_db_outage(refused.value) and reason(refused.value) == "Connection refused"
    assert is_db_outage(dropped())
    with create_engine(databases[0]).connect() as conn, pytest.raises(Exception) as wrong:
        conn.execute(text("SELECT * FROM no_such_table"))
    assert not is_db_outage(wrong.value)


def test_a_trial_whose_creation_lost_its_answer_is_created_once(databases, monkeypatch):
    study = study_on(databases[0])
    answer_lost(monkeypatch, open_database(databases[0]).inner, "create_new_trial")
    trial = study.ask()
    trials = study.get_trials()
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.RUNNING)]
    assert trial.number == 0
    study.tell(trial, 1.0)


def test_a_waiting_trial_another_worker_takes_at_once_is_still_found(databases, monkeypatch):
    """A retry enqueued outside the study's lock can be popped by another worker's claim
    before its creator looks for it: it is found RUNNING, not in the state it was made in."""
    study = study_on(databases[0])
    inner = open_database(databases[0]).inner
    real = inner.create_new_trial

    def created_then_taken(study_id, template_trial=None):
        trial_id = real(study_id, template_trial)
        inner.set_trial_state_values(trial_id, TrialState.RUNNING)  # another worker's ask
        return trial_id

    monkeypatch.setattr(inner, "create_new_trial", created_then_taken)
    study.enqueue_trial({}, user_attrs={"retry_of": 3})
    assert [(t.number, t.state, t.user_attrs) for t in study.get_trials()] == [
        (0, TrialState.RUNNING, {"retry_of": 3})]


def test_copies_that_optunas_own_retries_made_are_failed_at_once(databases, monkeypatch):
    study = study_on(databases[0])
    inner = open_database(databases[0]).inner  # Optuna's cache, before the database
    real = inner.create_new_trial
    monkeypatch.setattr(inner, "create_new_trial",  # a retry after a lost commit: two made
                        lambda *a, **k: (real(*a, **k), real(*a, **k))[0])
    trial = study.ask()
    states = {t.number: (t.state, t.system_attrs.get(DUPLICATE_OF)) for t in study.get_trials()}
    assert trial.number == 0
    assert states == {0: (TrialState.RUNNING, None), 1: (TrialState.FAIL, 0)}


def test_a_tell_whose_answer_was_lost_counts_once(databases, monkeypatch):
    study = study_on(databases[0])
    trial = study.ask()
    answer_lost(monkeypatch, open_database(databases[0]).inner, "set_trial_state_values")
    study.tell(trial, 0.5)  # no UpdateFinishedTrialError: it was this worker's tell
    assert [(t.state, t.value) for t in study.get_trials()] == [(TrialState.COMPLETE, 0.5)]


def test_a_popped_retry_whose_answer_was_lost_is_this_claims(databases, monkeypatch):
    study = study_on(databases[0])
    study.enqueue_trial({}, user_attrs={"retry_of": 7})
    answer_lost(monkeypatch, open_database(databases[0]).inner, "set_trial_state_values")
    trial = study.ask()
    assert trial.number == 0 and trial.user_attrs == {"retry_of": 7}
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]  # no second trial


SPEC = {
    "data": {"source": "mnist-5k", "train_size": 200, "val_size": 100, "patch": 28},
    "model": {"hidden": 8},
    "train": {"epochs": 1},
    "study": {"name": "riding", "n_trials": 2, "sampler": {"name": "random", "seed": 0}},
    "search": {"model.cell": {"choices": ["rnn", "gru"]}},
}


def test_a_claim_whose_study_lock_was_lost_is_voided_and_its_retry_kept(
        databases, monkeypatch, tmp_path, mlflow_db):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    spec, tracker = load_study_spec(tmp_path / "spec.yaml"), Tracker()
    study = open_study(spec, databases[0], tracker)
    study.enqueue_trial({"model.cell": "gru"}, user_attrs={"retry_of": 5, "retries": 1})
    real = claims.stamp_heartbeat

    def restart_midway(study, trial):  # the database drops the lock's connection
        terminate(databases[0])
        real(study, trial)

    monkeypatch.setattr(claims, "stamp_heartbeat", restart_midway)
    assert claim_anew(study, databases[0], spec, tracker) is None
    trials = study.get_trials()
    assert [(t.state, t.user_attrs.get("reason")) for t in trials] == [
        (TrialState.FAIL, VOIDED), (TrialState.WAITING, None)]
    assert enqueued_params(trials[1]) == {"model.cell": "gru"}
    assert trials[1].user_attrs == {"retry_of": 5, "retries": 1}  # the same retry, again
    monkeypatch.setattr(claims, "stamp_heartbeat", real)
    trial = claim_anew(study, databases[0], spec, tracker)  # the lock works again
    assert trial is not None and trial.number == 1


def terminate(url: str, pids: str = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND "
              "database = (SELECT oid FROM pg_database WHERE datname = current_database())",
              *args) -> None:
    """The database drops the connections ``pids`` selects on ``url``'s database (by default,
    every one that holds an advisory lock)."""
    admin = psycopg2.connect(dbname=url.rsplit("/", 1)[1], **PG)
    with admin, admin.cursor() as cur:
        cur.execute(f"SELECT pg_terminate_backend(pid) FROM ({pids}) AS chosen(pid)", args)
    admin.close()


def test_a_lock_freed_just_before_the_database_went_away_ends_cleanly(databases, monkeypatch):
    """The unlock answered (the lock was held to the end), then the connection dropped before
    it was closed: closing rolls back, which fails; that is no error of the lock's (CI saw a
    worker end in a traceback there when PostgreSQL stopped at that moment)."""
    real = locks.acquire_lock

    def drop_after(conn, key, url):
        release = real(conn, key, url)

        def freed():
            held = release()
            terminate(url, "SELECT %s", backend[0])
            return held
        backend[0] = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        return freed

    backend = [0]
    monkeypatch.setattr(locks, "acquire_lock", drop_after)
    with study_lock(databases[0], "riding"):
        pass
    assert open_database(databases[0]).engine.pool.checkedout() == 0  # none left behind
    monkeypatch.setattr(locks, "acquire_lock", real)
    with study_lock(databases[0], "riding"):  # and the lock is there to take again
        pass


def test_a_trial_made_at_the_first_try_is_not_looked_for(databases, monkeypatch):
    """The token search (a read of the study's trials) is for creations whose answer was lost
    or that Optuna's storage tried twice: one made at once is not looked for."""
    study = study_on(databases[0])

    def no_search(*args):
        raise AssertionError("looked for a trial made at the first try")

    monkeypatch.setattr(open_database(databases[0]), "_created", no_search)
    study.enqueue_trial({"x": 1.0})
    trial = study.ask()
    assert [(t.number, t.state) for t in study.get_trials()] == [(0, TrialState.RUNNING)]
    assert trial.number == 0 and trial._trial_id == study.get_trials()[0]._trial_id
