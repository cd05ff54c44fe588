"""What is wrong with a journal file, read without Optuna and without changing it (a foreign file,
a record Optuna cannot replay, a last record a crash cut short)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

from rnnlab.files import SQLITE_MAGIC

_HEAD = 4096  # bytes read to tell an Optuna journal from another file
_CHUNK = 65536


def foreign(path: Path) -> str | None:
    """Why a non-empty file is not an Optuna journal, judged by its first record; else None."""
    with open(path, "rb") as fh:
        head = fh.read(_HEAD)
    if not head or (head.lstrip().startswith(b"{") and b'"op_code"' in head.split(b"\n")[0]):
        return None
    if head.startswith(SQLITE_MAGIC):
        return ("is a SQLite database, not an Optuna journal; if it holds an Optuna study, "
                f"pass it as --storage sqlite:///{path}")
    return (f"is not an Optuna journal (it starts with {head[:24].decode(errors='replace')!r}); "
            "point --storage at a journal file or a database URL")


def is_record(line: bytes) -> bool:
    """A line is an Optuna operation: a JSON object with an ``op_code``."""
    try:
        record = json.loads(line)
    except ValueError:  # not JSON, or not UTF-8
        return False
    return isinstance(record, dict) and "op_code" in record


def incomplete_tail(path: Path) -> int | None:
    """The size of the journal's complete records when its last record is incomplete (no
    newline at its end, or not an operation); None when it ends whole (or is empty).

    Reads only the end of the file, back to the last record's start.
    """
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        if size == 0:
            return None
        fh.seek(size - 1)
        whole = fh.read(1) == b"\n"
        stop = size - 1 if whole else size
        start = _line_start(fh, stop)
        fh.seek(start)
        if whole and is_record(fh.read(stop - start)):
            return None
    return start


def _line_start(fh: BinaryIO, stop: int) -> int:
    """Where the line that ends at ``stop`` begins."""
    pos = stop
    while pos > 0:
        n = min(_CHUNK, pos)
        fh.seek(pos - n)
        found = fh.read(n).rfind(b"\n")
        if found >= 0:
            return pos - n + found + 1
        pos -= n
    return 0


def bad_record(path: Path) -> tuple[int, int] | None:
    """The first record that is not an operation, as (its number from 1, its byte offset);
    None when every record is one. Reads the whole file: for when Optuna could not."""
    offset = 0
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not is_record(line):
                return number, offset
            offset += len(line)
    return None
