"""The private MLflow calls rnnlab makes, each for speed, each with its public fallback.

Nothing else in rnnlab reaches past ``MlflowClient``'s public API. Each fast path is tested
against its fallback (tests/tracking/test_internals.py), so an MLflow release that changes the
internals shows up as a failing test, not as wrong numbers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

if TYPE_CHECKING:
    import pandas as pd

_CHUNK = 500  # run ids per SQL IN (...) clause


def _store(client: MlflowClient):
    """The client's tracking store (private: ``MlflowClient._tracking_client.store``)."""
    return getattr(getattr(client, "_tracking_client", None), "store", None)


def _engine(client: MlflowClient | Any):
    """The SQLAlchemy engine of the client's store; None for a store without one (a tracking
    server, a file store)."""
    return getattr(_store(client), "engine", None)


def close_run(client: MlflowClient, run_id: str, status: str, *, fast: bool = True) -> None:
    """Set a run's status and end time.

    Why private: ``MlflowClient.set_terminated`` (the public call, used with ``fast=False``
    or when the store is not reachable this way) first shuts the process's whole asynchronous
    logger down, about 0.8 s a run, and the other runs of the process lose their queue. The
    store's own ``update_run_info`` closes just this run, as set_terminated does after that.
    """
    store = _store(client) if fast else None
    if store is None or not hasattr(store, "update_run_info"):
        client.set_terminated(run_id, status)
        return
    store.update_run_info(run_id, run_status=RunStatus.from_string(status),
                          end_time=int(time.time() * 1000), run_name=None)


def refresh_statistics(client: MlflowClient | Any) -> bool:
    """Give a SQLite tracking store's query planner the sizes of its tables (SQLite's
    ``ANALYZE``, on a sample of each index: milliseconds); True when it did.

    Why private: the store's engine, for its file. Without statistics SQLite plans the MLflow
    UI's search of a study's trials (filtered by two tags, ranked by the objective's latest
    value) as a scan of every run's latest metric for each run: 4.3 s at 10,000 runs, then
    0.05 s. MLflow never gathers them; a database server (PostgreSQL) keeps its own. A store
    that refuses within a second (busy with another writer, read-only) is left as it is: the
    statistics are only a hint, never worth failing or holding up a trial for. The statement
    runs on a connection of its own, so the store's pooled ones keep their settings. Any other
    kind of store is left alone.
    """
    import contextlib
    import sqlite3

    engine = _engine(client)
    path = engine.url.database if engine is not None and engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        return False
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=_BUSY_S)) as conn:
            conn.execute(f"PRAGMA analysis_limit = {_ANALYSIS_LIMIT}")
            conn.execute("ANALYZE")
            conn.commit()
    except sqlite3.Error:
        return False
    return True


_BUSY_S = 1.0  # how long the statistics wait for another writer's lock
_ANALYSIS_LIMIT = 1000  # rows of each index ANALYZE samples


def child_run_ids_sql(client: MlflowClient, experiment_id: str,
                      parent_run_id: str) -> list[str] | None:
    """The ids of the active runs of ``experiment_id`` nested under ``parent_run_id`` (their
    ``mlflow.parentRunId`` tag), from a SQL tracking store, in one query.

    Why private: ``MlflowClient.search_runs`` (the public path, in
    :meth:`rnnlab.tracking.store.RunReader.study_run_ids`) loads each run's params, tags and
    latest metrics to hand back its id: 13.6 s for a 10,000-trial study, before ``rnnlab
    delete`` can ask whether to delete them.

    Returns:
        None for a store without a SQL engine (a tracking server, a file store).
    """
    engine = _engine(client)
    if engine is None:
        return None
    import sqlalchemy as sa
    from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag

    query = (sa.select(SqlRun.run_uuid)
             .join(SqlTag, SqlTag.run_uuid == SqlRun.run_uuid)
             .where(SqlRun.experiment_id == int(experiment_id),
                    SqlRun.lifecycle_stage == "active",
                    SqlTag.key == "mlflow.parentRunId", SqlTag.value == parent_run_id))
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


def metric_histories_sql(client: MlflowClient, runs: dict[str, int],
                         metrics: Sequence[str]) -> pd.DataFrame | None:
    """Every point of ``metrics`` of the runs ``{run_id: trial number}`` from a SQL tracking
    store, one query per 500 runs: ``number``, ``metric``, ``epoch`` (the step), ``value`` (NaN
    where MLflow marks it so), ``timestamp``.

    Why private: ``MlflowClient.get_metric_history`` (the public path, in
    :func:`rnnlab.tracking.store.metric_histories`) builds an ORM object per point, about 0.1 ms
    each: seconds for 200 trials x 100 epochs. The store's engine reads the rows directly.

    Returns:
        None for a store without a SQL engine (a tracking server, a file store).
    """
    return _points(client, "SqlMetric", runs, metrics)


def last_points_sql(client: MlflowClient, runs: dict[str, int],
                    metrics: Sequence[str]) -> pd.DataFrame | None:
    """The last epoch of ``metrics`` of the runs ``{run_id: trial number}`` from a SQL
    tracking store's latest-metrics table, one row per run and metric; columns as
    :func:`metric_histories_sql`'s.

    Why private: the public path reads every epoch of every run (``get_metric_history``) to
    keep the last: at 10,000 trials x 100 epochs, a report that shows final values only would
    read a million points to keep ten thousand. MLflow keeps each run's latest value per key
    (highest step, then newest) in a table of its own.

    Returns:
        None for a store without a SQL engine (a tracking server, a file store).
    """
    return _points(client, "SqlLatestMetric", runs, metrics)


def _points(client: MlflowClient, table: str, runs: dict[str, int],
            metrics: Sequence[str]) -> pd.DataFrame | None:
    """Rows of MLflow's metric ``table`` (a model's name) for ``runs`` and ``metrics``, one
    query per 500 runs; None for a store without a SQL engine."""
    engine = _engine(client)
    if engine is None:
        return None
    import numpy as np
    import pandas as pd
    from mlflow.store.tracking.dbmodels import models

    keys = list(dict.fromkeys(metrics))
    ids = list(runs)
    blocks = [np.empty((0, 5))]
    with engine.connect() as conn:
        query = _points_query(conn, getattr(models, table).__tablename__)
        for i in range(0, len(ids), _CHUNK):
            blocks.append(query(ids[i:i + _CHUNK], runs, keys))
    # one float array: numbers, steps and millisecond timestamps are exact in a float64
    points = np.concatenate(blocks)
    return pd.DataFrame({
        "number": points[:, 0].astype("int64"),
        "metric": pd.Categorical.from_codes(points[:, 1].astype("int64"), categories=keys),
        "epoch": points[:, 2].astype("int64"), "value": points[:, 3],
        "timestamp": points[:, 4].astype("int64")})


def _points_query(conn, table: str):
    """A function ``(run_ids, {run_id: number}, keys) -> array`` that reads a metric table's
    points of those runs and keys, one row per point: number, key's index in ``keys``, step,
    value (NaN where MLflow marks it so), timestamp.

    Each point becomes a Python tuple on its way out of the driver (about 1 us), so the query
    returns numbers only: the trial's number and the key's index in place of two strings a
    point, which a million points would otherwise make and then map.

    On SQLite the planner takes the table's primary key, which starts with the metric's key,
    and so reads every run's points of that key, of every study in the store, once per 500
    runs: 5 s for a study of 10,000 trials. MLflow's index by run, key and step, where the
    table has it, reads just the runs asked for, and SQLite's own join maps each run and key
    to its number. Elsewhere the rows name the run and key, mapped here.
    """
    import numpy as np

    quote = conn.dialect.identifier_preparer.quote
    source, key = quote(table), quote("key")

    def point(m: str) -> str:  # step, value (NULL where MLflow marks NaN), timestamp
        return (f"{m}step, CASE WHEN {m}is_nan THEN NULL ELSE {m}value END, "
                f"COALESCE({m}timestamp, 0)")

    index = f"index_{table}_run_uuid_key_step"
    if conn.dialect.name == "sqlite":
        from sqlalchemy import inspect

        if any(i["name"] == index for i in inspect(conn).get_indexes(table)):
            def indexed(ids: list[str], runs: dict[str, int], keys: list[str]):
                # a CROSS JOIN keeps SQLite's order: the runs asked for, then each one's points
                named = ",".join(f"(?, {int(runs[r])})" for r in ids)
                coded = ",".join(f"(?, {c})" for c in range(len(keys)))
                sql = (f"WITH w(run_uuid, n) AS (VALUES {named}), k(name, c) AS (VALUES "
                       f"{coded}) SELECT w.n, k.c, {point('m.')} FROM w CROSS JOIN k CROSS "
                       f"JOIN {source} AS m INDEXED BY {quote(index)} "
                       f"WHERE m.run_uuid = w.run_uuid AND m.{key} = k.name")
                rows = conn.exec_driver_sql(sql, (*ids, *keys)).cursor.fetchall()
                return np.array(rows, dtype=float).reshape(-1, 5)

            return indexed
    from sqlalchemy import bindparam, text

    query = text(f"SELECT run_uuid, {key}, {point('')} FROM {source} "
                 f"WHERE {key} IN :keys AND run_uuid IN :runs").bindparams(
        bindparam("keys", expanding=True), bindparam("runs", expanding=True))

    def mapped(ids: list[str], runs: dict[str, int], keys: list[str]):
        code = {k: c for c, k in enumerate(keys)}
        # the driver's rows, not SQLAlchemy's (a row object each: seconds at 1,000,000)
        rows = conn.execute(query, {"keys": keys, "runs": ids}).cursor.fetchall()
        return np.array([(runs[r], code[k], *rest) for r, k, *rest in rows],
                        dtype=float).reshape(-1, 5)

    return mapped
