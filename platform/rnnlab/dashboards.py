"""Plotly dashboards of a study, written as one self-contained HTML file.

Every figure follows Optuna's visualization modules: ``_get_x_info(frames)`` gathers a small
frozen record from the :class:`~rnnlab.results.StudyFrames`, ``_get_x_plot(info)`` draws it,
and ``plot_x(frames)`` does both. Tests compare the records without rendering anything.

Strings that come from specs, params or failure reasons are HTML-escaped before Plotly sees
them (Plotly renders a subset of HTML in labels and hover text).
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rnnlab.results import StudyFrames, atomic_write, study_frames

# The tutorial's logged validation accuracy after epochs 1-6 (patch 7, hidden 128, rnn).
TUTORIAL_VAL_ACC = (0.470, 0.555, 0.595, 0.630, 0.674, 0.680)
CELL_COLOURS = {"rnn": "#1f77b4", "lstm": "#ff7f0e", "gru": "#2ca02c"}
_STATE_STYLE = {  # state: (dash, opacity)
    "COMPLETE": ("solid", 0.85), "PRUNED": ("dash", 0.45), "FAIL": ("dot", 0.3),
    "RUNNING": ("longdash", 0.85),
}
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}
CURVES = ("val_acc", "val_loss")  # the only curves drawn: reading fewer is faster


def _esc(value: object) -> str:
    return html.escape(str(value))


def _colour(cell: str) -> str:
    return CELL_COLOURS.get(cell, "#7f7f7f")


def _floats(values) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


# --- learning curves ------------------------------------------------------------------------

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
                             _floats(h["val_acc"]), _floats(h["val_loss"])))
    return _LearningCurvesInfo(tuple(curves))


def _get_learning_curves_plot(info: _LearningCurvesInfo) -> go.Figure:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("validation accuracy", "validation loss"))
    groups: dict[tuple[str, str], list[_Curve]] = {}
    for c in info.curves:
        groups.setdefault((c.cell, c.state), []).append(c)
    for (cell, state), curves in sorted(groups.items()):
        dash, opacity = _STATE_STYLE.get(state, ("solid", 0.85))
        name = f"{_esc(cell)} ({state.lower()}, {len(curves)})"
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
                line={"color": _colour(cell), "dash": dash, "width": 1.5},
                hovertemplate=(f"trial %{{customdata}} ({_esc(cell)}, {state.lower()})<br>"
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
    fig.update_yaxes(title_text="val_loss", type="log", dtick="D2", row=2, col=1)
    fig.update_layout(title="Learning curves (validation), coloured by cell; pruned dashed, "
                      "failed dotted", height=750, legend={"groupclick": "togglegroup"})
    return fig


def plot_learning_curves(frames: StudyFrames) -> go.Figure:
    """Validation accuracy and loss against epoch for every trial, with the tutorial's curve."""
    return _get_learning_curves_plot(_get_learning_curves_info(frames))


# --- optimisation history -------------------------------------------------------------------

@dataclass(frozen=True)
class _HistoryInfo:
    metric: str
    direction: str
    numbers: tuple[int, ...]
    values: tuple[float, ...]
    cells: tuple[str, ...]
    best_so_far: tuple[float, ...]


def _get_history_info(frames: StudyFrames) -> _HistoryInfo:
    t = frames.table(("COMPLETE",))
    values = _floats(t["value"])
    pick = max if frames.direction == "maximize" else min
    best = [pick(values[: i + 1]) for i in range(len(values))]
    return _HistoryInfo(frames.metric, frames.direction, tuple(int(n) for n in t["number"]),
                        values, tuple(str(c) for c in t.get("model.cell", [])), tuple(best))


def _get_history_plot(info: _HistoryInfo) -> go.Figure:
    fig = go.Figure()
    for cell in sorted(set(info.cells)):
        idx = [i for i, c in enumerate(info.cells) if c == cell]
        fig.add_trace(go.Scatter(
            x=[info.numbers[i] for i in idx], y=[info.values[i] for i in idx], mode="markers",
            name=_esc(cell), marker={"color": _colour(cell), "size": 8},
            hovertemplate=f"trial %{{x}} ({_esc(cell)})<br>{_esc(info.metric)} %{{y:.4f}}"
                          "<extra></extra>"))
    fig.add_trace(go.Scatter(x=list(info.numbers), y=list(info.best_so_far), mode="lines",
                             name="best so far", line={"color": "#d62728", "shape": "hv"}))
    fig.update_layout(title=f"Optimisation history: validation {_esc(info.metric)} of complete "
                      f"trials ({_esc(info.direction)})", xaxis_title="trial",
                      yaxis_title=f"{_esc(info.metric)} (validation)")
    if info.numbers and max(info.numbers) <= 20:
        fig.update_xaxes(dtick=1)  # whole trial numbers only
    return fig


def plot_history(frames: StudyFrames) -> go.Figure:
    """The objective value of every complete trial and the best so far."""
    return _get_history_plot(_get_history_info(frames))


# --- parallel coordinates -------------------------------------------------------------------

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
                         _floats(t["value"]))


def _log_positions(values: tuple) -> tuple[list[float], list[float], list[str]]:
    """log10 of each value; zeros (an L2 switched off) sit one decade below the smallest."""
    positive = [float(v) for v in values if float(v) > 0]
    floor = math.floor(math.log10(min(positive))) - 1 if positive else 0
    pos = [math.log10(float(v)) if float(v) > 0 else floor for v in values]
    ticks = list(range(math.floor(min(pos)), math.ceil(max(pos)) + 1)) if pos else []
    text = ["0" if (k == floor and any(float(v) <= 0 for v in values)) else f"1e{k}"
            for k in ticks]
    return pos, [float(k) for k in ticks], text


def _get_parallel_plot(info: _ParallelInfo) -> go.Figure:
    fig = go.Figure()
    if not info.numbers:
        return _empty(fig, "Parallel coordinates: no complete trial yet")
    dims = []
    for d in info.dimensions:
        if d.kind == "categorical":
            labels = sorted({str(v) for v in d.values})
            dims.append({"label": _esc(d.key), "values": [labels.index(str(v)) for v in d.values],
                         "tickvals": list(range(len(labels))),
                         "ticktext": [_esc(v) for v in labels]})
        elif d.kind == "log":
            pos, ticks, text = _log_positions(d.values)
            dims.append({"label": f"{_esc(d.key)} (log)", "values": pos, "tickvals": ticks,
                         "ticktext": text})
        else:
            dims.append({"label": _esc(d.key), "values": [float(v) for v in d.values]})
    dims.append({"label": f"{_esc(info.metric)} (validation)", "values": list(info.objective)})
    fig.add_trace(go.Parcoords(dimensions=dims, line={
        "color": list(info.objective), "colorscale": "Viridis", "showscale": True,
        "colorbar": {"title": {"text": _esc(info.metric)}}}))
    fig.update_layout(title="Searched parameters (values trained with) against the objective, "
                      "complete trials")
    return fig


def plot_parallel(frames: StudyFrames) -> go.Figure:
    """Parallel coordinates of the searched params against the objective."""
    return _get_parallel_plot(_get_parallel_info(frames))


# --- parameter importances ------------------------------------------------------------------

@dataclass(frozen=True)
class _ImportancesInfo:
    params: tuple[str, ...]
    importances: tuple[float, ...]
    note: str


def _get_importances_info(frames: StudyFrames) -> _ImportancesInfo:
    imp = frames.importances.sort_values("importance", ascending=False)
    return _ImportancesInfo(tuple(imp["param"]), _floats(imp["importance"]),
                            frames.importance_note)


def _get_importances_plot(info: _ImportancesInfo) -> go.Figure:
    fig = go.Figure()
    title = f"Parameter importances ({_esc(info.note)})"
    if not info.params:
        return _empty(fig, title)
    fig.add_trace(go.Bar(x=list(info.importances)[::-1], y=[_esc(p) for p in info.params][::-1],
                         orientation="h", marker={"color": "#636efa"},
                         hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="importance (sums to 1)",
                      height=200 + 40 * len(info.params))
    return fig


def plot_importances(frames: StudyFrames) -> go.Figure:
    """fANOVA importances of the searched params for the objective."""
    return _get_importances_plot(_get_importances_info(frames))


# --- normalisation x cell -------------------------------------------------------------------

@dataclass(frozen=True)
class _NormalisationInfo:
    numbers: tuple[int, ...]
    normalisations: tuple[str, ...]
    cells: tuple[str, ...]
    final_val_acc: tuple[float, ...]


def _get_normalisation_info(frames: StudyFrames) -> _NormalisationInfo:
    t = frames.table(("COMPLETE",))
    t = t.dropna(subset=["final_val_acc"]) if "final_val_acc" in t else t.iloc[0:0]
    return _NormalisationInfo(tuple(int(n) for n in t["number"]),
                              tuple(str(v) for v in t.get("data.normalisation", [])),
                              tuple(str(v) for v in t.get("model.cell", [])),
                              _floats(t.get("final_val_acc", [])))


def _get_normalisation_plot(info: _NormalisationInfo) -> go.Figure:
    fig = go.Figure()
    title = "Final validation accuracy by normalisation and cell (complete trials)"
    if not info.numbers:
        return _empty(fig, title + ": none yet")
    for cell in sorted(set(info.cells)):
        idx = [i for i, c in enumerate(info.cells) if c == cell]
        fig.add_trace(go.Box(
            x=[_esc(info.normalisations[i]) for i in idx], y=[info.final_val_acc[i] for i in idx],
            customdata=[info.numbers[i] for i in idx], name=_esc(cell), boxpoints="all",
            jitter=0.4, pointpos=0, marker={"color": _colour(cell)},
            hovertemplate="trial %{customdata}<br>%{x}<br>final val_acc %{y:.4f}<extra></extra>"))
    fig.update_layout(title=title, boxmode="group", xaxis_title="data.normalisation",
                      yaxis_title="final val_acc (validation)")
    return fig


def plot_normalisation(frames: StudyFrames) -> go.Figure:
    """Box and points of the final validation accuracy per normalisation, grouped by cell."""
    return _get_normalisation_plot(_get_normalisation_info(frames))


# --- learning rate and L2 -------------------------------------------------------------------

@dataclass(frozen=True)
class _LrL2Info:
    numbers: tuple[int, ...]
    cells: tuple[str, ...]
    lr: tuple[float, ...]
    l2: tuple[float, ...]
    final_val_acc: tuple[float, ...]


def _get_lr_l2_info(frames: StudyFrames) -> _LrL2Info:
    n = _get_normalisation_info(frames)
    t = frames.table(("COMPLETE",)).set_index("number").reindex(list(n.numbers))
    return _LrL2Info(n.numbers, n.cells, _floats(t.get("train.lr", [])),
                     _floats(t.get("train.l2", [])), n.final_val_acc)


def _get_lr_l2_plot(info: _LrL2Info) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=("learning rate", "L2 (0 = off, at the left edge)"))
    if not info.numbers:
        return _empty(fig, "Learning rate and L2: no complete trial yet")
    l2_pos, l2_ticks, l2_text = _log_positions(info.l2)
    for cell in sorted(set(info.cells)):
        idx = [i for i, c in enumerate(info.cells) if c == cell]
        common = {"mode": "markers", "name": _esc(cell), "legendgroup": cell,
                  "marker": {"color": _colour(cell), "size": 8},
                  "customdata": [[info.numbers[i], info.l2[i]] for i in idx],
                  "y": [info.final_val_acc[i] for i in idx]}
        fig.add_trace(go.Scatter(x=[info.lr[i] for i in idx], **common, hovertemplate=(
            "trial %{customdata[0]}<br>lr %{x:.3g}<br>final val_acc %{y:.4f}<extra></extra>")),
            row=1, col=1)
        fig.add_trace(go.Scatter(x=[10 ** l2_pos[i] for i in idx], showlegend=False, **common,
                                 hovertemplate=("trial %{customdata[0]}<br>l2 %{customdata[1]:.3g}"
                                                "<br>final val_acc %{y:.4f}<extra></extra>")),
                      row=1, col=2)
    fig.update_xaxes(type="log", title_text="train.lr", row=1, col=1)
    fig.update_xaxes(type="log", title_text="train.l2", tickvals=[10 ** k for k in l2_ticks],
                     ticktext=l2_text, row=1, col=2)
    fig.update_yaxes(title_text="final val_acc (validation)", row=1, col=1)
    fig.update_layout(title="Learning rate and L2 against final validation accuracy, by cell")
    return fig


def plot_lr_l2(frames: StudyFrames) -> go.Figure:
    """Final validation accuracy against learning rate (log) and L2, coloured by cell."""
    return _get_lr_l2_plot(_get_lr_l2_info(frames))


def _empty(fig: go.Figure, title: str) -> go.Figure:
    fig.update_layout(title=title, annotations=[{
        "text": "nothing to show yet", "showarrow": False, "xref": "paper", "yref": "paper",
        "x": 0.5, "y": 0.5}])
    return fig


# --- the page -------------------------------------------------------------------------------

FIGURES: tuple[tuple[str, Callable[[StudyFrames], go.Figure]], ...] = (
    ("learning-curves", plot_learning_curves), ("history", plot_history),
    ("parallel", plot_parallel), ("importances", plot_importances),
    ("normalisation", plot_normalisation), ("lr-l2", plot_lr_l2),
)
_STYLE = ("body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:1200px;"
          "color:#222}section{margin-bottom:2rem}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}"
          "code,pre{background:#f5f5f5;padding:.1rem .3rem}")


def plotly_script() -> str:
    """plotly.js inline (about 4.8 MB), so a page opens offline with no request anywhere."""
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def figure_div(fig: go.Figure, div_id: str) -> str:
    """A figure as a ``<div>`` and its script; the page must include :func:`plotly_script`."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config=_PLOT_CONFIG)


def page(title: str, body: str, *, refresh_s: float | None = None) -> str:
    """A complete HTML page; ``title`` is escaped here, ``body`` must already be safe."""
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{refresh}'
            f"<title>{_esc(title)}</title><style>{_STYLE}</style>{plotly_script()}</head>"
            f"<body>\n{body}\n</body></html>\n")


def dashboard_html(frames: StudyFrames, *, refresh_s: float | None = None) -> str:
    """The dashboard page of a study: a summary line and every figure."""
    counts = frames.counts()
    done = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no trials"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [f"<h1>Study {_esc(frames.name)}</h1>",
             f"<p>{_esc(done)} (budget {_esc(frames.budget)}); objective: validation "
             f"{_esc(frames.metric)} ({_esc(frames.direction)}). MLflow: "
             f"<code>{_esc(frames.tracking_uri)}</code>, experiment "
             f"<code>{_esc(frames.experiment)}</code>. Written {stamp}"
             f"{f'; rewritten every {int(refresh_s)} s while the study runs' if refresh_s else ''}"
             ".</p>"]
    for div_id, plot in FIGURES:
        parts.append(f'<section id="{div_id}">{figure_div(plot(frames), f"fig-{div_id}")}'
                     "</section>")
    return page(f"rnnlab dashboard: {frames.name}", "\n".join(parts), refresh_s=refresh_s)


def default_path(name: str) -> Path:
    """``dashboards/<study>.html`` under the working directory (the folder is created)."""
    folder = Path("dashboards")
    folder.mkdir(exist_ok=True)
    return folder / f"{name}.html"


def write_dashboard(storage: str, name: str, out: str | Path | None = None, *,
                    tracking_uri: str | None = None, refresh_s: float | None = None) -> Path:
    """Write a study's dashboard as one self-contained HTML file, atomically.

    Args:
        storage: the Optuna storage URL or journal path.
        name: the study.
        out: the file to write (default ``dashboards/<study>.html``).
        tracking_uri: the MLflow store (default ``MLFLOW_TRACKING_URI`` or MLflow's default).
        refresh_s: make an open browser tab reload every so many seconds.

    Returns:
        The path written.

    Raises:
        RnnlabError: the study does not exist, its runs are missing, or ``out`` is unwritable.
    """
    frames = study_frames(storage, name, tracking_uri=tracking_uri, metrics=CURVES)
    return _write(frames, out, refresh_s)


def _write(frames: StudyFrames, out: str | Path | None, refresh_s: float | None) -> Path:
    text = dashboard_html(frames, refresh_s=refresh_s)
    target = Path(out) if out is not None else default_path(frames.name)
    return atomic_write(target, lambda p: Path(p).write_text(text, encoding="utf-8"))


def study_done(frames: StudyFrames) -> bool:
    """True when nothing runs or waits and the finished trials have reached the budget."""
    counts = frames.counts()
    finished = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)
    active = counts.get("RUNNING", 0) + counts.get("WAITING", 0)
    return active == 0 and frames.budget is not None and finished >= frames.budget


def watch_dashboard(storage: str, name: str, out: str | Path | None, every_s: float, *,
                    tracking_uri: str | None = None,
                    on_write: Callable[[Path, StudyFrames], None] | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> Path:
    """Rewrite the dashboard every ``every_s`` seconds until the study is done.

    Done means :func:`study_done`; the last page written then no longer asks the browser to
    reload. Ctrl-C stops watching earlier (``KeyboardInterrupt`` propagates).

    Returns:
        The path written.
    """
    while True:
        frames = study_frames(storage, name, tracking_uri=tracking_uri, metrics=CURVES)
        done = study_done(frames)
        path = _write(frames, out, None if done else every_s)
        if on_write:
            on_write(path, frames)
        if done:
            return path
        sleep(every_s)
