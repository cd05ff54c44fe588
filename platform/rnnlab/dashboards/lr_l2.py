"""Final validation accuracy against learning rate and L2, coloured by cell."""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rnnlab.analysis.frames import StudyFrames
from rnnlab.dashboards.style import (
    colour,
    empty,
    esc,
    floats,
    log_positions,
    log_ticks,
    tick_labels,
)


@dataclass(frozen=True)
class _LrL2Info:
    """One point per complete trial with a final validation accuracy."""

    numbers: tuple[int, ...]
    cells: tuple[str, ...]
    lr: tuple[float, ...]
    l2: tuple[float, ...]
    final_val_acc: tuple[float, ...]


def _get_lr_l2_info(frames: StudyFrames) -> _LrL2Info:
    t = frames.table(("COMPLETE",))
    t = t.dropna(subset=["final_val_acc"]) if "final_val_acc" in t else t.iloc[0:0]
    return _LrL2Info(tuple(int(n) for n in t["number"]),
                     tuple(str(v) for v in t.get("model.cell", [])),
                     floats(t.get("train.lr", [])), floats(t.get("train.l2", [])),
                     floats(t.get("final_val_acc", [])))


def _get_lr_l2_plot(info: _LrL2Info) -> go.Figure:
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
    return _get_lr_l2_plot(_get_lr_l2_info(frames))
