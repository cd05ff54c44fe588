"""What every figure shares: colours per cell, line styles per state, escaping, empty plots.

Strings that come from specs, params or failure reasons are HTML-escaped before Plotly sees
them (Plotly renders a subset of HTML in labels and hover text).
"""

from __future__ import annotations

import html

import plotly.graph_objects as go

# The tutorial's logged validation accuracy after epochs 1-6 (patch 7, hidden 128, rnn).
TUTORIAL_VAL_ACC = (0.470, 0.555, 0.595, 0.630, 0.674, 0.680)
CELL_COLOURS = {"rnn": "#1f77b4", "lstm": "#ff7f0e", "gru": "#2ca02c"}
STATE_STYLE = {  # state: (dash, opacity)
    "COMPLETE": ("solid", 0.85), "PRUNED": ("dash", 0.45), "FAIL": ("dot", 0.3),
    "RUNNING": ("longdash", 0.85),
}


def esc(value: object) -> str:
    return html.escape(str(value))


def colour(cell: str) -> str:
    return CELL_COLOURS.get(cell, "#7f7f7f")


def floats(values) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def empty(fig: go.Figure, title: str) -> go.Figure:
    fig.update_layout(title=title, annotations=[{
        "text": "nothing to show yet", "showarrow": False, "xref": "paper", "yref": "paper",
        "x": 0.5, "y": 0.5}])
    return fig
