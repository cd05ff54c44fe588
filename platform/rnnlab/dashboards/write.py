"""Writing a dashboard, once or every few seconds while its studies run.

A dashboard is a spec (:mod:`.spec`): a file in ``dashboards/``, or the default view of one
study. Its page is written beside the spec (``dashboards/NAME.html``; a study's to
``dashboards/<study>.html``), and plotly.js once beside the pages (``plotly-<version>.min.js``,
about 4.8 MB), which every page there loads from its folder: pages side by side share one copy
and still open offline. ``inline`` puts plotly.js in the page instead, for one file to send.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rnnlab.dashboards.board import board_html
from rnnlab.dashboards.page import plotly_file
from rnnlab.dashboards.select import Selection, select
from rnnlab.dashboards.spec import Board, board_for
from rnnlab.files import atomic_write, check_writable


def write_board(board: Board, storage: str, out: str | Path | None = None, *,
                tracking_uri: str | None = None, refresh_s: float | None = None,
                inline: bool = False) -> tuple[Path, Selection]:
    """Read the board's studies and write its page atomically.

    Args:
        board: what to draw (:func:`board_for`).
        storage: the storage of studies whose spec names none.
        out: the page to write (default ``board.path``; its folder is created only then).
        tracking_uri: the MLflow store of studies whose spec names none (default
            ``MLFLOW_TRACKING_URI`` or MLflow's default).
        refresh_s: make an open browser tab reload every so many seconds.
        inline: put plotly.js in the page rather than beside it.

    Returns:
        The path written and what was drawn.

    Raises:
        RnnlabError: a study does not exist, the filter keeps nothing, a store cannot be read,
            or ``out`` cannot be written.
    """
    target = _target(board, out)
    selection = select(board.spec, storage, tracking_uri=tracking_uri,
                       origin=board.origin or "dashboard")
    return _write(board, selection, target, refresh_s, inline), selection


def _target(board: Board, out: str | Path | None) -> Path:
    """The page to write, checked before any store is read (the default folder is made only
    when the page is written: a failed command leaves nothing behind)."""
    target = Path(out) if out is not None else board.path
    if out is not None or target.parent.is_dir():
        check_writable(target)
    return target


def _write(board: Board, selection: Selection, target: Path, refresh_s: float | None,
           inline: bool) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    script = None if inline else _plotly_beside(target)
    text = board_html(board.spec, selection, origin=board.origin, refresh_s=refresh_s,
                      script=script)
    return atomic_write(target, lambda p: Path(p).write_text(text, encoding="utf-8"))


def _plotly_beside(page: Path) -> str:
    """Write plotly.js beside ``page`` unless the same file is there; return its name."""
    name, text = plotly_file()
    path = page.parent / name
    data = text.encode("utf-8")
    if not (path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data):
        atomic_write(path, lambda p: Path(p).write_bytes(data))
    return name


def write_dashboard(storage: str, name: str, out: str | Path | None = None, *,
                    tracking_uri: str | None = None, refresh_s: float | None = None,
                    inline: bool = False) -> Path:
    """Write the default dashboard of study ``name`` (see :func:`write_board`)."""
    return write_board(board_for(name), storage, out, tracking_uri=tracking_uri,
                       refresh_s=refresh_s, inline=inline)[0]


def watch_board(board: Board, storage: str, out: str | Path | None, every_s: float, *,
                tracking_uri: str | None = None, inline: bool = False,
                on_write: Callable[[Path, Selection], None] | None = None,
                sleep: Callable[[float], None] = time.sleep) -> Path:
    """Rewrite the page every ``every_s`` seconds until every study drawn is done.

    Done means :meth:`~rnnlab.dashboards.select.Selection.done`; the last page written then no
    longer asks the browser to reload. Ctrl-C stops watching earlier (``KeyboardInterrupt``
    propagates).

    Returns:
        The path written.
    """
    target = _target(board, out)
    while True:
        selection = select(board.spec, storage, tracking_uri=tracking_uri,
                           origin=board.origin or "dashboard")
        path = _write(board, selection, target, None if selection.done() else every_s, inline)
        if on_write:
            on_write(path, selection)
        if selection.done():
            return path
        sleep(every_s)
