"""The optimisation history: every complete trial's objective and each study's best so far."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go

from rnnlab.analysis.frames import StudyFrames
from rnnlab.dashboards.groups import (
    Labelled,
    as_labelled,
    group_colours,
    ordered,
    values_of,
)
from rnnlab.dashboards.style import esc, floats


@dataclass(frozen=True)
class _HistoryInfo:
    """The complete trials of each study in order, their objective values and groups."""

    metric: str
    direction: str
    numbers: tuple[int, ...]
    values: tuple[float, ...]
    groups: tuple[str, ...]
    studies: tuple[str, ...] = ()
    group: str = "model.cell"

    @property
    def best_so_far(self) -> tuple[float, ...]:
        """The best value so far within each study, trial by trial."""
        values = pd.Series(self.values, dtype=float)
        by_study = values.groupby(list(self.studies) or [""] * len(values), sort=False)
        return floats(by_study.cummax() if self.direction == "maximize" else by_study.cummin())


def _get_history_info(frames: StudyFrames | Labelled,
                      group: str = "model.cell") -> _HistoryInfo:
    studies = as_labelled(frames)
    numbers, values, groups, labels = [], [], [], []
    for label, f in studies:
        t = f.table(("COMPLETE",))
        numbers += [int(n) for n in t["number"]]
        values += floats(t["value"])
        groups += values_of(label, t, group)
        labels += [label] * len(t)
    first = studies[0][1]
    return _HistoryInfo(first.metric, first.direction, tuple(numbers), tuple(values),
                        tuple(groups), tuple(labels), group)


def _get_history_plot(info: _HistoryInfo) -> go.Figure:
    fig = go.Figure()
    studies = list(dict.fromkeys(info.studies)) or [""]
    several = len(studies) > 1
    colours = group_colours(info.groups)
    symbols = ("circle", "diamond", "square", "triangle-up", "x", "star")
    for grp in ordered(info.groups):
        for s, study in enumerate(studies):
            idx = [i for i, g in enumerate(info.groups) if g == grp
                   and (not info.studies or info.studies[i] == study)]
            if not idx:
                continue
            name = f"{esc(grp)}, {esc(study)}" if several else esc(grp)
            fig.add_trace(go.Scatter(
                x=[info.numbers[i] for i in idx], y=[info.values[i] for i in idx],
                mode="markers", name=name, marker={"color": colours[grp], "size": 8,
                                                   "symbol": symbols[s % len(symbols)]},
                hovertemplate=f"trial %{{x}} ({name})<br>{esc(info.metric)} %{{y:.4f}}"
                              "<extra></extra>"))
    best = info.best_so_far
    for study in studies:
        idx = [i for i in range(len(info.values)) if not info.studies or info.studies[i] == study]
        fig.add_trace(go.Scatter(
            x=[info.numbers[i] for i in idx], y=[best[i] for i in idx], mode="lines",
            name=f"best so far, {esc(study)}" if several else "best so far",
            line={"color": "#d62728", "shape": "hv",
                  "dash": ("solid", "dash", "dot", "dashdot")[studies.index(study) % 4]}))
    fig.update_layout(title=f"Optimisation history: validation {esc(info.metric)} of complete "
                      f"trials ({esc(info.direction)})", xaxis_title="trial",
                      yaxis_title=f"{esc(info.metric)} (validation)")
    if info.numbers and max(info.numbers) <= 20:
        fig.update_xaxes(dtick=1)  # whole trial numbers only
    return fig


def plot_history(frames: StudyFrames | Labelled, group: str = "model.cell") -> go.Figure:
    """The objective value of every complete trial and each study's best so far.

    Args:
        frames: one study's frames, or several as (label, frames) pairs.
        group: the config key (or "study") that colours the points.
    """
    return _get_history_plot(_get_history_info(frames, group))
