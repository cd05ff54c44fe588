"""Files rnnlab writes for users (trial tables, dashboards, reports): whole or not at all; and a
look, without changing it, at a SQLite file a store lives in.

A write goes to a temporary file beside the target and is renamed over it, so a failure (a full
disk, Ctrl-C) never leaves a partial file under the name asked for.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from rnnlab.errors import RnnlabError, mask_url

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("csv", "parquet", "json")  # a table's (rnnlab trials)
REPORT_FORMATS = ("md", "html", "json", "yaml")  # a report's (rnnlab report)
SQLITE_MAGIC = b"SQLite format 3\x00"


def write_frame(df: pd.DataFrame, fmt: str, out: str | Path | None) -> str | None:
    """Write ``df`` as csv/parquet/json to ``out`` atomically, or return the text when out is None.

    Raises:
        RnnlabError: unknown format, parquet without a file, or an unwritable path.
    """
    check_format(fmt)
    if out is None:
        if fmt == "parquet":
            raise RnnlabError("parquet is binary: give --out FILE.parquet")
        return df.to_csv(index=False) if fmt == "csv" else df.to_json(
            orient="records", date_format="iso", indent=1)
    atomic_write(out, lambda path: (
        df.to_csv(path, index=False) if fmt == "csv"
        else df.to_parquet(path, index=False) if fmt == "parquet"
        else df.to_json(path, orient="records", date_format="iso", indent=1)))
    return None


def check_format(fmt: str, formats: tuple[str, ...] = FORMATS, what: str = "format") -> None:
    """Refuse a format not in ``formats`` (checked before anything slow starts).

    Raises:
        RnnlabError: ``fmt`` is not one of them.
    """
    if fmt not in formats:
        raise RnnlabError(f"unknown {what} {fmt!r}; use one of {', '.join(formats)}")


def check_writable(out: str | Path) -> None:
    """Fail early, before minutes of work, when ``out`` could not be written.

    Raises:
        RnnlabError: the folder does not exist or is not writable, or ``out`` is a folder or
            a symbolic link.
    """
    target = Path(out).expanduser()
    if target.is_symlink():  # writing would replace the link, or follow it to another file
        raise RnnlabError(f"cannot write {str(target)!r}: it is a symbolic link (to "
                          f"{os.readlink(target)!r}); give a plain file name")
    if target.is_dir():
        raise RnnlabError(f"cannot write {str(target)!r}: it is a folder; give a file name")
    if not target.parent.is_dir():
        raise RnnlabError(f"cannot write {str(target)!r}: folder {str(target.parent)!r} "
                          "does not exist")
    if not os.access(target.parent, os.W_OK):
        raise RnnlabError(f"cannot write {str(target)!r}: folder {str(target.parent)!r} "
                          "is not writable")


def atomic_write(out: str | Path, write, mode: int | None = None) -> Path:
    """Call ``write(tmp_path)`` beside ``out``, then rename: a failure leaves no partial file.
    The file gets ``mode``, else the usual mode for new files (0666 less the umask).

    Raises:
        RnnlabError: the folder does not exist or cannot be written.
    """
    target = Path(out).expanduser()
    check_writable(target)
    try:
        tmp = _new_file(target, 0o666 if mode is None else mode)
    except OSError as exc:
        raise RnnlabError(f"cannot write {str(target)!r}: {exc.strerror}") from None
    try:
        write(str(tmp))
        if mode is not None:  # exactly, whatever the umask
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as exc:  # disk full, a folder in the way: still no partial file
        tmp.unlink(missing_ok=True)
        raise RnnlabError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _new_file(target: Path, mode: int) -> Path:
    """A new empty file beside ``target``, made with ``mode`` less the umask as the system
    applies it to any new file (the process's umask is never read or changed: a thread may be
    writing meanwhile)."""
    while True:
        path = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
        except FileExistsError:
            continue
        return path


def sqlite_file(url: str) -> Path | None:
    """The file a ``sqlite:///`` URL names; None for other URLs and in-memory databases."""
    if not url.startswith("sqlite:///"):
        return None
    name = url.removeprefix("sqlite:///").split("?", 1)[0]
    return None if name in ("", ":memory:") else Path(name).expanduser()


def sqlite_damage(path: Path) -> str | None:
    """What is wrong with a SQLite file, read without changing it: not SQLite, cut short, or
    a schema that cannot be read. None when it is sound, missing or empty (SQLite starts a new
    database in an empty file)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(0)
            head = fh.read(100)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if size == 0:
        return None
    if not head.startswith(SQLITE_MAGIC):
        return "is not a SQLite database"
    if len(head) < 100:
        return f"is cut short ({size} bytes, not even a SQLite header)"
    page = int.from_bytes(head[16:18], "big")
    expected = (65536 if page == 1 else page) * int.from_bytes(head[28:32], "big")
    # The header's page count is valid when its two change counters agree; a WAL file may
    # still hold pages the main file lacks.
    if (head[24:28] == head[92:96] and size < expected
            and not Path(f"{path}-wal").exists()):
        return f"is cut short ({size} of its {expected} bytes)"
    try:
        sqlite_tables(path)
    except sqlite3.OperationalError:  # locked by a writer, say: no sign of damage
        return None
    except sqlite3.DatabaseError as exc:  # not a database, malformed
        return f"is damaged ({exc})"
    return None


def sqlite_tables(path: Path) -> set[str]:
    """The tables of a SQLite file, opened read-only.

    Raises:
        sqlite3.DatabaseError: the file is not a readable SQLite database.
    """
    conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        return {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def check_sqlite(url: str, expected: set[str], store: str, kind: str, setting: str,
                 fix: str) -> None:
    """Refuse, before anything opens it, the SQLite file ``url`` names when it is damaged or
    holds another application's tables (a store would add its own tables to it). Other URLs,
    and files that do not exist yet, pass.

    Args:
        url: the store's URL.
        expected: tables the right kind of database has.
        store: what the URL is, as the message names it ("storage").
        kind: the database it should be ("Optuna").
        setting: where the user points the store elsewhere ("--storage").
        fix: the way out of a damaged file.

    Raises:
        RnnlabError: one line naming the store and what is wrong.
    """
    path = sqlite_file(url)
    if path is None:
        return
    if damage := sqlite_damage(path):
        raise RnnlabError(f"{store} {mask_url(url)} {damage}; {fix}")
    if tables := sqlite_foreign(path, expected):
        raise RnnlabError(
            f"{store} {mask_url(url)} is not an {kind} database: it holds another "
            f"application's tables ({', '.join(tables[:4])}); point {setting} at a new file or "
            f"an {kind} database")


def sqlite_foreign(path: Path, expected: set[str]) -> list[str]:
    """The tables of a sound SQLite file that holds tables but not all of ``expected``: another
    application's database (empty when it is not)."""
    if not path.is_file() or not path.stat().st_size:
        return []
    try:
        tables = sqlite_tables(path)
    except sqlite3.OperationalError:  # locked past the timeout: the store itself will say
        return []
    return [] if not tables or expected <= tables else sorted(tables)
