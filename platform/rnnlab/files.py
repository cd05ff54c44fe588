"""Files rnnlab writes for users (trial tables, dashboards, reports): whole or not at all.

A write goes to a temporary file beside the target and is renamed over it, so a failure (a full
disk, Ctrl-C) never leaves a partial file under the name asked for.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from rnnlab.errors import RnnlabError

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("csv", "parquet", "json")


def write_frame(df: pd.DataFrame, fmt: str, out: str | Path | None) -> str | None:
    """Write ``df`` as csv/parquet/json to ``out`` atomically, or return the text when out is None.

    Raises:
        RnnlabError: unknown format, parquet without a file, or an unwritable path.
    """
    if fmt not in FORMATS:
        raise RnnlabError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
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


def check_writable(out: str | Path) -> None:
    """Fail early, before minutes of work, when ``out`` could not be written.

    Raises:
        RnnlabError: the folder does not exist or is not writable, or ``out`` is a folder.
    """
    target = Path(out).expanduser()
    if target.is_dir():
        raise RnnlabError(f"cannot write {str(target)!r}: it is a folder; give a file name")
    if not target.parent.is_dir():
        raise RnnlabError(f"cannot write {str(target)!r}: folder {str(target.parent)!r} "
                          "does not exist")
    if not os.access(target.parent, os.W_OK):
        raise RnnlabError(f"cannot write {str(target)!r}: folder {str(target.parent)!r} "
                          "is not writable")


def atomic_write(out: str | Path, write) -> Path:
    """Call ``write(tmp_path)`` beside ``out``, then rename: a failure leaves no partial file.

    Raises:
        RnnlabError: the folder does not exist or cannot be written.
    """
    target = Path(out).expanduser()
    check_writable(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise RnnlabError(f"cannot write {str(target)!r}: {exc.strerror}") from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, target)
    except OSError as exc:  # disk full, a folder in the way: still no partial file
        Path(tmp).unlink(missing_ok=True)
        raise RnnlabError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
