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

from rnnlab.errors import RnnlabError, mask_url
from rnnlab.storage.adapter import DEFAULT_STORAGE, is_rdb

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
