"""Stores that every node of a cluster reaches: what the Ray and Slurm engines check before
they start anything.

A store is shared when it is a server (a database or MLflow server URL) or a file named by an
absolute path on a filesystem every node mounts: an Optuna journal or an MLflow ``file:`` store.
A relative path is this folder's, and a SQLite file is never shared, since its locks do not hold
across machines.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from rnnlab.errors import RnnlabError, mask_url, split_password
from rnnlab.storage.adapter import DEFAULT_STORAGE, is_rdb
from rnnlab.storage.adapter import PASSWORD_ENV as STORAGE_PASSWORD_ENV
from rnnlab.tracking.server import PASSWORD_ENV as TRACKING_PASSWORD_ENV
from rnnlab.tracking.server import is_server

SHARED_STORAGE = ("pass --storage postgresql://... or a journal's absolute path on a shared "
                  "filesystem")
SHARED_TRACKING = ("set MLFLOW_TRACKING_URI to an MLflow server (http://HOST:5000), a database "
                   "URL or a file: store's absolute path on a shared filesystem")


def check_shared(storage: str, tracking: str | None, nodes: str, fix: str = "") -> None:
    """Refuse, in one line, a store that only this machine reaches.

    Args:
        storage: the Optuna storage.
        tracking: the MLflow tracking URI (None: ``MLFLOW_TRACKING_URI`` is not set).
        nodes: who must reach the stores, as the line names them ("compute nodes").
        fix: another way out, added to the line ("or use --ray local").

    Raises:
        RnnlabError: the storage or the tracking store is this machine's alone.
    """
    if why := _unshared(storage):
        raise RnnlabError(f"the Optuna storage {mask_url(storage)!r} {why}, which {nodes} "
                          f"cannot reach; {SHARED_STORAGE}{fix}")
    if tracking is None:
        raise RnnlabError(f"MLFLOW_TRACKING_URI is not set, so runs would go to MLflow's local "
                          f"store in this folder, which {nodes} cannot reach; "
                          f"{SHARED_TRACKING}{fix}")
    if why := _unshared(tracking):
        raise RnnlabError(f"the MLflow tracking store {mask_url(tracking)!r} {why}, which "
                          f"{nodes} cannot reach; {SHARED_TRACKING}{fix}")


def _unshared(url: str) -> str | None:
    """Why the store ``url`` names is this machine's alone; None when it is shared."""
    if url.startswith("sqlite"):
        return "is a SQLite file (its locks do not hold across machines)"
    if url.startswith("file:"):
        path = urlparse(url).path
    elif is_rdb(url):
        return None
    else:
        path = url
    if Path(path).expanduser().is_absolute():
        return None
    return ("is the default journal, a file in this folder" if url == DEFAULT_STORAGE
            else "is a relative path")


def without_secrets(storage: str, tracking: str) -> tuple[str, str, dict[str, str]]:
    """The store URLs an engine hands its workers, with no password in them, and the
    environment that carries the passwords instead (never a command line or a file): the
    storage's as ``RNNLAB_STORAGE_PASSWORD``, a tracking server's as MLflow's own
    ``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD``, a tracking database's as
    ``RNNLAB_TRACKING_PASSWORD``."""
    env: dict[str, str] = {}
    storage, password = split_password(storage)
    if password is not None:
        env[STORAGE_PASSWORD_ENV] = password
    tracking, password = split_password(tracking)
    if password is not None and is_server(tracking):
        scheme, _, rest = tracking.partition("://")
        user, _, host = rest.rpartition("@")
        tracking = f"{scheme}://{host}"
        env |= {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}
    elif password is not None:
        env[TRACKING_PASSWORD_ENV] = password
    return storage, tracking, env
