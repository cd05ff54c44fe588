"""Figures over epochs and trials: learning curves and the optimisation history.

Every figure follows Optuna's visualization modules: ``_get_x_info(frames)`` gathers a small
frozen record from the :class:`~rnnlab.study.results.StudyFrames`, ``_get_x_plot(info)`` draws
it, and ``plot_x(frames)`` does both. Tests compare the records without rendering anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rnnlab.dashboards.style import (
    STATE_STYLE,
    TUTORIAL_VAL_ACC,
    colour,
    esc,
    floats,
    log_ticks,
    tick_labels,
)
from rnnlab.study.results import StudyFrames


@dataclass(frozen=True)
class _Curve:
    number: int
    cell: str
    state: str
    epochs: tuple[int, ...]
    val_acc: tuple[float, ...]
    val_loss: tuple[float, ...]


@dataclass(frozen=True)
class _LearningCurvesInfo:
    curves: tuple[_Curve, ...]
    reference_val_acc: tuple[float, ...] = TUTORIAL_VAL_ACC


def _get_learning_curves_info(frames: StudyFrames) -> _LearningCurvesInfo:
    table = frames.table(("COMPLETE", "PRUNED", "FAIL", "RUNNING"))
    cells = dict(zip(table["number"], table.get("model.cell", []), strict=False))
    states = dict(zip(table["number"], table["state"], strict=True))
    wide = frames.curves.pivot_table(index=["number", "epoch"], columns="metric",
                                     values="value").reindex(columns=["val_acc", "val_loss"])
    curves = []
    for number, h in wide.groupby(level="number"):
        if number not in states:
            continue
        curves.append(_Curve(int(number), str(cells.get(number)), str(states[number]),
                             tuple(int(e) for e in h.index.get_level_values("epoch")),
                             floats(h["val_acc"]), floats(h["val_loss"])))
    return _LearningCurvesInfo(tuple(curves))


def _get_learning_curves_plot(info: _LearningCurvesInfo) -> go.Figure:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("validation accuracy", "validation loss"))
    groups: dict[tuple[str, str], list[_Curve]] = {}
    for c in info.curves:
        groups.setdefault((c.cell, c.state), []).append(c)
    for (cell, state), curves in sorted(groups.items()):
        dash, opacity = STATE_STYLE.get(state, ("solid", 0.85))
        name = f"{esc(cell)} ({state.lower()}, {len(curves)})"
        for row, metric in ((1, "val_acc"), (2, "val_loss")):
            # One trace per (cell, state), curves separated by NaN gaps: a few traces draw
            # 200 trials x 100 epochs much faster than 200 traces would, and numpy arrays
            # skip Plotly's per-element validation.
            gap = [np.nan]
            xs = np.concatenate([[*c.epochs, *gap] for c in curves])
            ys = np.concatenate([[*getattr(c, metric), *gap] for c in curves])
            ids = np.concatenate([[c.number] * len(c.epochs) + gap for c in curves])
            fig.add_trace(go.Scatter(
                x=xs, y=ys, customdata=ids, mode="lines", name=name, legendgroup=name,
                showlegend=row == 1, opacity=opacity, connectgaps=False,
                line={"color": colour(cell), "dash": dash, "width": 1.5},
                hovertemplate=(f"trial %{{customdata}} ({esc(cell)}, {state.lower()})<br>"
                               f"epoch %{{x}}<br>{metric} %{{y:.4f}}<extra></extra>")),
                row=row, col=1)
    epochs = list(range(1, len(info.reference_val_acc) + 1))
    fig.add_trace(go.Scatter(
        x=epochs, y=list(info.reference_val_acc), mode="lines+markers", legendgroup="tutorial",
        name="tutorial's logged val_acc (reference; click to hide)",
        line={"color": "black", "dash": "dot", "width": 2},
        hovertemplate="tutorial epoch %{x}: val_acc %{y:.3f}<extra></extra>"), row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=2, col=1)
    fig.update_yaxes(title_text="val_acc", row=1, col=1)
    losses = [v for c in info.curves for v in c.val_loss if math.isfinite(v) and v > 0]
    ticks = log_ticks(min(losses), max(losses)) if losses else ()
    fig.update_yaxes(title_text="val_loss (log scale)", type="log", tickvals=list(ticks),
                     ticktext=tick_labels(ticks), row=2, col=1)
    fig.update_layout(title="Learning curves (validation), coloured by cell; pruned dashed, "
                      "failed dotted", height=750, legend={"groupclick": "togglegroup"})
    return fig


def plot_learning_curves(frames: StudyFrames) -> go.Figure:
    """Validation accuracy and loss against epoch for every trial, with the tutorial's curve."""
    return _get_learning_curves_plot(_get_learning_curves_info(frames))


@dataclass(frozen=True)
class _HistoryInfo:
    """The complete trials in order and their objective values."""

    metric: str
    direction: str
    numbers: tuple[int, ...]
    values: tuple[float, ...]
    cells: tuple[str, ...]

    @property
    def best_so_far(self) -> tuple[float, ...]:
        pick = max if self.direction == "maximize" else min
        return tuple(pick(self.values[: i + 1]) for i in range(len(self.values)))


def _get_history_info(frames: StudyFrames) -> _HistoryInfo:
    t = frames.table(("COMPLETE",))
    return _HistoryInfo(frames.metric, frames.direction, tuple(int(n) for n in t["number"]),
                        floats(t["value"]), tuple(str(c) for c in t.get("model.cell", [])))


def _get_history_plot(info: _HistoryInfo) -> go.Figure:
    fig = go.Figure()
    for cell in sorted(set(info.cells)):
        idx = [i for i, c in enumerate(info.cells) if c == cell]
        fig.add_trace(go.Scatter(
            x=[info.numbers[i] for i in idx], y=[info.values[i] for i in idx], mode="markers",
            name=esc(cell), marker={"color": colour(cell), "size": 8},
            hovertemplate=f"trial %{{x}} ({esc(cell)})<br>{esc(info.metric)} %{{y:.4f}}"
                          "<extra></extra>"))
    fig.add_trace(go.Scatter(x=list(info.numbers), y=list(info.best_so_far), mode="lines",
                             name="best so far", line={"color": "#d62728", "shape": "hv"}))
    fig.update_layout(title=f"Optimisation history: validation {esc(info.metric)} of complete "
                      f"trials ({esc(info.direction)})", xaxis_title="trial",
                      yaxis_title=f"{esc(info.metric)} (validation)")
    if info.numbers and max(info.numbers) <= 20:
        fig.update_xaxes(dtick=1)  # whole trial numbers only
    return fig


def plot_history(frames: StudyFrames) -> go.Figure:
    """The objective value of every complete trial and the best so far."""
    return _get_history_plot(_get_history_info(frames))
