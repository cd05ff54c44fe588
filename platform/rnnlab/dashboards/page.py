"""HTML pages of figures, with plotly.js inlined or beside them: either way a page opens
offline with no request anywhere."""

from __future__ import annotations

import plotly.graph_objects as go

from rnnlab.dashboards.style import esc

_PLOT_CONFIG = {"displaylogo": False, "responsive": True}
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


def plotly_file() -> tuple[str, str]:
    """plotly.js as a file to write beside pages: its name (versioned, so pages written by
    another plotly find their own) and its text."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    return f"plotly-{get_plotlyjs_version()}.min.js", get_plotlyjs()


def page(title: str, body: str, *, refresh_s: float | None = None,
         script: str | None = None) -> str:
    """A complete HTML page; ``title`` is escaped here, ``body`` must already be safe.
    ``script``: the name of plotly.js written beside the page (:func:`plotly_file`); None
    inlines it."""
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else ""
    plotly = (f'<script type="text/javascript" src="{esc(script)}"></script>' if script
              else plotly_script())
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{refresh}'
            f"<title>{esc(title)}</title><style>{_STYLE}</style>{plotly}</head>"
            f"<body>\n{body}\n</body></html>\n")
