"""A study and its MLflow runs, read back into tidy pandas DataFrames."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from rnnlab.errors import RnnlabError
from rnnlab.storage import load_study

FORMATS = ("csv", "parquet", "json")


def trials_frame(storage: str, name: str) -> pd.DataFrame:
    """One row per trial: number, state, value, timings, every param (``params_<key>``), the
    trial's MLflow run id and reason (for pruned or failed trials).

    Raises:
        RnnlabError: the study does not exist.
    """
    study = load_study(storage, name)
    df = study.trials_dataframe(attrs=("number", "value", "state", "datetime_start",
                                       "datetime_complete", "duration", "params", "user_attrs"))
    if df.empty:
        return pd.DataFrame(columns=["number", "value", "state", "duration_s"])
    df["duration_s"] = df.pop("duration").dt.total_seconds()
    df = df.rename(columns=lambda c: c.replace("user_attrs_", ""))
    if "config" in df:  # the values trained with (a draw below zero_below trained as 0)
        for col in [c for c in df.columns if c.startswith("params_")]:
            key = col.removeprefix("params_")
            df[col] = [cfg.get(key, raw) if isinstance(cfg, dict) else raw
                       for cfg, raw in zip(df["config"], df[col], strict=True)]
        df = df.drop(columns="config")
    return df


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


def atomic_write(out: str | Path, write) -> Path:
    """Call ``write(tmp_path)`` beside ``out``, then rename: a failure leaves no partial file.

    Raises:
        RnnlabError: the folder does not exist or cannot be written.
    """
    target = Path(out).expanduser()
    if not target.parent.is_dir():
        raise RnnlabError(f"cannot write {str(target)!r}: folder {str(target.parent)!r} "
                          "does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise RnnlabError(f"cannot write {str(target)!r}: {exc.strerror}") from None
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
