"""The private MLflow fast paths agree with the public API they stand in for."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from mlflow.tracking import MlflowClient

from rnnlab.storage.adapter import load_study
from rnnlab.storage.keys import TRIAL_RUN_ID
from rnnlab.tracking.internals import (
    child_run_ids_sql,
    close_run,
    last_points_sql,
    metric_histories_sql,
)
from rnnlab.tracking.store import RunReader, metric_histories
from rnnlab.tracking.tracker import Tracker


@contextlib.contextmanager
def sent(engine, wanted):
    """The statements (and their parameters) ``engine`` sends while in the block, those
    ``wanted(statement)`` keeps."""
    from sqlalchemy import event

    seen: list[tuple[str, Any]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if wanted(statement):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def test_sql_fast_path_and_public_api_agree(study):
    client = MlflowClient(study.uri)
    trials = load_study(study.storage, study.name).trials
    runs = {t.user_attrs[TRIAL_RUN_ID]: t.number for t in trials}
    fast = metric_histories_sql(client, runs, ("val_acc", "train_loss"))
    slow = metric_histories(client, runs, ("val_acc", "train_loss"))
    assert fast is not None and len(fast) == len(slow) > 0
    key = ["number", "metric", "epoch"]
    fast = fast.astype({"metric": str}).sort_values(key).reset_index(drop=True)
    slow = slow.sort_values(key).reset_index(drop=True)
    assert fast[key].equals(slow[key]) and fast["timestamp"].equals(slow["timestamp"])
    assert (fast["value"] - slow["value"]).abs().max() == 0


def test_last_points_from_the_latest_metrics_table_are_the_curves_last_epochs(study):
    """A report that shows final values reads MLflow's latest-metrics table, not every epoch:
    the same values as the last epoch of each public metric history."""
    client = MlflowClient(study.uri)
    trials = load_study(study.storage, study.name).trials
    runs = {t.user_attrs[TRIAL_RUN_ID]: t.number for t in trials}
    fast = last_points_sql(client, runs, ("val_acc", "val_loss"))
    slow = metric_histories(client, runs, ("val_acc", "val_loss"))
    last = slow.sort_values("epoch").groupby(["number", "metric"]).tail(1)
    key = ["number", "metric", "epoch"]
    assert fast is not None and len(fast) == len(last) == 2 * len(runs)
    fast = fast.astype({"metric": str}).sort_values(key).reset_index(drop=True)
    last = last.sort_values(key).reset_index(drop=True)
    assert fast[key].equals(last[key]) and (fast["value"] - last["value"]).abs().max() == 0
    reader = RunReader(study.uri)
    points = reader.last_points(runs, ("val_acc",))
    curves = reader.curves(runs, ("val_acc",))
    assert points.equals(curves.groupby(["number", "metric"]).tail(1).reset_index(drop=True))


def test_closing_a_run_directly_matches_set_terminated(mlflow_db):
    tracker, client = Tracker(), MlflowClient(mlflow_db)
    before = int(time.time() * 1000)
    for status in ("FINISHED", "FAILED", "KILLED"):
        fast, public = (tracker.start_run("exp", f"{status}-{how}") for how in ("fast", "api"))
        tracker.flush(fast)
        tracker.flush(public)
        close_run(tracker.client, fast, status)
        close_run(tracker.client, public, status, fast=False)  # MlflowClient.set_terminated
        runs = [client.get_run(r).info for r in (fast, public)]
        assert [r.status for r in runs] == [status, status]
        assert all(r.end_time is not None and r.end_time >= before for r in runs)
        assert all(r.run_name == f"{status}-{how}" for r, how in zip(runs, ("fast", "api"),
                                                                       strict=True))


def test_a_studys_run_ids_from_sql_are_the_searchs(mlflow_db):
    """rnnlab delete's list: the study's active runs nested under its run, not a deleted one,
    not another study's, not one of another experiment, as MLflow's search finds them."""
    client = MlflowClient(mlflow_db)
    exps = [client.create_experiment(name) for name in ("ours", "theirs")]
    parent, other = (client.create_run(exps[0]).info.run_id for _ in range(2))

    def child(exp: str, of: str) -> str:
        return client.create_run(exp, tags={"mlflow.parentRunId": of}).info.run_id

    ours = [child(exps[0], parent) for _ in range(3)]
    client.delete_run(ours.pop())
    child(exps[0], other)
    child(exps[1], parent)
    reader = RunReader(mlflow_db)
    fast = child_run_ids_sql(reader.client, exps[0], parent)
    searched = [r.info.run_id for r in reader._search(
        exps[0], f"tags.`mlflow.parentRunId` = '{parent}'")]
    assert sorted(fast) == sorted(searched) == sorted(ours)
    assert sorted(reader.study_run_ids(parent)) == sorted([*ours, parent])
    assert child_run_ids_sql(MlflowClient("http://127.0.0.1:9"), exps[0], parent) is None


def test_a_studys_points_are_read_through_the_index_by_run(study):
    """On SQLite the planner would take the metric table's primary key, which starts with the
    metric's name, and read every run's points of it, every study's, for each 500 runs asked
    for; the query the fast path sends searches MLflow's index by run, key and step for each
    run asked for instead."""
    client = MlflowClient(study.uri)
    trials = load_study(study.storage, study.name).trials
    runs = {t.user_attrs[TRIAL_RUN_ID]: t.number for t in trials}
    engine = client._tracking_client.store.engine
    with sent(engine, lambda statement: statement.startswith(("SELECT", "WITH"))) as queries:
        assert len(metric_histories_sql(client, runs, ("val_acc",))) > 0
    assert len(queries) == 1
    with engine.connect() as conn:
        plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + queries[0][0],
                                                        queries[0][1])]
    assert any(step.startswith("SEARCH m USING INDEX index_metrics_run_uuid_key_step")
               for step in plan), plan


def test_the_ui_search_of_a_studys_trials_is_planned_with_an_index_once_the_store_is_analysed(
        tmp_path, mlflow_db):
    """Without the planner's statistics SQLite answers the MLflow UI's view of a study (its
    trial runs by two tags, ranked by the objective) by scanning every run's latest metric for
    each run: 4 s at 10,000 runs. After :func:`refresh_statistics` it looks each one up."""
    import sqlite3

    from mlflow.entities import Metric

    from rnnlab.tracking.internals import refresh_statistics

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("study")
    parent = client.create_run(experiment).info.run_id
    for i in range(300):  # enough runs for the planner to prefer an index, given the sizes
        run = client.create_run(experiment, tags={"mlflow.parentRunId": parent,
                                                  "rnnlab.kind": "trial"}).info.run_id
        client.log_batch(run, metrics=[Metric("best_val_acc", (i * 37 % 300) / 300, 0, 1)])
    def ranked() -> tuple[list[str], list[str]]:
        runs = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}' and "
                                  "tags.`rnnlab.kind` = 'trial'", max_results=20,
                                  order_by=["metrics.`best_val_acc` DESC"])
        # planned on a connection opened now, as a UI server started now plans it (SQLite
        # loads the statistics when a connection opens)
        with contextlib.closing(sqlite3.connect(tmp_path / "mlflow.db")) as conn:
            plan = [row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + searches[-1][0],
                                                    searches[-1][1])]
        return [r.info.run_id for r in runs], plan

    with sent(client._tracking_client.store.engine,
              lambda statement: "latest_metrics" in statement and "DISTINCT" in statement
              ) as searches:
        before, plan = ranked()
        assert "SCAN anon_1 LEFT-JOIN" in plan, plan  # every run's metric, for each run
        assert refresh_statistics(client)
        after, plan = ranked()
    assert any("anon_1 USING AUTOMATIC COVERING INDEX" in step for step in plan), plan
    assert after == before and len(after) == 20


def test_a_sweep_leaves_its_sqlite_store_analysed(study):
    import sqlite3

    db = study.uri.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        analysed = {row[0] for row in conn.execute("SELECT tbl FROM sqlite_stat1")}
    assert {"runs", "tags", "latest_metrics"} <= analysed


def test_a_store_that_refuses_the_statistics_is_left_as_it_is(tmp_path, mlflow_db):
    """Statistics are a hint: a store held by another writer (a sweep's workers) is left
    alone within a second, and the caller (a worker finishing a trial) goes on; the store's
    own connections keep their settings."""
    import sqlite3

    from rnnlab.tracking.internals import refresh_statistics

    db = tmp_path / "mlflow.db"
    client = MlflowClient(f"sqlite:///{db}")
    client.create_experiment("study")
    with client._tracking_client.store.engine.connect() as conn:
        wait = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    before = db.read_bytes()
    holder = sqlite3.connect(db, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        assert refresh_statistics(client) is False
        assert time.monotonic() - started < 5
    finally:
        holder.rollback()
        holder.close()
    assert db.read_bytes() == before
    with client._tracking_client.store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == wait
    assert refresh_statistics(client) is True
