"""An MLflow tracking server through outages: what one looks like, and a run whose creation
lost its answer created once (whole outages of a real server: tests/study/test_outages.py)."""

from __future__ import annotations

import socket
import threading

import pytest
import requests
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient
from servers import free_port

from rnnlab.retrying import DEFAULT_LIMIT_S, MAX_WAIT_S, configure, reason
from rnnlab.tracking.riding import CREATE_TAG, RidingClient, is_server_outage


@pytest.fixture(autouse=True)
def _quick():
    configure(limit_s=30, max_wait_s=0.05)
    yield
    configure(DEFAULT_LIMIT_S, MAX_WAIT_S)


def test_a_server_that_is_down_is_told_from_a_wrong_request():
    with pytest.raises(MlflowException) as refused:
        MlflowClient(f"http://127.0.0.1:{free_port()}").get_experiment_by_name("x")
    assert is_server_outage(refused.value) and reason(refused.value) == "Connection refused"
    assert is_server_outage(RestException({"error_code": "INTERNAL_ERROR", "message": "db"}))
    assert not is_server_outage(RestException({"error_code": "RESOURCE_DOES_NOT_EXIST",
                                               "message": "no such run"}))
    assert not is_server_outage(MlflowException("Invalid value for param"))


def test_mlflows_own_http_retries_are_off():
    """One request, one connection: rnnlab's riding is the only retry (MLflow's own would wait
    an outage out in silence)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def hang_up() -> None:  # a server that drops every connection it takes
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        with pytest.raises(MlflowException) as dropped:
            MlflowClient(f"http://127.0.0.1:{server.getsockname()[1]}").get_experiment_by_name(
                "x")
    finally:
        server.close()
    assert is_server_outage(dropped.value) and accepted == [1]


def test_a_run_whose_creation_lost_its_answer_is_created_once(mlflow_db, monkeypatch):
    client = RidingClient(MlflowClient(mlflow_db))
    experiment = client.create_experiment("riding")
    real, lost = client._client.create_run, []

    def create_run(*args, **kwargs):
        run = real(*args, **kwargs)
        if not lost:
            lost.append(run.info.run_id)
            raise requests.ConnectionError("('Connection aborted.', RemoteDisconnected())")
        return run

    monkeypatch.setattr(client._client, "create_run", create_run)
    run = client.create_run(experiment, run_name="trial-0", tags={"a": "b"})
    runs = client.search_runs([experiment])
    assert [r.info.run_id for r in runs] == lost == [run.info.run_id]
    assert run.data.tags["a"] == "b" and CREATE_TAG in run.data.tags


def _locked(path):
    """A SQLite file of one table ``t`` that ``holder`` holds locked (an open exclusive
    transaction), and ``other``, a connection that finds it so at once."""
    import sqlite3

    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    return holder, sqlite3.connect(path, timeout=0)


def test_a_locked_sqlite_store_is_ridden_out_and_other_errors_are_not(tmp_path):
    """Workers share a local SQLite store: a write that finds it locked by another's (SQLite
    answers two deferred writers at once with this, whatever the busy timeout) is retried."""
    import sqlite3

    from rnnlab.tracking.riding import is_locked

    holder, other = _locked(tmp_path / "s.db")
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("INSERT INTO t VALUES (1)")
    holder.execute("COMMIT")
    with pytest.raises(sqlite3.OperationalError) as missing:
        other.execute("INSERT INTO nowhere VALUES (1)")
    try:
        raise RuntimeError("wrapped") from locked.value  # as MLflow and SQLAlchemy wrap it
    except RuntimeError as wrapped:
        assert is_locked(wrapped)
    assert not is_locked(missing.value)



def test_a_locked_local_store_is_waited_out_briefly_even_by_a_closing_write(tmp_path,
                                                                           mlflow_db):
    """A sweep that stopped on a worker's error closes its study's run without waiting for a
    store that is down (impatient); a local SQLite store locked by another writer's
    transaction is not down, and such a write (SQLite answers it at once, whatever the busy
    timeout) still goes through once the lock is let go, as the local MLflow store's client
    (LOCK_WAIT_S) does it."""
    import sqlite3

    from rnnlab.retrying import Store, StoreDown, impatient
    from rnnlab.tracking.riding import LOCK_WAIT_S, is_locked

    path = tmp_path / "s.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")

    def write() -> None:
        with sqlite3.connect(path, timeout=0) as conn:
            conn.execute("INSERT INTO t VALUES (1)")

    for wait_s, goes_through in ((0.0, False), (LOCK_WAIT_S, True)):
        holder.execute("BEGIN IMMEDIATE")  # another writer's transaction, let go in 0.3 s
        release = threading.Timer(0.3, holder.execute, ("COMMIT",))
        release.start()
        try:
            with impatient():
                if goes_through:
                    Store(f"locked {wait_s}", is_locked, wait_s).call(write)
                else:
                    with pytest.raises(StoreDown, match="database is locked"):
                        Store(f"locked {wait_s}", is_locked, wait_s).call(write)
        finally:
            release.join()
    assert holder.execute("SELECT count(*) FROM t").fetchone() == (1,)
    from rnnlab.tracking.server import open_client

    assert open_client(mlflow_db).store.impatient_s == LOCK_WAIT_S  # a sweep's local store


def test_mlflows_own_report_of_a_locked_local_store_is_left_to_rnnlabs_line(tmp_path,
                                                                           mlflow_db):
    # MLflow logs each SQL error as an ERROR with its traceback; a lock that a sweep's client
    # rides out is said in rnnlab's one line instead, and any other error still reaches the log
    import logging
    import sqlite3

    from rnnlab.tracking.server import open_client

    holder, other = _locked(tmp_path / "s.db")
    open_client(mlflow_db)
    logger = logging.getLogger("mlflow.store.db.utils")  # where MLflow's session logs them
    seen: list[str] = []
    catch = logging.Handler()
    catch.emit = lambda record: seen.append(record.getMessage())
    logger.addHandler(catch)

    def report(sql: str) -> None:
        try:
            other.execute(sql)
        except sqlite3.OperationalError as exc:
            logger.exception("SQLAlchemy database error. The following exception is caught."
                             "\n%s", exc)

    try:
        report("INSERT INTO t VALUES (1)")  # locked
        holder.execute("COMMIT")
        report("INSERT INTO nowhere VALUES (1)")
    finally:
        logger.removeHandler(catch)
    assert seen == ["SQLAlchemy database error. The following exception is caught.\n"
                    "no such table: nowhere"]
