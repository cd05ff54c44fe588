"""Parallel coordinates of the searched parameters against the objective."""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from rnnlab.analysis.frames import StudyFrames
from rnnlab.dashboards.style import empty, esc, floats, log_positions


@dataclass(frozen=True)
class _Dimension:
    key: str
    kind: str  # categorical, log or linear
    values: tuple


@dataclass(frozen=True)
class _ParallelInfo:
    metric: str
    numbers: tuple[int, ...]
    dimensions: tuple[_Dimension, ...]
    objective: tuple[float, ...]


def _get_parallel_info(frames: StudyFrames) -> _ParallelInfo:
    t = frames.table(("COMPLETE",))
    dims = []
    for key in frames.search:
        if key not in t:
            continue
        values = tuple(t[key])
        kind = ("categorical" if any(isinstance(v, str | bool) or v is None for v in values)
                else "log" if key in frames.log_keys else "linear")
        dims.append(_Dimension(key, kind, values))
    return _ParallelInfo(frames.metric, tuple(int(n) for n in t["number"]), tuple(dims),
                         floats(t["value"]))


def _get_parallel_plot(info: _ParallelInfo) -> go.Figure:
    fig = go.Figure()
    if not info.numbers:
        return empty(fig, "Parallel coordinates: no complete trial yet")
    dims = []
    for d in info.dimensions:
        if d.kind == "categorical":
            labels = sorted({str(v) for v in d.values})
            dims.append({"label": esc(d.key), "values": [labels.index(str(v)) for v in d.values],
                         "tickvals": list(range(len(labels))),
                         "ticktext": [esc(v) for v in labels]})
        elif d.kind == "log":
            # The axis is drawn from its first tick to its last: ticks that enclose the
            # values, and the range they span, keep it as long as the other axes.
            pos, ticks, text = log_positions(d.values, enclose=True)
            dims.append({"label": f"{esc(d.key)} (log scale)", "values": pos,
                         "range": [min(ticks), max(ticks)], "tickvals": ticks,
                         "ticktext": text})
        else:
            dims.append({"label": esc(d.key), "values": [float(v) for v in d.values]})
    dims.append({"label": f"{esc(info.metric)} (validation)", "values": list(info.objective)})
    fig.add_trace(go.Parcoords(dimensions=dims, line={
        "color": list(info.objective), "colorscale": "Viridis", "showscale": True,
        "colorbar": {"title": {"text": esc(info.metric)}, "x": 1.04}}))
    # Room above the axes for their titles and end labels, and right of the last axis for
    # its tick labels before the colour bar.
    fig.update_layout(title="Searched parameters (values trained with) against the objective, "
                      "complete trials", margin={"t": 130, "l": 90, "r": 110, "b": 50})
    return fig


def plot_parallel(frames: StudyFrames) -> go.Figure:
    """Parallel coordinates of the searched params against the objective."""
    return _get_parallel_plot(_get_parallel_info(frames))
