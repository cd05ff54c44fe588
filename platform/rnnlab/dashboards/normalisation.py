"""The objective by normalisation within each stratum (each cell), from the report's record."""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from rnnlab.analysis.effects import effects
from rnnlab.analysis.frames import StudyFrames
from rnnlab.analysis.levels import Effect
from rnnlab.dashboards.style import colour, empty, esc


@dataclass(frozen=True)
class _NormalisationInfo:
    metric: str
    effect: Effect | None  # the report's record of data.normalisation; None: not searched


def _get_normalisation_info(frames: StudyFrames) -> _NormalisationInfo:
    found = [e for e in effects(frames) if e.key == "data.normalisation"]
    return _NormalisationInfo(frames.metric, found[0] if found else None)


def _get_normalisation_plot(info: _NormalisationInfo) -> go.Figure:
    fig, effect, metric = go.Figure(), info.effect, info.metric
    title = f"Validation {esc(metric)} (objective) by normalisation, within each stratum"
    if effect is None or not any(lv.n for s in effect.strata for lv in s.levels):
        return empty(fig, title + ": " + ("not searched" if effect is None else "none yet"))
    order = [lv.level for lv in effect.strata[0].levels]
    for s in effect.strata:
        cell = dict(s.within).get("model.cell", "")
        xs = [esc(lv.level) for lv in s.levels for _ in lv.values]
        fig.add_trace(go.Box(
            x=xs, y=[v for lv in s.levels for v in lv.values], name=esc(s.name),
            customdata=[n for lv in s.levels for n in lv.numbers], boxpoints="all",
            jitter=0.4, pointpos=0, marker={"color": colour(cell)} if cell else {},
            hovertemplate="trial %{customdata}<br>%{x}<br>%{y:.4f}<extra></extra>"))
    said = {"verdict": "the report gives a verdict with intervals", "hint": "a hint only",
            "none": "the report gives no verdict"}[effect.support]
    fig.update_layout(title={"text": f"{title}<br><sub>{said}; an empty slot is a level "
                             "with no complete trial</sub>"},
                      boxmode="group", xaxis={"title": {"text": "data.normalisation"},
                                              "categoryorder": "array",
                                              "categoryarray": [esc(v) for v in order]},
                      yaxis_title=f"{esc(metric)} (validation, objective)")
    return fig


def plot_normalisation(frames: StudyFrames) -> go.Figure:
    """Box and points of the objective per normalisation within each stratum (each cell), from
    the same record as the report's verdict (:func:`rnnlab.analysis.effects.effects`)."""
    return _get_normalisation_plot(_get_normalisation_info(frames))
