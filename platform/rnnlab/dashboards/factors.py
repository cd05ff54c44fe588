"""Figures of one factor at a time, across studies: box and strip plots of a result by each
factor's levels, and a result against one numeric factor (log where the search was log).

Each is an info/plot pair as in :mod:`.curves`. A result is the objective or a last-epoch value
(``final_val_acc``), always validation: the page never mixes in the test set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rnnlab.dashboards.groups import (
    Labelled,
    as_labelled,
    group_colours,
    ordered,
    values_of,
)
from rnnlab.dashboards.style import empty, esc, log_positions
from rnnlab.study.results import StudyFrames


@dataclass(frozen=True)
class _Point:
    study: str
    number: int
    group: str
    facet: str
    x: str | float
    y: float


@dataclass(frozen=True)
class _FactorInfo:
    """Complete trials as points: ``x`` the factor's value, ``y`` the result."""

    factor: str
    y: str  # what y is, as a label
    group: str
    facet: str | None
    log: bool
    points: tuple[_Point, ...]


def _result(frames: StudyFrames, y: str) -> tuple[str, str]:
    """The column of ``frames.table()`` that holds ``y``, and its axis label."""
    if y == "objective":
        return "value", f"{frames.metric} (validation, objective)"
    return y, f"{y} (validation, last epoch)"


def _get_factor_info(frames: StudyFrames | Labelled, factor: str, y: str = "objective",
                     group: str = "model.cell", facet: str | None = None) -> _FactorInfo:
    studies = as_labelled(frames)
    points, label, log = [], "", False
    for study, f in studies:
        column, label = _result(f, y)
        log = log or factor in f.log_keys
        t = f.table(("COMPLETE",))
        if column not in t or factor not in t:
            continue
        t = t.assign(_group=values_of(study, t, group), _facet=values_of(study, t, facet))
        for value in t.dropna(subset=[column, factor]).to_dict("records"):
            x = value[factor]
            points.append(_Point(study, int(value["number"]), value["_group"], value["_facet"],
                                 x if isinstance(x, str | bool) else float(x),
                                 float(value[column])))
    return _FactorInfo(factor, label, group, facet, log, tuple(points))


def _panels(infos: list[_FactorInfo]) -> list[str]:
    return ordered(p.facet for i in infos for p in i.points) or [""]


def _get_box_plot(infos: list[_FactorInfo]) -> go.Figure:
    """One row per factor, one column per facet: a box and its points per level and group."""
    panels = _panels(infos)
    facet = infos[0].facet if infos else None
    titles = [f"{esc(i.factor)}{f' | {esc(facet)} = {esc(p)}' if facet else ''}"
              for i in infos for p in panels]
    fig = make_subplots(rows=max(1, len(infos)), cols=len(panels), shared_yaxes=True,
                        subplot_titles=titles or None, vertical_spacing=0.12,
                        horizontal_spacing=0.04)
    if not any(i.points for i in infos):
        return empty(fig, "Results by factor: no complete trial")
    colours = group_colours(p.group for i in infos for p in i.points)
    shown = set()
    for row, info in enumerate(infos, start=1):
        levels = [str(v) for v in ordered(str(p.x) for p in info.points)]
        for grp in ordered(p.group for p in info.points):
            for col, panel in enumerate(panels, start=1):
                pts = [p for p in info.points if p.group == grp and p.facet == panel]
                if not pts:
                    continue
                fig.add_trace(go.Box(
                    x=[esc(p.x) for p in pts], y=[p.y for p in pts], name=esc(grp),
                    legendgroup=grp, showlegend=grp not in shown, boxpoints="all",
                    jitter=0.4, pointpos=0, marker={"color": colours[grp]},
                    customdata=[f"{esc(p.study)} trial {p.number}" for p in pts],
                    hovertemplate="%{customdata}<br>%{x}<br>%{y:.4f}<extra></extra>"),
                    row=row, col=col)
                shown.add(grp)
            fig.update_xaxes(categoryorder="array", categoryarray=[esc(v) for v in levels],
                             row=row)
        fig.update_yaxes(title_text=esc(info.y), row=row, col=1)
    fig.update_layout(title=f"Results by factor, coloured by {esc(infos[0].group or '')} "
                      "(box and every complete trial; validation)",
                      # a group that is the factor itself has one box per level: none beside it
                      boxmode="overlay" if all(i.group == i.factor for i in infos) else "group",
                      height=max(420, 330 * len(infos)))
    return fig


def plot_factors(frames: StudyFrames | Labelled, factors: list[str], y: str = "objective",
                 group: str = "model.cell", facet: str | None = None) -> go.Figure:
    """Box and strip plots of ``y`` by each factor's levels, coloured by ``group``."""
    return _get_box_plot([_get_factor_info(frames, k, y, group, facet) for k in factors])


def _get_scatter_plot(info: _FactorInfo) -> go.Figure:
    panels = _panels([info])
    titles = [f"{esc(info.facet)} = {esc(p)}" for p in panels] if info.facet else None
    fig = make_subplots(rows=1, cols=len(panels), shared_xaxes="all", shared_yaxes=True,
                        subplot_titles=titles, horizontal_spacing=0.04)
    what = f"{esc(info.y)} against {esc(info.factor)}"
    numeric = [p for p in info.points if isinstance(p.x, float) and math.isfinite(p.x)]
    if not numeric:
        return empty(fig, f"{what}: no complete trial with a numeric {esc(info.factor)}")
    log = info.log and any(p.x > 0 for p in numeric) and all(p.x >= 0 for p in numeric)
    pos, ticks, text = log_positions(tuple(p.x for p in numeric)) if log else ([], [], [])
    colours, shown = group_colours(p.group for p in numeric), set()
    for grp in ordered(p.group for p in numeric):
        for col, panel in enumerate(panels, start=1):
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
    """``y`` of every complete trial against the config key ``x``, one panel per facet."""
    return _get_scatter_plot(_get_factor_info(frames, x, y, group, facet))
