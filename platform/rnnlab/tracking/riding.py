"""An MLflow tracking server, through outages of it: every call of a :class:`RidingClient` is
tried again while the server cannot be reached, and a run is created exactly once
(docs/decisions.md, "Outages")."""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES
from mlflow.exceptions import RestException
from mlflow.tracking import MlflowClient
from urllib3.exceptions import MaxRetryError, ProtocolError

from rnnlab.errors import mask_url
from rnnlab.retrying import chain, store

os.environ.setdefault(MLFLOW_HTTP_REQUEST_MAX_RETRIES.name, "0")
CREATE_TAG = "rnnlab.create_token"
_UNREACHABLE = (
    ConnectionError, requests.ConnectionError, requests.Timeout, ProtocolError, MaxRetryError,
    requests.exceptions.RetryError,  # a 5xx that MLflow's (zero) retries gave up on
    requests.exceptions.ChunkedEncodingError,  # an answer cut short
)
T = TypeVar("T")


def is_server_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the tracking server cannot be reached or is failing (refused,
    dropped, timed out, 5xx), not that a request was wrong."""
    for e in chain(exc):
        if isinstance(e, _UNREACHABLE):
            return True
        if isinstance(e, requests.HTTPError) and e.response is not None:
            return e.response.status_code >= 500
        if isinstance(e, RestException):
            return e.get_http_status_code() >= 500
    return False


def is_locked(exc: BaseException) -> bool:
    """Whether ``exc`` says a local SQLite store was locked by another process's write. SQLite
    answers two deferred transactions that both want to write at once with this error, at
    once, whatever the busy timeout: the one that gets it must try again."""
    return any(isinstance(e, sqlite3.OperationalError) and "database is locked" in str(e)
               for e in chain(exc))


LOCK_WAIT_S = 5.0  # a locked local store is ridden out this long even while closing in haste
_MLFLOW_DB_LOG = "mlflow.store.db.utils"  # logs each SQL error, its traceback included


class _LockReports(logging.Filter):
    """Drops MLflow's ERROR, with its traceback, for a write that found a local store locked:
    rnnlab rides the lock out and says so in one line (:mod:`rnnlab.retrying`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or not is_locked(exc)


def quiet_lock_reports() -> None:
    """Leave a locked local store to rnnlab's line alone (once per process)."""
    logger = logging.getLogger(_MLFLOW_DB_LOG)
    if not any(isinstance(f, _LockReports) for f in logger.filters):
        logger.addFilter(_LockReports())


class RidingClient:
    """An ``MlflowClient`` whose calls ride out outages: of a tracking server, by default; of
    a local SQLite store's lock (``is_outage=is_locked``), for workers that share one."""

    def __init__(self, client: MlflowClient, name: str | None = None,
                 is_outage: Callable[[BaseException], bool] = is_server_outage,
                 impatient_s: float = 0.0):
        self._client = client
        self.store = store(name or f"MLflow tracking server at {mask_url(client.tracking_uri)}",
                           is_outage, impatient_s)

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._client, name)
        if name.startswith("_") or not callable(found):
            return found  # MLflow's internals (tracking/internals.py): called through ride()
        return functools.partial(self.store.call, found)

    def create_run(self, experiment_id: str, start_time: int | None = None,
                   tags: dict[str, Any] | None = None, run_name: str | None = None):
        token, tries = uuid.uuid4().hex, []

        def attempt():
            if tries:  # the attempt whose answer was lost may have created it
                found = self._client.search_runs(
                    [experiment_id], f"tags.`{CREATE_TAG}` = '{token}'", max_results=1)
                if found:
                    return found[0]
            tries.append(1)
            return self._client.create_run(experiment_id, start_time,
                                           {**(tags or {}), CREATE_TAG: token}, run_name)

        return self.store.call(attempt)


def ride(client: Any, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, through outages of ``client``'s server (at once for a local store)."""
    if isinstance(client, RidingClient):
        return client.store.call(fn, *args)
    return fn(*args)
