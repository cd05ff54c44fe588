"""Parallel coordinates of the searched parameters against the objective.

A browser draws a line per trial: past ``DRAWN_UP_TO`` complete trials (10,000 lines took
Chromium 5 s), the figure draws the ``BEST_KEPT`` best and an even random sample of the others,
``DRAWN_UP_TO`` in all, and says so in its title.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import plotly.graph_objects as go

from rnnlab.analysis.frames import StudyFrames
from rnnlab.dashboards.style import empty, esc, floats, log_positions

DRAWN_UP_TO = 1000
BEST_KEPT = 100


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
    total: int = 0  # complete trials, of which ``numbers`` are drawn (0: all of them)
    best_kept: int = 0  # of those drawn, the best (the others are a random sample)


def _get_parallel_info(frames: StudyFrames, drawn_up_to: int = DRAWN_UP_TO,
                       best_kept: int = BEST_KEPT) -> _ParallelInfo:
    t = frames.table(("COMPLETE",))
    total = len(t)
    thinned = total > drawn_up_to
    if thinned:  # the best, and an even sample of the rest, in trial order
        ranked = t.sort_values(["value", "number"], ascending=[frames.direction == "minimize",
                                                                True])
        rest = list(ranked.index[best_kept:])
        keep = [*ranked.index[:best_kept],
                *random.Random(0).sample(rest, drawn_up_to - best_kept)]
        t = t.loc[sorted(keep, key=lambda i: t.at[i, "number"])]
    dims = []
    for key in frames.search:
        if key not in t:
            continue
        values = tuple(t[key])
        kind = ("categorical" if any(isinstance(v, str | bool) or v is None for v in values)
                else "log" if key in frames.log_keys else "linear")
        dims.append(_Dimension(key, kind, values))
    return _ParallelInfo(frames.metric, tuple(int(n) for n in t["number"]), tuple(dims),
                         floats(t["value"]), total if thinned else 0,
                         best_kept if thinned else 0)


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
    title = ("Searched parameters (values trained with) against the objective, complete "
             "trials")
    if info.total:
        title += (f"<br><sub>{len(info.numbers)} of {info.total} drawn: the {info.best_kept} "
                  f"best and a random {len(info.numbers) - info.best_kept} of the others; "
                  "`rnnlab trials` lists every trial</sub>")
    fig.update_layout(title=title, margin={"t": 130, "l": 90, "r": 110, "b": 50})
    return fig


def plot_parallel(frames: StudyFrames) -> go.Figure:
    """Parallel coordinates of the searched params against the objective."""
    return _get_parallel_plot(_get_parallel_info(frames))
