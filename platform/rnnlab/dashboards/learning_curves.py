"""Learning curves: validation accuracy and loss against epoch for every trial.

A page with more than ``WHOLE_UP_TO`` trials draws what a person can see: each group's
``BEST_WHOLE`` best trials whole, the rest as their median and 10-90% band per epoch, and says
so in the title (a spec's ``{kind: learning_curves, whole_up_to: N}`` draws more whole).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any

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
from rnnlab.dashboards.spec import Figure
from rnnlab.dashboards.style import (
    STATE_STYLE,
    STATE_WORDS,
    TUTORIAL_SETUP,
    TUTORIAL_VAL_ACC,
    esc,
    fill,
    floats,
    log_ticks,
    tick_labels,
)

WHOLE_UP_TO = Figure.model_fields["whole_up_to"].default  # past it: the best, and bands
BEST_WHOLE = 10  # trials of each group (and panel) drawn whole on a thinned page
QUANTILES = (0.1, 0.5, 0.9)


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
    merit: float = 0.0  # the trial's value, higher is better whatever the direction


@dataclass(frozen=True)
class _Band:
    """The trials of one group and panel not drawn whole: per epoch, QUANTILES of each metric
    over the trials that reached the epoch; and each trial's best point of each metric."""

    group: str
    facet: str
    trials: int
    epochs: tuple[int, ...]
    quantiles: dict[str, tuple[tuple[float, ...], ...]]  # metric: one tuple per quantile
    best: dict[str, tuple[tuple[int, float, str], ...]]  # metric: (epoch, value, trial) each


@dataclass(frozen=True)
class _LearningCurvesInfo:
    curves: tuple[_Curve, ...]  # those drawn whole (every trial on a page not thinned)
    group: str = "model.cell"
    facet: str | None = None
    metrics: tuple[str, ...] = ("val_acc", "val_loss")
    studies: int = 1
    reference_val_acc: tuple[float, ...] = TUTORIAL_VAL_ACC
    setup: str = ""  # how the study's setup differs from the tutorial's ("": it does not)
    bands: tuple[_Band, ...] = ()
    counts: dict[tuple[str, str], int] | None = None  # (group, state): trials, thinned pages


def _get_learning_curves_info(frames: StudyFrames | Labelled, group: str = "model.cell",
                              facet: str | None = None,
                              metrics: tuple[str, ...] = ("val_acc", "val_loss"),
                              whole_up_to: int = WHOLE_UP_TO) -> _LearningCurvesInfo:
    studies = as_labelled(frames)
    curves = []
    for label, f in studies:
        table = f.table(("COMPLETE", "PRUNED", "FAIL", "RUNNING"))
        groups = dict(zip(table["number"], values_of(label, table, group), strict=True))
        facets = dict(zip(table["number"], values_of(label, table, facet), strict=True))
        states = dict(zip(table["number"], table["state"], strict=True))
        sign = -1.0 if f.direction == "minimize" else 1.0
        merits = {n: sign * v if v == v else -math.inf
                  for n, v in zip(table["number"], table["value"].astype(float), strict=True)}
        wide = f.curves.pivot_table(index=["number", "epoch"], columns="metric",
                                    values="value").reindex(columns=["val_acc", "val_loss"])
        numbers = wide.index.get_level_values("number").to_numpy()
        epochs = wide.index.get_level_values("epoch").to_numpy().tolist()
        acc, loss = wide["val_acc"].to_numpy().tolist(), wide["val_loss"].to_numpy().tolist()
        # each trial's rows are consecutive (the index is sorted): sliced, not grouped, which
        # at 10,000 trials is seconds faster
        bounds = (np.flatnonzero(np.r_[True, numbers[1:] != numbers[:-1], True]).tolist()
                  if len(numbers) else [0])  # each trial's first row, then the end
        drawn = set()
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            number = numbers[start]
            if number not in states:
                continue
            drawn.add(number)
            curves.append(_Curve(label, int(number), groups[number], facets[number],
                                 str(states[number]), tuple(epochs[start:end]),
                                 tuple(acc[start:end]), tuple(loss[start:end]), merits[number]))
        # A trial that ended before its first epoch (failed at the start, say) has no curve,
        # but its legend entry counts it, as the page's header does.
        curves += [_Curve(label, int(n), groups[n], facets[n], str(st), (), (), ())
                   for n, st in states.items() if n not in drawn and st != "RUNNING"]
    setup = _other_setup(studies[0][1].spec, studies[0][1].search) if len(studies) == 1 else ""
    info = _LearningCurvesInfo(tuple(curves), group, facet, tuple(metrics), len(studies),
                               setup=setup)
    drawn_curves = sum(bool(c.epochs) for c in curves)
    return info if drawn_curves <= whole_up_to else _thinned(info)


def _thinned(info: _LearningCurvesInfo) -> _LearningCurvesInfo:
    """Each group's (and panel's) BEST_WHOLE best trials whole, the others as bands."""
    kept, bands = [], []
    per: dict[tuple[str, str], list[_Curve]] = {}
    for c in info.curves:
        per.setdefault((c.facet, c.group), []).append(c)
    for (panel, grp), curves in sorted(per.items()):
        ranked = sorted((c for c in curves if c.epochs), key=lambda c: (-c.merit, c.number))
        kept += ranked[:BEST_WHOLE] + [c for c in curves if not c.epochs]
        if rest := ranked[BEST_WHOLE:]:
            bands.append(_band(grp, panel, rest, info.metrics))
    counts = collections.Counter((c.group, c.state) for c in info.curves)
    return dataclasses.replace(info, curves=tuple(kept), bands=tuple(bands), counts=counts)


def _band(group: str, facet: str, curves: list[_Curve], metrics: tuple[str, ...]) -> _Band:
    epochs = sorted({e for c in curves for e in c.epochs})
    at = {e: i for i, e in enumerate(epochs)}
    quantiles, best = {}, {}
    for metric in metrics:
        grid = np.full((len(curves), len(epochs)), np.nan)
        for row, c in enumerate(curves):
            grid[row, [at[e] for e in c.epochs]] = getattr(c, metric)
        grid[~np.isfinite(grid)] = np.nan  # a diverged epoch counts as no value
        with warnings.catch_warnings():  # an epoch where every value diverged: NaN there
            warnings.simplefilter("ignore", RuntimeWarning)
            q = np.nanquantile(grid, QUANTILES, axis=0)
        quantiles[metric] = tuple(floats(row) for row in q)
        # each trial's best point (lowest loss, highest accuracy; the first where tied), for
        # the trials with any finite value
        rows = np.flatnonzero(~np.isnan(grid).all(axis=1))
        pick = np.nanargmin if metric.endswith("loss") else np.nanargmax
        cols = pick(grid[rows], axis=1) if len(rows) else np.empty(0, dtype=int)
        best[metric] = tuple((epochs[j], float(grid[i, j]), _trial(curves[i]))
                             for i, j in zip(rows.tolist(), cols.tolist(), strict=True))
    return _Band(group, facet, len(curves), tuple(epochs), quantiles, best)


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
    counts = info.counts or collections.Counter((c.group, c.state) for c in info.curves)
    whole = collections.Counter((c.group, c.state) for c in info.curves)
    shown = set()
    for (panel, grp, state), curves in sorted(traces.items()):
        dash, opacity = STATE_STYLE.get(state, ("solid", 0.85))
        n = counts[grp, state]
        drawn = f"{whole[grp, state]} of {n} whole" if info.bands and whole[grp, state] < n else n
        name = f"{esc(grp)} ({STATE_WORDS.get(state, state.lower())}, {drawn})"
        for row, metric in enumerate(info.metrics, start=1):
            fig.add_trace(_lines(curves, metric, name, colours[grp], dash, opacity,
                                 showlegend=name not in shown), row=row,
                          col=panels.index(panel) + 1)
            shown.add(name)
    for band in info.bands:
        name = f"{esc(band.group)} (the other {band.trials}: median, 10-90%)"
        for row, metric in enumerate(info.metrics, start=1):
            for trace in _band_traces(band, metric, name, colours[band.group],
                                      showlegend=name not in shown):
                fig.add_trace(trace, row=row, col=panels.index(band.facet) + 1)
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
    title = (f"Learning curves (validation){across}, coloured by "
             f"{esc(info.group or '').replace('model.cell', 'cell')}; pruned dashed, failed "
             "dotted")
    if info.bands:
        total, rest = sum((info.counts or {}).values()), sum(b.trials for b in info.bands)
        grp = esc(info.group or "group").replace("model.cell", "cell")
        title += (f"<br><sub>{total} trials: each {grp}'s {BEST_WHOLE} "
                  f"best drawn whole, the other {rest} as their median and 10-90% band per "
                  "epoch, with a dot at each one's best.<br>{kind: learning_curves, "
                  "whole_up_to: N} in a dashboard spec draws up to N whole; `rnnlab trials` "
                  "lists every trial.</sub>")
    fig.update_layout(title=title, height=max(450, 375 * len(info.metrics)),
                      legend={"groupclick": "togglegroup"})
    if info.bands:  # room for the two lines that say what was thinned
        fig.update_layout(margin={"t": 150}, height=fig.layout.height + 50)
    return fig


def _band_traces(band: _Band, metric: str, name: str, colour: str,
                 showlegend: bool) -> list[go.Scatter]:
    low, median, high = band.quantiles[metric]
    common = {"x": list(band.epochs), "legendgroup": name, "name": name, "mode": "lines"}
    epochs, values, trials = zip(*band.best[metric], strict=True) if band.best[metric] else (
        (), (), ())
    return [
        go.Scatter(y=list(low), line={"width": 0, "color": colour}, showlegend=False,
                   hoverinfo="skip", **common),
        go.Scatter(y=list(high), line={"width": 0, "color": colour}, fill="tonexty",
                   fillcolor=fill(colour), showlegend=False, hoverinfo="skip", **common),
        go.Scatter(y=list(median), line={"width": 1.5, "color": colour, "dash": "dashdot"},
                   showlegend=showlegend, **common,
                   hovertemplate=(f"{name}<br>epoch %{{x}}<br>median {metric} %{{y:.4f}}"
                                  "<extra></extra>")),
        # each of these trials' best point: no trial's best value is lost to the band
        go.Scattergl(x=list(epochs), y=list(values), customdata=list(trials), mode="markers",
                     legendgroup=name, name=f"{name}: each one's best", showlegend=False,
                     marker={"color": colour, "size": 3, "opacity": 0.5},
                     hovertemplate=(f"%{{customdata}}: best {metric} %{{y:.4f}} at epoch "
                                    "%{x}<extra></extra>")),
    ]


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


def _other_setup(spec: dict[str, Any], search: tuple[str, ...]) -> str:
    """Where a study's setup is not the tutorial's (``TUTORIAL_SETUP``): its values, said as
    a legend says them ("" where it is the tutorial's, or the spec is not known)."""
    if not spec:
        return ""
    ours = [("searched" if f"{section}.{key}" in search else spec.get(section, {}).get(key),
             value, words) for section, key, value, words in TUTORIAL_SETUP]
    if all(mine == value for mine, value, _ in ours):
        return ""
    return ", ".join(words.format(mine) for mine, _, words in ours)


def _reference(fig: go.Figure, info: _LearningCurvesInfo, row: int) -> None:
    epochs = list(range(1, len(info.reference_val_acc) + 1))
    name = "tutorial's logged val_acc (reference; click to hide)"
    if info.setup:
        tutorial = ", ".join(words.format(value) for *_, value, words in TUTORIAL_SETUP)
        name += f"<br>its setup: {tutorial}<br>this study's: {esc(info.setup)}"
    fig.add_trace(go.Scatter(
        x=epochs, y=list(info.reference_val_acc), mode="lines+markers", legendgroup="tutorial",
        name=name,
        line={"color": "black", "dash": "dot", "width": 2},
        hovertemplate="tutorial epoch %{x}: val_acc %{y:.3f}<extra></extra>"), row=row, col=1)


def plot_learning_curves(frames: StudyFrames | Labelled, group: str = "model.cell",
                         facet: str | None = None,
                         metrics: tuple[str, ...] = ("val_acc", "val_loss"),
                         whole_up_to: int = WHOLE_UP_TO) -> go.Figure:
    """Validation curves against epoch for every trial, with the tutorial's curve for reference.

    Args:
        frames: one study's frames, or several as (label, frames) pairs.
        group: the config key (or "study") that colours the curves.
        facet: the config key (or "study") with one column per value; None for one column.
        metrics: the curves drawn, one row each.
        whole_up_to: past this many trials with curves, each group's best are drawn whole
            and the rest as bands.
    """
    return _get_learning_curves_plot(_get_learning_curves_info(frames, group, facet, metrics,
                                                               whole_up_to))
