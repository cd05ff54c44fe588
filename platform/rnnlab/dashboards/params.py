"""Figures of the searched parameters, each an info/plot pair as in :mod:`.curves`:
parallel coordinates, importances, normalisation by cell, and learning rate and L2."""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rnnlab.dashboards.style import (
    colour,
    empty,
    esc,
    floats,
    log_positions,
    log_ticks,
    tick_labels,
)
from rnnlab.study.effects import effects
from rnnlab.study.levels import Effect
from rnnlab.study.results import StudyFrames


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


@dataclass(frozen=True)
class _ImportancesInfo:
    params: tuple[str, ...]
    importances: tuple[float, ...]  # mean over bootstrap resamples
    low: tuple[float, ...]  # the 90% interval
    high: tuple[float, ...]
    note: str


def _get_importances_info(frames: StudyFrames) -> _ImportancesInfo:
    imp = frames.importances.sort_values("importance", ascending=False)
    return _ImportancesInfo(tuple(imp["param"]), floats(imp["importance"]),
                            floats(imp.get("low", imp["importance"])),
                            floats(imp.get("high", imp["importance"])), frames.importance_note)


def _get_importances_plot(info: _ImportancesInfo) -> go.Figure:
    fig = go.Figure()
    note = _lines(esc(info.note))
    title = "Parameter importances<br><sub>" + "<br>".join(note) + "</sub>"
    if not info.params:
        return empty(fig, title)
    mean = list(info.importances)[::-1]
    fig.add_trace(go.Bar(
        x=mean, y=[esc(p) for p in info.params][::-1], orientation="h",
        marker={"color": "#636efa"}, error_x={
            "type": "data", "symmetric": False,
            "array": [h - m for h, m in zip(info.high[::-1], mean, strict=True)],
            "arrayminus": [m - lo for lo, m in zip(info.low[::-1], mean, strict=True)]},
        customdata=list(zip(info.low[::-1], info.high[::-1], strict=True)),
        hovertemplate=("%{y}: %{x:.3f} (90% interval %{customdata[0]:.3f} to "
                       "%{customdata[1]:.3f})<extra></extra>")))
    # The title and its note sit just above the bars, the top margin grown to hold them.
    fig.update_layout(title={"text": title, "yref": "paper", "y": 1, "yanchor": "bottom",
                             "pad": {"b": 12}, "automargin": True},
                      xaxis_title="importance (mean over resamples; bars: 90% interval)",
                      height=200 + 24 * len(note) + 40 * len(info.params))
    return fig


def _lines(text: str, width: int = 110) -> list[str]:
    """``text`` cut at "; " and ", " into lines of about ``width`` characters (titles do not
    wrap by themselves)."""
    lines, line = [], ""
    for part in text.replace("; ", ";\n").replace(", ", ",\n").split("\n"):
        if line and len(line) + len(part) > width:
            lines.append(line.rstrip())
            line = ""
        line += part + " "
    return [*lines, line.rstrip()] if line else lines


def plot_importances(frames: StudyFrames) -> go.Figure:
    """fANOVA importances of the searched params for the objective."""
    return _get_importances_plot(_get_importances_info(frames))


@dataclass(frozen=True)
class _PointsInfo:
    """One point per complete trial with a final validation accuracy: what the learning rate
    and L2 figure plots."""

    numbers: tuple[int, ...]
    cells: tuple[str, ...]
    lr: tuple[float, ...]
    l2: tuple[float, ...]
    final_val_acc: tuple[float, ...]


def _get_points_info(frames: StudyFrames) -> _PointsInfo:
    t = frames.table(("COMPLETE",))
    t = t.dropna(subset=["final_val_acc"]) if "final_val_acc" in t else t.iloc[0:0]
    return _PointsInfo(tuple(int(n) for n in t["number"]),
                       tuple(str(v) for v in t.get("model.cell", [])),
                       floats(t.get("train.lr", [])), floats(t.get("train.l2", [])),
                       floats(t.get("final_val_acc", [])))


def _get_normalisation_plot(effect: Effect | None, metric: str) -> go.Figure:
    """The report's record of ``data.normalisation``: each stratum's trials per level."""
    fig = go.Figure()
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
    the same record as the report's verdict (:func:`rnnlab.study.effects.effects`)."""
    found = [e for e in effects(frames) if e.key == "data.normalisation"]
    return _get_normalisation_plot(found[0] if found else None, frames.metric)


def _get_lr_l2_plot(info: _PointsInfo) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=("learning rate", "L2 (0 = off, at the left edge)"))
    if not info.numbers:
        return empty(fig, "Learning rate and L2: no complete trial yet")
    l2_pos, l2_ticks, l2_text = log_positions(info.l2)
    for cell in sorted(set(info.cells)):
        idx = [i for i, c in enumerate(info.cells) if c == cell]
        common = {"mode": "markers", "name": esc(cell), "legendgroup": cell,
                  "marker": {"color": colour(cell), "size": 8},
                  "customdata": [[info.numbers[i], info.l2[i]] for i in idx],
                  "y": [info.final_val_acc[i] for i in idx]}
        fig.add_trace(go.Scatter(x=[info.lr[i] for i in idx], **common, hovertemplate=(
            "trial %{customdata[0]}<br>lr %{x:.3g}<br>final val_acc %{y:.4f}<extra></extra>")),
            row=1, col=1)
        fig.add_trace(go.Scatter(x=[10 ** l2_pos[i] for i in idx], showlegend=False, **common,
                                 hovertemplate=("trial %{customdata[0]}<br>l2 %{customdata[1]:.3g}"
                                                "<br>final val_acc %{y:.4f}<extra></extra>")),
                      row=1, col=2)
    lr_ticks = log_ticks(min(info.lr), max(info.lr)) if min(info.lr) > 0 else ()
    fig.update_xaxes(type="log", title_text="train.lr (log scale)", tickvals=list(lr_ticks),
                     ticktext=tick_labels(lr_ticks), row=1, col=1)
    fig.update_xaxes(type="log", title_text="train.l2 (log scale; 0 = off)",
                     tickvals=[10 ** k for k in l2_ticks], ticktext=l2_text, row=1, col=2)
    fig.update_yaxes(title_text="final val_acc (validation)", row=1, col=1)
    fig.update_layout(title="Learning rate and L2 against final validation accuracy, by cell")
    return fig


def plot_lr_l2(frames: StudyFrames) -> go.Figure:
    """Final validation accuracy against learning rate (log) and L2, coloured by cell."""
    return _get_lr_l2_plot(_get_points_info(frames))
