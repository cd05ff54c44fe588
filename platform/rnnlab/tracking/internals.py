"""The private MLflow calls rnnlab makes, each for speed, each with its public fallback.

Nothing else in rnnlab reaches past ``MlflowClient``'s public API. Both fast paths are tested
against their fallbacks (tests/tracking/test_internals.py), so an MLflow release that changes
the internals shows up as a failing test, not as wrong numbers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

if TYPE_CHECKING:
    import pandas as pd

_CHUNK = 500  # run ids per SQL IN (...) clause


def _store(client: MlflowClient):
    """The client's tracking store (private: ``MlflowClient._tracking_client.store``)."""
    return getattr(getattr(client, "_tracking_client", None), "store", None)


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


def metric_histories_sql(client: MlflowClient, run_ids: list[str],
                         metrics: Sequence[str]) -> pd.DataFrame | None:
    """Every point of ``metrics`` of ``run_ids`` from a SQL tracking store, one query per 500
    runs: ``run_id``, ``metric``, ``epoch`` (the step), ``value``, ``timestamp``.

    Why private: ``MlflowClient.get_metric_history`` (the public path, in
    :func:`rnnlab.tracking.store.metric_histories`) builds an ORM object per point, about 0.1 ms
    each: seconds for 200 trials x 100 epochs. The store's engine reads the rows directly.

    Returns:
        None for a store without a SQL engine (a tracking server, a file store).
    """
    return _points(client, "SqlMetric", run_ids, metrics)


def last_points_sql(client: MlflowClient, run_ids: list[str],
                    metrics: Sequence[str]) -> pd.DataFrame | None:
    """The last epoch of ``metrics`` of ``run_ids`` from a SQL tracking store's latest-metrics
    table, one row per run and metric: ``run_id``, ``metric``, ``epoch``, ``value``,
    ``timestamp``.

    Why private: the public path reads every epoch of every run (``get_metric_history``) to
    keep the last: at 10,000 trials x 100 epochs, a report that shows final values only would
    read a million points to keep ten thousand. MLflow keeps each run's latest value per key
    (highest step, then newest) in a table of its own.

    Returns:
        None for a store without a SQL engine (a tracking server, a file store).
    """
    return _points(client, "SqlLatestMetric", run_ids, metrics)


def _points(client: MlflowClient, table: str, run_ids: list[str],
            metrics: Sequence[str]) -> pd.DataFrame | None:
    """Rows of MLflow's metric ``table`` (a model's name) for ``run_ids`` and ``metrics``, one
    query per 500 runs; None for a store without a SQL engine."""
    engine = getattr(_store(client), "engine", None)
    if engine is None:
        return None
    import pandas as pd
    from mlflow.store.tracking.dbmodels import models
    from sqlalchemy import bindparam, text

    names = ["run_id", "metric", "epoch", "value", "is_nan", "timestamp"]
    frames = []
    with engine.connect() as conn:
        query = text(_select_points(conn, getattr(models, table).__tablename__)).bindparams(
            bindparam("keys", expanding=True), bindparam("runs", expanding=True))
        for i in range(0, len(run_ids), _CHUNK):
            # the driver's rows, not SQLAlchemy's (a row object each: seconds at 1,000,000)
            rows = conn.execute(query, {"keys": list(metrics),
                                        "runs": run_ids[i:i + _CHUNK]}).cursor.fetchall()
            frames.append(pd.DataFrame.from_records(rows, columns=names))
    raw = pd.concat(frames, ignore_index=True)
    raw["value"] = raw["value"].astype(float).mask(raw.pop("is_nan").astype(bool))
    return raw


def _select_points(conn, table: str) -> str:
    """The query of a metric table's points by key and run.

    On SQLite the planner takes the table's primary key, which starts with the metric's key,
    and so reads every run's points of that key, of every study in the store, once per 500
    runs: 5 s for a study of 10,000 trials. MLflow's index by run, key and step, where the
    table has it, reads just the runs asked for (1.5 s).
    """
    quote = conn.dialect.identifier_preparer.quote
    source = quote(table)
    if conn.dialect.name == "sqlite":
        from sqlalchemy import inspect

        index = f"index_{table}_run_uuid_key_step"
        if any(i["name"] == index for i in inspect(conn).get_indexes(table)):
            source += f" INDEXED BY {quote(index)}"
    return (f"SELECT run_uuid, {quote('key')}, step, value, is_nan, timestamp FROM {source} "
            f"WHERE {quote('key')} IN :keys AND run_uuid IN :runs")
