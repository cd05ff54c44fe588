"""Box and strip plots of a result by each factor's levels, across studies."""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rnnlab.analysis.frames import StudyFrames
from rnnlab.dashboards.groups import Labelled, group_colours, level_text, ordered
from rnnlab.dashboards.points import FactorPoints, factor_points, panels
from rnnlab.dashboards.style import empty, esc


@dataclass(frozen=True)
class _BoxInfo:
    """One row of boxes per factor."""

    factors: tuple[FactorPoints, ...]


def _get_box_info(frames: StudyFrames | Labelled, factors: list[str], y: str = "objective",
                  group: str = "model.cell", facet: str | None = None) -> _BoxInfo:
    return _BoxInfo(tuple(factor_points(frames, k, y, group, facet) for k in factors))


def _get_box_plot(info: _BoxInfo) -> go.Figure:
    """One row per factor, one column per facet: a box and its points per level and group."""
    infos = info.factors
    columns = panels(infos)
    facet = infos[0].facet if infos else None
    titles = [f"{esc(i.factor)}{f' | {esc(facet)} = {esc(p)}' if facet else ''}"
              for i in infos for p in columns]
    fig = make_subplots(rows=max(1, len(infos)), cols=len(columns), shared_yaxes=True,
                        subplot_titles=titles or None, vertical_spacing=0.12,
                        horizontal_spacing=0.04)
    if not any(i.points for i in infos):
        return empty(fig, "Results by factor: no complete trial")
    colours = group_colours(p.group for i in infos for p in i.points)
    shown = set()
    for row, factor in enumerate(infos, start=1):
        levels = ordered(level_text(p.x) for p in factor.points)
        for grp in ordered(p.group for p in factor.points):
            for col, panel in enumerate(columns, start=1):
                pts = [p for p in factor.points if p.group == grp and p.facet == panel]
                if not pts:
                    continue
                fig.add_trace(go.Box(
                    x=[esc(level_text(p.x)) for p in pts], y=[p.y for p in pts], name=esc(grp),
                    legendgroup=grp, showlegend=grp not in shown, boxpoints="all",
                    jitter=0.4, pointpos=0, marker={"color": colours[grp]},
                    customdata=[f"{esc(p.study)} trial {p.number}" for p in pts],
                    hovertemplate="%{customdata}<br>%{x}<br>%{y:.4f}<extra></extra>"),
                    row=row, col=col)
                shown.add(grp)
            fig.update_xaxes(categoryorder="array", categoryarray=[esc(v) for v in levels],
                             row=row)
        fig.update_yaxes(title_text=esc(factor.y), row=row, col=1)
    grp = esc(infos[0].group or "").replace("model.cell", "cell")
    fig.update_layout(title=f"Results by factor, coloured by {grp} "
                      "(box and every complete trial; validation)",
                      # a group that is the factor itself has one box per level: none beside it
                      boxmode="overlay" if all(i.group == i.factor for i in infos) else "group",
                      height=max(420, 330 * len(infos)))
    return fig


def plot_box(frames: StudyFrames | Labelled, factors: list[str], y: str = "objective",
             group: str = "model.cell", facet: str | None = None) -> go.Figure:
    """Box and strip plots of ``y`` by each factor's levels, one row per factor.

    Args:
        frames: one study's frames, or several as (label, frames) pairs.
        factors: the config keys, one row each.
        y: "objective", or a last-epoch value such as "final_val_acc".
        group: the config key (or "study") that colours the boxes.
        facet: the config key (or "study") with one column per value; None for one column.
    """
    return _get_box_plot(_get_box_info(frames, factors, y, group, facet))
