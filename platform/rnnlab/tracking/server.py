"""Which MLflow store rnnlab talks to (``MLFLOW_TRACKING_URI`` or MLflow's default,
``sqlite:///mlflow.db`` here), and one quick check that it is a usable one, before anything is
written."""

from __future__ import annotations

import os
import re

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from rnnlab.errors import RnnlabError, first_line, mask_url, with_password
from rnnlab.files import check_sqlite, sqlite_file
from rnnlab.tracking.riding import LOCK_WAIT_S, RidingClient, is_locked, quiet_lock_reports

PROBE_TIMEOUT_S = 5
PROBE = "/api/2.0/mlflow/experiments/get-by-name"  # GET; MLflow answers it in JSON, even a 404
MLFLOW_TABLES = {"experiments", "runs"}
FIX = "restore it from a backup or point MLFLOW_TRACKING_URI elsewhere"


# A database store's password, for a URI that names its user only (a tracking server's comes
# as MLflow's own MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD).
PASSWORD_ENV = "RNNLAB_TRACKING_PASSWORD"


def tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else MLflow's default; a database URI's password
    from :data:`PASSWORD_ENV` where the URI names its user only."""
    found = uri or mlflow.get_tracking_uri()
    return found if is_server(found) else with_password(found, os.environ.get(PASSWORD_ENV))


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def client(uri: str | None = None) -> MlflowClient:
    """A client of the store ``uri`` names (see :func:`tracking_uri`), checked first: what
    commands that only read use, so a local store that does not exist is not made.

    Raises:
        RnnlabError: the store cannot be used (see :func:`check_store`), or does not exist.
    """
    uri = tracking_uri(uri)
    check_store(uri)
    check_exists(uri)
    return open_client(uri)


def check_exists(uri: str) -> None:
    """Refuse a local store file that is not there: reading one would create it.

    Raises:
        RnnlabError: the SQLite file ``uri`` names does not exist.
    """
    path = sqlite_file(uri)
    if path is not None and not path.is_file():
        raise RnnlabError(f"MLflow tracking store {mask_url(uri)} does not exist: nothing was "
                          "tracked here; run where the sweep ran, or set MLFLOW_TRACKING_URI")


def open_client(uri: str) -> MlflowClient | RidingClient:
    """``MlflowClient(uri)``, riding out outages of a tracking server
    (:mod:`rnnlab.tracking.riding`); a local store is opened (and made, if new) right away.

    Raises:
        RnnlabError: the database cannot be read.
    """
    from sqlalchemy.exc import DatabaseError

    try:
        if is_server(uri):
            return RidingClient(MlflowClient(uri))
        if uri.startswith("sqlite:"):  # shared by a sweep's workers: a write may find it locked
            quiet_lock_reports()
            return RidingClient(MlflowClient(uri), f"MLflow store {mask_url(uri)}", is_locked,
                                LOCK_WAIT_S)
        return MlflowClient(uri)
    except DatabaseError as exc:  # a damage check_store cannot see from the file's outside
        reason = str(exc.orig or exc).splitlines()[0][:160]
        raise RnnlabError(f"MLflow tracking store {mask_url(uri)} is damaged ({reason}); "
                          f"{FIX}") from None


def check_store(uri: str) -> None:
    """Fail in one line, writing nothing, on a store rnnlab cannot use: a tracking server that
    does not answer as MLflow, or a SQLite file that is damaged or another application's (a
    file that does not exist yet is fine: MLflow creates it).

    Raises:
        RnnlabError: what is wrong, the store named, and how to fix it.
    """
    if is_server(uri):
        check_server(uri)
        return
    if uri.split(":", 1)[0].split("+", 1)[0] in DATABASES:
        check_database(uri)
        return
    check_sqlite(uri, MLFLOW_TABLES, "MLflow tracking store", "MLflow", "MLFLOW_TRACKING_URI",
                 FIX)


DATABASES = ("postgresql", "mysql", "mssql")  # MLflow's database stores, SQLite apart
_ANSWERED: set[str] = set()  # database stores that answered in this process


def check_database(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """One quick connection to a database store (PostgreSQL, MySQL), with no retries: MLflow's
    own first connection retries for about 100 s, printing each attempt, and then says what
    SQLAlchemy said.

    Raises:
        RnnlabError: the database cannot be connected to (no server there, no such database,
            credentials refused) within ``timeout`` seconds.
    """
    if uri in _ANSWERED:
        return
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    try:
        # both drivers' own name for it: a server that drops packets is not waited on
        engine = create_engine(uri, poolclass=NullPool, connect_args={
            "connect_timeout": round(timeout)} if uri.startswith(("postgresql", "mysql")) else {})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - sqlalchemy/driver errors of every kind
        reason = first_line(getattr(exc, "orig", None) or exc)  # the driver's words
        raise RnnlabError(
            f"MLflow tracking store {mask_url(uri)} cannot be reached ({reason}); check the "
            "URL and that the database server is running, or fix MLFLOW_TRACKING_URI") from None
    _ANSWERED.add(uri)


def check_server(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """One quick request to a tracking server's REST API, with no retries.

    MLflow answers in JSON, an error too; credentials it refuses show up, with MLflow's own
    message, at the first real call. A connection failure, or an answer that is not MLflow's
    (a web page), is an error.

    Raises:
        RnnlabError: the server cannot be connected to within ``timeout`` seconds, or is not
            an MLflow tracking server.
    """
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        resp = http_request(get_default_host_creds(uri), PROBE, "GET", max_retries=0,
                            backoff_factor=0, timeout=timeout, raise_on_status=False,
                            params={"experiment_name": "Default"})
    except MlflowException as exc:
        found = re.search(r"\[Errno -?\d+\] ([^\"')(]+)", str(exc))
        reason = (found.group(1).strip() if found else
                  f"no answer within {timeout:g} s" if "timed out" in str(exc).lower() else
                  str(exc).splitlines()[0][-160:])
        raise RnnlabError(
            f"MLflow tracking server {mask_url(uri)} is not reachable ({reason}); start it "
            "(mlflow server ...) or fix MLFLOW_TRACKING_URI"
        ) from None
    if resp.status_code in (401, 403) or _is_json(resp):
        return
    kind = resp.headers.get("Content-Type", "").split(";")[0] or "no content type"
    raise RnnlabError(
        f"tracking URI {mask_url(uri)} answers, but not as an MLflow tracking server (HTTP "
        f"{resp.status_code}, {kind}, for {PROBE}); point MLFLOW_TRACKING_URI at an MLflow "
        "server (mlflow server ...)")


def _is_json(resp) -> bool:
    try:
        resp.json()
    except ValueError:
        return False
    return True
