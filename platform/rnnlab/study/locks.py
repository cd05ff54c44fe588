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
