"""Writing a study's dashboard, once or every few seconds while the study runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rnnlab.dashboards.page import dashboard_html
from rnnlab.files import atomic_write
from rnnlab.study.results import StudyFrames, study_frames

CURVES = ("val_acc", "val_loss")  # the only curves drawn: reading fewer is faster


def default_path(name: str) -> Path:
    """``dashboards/<study>.html`` under the working directory (the folder is created)."""
    folder = Path("dashboards")
    folder.mkdir(exist_ok=True)
    return folder / f"{name}.html"


def write_dashboard(storage: str, name: str, out: str | Path | None = None, *,
                    tracking_uri: str | None = None, refresh_s: float | None = None) -> Path:
    """Write a study's dashboard as one self-contained HTML file, atomically.

    Args:
        storage: the Optuna storage URL or journal path.
        name: the study.
        out: the file to write (default ``dashboards/<study>.html``).
        tracking_uri: the MLflow store (default ``MLFLOW_TRACKING_URI`` or MLflow's default).
        refresh_s: make an open browser tab reload every so many seconds.

    Returns:
        The path written.

    Raises:
        RnnlabError: the study does not exist, its runs are missing, or ``out`` is unwritable.
    """
    frames = study_frames(storage, name, tracking_uri=tracking_uri, metrics=CURVES)
    return _write(frames, out, refresh_s)


def _write(frames: StudyFrames, out: str | Path | None, refresh_s: float | None) -> Path:
    text = dashboard_html(frames, refresh_s=refresh_s)
    target = Path(out) if out is not None else default_path(frames.name)
    return atomic_write(target, lambda p: Path(p).write_text(text, encoding="utf-8"))


def watch_dashboard(storage: str, name: str, out: str | Path | None, every_s: float, *,
                    tracking_uri: str | None = None,
                    on_write: Callable[[Path, StudyFrames], None] | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> Path:
    """Rewrite the dashboard every ``every_s`` seconds until the study is done.

    Done means :meth:`~rnnlab.study.results.StudyFrames.done`; the last page written then no
    longer asks the browser to reload. Ctrl-C stops watching earlier (``KeyboardInterrupt``
    propagates).

    Returns:
        The path written.
    """
    while True:
        frames = study_frames(storage, name, tracking_uri=tracking_uri, metrics=CURVES)
        done = frames.done()
        path = _write(frames, out, None if done else every_s)
        if on_write:
            on_write(path, frames)
        if done:
            return path
        sleep(every_s)
