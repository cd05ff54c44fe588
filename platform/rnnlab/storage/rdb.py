"""Optuna's RDB storages (PostgreSQL, MySQL, SQLite): opened safely, and looked at first.

A SQLite file that is damaged or another application's is refused before SQLAlchemy opens it
(Optuna would add its tables to another application's database); a database is asked whether it
holds Optuna's tables without creating them, so a command that only reads finds no study there
instead of writing a schema. :mod:`rnnlab.storage.adapter` opens storages through here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from optuna.storages import RDBStorage

from rnnlab.errors import RnnlabError, first_line, mask_url
from rnnlab.files import check_sqlite, sqlite_file, sqlite_tables

OPTUNA_TABLES = {"studies", "trials"}
FIX = "restore it from a backup or point --storage elsewhere"
_WITH_SCHEMA: set[str] = set()  # databases seen with Optuna's tables in this process


def open_rdb(url: str) -> RDBStorage:
    """Optuna's storage on the database ``url`` names, its schema created if need be.

    Raises:
        RnnlabError: the database cannot be reached, or is damaged or another application's.
    """
    _check_sqlite(url)
    try:
        storage = _rdb_storage(url)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy/driver errors of every kind
        raise _cannot_open(url, exc) from None
    _WITH_SCHEMA.add(url)
    return storage


def has_schema(url: str) -> bool:
    """Whether a database holds Optuna's tables, found without creating them.

    Raises:
        RnnlabError: the database cannot be reached, or is damaged or another application's.
    """
    if url in _WITH_SCHEMA:
        return True
    _check_sqlite(url)
    path = sqlite_file(url)
    if path is not None:
        found = path.is_file() and OPTUNA_TABLES <= sqlite_tables(path)
    elif url.startswith("sqlite"):
        return True  # in memory: nothing to spare from Optuna's schema
    else:
        from sqlalchemy import create_engine, inspect
        from sqlalchemy.pool import NullPool

        engine = create_engine(url, poolclass=NullPool)
        try:
            found = inspect(engine).has_table("studies")
        except Exception as exc:  # noqa: BLE001 - sqlalchemy/driver errors of every kind
            raise _cannot_open(url, exc) from None
        finally:
            engine.dispose()
    if found:
        _WITH_SCHEMA.add(url)
    return found


def _check_sqlite(url: str) -> None:
    """A SQLite file that is damaged, or holds another application's tables, is refused before
    SQLAlchemy opens it (Optuna would add its tables to another application's database)."""
    check_sqlite(url, OPTUNA_TABLES, "storage", "Optuna", "--storage", FIX)


def _cannot_open(url: str, exc: Exception) -> RnnlabError:
    from sqlalchemy.exc import DatabaseError, OperationalError

    reason = first_line(exc)
    if isinstance(exc, DatabaseError) and not isinstance(exc, OperationalError):
        return RnnlabError(f"storage {mask_url(url)} is damaged or not a database ({reason}); "
                           f"{FIX}")
    return RnnlabError(f"cannot open storage {mask_url(url)}: {reason}; check the URL and that "
                       "the database server is running")


def _rdb_storage(url: str) -> RDBStorage:
    """Optuna's RDB storage; on PostgreSQL its schema is created under an advisory lock.

    Workers that start together on an empty database (``docker-compose up --scale worker=N``)
    otherwise race in CREATE TABLE, and all but one fail on a duplicate ``pg_type`` row.
    """
    kwargs = {"engine_kwargs": {"pool_pre_ping": True}}
    if not url.startswith("postgresql"):
        return RDBStorage(url, **kwargs)
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            release = acquire_lock(conn, lock_key("optuna-schema"), url)
            try:
                return RDBStorage(url, **kwargs)
            finally:
                release()
    finally:
        engine.dispose()


MYSQL_LOCK_WAIT_S = 365 * 24 * 3600


def lock_key(name: str) -> int:
    """The key of rnnlab's database lock ``name`` (a signed 64-bit PostgreSQL advisory key)."""
    return int.from_bytes(hashlib.sha1(f"rnnlab:{name}".encode()).digest()[:8], "big",
                          signed=True)


def acquire_lock(conn, key: int, url: str) -> Callable[[], bool]:
    """Take the lock ``key`` on the connection ``conn`` (waits for it): a PostgreSQL advisory
    lock or a MySQL named lock, held as long as the connection.

    Returns:
        The call that frees it, and says whether it was still held.

    Raises:
        RnnlabError: the database has no such locks.
    """
    from sqlalchemy import text

    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        return lambda: bool(conn.execute(text("SELECT pg_advisory_unlock(:k)"),
                                         {"k": key}).scalar())
    if dialect not in ("mysql", "mariadb"):
        raise RnnlabError(f"storage {mask_url(url)}: {dialect} is not supported for several "
                          "workers; use PostgreSQL or MySQL")
    # MySQL waits for ever with a negative timeout, MariaDB answers NULL (no lock) at once:
    # a year is "for ever" on both. 1 is the lock taken; anything else, no lock.
    if conn.execute(text("SELECT GET_LOCK(:k, :s)"), {"k": str(key), "s": MYSQL_LOCK_WAIT_S}
                    ).scalar() != 1:
        raise RnnlabError(f"storage {mask_url(url)}: {dialect} did not give the study's lock "
                          "(GET_LOCK); check the database server's log")
    return lambda: conn.execute(text("SELECT RELEASE_LOCK(:k)"), {"k": str(key)}).scalar() == 1
