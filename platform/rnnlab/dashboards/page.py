"""The dashboard page: every figure of a study in one self-contained HTML file.

plotly.js is inlined, so a page opens offline with no request anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import plotly.graph_objects as go

from rnnlab.dashboards.curves import plot_history, plot_learning_curves
from rnnlab.dashboards.params import (
    plot_importances,
    plot_lr_l2,
    plot_normalisation,
    plot_parallel,
)
from rnnlab.dashboards.style import esc
from rnnlab.study.results import StudyFrames

_PLOT_CONFIG = {"displaylogo": False, "responsive": True}

FIGURES: tuple[tuple[str, Callable[[StudyFrames], go.Figure]], ...] = (
    ("learning-curves", plot_learning_curves), ("history", plot_history),
    ("parallel", plot_parallel), ("importances", plot_importances),
    ("normalisation", plot_normalisation), ("lr-l2", plot_lr_l2),
)
_STYLE = ("body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:1200px;"
          "color:#222}section{margin-bottom:2rem}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}"
          "code,pre{background:#f5f5f5;padding:.1rem .3rem}")


def plotly_script() -> str:
    """plotly.js inline (about 4.8 MB), so a page opens offline with no request anywhere."""
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def figure_div(fig: go.Figure, div_id: str) -> str:
    """A figure as a ``<div>`` and its script; the page must include :func:`plotly_script`."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config=_PLOT_CONFIG)


def page(title: str, body: str, *, refresh_s: float | None = None) -> str:
    """A complete HTML page; ``title`` is escaped here, ``body`` must already be safe."""
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{refresh}'
            f"<title>{esc(title)}</title><style>{_STYLE}</style>{plotly_script()}</head>"
            f"<body>\n{body}\n</body></html>\n")


def dashboard_html(frames: StudyFrames, *, refresh_s: float | None = None) -> str:
    """The dashboard page of a study: a summary line and every figure."""
    counts = frames.counts()
    done = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no trials"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [f"<h1>Study {esc(frames.name)}</h1>",
             f"<p>{esc(done)} (budget {esc(frames.budget)}); objective: validation "
             f"{esc(frames.metric)} ({esc(frames.direction)}). MLflow: "
             f"<code>{esc(frames.tracking_uri)}</code>, experiment "
             f"<code>{esc(frames.experiment)}</code>. Written {stamp}"
             f"{f'; rewritten every {int(refresh_s)} s while the study runs' if refresh_s else ''}"
             ".</p>"]
    for div_id, plot in FIGURES:
        parts.append(f'<section id="{div_id}">{figure_div(plot(frames), f"fig-{div_id}")}'
                     "</section>")
    return page(f"rnnlab dashboard: {frames.name}", "\n".join(parts), refresh_s=refresh_s)
