"""Optuna storages by URL, and the lock that keeps a study's trial budget exact.

A storage is named by one string:

- a file path (default ``rnnlab.journal`` in the working directory): Optuna's journal file
  storage, which many local worker processes share safely (no "database is locked");
- any Optuna RDB URL: ``postgresql://user:pass@host/db``, ``sqlite:///study.db``, ``mysql://...``.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

# Private in Optuna, but the documented extension point for journal file locks.
from optuna.storages.journal._file import BaseJournalFileLock

from rnnlab.errors import RnnlabError

DEFAULT_STORAGE = "rnnlab.journal"


def mask_url(url: str | None) -> str:
    """Hide the password in a URL: ``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``."""
    if not url:
        return ""
    return re.sub(r"(://[^/:@]*:)[^@/]*@", r"\1***@", url)


class FlockLock(BaseJournalFileLock):
    """A journal lock the kernel releases when its holder dies.

    Optuna's own file locks are lock *files*: a worker SIGKILLed while holding one leaves it
    behind, and every other worker stalls for the lock's grace period. ``flock`` cannot leak.
    Each acquire opens its own file description, so threads of one process exclude each other
    too; closing it releases the lock. No in-process lock is held: a Ctrl-C that lands between
    acquire and release must not leave a lock that the interrupted trial's cleanup then waits
    on forever.
    """

    def __init__(self, path: str):
        self.path = f"{path}.lock"
        self._local = threading.local()

    def acquire(self) -> bool:
        stale = getattr(self._local, "fh", None)
        if stale is not None:  # an interrupt struck between this thread's acquire and release
            stale.close()
        self._local.fh = open(self.path, "a")  # noqa: SIM115 - closed by release()
        fcntl.flock(self._local.fh, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        fh, self._local.fh = getattr(self._local, "fh", None), None
        if fh is not None:
            fh.close()  # closing the file description releases the flock


def is_rdb(url: str) -> bool:
    return "://" in url


def open_storage(url: str = DEFAULT_STORAGE) -> BaseStorage:
    """Open (creating if needed) the storage a URL or path names; cached per process.

    Raises:
        RnnlabError: the database cannot be reached or the path cannot be written.
    """
    # A journal keeps its replayed state in memory: key the cache on the absolute path, so a
    # relative name opened from another folder is another storage.
    return _open(url if is_rdb(url) else str(Path(url).expanduser().absolute()))


@functools.lru_cache(maxsize=8)
def _open(url: str) -> BaseStorage:
    if not is_rdb(url):
        path = Path(url).expanduser()
        if not path.parent.is_dir():
            raise RnnlabError(f"storage {url!r}: folder {str(path.parent)!r} does not exist")
        try:
            backend = JournalFileBackend(str(path), lock_obj=FlockLock(str(path)))
        except OSError as exc:
            raise RnnlabError(f"storage {url!r}: cannot open ({exc.strerror})") from None
        return JournalStorage(backend)
    try:
        return _rdb_storage(url)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy/driver errors of every kind
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise RnnlabError(
            f"cannot open storage {mask_url(url)}: {reason}; check the URL and that the "
            "database server is running"
        ) from None


def _rdb_storage(url: str) -> RDBStorage:
    """Optuna's RDB storage; on PostgreSQL its schema is created under an advisory lock.

    Workers that start together on an empty database (``docker-compose up --scale worker=N``)
    otherwise race in CREATE TABLE, and all but one fail on a duplicate ``pg_type`` row.
    """
    kwargs = {"engine_kwargs": {"pool_pre_ping": True}}
    if not url.startswith("postgresql"):
        return RDBStorage(url, **kwargs)
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _SCHEMA_LOCK_KEY})
            try:
                return RDBStorage(url, **kwargs)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _SCHEMA_LOCK_KEY})
    finally:
        engine.dispose()


_SCHEMA_LOCK_KEY = int.from_bytes(hashlib.sha1(b"rnnlab:optuna-schema").digest()[:8], "big",
                                  signed=True)


def study_names(url: str) -> list[str]:
    """The studies a storage holds; a journal file that does not exist holds none (and reading
    it does not create it)."""
    if not is_rdb(url) and not Path(url).expanduser().exists():
        return []
    return [s.study_name for s in open_storage(url).get_all_studies()]


def load_study(url: str, name: str) -> optuna.Study:
    """Load an existing study, or fail with a line that lists the studies there are."""
    names = study_names(url)
    if name not in names:
        listing = ", ".join(sorted(names)) or "none"
        raise RnnlabError(f"no study named {name!r} in storage {mask_url(url)} "
                          f"(studies there: {listing}); check the name or pass --storage")
    return optuna.load_study(study_name=name, storage=open_storage(url))


@contextlib.contextmanager
def study_lock(url: str, name: str) -> Iterator[None]:
    """Serialise "check the budget, then create a trial" across every worker of a study.

    A file lock beside a journal or SQLite file for local workers; a PostgreSQL advisory lock
    or a MySQL named lock for workers on many machines.
    """
    open_storage(url)  # a bad URL or folder fails here, as one line
    key = int.from_bytes(hashlib.sha1(f"rnnlab:{name}".encode()).digest()[:8], "big",
                         signed=True)
    if is_rdb(url) and not url.startswith("sqlite"):
        engine = open_storage(url).engine  # type: ignore[attr-defined]
        from sqlalchemy import text

        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                unlock = text("SELECT pg_advisory_unlock(:k)")
            elif engine.dialect.name in ("mysql", "mariadb"):
                conn.execute(text("SELECT GET_LOCK(:k, -1)"), {"k": str(key)})
                unlock = text("SELECT RELEASE_LOCK(:k)")
            else:
                raise RnnlabError(f"storage {mask_url(url)}: {engine.dialect.name} is not "
                                  "supported for several workers; use PostgreSQL or MySQL")
            try:
                yield
            finally:
                conn.execute(unlock, {"k": key if engine.dialect.name == "postgresql"
                                      else str(key)})
        return
    path = url.split(":///", 1)[1] if is_rdb(url) else url
    with open(f"{Path(path).expanduser()}.{key & 0xFFFFFFFF:08x}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
