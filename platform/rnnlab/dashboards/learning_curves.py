"""Learning curves: validation accuracy and loss against epoch for every trial."""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rnnlab.analysis.frames import StudyFrames
from rnnlab.dashboards.groups import (
    Labelled,
    as_labelled,
    group_colours,
    ordered,
    values_of,
)
from rnnlab.dashboards.style import (
    STATE_STYLE,
    STATE_WORDS,
    TUTORIAL_VAL_ACC,
    esc,
    floats,
    log_ticks,
    tick_labels,
)


@dataclass(frozen=True)
class _Curve:
    study: str
    number: int
    group: str
    facet: str
    state: str
    epochs: tuple[int, ...]
    val_acc: tuple[float, ...]
    val_loss: tuple[float, ...]


@dataclass(frozen=True)
class _LearningCurvesInfo:
    curves: tuple[_Curve, ...]
    group: str = "model.cell"
    facet: str | None = None
    metrics: tuple[str, ...] = ("val_acc", "val_loss")
    studies: int = 1
    reference_val_acc: tuple[float, ...] = TUTORIAL_VAL_ACC


def _get_learning_curves_info(frames: StudyFrames | Labelled, group: str = "model.cell",
                              facet: str | None = None,
                              metrics: tuple[str, ...] = ("val_acc", "val_loss")
                              ) -> _LearningCurvesInfo:
    studies = as_labelled(frames)
    curves = []
    for label, f in studies:
        table = f.table(("COMPLETE", "PRUNED", "FAIL", "RUNNING"))
        groups = dict(zip(table["number"], values_of(label, table, group), strict=True))
        facets = dict(zip(table["number"], values_of(label, table, facet), strict=True))
        states = dict(zip(table["number"], table["state"], strict=True))
        wide = f.curves.pivot_table(index=["number", "epoch"], columns="metric",
                                    values="value").reindex(columns=["val_acc", "val_loss"])
        drawn = set()
        for number, h in wide.groupby(level="number"):
            if number not in states:
                continue
            drawn.add(number)
            curves.append(_Curve(label, int(number), groups[number], facets[number],
                                 str(states[number]),
                                 tuple(int(e) for e in h.index.get_level_values("epoch")),
                                 floats(h["val_acc"]), floats(h["val_loss"])))
        # A trial that ended before its first epoch (failed at the start, say) has no curve,
        # but its legend entry counts it, as the page's header does.
        curves += [_Curve(label, int(n), groups[n], facets[n], str(st), (), (), ())
                   for n, st in states.items() if n not in drawn and st != "RUNNING"]
    return _LearningCurvesInfo(tuple(curves), group, facet, tuple(metrics), len(studies))


def _get_learning_curves_plot(info: _LearningCurvesInfo) -> go.Figure:
    panels = ordered(c.facet for c in info.curves) or [""]
    named = {"val_acc": "validation accuracy", "val_loss": "validation loss"}
    titles = [f"{named[m]}{f'<br>{esc(info.facet)} = {esc(p)}' if info.facet else ''}"
              for m in info.metrics for p in panels]
    fig = make_subplots(rows=len(info.metrics), cols=len(panels), shared_xaxes="all",
                        shared_yaxes="rows", vertical_spacing=0.08, horizontal_spacing=0.04,
                        subplot_titles=titles)
    colours = group_colours(c.group for c in info.curves)
    traces: dict[tuple[str, str, str], list[_Curve]] = {}
    for c in info.curves:
        traces.setdefault((c.facet, c.group, c.state), []).append(c)
    counts = collections.Counter((c.group, c.state) for c in info.curves)
    shown = set()
    for (panel, grp, state), curves in sorted(traces.items()):
        dash, opacity = STATE_STYLE.get(state, ("solid", 0.85))
        name = f"{esc(grp)} ({STATE_WORDS.get(state, state.lower())}, {counts[grp, state]})"
        for row, metric in enumerate(info.metrics, start=1):
            fig.add_trace(_lines(curves, metric, name, colours[grp], dash, opacity,
                                 showlegend=name not in shown), row=row,
                          col=panels.index(panel) + 1)
            shown.add(name)
    if "val_acc" in info.metrics and info.studies == 1 and not info.facet:
        # The tutorial's own setup (patch 7, hidden 128, rnn): a reference for one study's
        # page, not a third column in a comparison.
        _reference(fig, info, row=info.metrics.index("val_acc") + 1)
    for col in range(1, len(panels) + 1):
        fig.update_xaxes(title_text="epoch", row=len(info.metrics), col=col)
    if max((e for c in info.curves for e in c.epochs), default=0) <= 20:
        fig.update_xaxes(dtick=1)  # whole epochs only
    for row, metric in enumerate(info.metrics, start=1):
        fig.update_yaxes(title_text=metric, row=row, col=1)
    if "val_loss" in info.metrics:
        losses = [v for c in info.curves for v in c.val_loss if math.isfinite(v) and v > 0]
        ticks = log_ticks(min(losses), max(losses)) if losses else ()
        row = info.metrics.index("val_loss") + 1
        fig.update_yaxes(type="log", tickvals=list(ticks), ticktext=tick_labels(ticks), row=row)
        fig.update_yaxes(title_text="val_loss (log scale)", row=row, col=1)
    across = f" across {info.studies} studies" if info.studies > 1 else ""
    fig.update_layout(title=f"Learning curves (validation){across}, coloured by "
                      f"{esc(info.group or '').replace('model.cell', 'cell')}; pruned "
                      "dashed, failed dotted", height=max(450, 375 * len(info.metrics)),
                      legend={"groupclick": "togglegroup"})
    return fig


def _lines(curves: list[_Curve], metric: str, name: str, colour: str, dash: str,
           opacity: float, showlegend: bool) -> go.Scatter:
    # One trace per (facet, group, state), curves separated by NaN gaps: a few traces draw
    # 200 trials x 100 epochs much faster than 200 traces would, and numpy arrays skip
    # Plotly's per-element validation.
    gap = [np.nan]
    xs = np.concatenate([[*c.epochs, *gap] for c in curves])
    ys = np.concatenate([[*getattr(c, metric), *gap] for c in curves])
    ids = np.concatenate([[_trial(c)] * len(c.epochs) + [""] for c in curves])
    # a failed trial's few epochs: dotted, with a marker at each (one epoch is one point)
    return go.Scatter(x=xs, y=ys, customdata=ids, mode="lines+markers" if dash == "dot"
                      else "lines", name=name, legendgroup=name, marker={"size": 5},
                      showlegend=showlegend, opacity=opacity, connectgaps=False,
                      line={"color": colour, "dash": dash, "width": 2 if dash == "dot" else 1.5},
                      hovertemplate=(f"%{{customdata}} ({name})<br>epoch %{{x}}<br>{metric} "
                                     "%{y:.4f}<extra></extra>"))


def _trial(c: _Curve) -> str:
    return f"{esc(c.study)} trial {c.number}"


def _reference(fig: go.Figure, info: _LearningCurvesInfo, row: int) -> None:
    epochs = list(range(1, len(info.reference_val_acc) + 1))
    fig.add_trace(go.Scatter(
        x=epochs, y=list(info.reference_val_acc), mode="lines+markers", legendgroup="tutorial",
        name="tutorial's logged val_acc (reference; click to hide)",
        line={"color": "black", "dash": "dot", "width": 2},
        hovertemplate="tutorial epoch %{x}: val_acc %{y:.3f}<extra></extra>"), row=row, col=1)


def plot_learning_curves(frames: StudyFrames | Labelled, group: str = "model.cell",
                         facet: str | None = None,
                         metrics: tuple[str, ...] = ("val_acc", "val_loss")) -> go.Figure:
    """Validation curves against epoch for every trial, with the tutorial's curve for reference.

    Args:
        frames: one study's frames, or several as (label, frames) pairs.
        group: the config key (or "study") that colours the curves.
        facet: the config key (or "study") with one column per value; None for one column.
        metrics: the curves drawn, one row each.
    """
    return _get_learning_curves_plot(_get_learning_curves_info(frames, group, facet, metrics))
