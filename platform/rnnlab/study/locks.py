"""The lock that keeps a study's trial budget exact across every worker on every machine."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path

from rnnlab.errors import RnnlabError, mask_url
from rnnlab.study.storage import is_rdb, open_storage


@contextlib.contextmanager
def study_lock(url: str, name: str) -> Iterator[None]:
    """Serialise "check the budget, then create a trial" across every worker of a study.

    A file lock beside a journal or SQLite file for local workers; a PostgreSQL advisory lock
    or a MySQL named lock for workers on many machines.
    """
    storage = open_storage(url)  # a bad URL or folder fails here, as one line
    key = int.from_bytes(hashlib.sha1(f"rnnlab:{name}".encode()).digest()[:8], "big",
                         signed=True)
    if is_rdb(url) and not url.startswith("sqlite"):
        conn, unlock = storage.store.call(_lock_database, url, storage.engine, key)
        try:
            yield
        except BaseException:
            _unlock_database(storage, conn, unlock, lost_too=False)
            raise
        _unlock_database(storage, conn, unlock, lost_too=True)
        return
    path = url.split(":///", 1)[1] if is_rdb(url) else url
    with open(f"{Path(path).expanduser()}.{key & 0xFFFFFFFF:08x}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class LockLost(RnnlabError):
    """The database dropped the connection that held a study's lock (an outage): what was done
    under it may have raced another worker's."""


def _lock_database(url: str, engine, key: int):
    """A connection holding the study's lock (waits for it), and the statement that frees it."""
    from sqlalchemy import text

    conn = engine.connect()
    try:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            return conn, (text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        if engine.dialect.name in ("mysql", "mariadb"):
            conn.execute(text("SELECT GET_LOCK(:k, -1)"), {"k": str(key)})
            return conn, (text("SELECT RELEASE_LOCK(:k)"), {"k": str(key)})
    except BaseException:
        conn.close()
        raise
    conn.close()
    raise RnnlabError(f"storage {mask_url(url)}: {engine.dialect.name} is not supported for "
                      "several workers; use PostgreSQL or MySQL")


def _unlock_database(storage, conn, unlock, *, lost_too: bool) -> None:
    """Free the lock. A lock the database let go of while it was held (its connection dropped)
    raises :class:`LockLost` when ``lost_too`` (else an error is already on its way)."""
    try:
        held = conn.execute(*unlock).scalar()
    except Exception as exc:
        if not storage.store.is_outage(exc):
            raise
        held = False
    finally:
        conn.close()
    if not held and lost_too:
        raise LockLost(f"the study's lock on {storage.store.name} was lost in an outage; "
                       "run the same command again (the study is resumable)")
