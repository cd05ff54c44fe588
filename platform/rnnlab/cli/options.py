"""Options that several commands share, so that each reads the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a config key: section.key=value (repeatable).")]
DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="Folder with the four MNIST IDX files (else $RNNLAB_DATA_DIR).")]
AllowChangeOpt = Annotated[bool, typer.Option(
    "--allow-spec-change", help="Resume a study whose spec changed only keys that cannot alter "
    "results (timeout, heartbeats, retries, store outage limit, train.device, train.threads, "
    "data.dir).")]
StorageOpt = Annotated[str | None, typer.Option(
    "--storage",
    help="Optuna storage: a journal file path or an RDB URL (default rnnlab.journal).")]


def with_data_dir(overrides: list[str] | None, data_dir: Path | None) -> list[str]:
    """``--set`` overrides, with ``--data-dir`` as ``data.dir=...`` when given."""
    return [*(overrides or []), *([f"data.dir={data_dir}"] if data_dir else [])]
