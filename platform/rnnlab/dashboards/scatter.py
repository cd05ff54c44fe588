"""A result of every complete trial against one numeric factor (log where the search was log)."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rnnlab.analysis.frames import StudyFrames
from rnnlab.dashboards.groups import Labelled, group_colours, ordered
from rnnlab.dashboards.points import FactorPoints, factor_points, panels
from rnnlab.dashboards.style import empty, esc, log_positions


def _get_scatter_info(frames: StudyFrames | Labelled, x: str, y: str = "objective",
                      group: str = "model.cell", facet: str | None = None) -> FactorPoints:
    return factor_points(frames, x, y, group, facet)


def _get_scatter_plot(info: FactorPoints) -> go.Figure:
    columns = panels((info,))
    titles = [f"{esc(info.facet)} = {esc(p)}" for p in columns] if info.facet else None
    fig = make_subplots(rows=1, cols=len(columns), shared_xaxes="all", shared_yaxes=True,
                        subplot_titles=titles, horizontal_spacing=0.04)
    what = f"{esc(info.y)} against {esc(info.factor)}"
    numeric = [p for p in info.points if isinstance(p.x, float) and math.isfinite(p.x)]
    if not numeric:
        return empty(fig, f"{what}: no complete trial with a numeric {esc(info.factor)}")
    log = info.log and any(p.x > 0 for p in numeric) and all(p.x >= 0 for p in numeric)
    pos, ticks, text = log_positions(tuple(p.x for p in numeric)) if log else ([], [], [])
    colours, shown = group_colours(p.group for p in numeric), set()
    for grp in ordered(p.group for p in numeric):
        for col, panel in enumerate(columns, start=1):
            idx = [i for i, p in enumerate(numeric) if p.group == grp and p.facet == panel]
            if not idx:
                continue
            fig.add_trace(go.Scatter(
                x=[10 ** pos[i] if log else numeric[i].x for i in idx],
                y=[numeric[i].y for i in idx], mode="markers", name=esc(grp), legendgroup=grp,
                showlegend=grp not in shown,
                marker={"color": colours[grp], "size": 8},
                customdata=[[f"{esc(numeric[i].study)} trial {numeric[i].number}",
                             numeric[i].x] for i in idx],
                hovertemplate=(f"%{{customdata[0]}}<br>{esc(info.factor)} %{{customdata[1]:.3g}}"
                               "<br>%{y:.4f}<extra></extra>")), row=1, col=col)
            shown.add(grp)
    axis = {"type": "log", "tickvals": [10 ** t for t in ticks], "ticktext": text} if log else {}
    scale = " (log scale" + ("; 0 = off" if "0" in text else "") + ")" if log else ""
    fig.update_xaxes(title_text=f"{esc(info.factor)}{scale}", **axis)
    fig.update_yaxes(title_text=esc(info.y), row=1, col=1)
    fig.update_layout(title=f"{what}, coloured by {esc(info.group or '')}")
    return fig


def plot_scatter(frames: StudyFrames | Labelled, x: str, y: str = "objective",
                 group: str = "model.cell", facet: str | None = None) -> go.Figure:
    """``y`` of every complete trial against the config key ``x``, one panel per facet.

    Args:
        frames: one study's frames, or several as (label, frames) pairs.
        x: the numeric config key on the x axis.
        y: "objective", or a last-epoch value such as "final_val_acc".
        group: the config key (or "study") that colours the points.
        facet: the config key (or "study") with one panel per value; None for one panel.
    """
    return _get_scatter_plot(_get_scatter_info(frames, x, y, group, facet))
