"""The lock that keeps a study's trial budget exact across every worker on every machine."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterator
from pathlib import Path

from rnnlab.errors import RnnlabError
from rnnlab.storage.adapter import is_rdb, open_database, open_storage
from rnnlab.storage.rdb import acquire_lock, lock_key
from rnnlab.storage.riding import RidingStorage


@contextlib.contextmanager
def study_lock(url: str, name: str) -> Iterator[None]:
    """Serialise "check the budget, then create a trial" across every worker of a study.

    A file lock beside a journal or SQLite file for local workers; a PostgreSQL advisory lock
    or a MySQL named lock for workers on many machines.

    Raises:
        RnnlabError: the storage cannot be opened, or its database has no such locks.
        LockLost: an outage dropped the database connection that held the lock.
    """
    open_storage(url)  # a bad URL or folder fails here, as one line
    key = lock_key(name)
    if is_rdb(url) and not url.startswith("sqlite"):
        database = open_database(url)
        conn, release = database.store.call(_lock_database, url, database, key)
        try:
            yield
        except BaseException:
            _unlock_database(database, conn, release, lost_too=False)
            raise
        _unlock_database(database, conn, release, lost_too=True)
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


def _lock_database(url: str, database: RidingStorage, key: int):
    """A connection holding the study's lock (waits for it), and the call that frees it."""
    conn = database.engine.connect()
    try:
        return conn, acquire_lock(conn, key, url)
    except BaseException:
        _close(database, conn)  # a dead connection's close must not hide why it was closed
        raise


def _unlock_database(database: RidingStorage, conn, release: Callable[[], bool], *,
                     lost_too: bool) -> None:
    """Free the lock. A lock the database let go of while it was held (its connection dropped)
    raises :class:`LockLost` when ``lost_too`` (else an error is already on its way)."""
    held = False
    try:
        held = release()
    except Exception as exc:
        if not database.store.is_outage(exc):
            raise
    finally:
        _close(database, conn)
    if not held and lost_too:
        raise LockLost(f"the study's lock on {database.store.name} was lost in an outage; "
                       "run the same command again (the study is resumable)")


def _close(database: RidingStorage, conn) -> None:
    """Close the lock's connection. Closing rolls its transaction back, which fails when the
    database went away after the lock was freed (or while it was being freed: the unlock's own
    answer says which); SQLAlchemy has then dropped the broken connection from its pool."""
    try:
        conn.close()
    except Exception as exc:
        if not database.store.is_outage(exc):
            raise
