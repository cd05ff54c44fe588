"""A dashboard page from its spec: a header that says what is drawn, then every figure.

Figures that compare (learning curves, history, box, scatter) are drawn once across every
study; figures that describe one study's search (parallel coordinates, importances, the
normalisation verdict, learning rate and L2) once per study.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import plotly.graph_objects as go

from rnnlab.analysis.frames import StudyFrames
from rnnlab.dashboards.box import plot_box
from rnnlab.dashboards.history import plot_history
from rnnlab.dashboards.importances import plot_importances
from rnnlab.dashboards.learning_curves import plot_learning_curves
from rnnlab.dashboards.lr_l2 import plot_lr_l2
from rnnlab.dashboards.normalisation import plot_normalisation
from rnnlab.dashboards.page import figure_div, page
from rnnlab.dashboards.parallel import plot_parallel
from rnnlab.dashboards.scatter import plot_scatter
from rnnlab.dashboards.select import Selection
from rnnlab.dashboards.spec import PER_STUDY, DashboardSpec, Figure, study_board
from rnnlab.dashboards.style import esc

_PER_STUDY = {"parallel": plot_parallel, "importances": plot_importances,
              "normalisation": plot_normalisation, "lr_l2": plot_lr_l2}


def figures(spec: DashboardSpec, selection: Selection) -> Iterator[tuple[str, go.Figure]]:
    """Each figure of the page with its element id (``fig-<kind>``, then a suffix where a
    kind is drawn more than once)."""
    used: dict[str, int] = {}
    studies = selection.studies
    for figure in spec.figures:
        base = "fig-" + figure.kind.replace("_", "-")
        if figure.kind in PER_STUDY:
            drawn = [(label, _PER_STUDY[figure.kind](frames)) for label, frames in studies]
        else:
            drawn = [("", _across(figure, spec, studies))]
        for label, fig in drawn:
            if len(studies) > 1 and label:
                fig.update_layout(title_text=f"{esc(label)}: {fig.layout.title.text}")
            if figure.title:
                fig.update_layout(title_text=esc(figure.title))
            used[base] = used.get(base, 0) + 1
            yield (base if used[base] == 1 else f"{base}-{used[base]}"), fig


def _across(figure: Figure, spec: DashboardSpec,
            studies: tuple[tuple[str, StudyFrames], ...]) -> go.Figure:
    group, facet = spec.group, spec.facet
    if figure.kind == "learning_curves":
        return plot_learning_curves(studies, group, facet, tuple(figure.metrics),
                                    figure.whole_up_to)
    if figure.kind == "history":
        return plot_history(studies, group)
    if figure.kind == "box":
        factors = figure.factors or list(dict.fromkeys(k for _, f in studies for k in f.search))
        return plot_box(studies, factors, figure.y, group, facet)
    return plot_scatter(studies, figure.x, figure.y, group, facet)


def board_html(spec: DashboardSpec, selection: Selection, *, origin: str | None = None,
               refresh_s: float | None = None, script: str | None = None) -> str:
    """The page: a header (what is drawn, from where, filtered how), then every figure.

    Args:
        spec: the dashboard spec.
        selection: its studies, read and filtered (:func:`~rnnlab.dashboards.select.select`).
        origin: the spec file, named on the page.
        refresh_s: make an open browser tab reload every so many seconds.
        script: plotly.js as a file beside the page (its name); None inlines it.
    """
    title = spec.title or f"Dashboard {origin or ''}".strip()
    parts = [f"<h1>{esc(title)}</h1>"]
    if spec.description:
        parts.append(f"<p>{esc(spec.description)}</p>")
    parts.append(_header(spec, selection, origin, refresh_s))
    for div_id, fig in figures(spec, selection):
        parts.append(f'<section id="{div_id.removeprefix("fig-")}">{figure_div(fig, div_id)}'
                     "</section>")
    return page(f"rnnlab dashboard: {title}", "\n".join(parts), refresh_s=refresh_s,
                script=script)


def _header(spec: DashboardSpec, selection: Selection, origin: str | None,
            refresh_s: float | None) -> str:
    items = []
    for label, f in selection.studies:
        counts = f.counts()
        shown = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "none"
        items.append(f"<li><b>{esc(label)}</b> (study <code>{esc(f.name)}</code>): trials "
                     f"{esc(shown)} (budget {esc(f.budget)}); objective: validation "
                     f"{esc(f.metric)} ({esc(f.direction)}). MLflow: "
                     f"<code>{esc(f.tracking_uri)}</code>, "
                     f"experiment <code>{esc(f.experiment)}</code>.{_strata(f)}</li>")
    for label in selection.missing:
        items.append(f"<li><b>{esc(label)}</b>: not run yet (nothing to draw).</li>")
    flt = spec.filter
    said = [f"states {', '.join(flt.states)}"] + [f"{k} {v}" for k, v in flt.params.items()]
    if flt.top_k:
        said.append(f"each study's {flt.top_k} best complete trials")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    again = f"; rewritten every {int(refresh_s)} s while a study runs" if refresh_s else ""
    source = f" from <code>{esc(origin)}</code>" if origin else ""
    return (f"<ul>{''.join(items)}</ul><p>Trials drawn: {selection.kept} of {selection.total} "
            f"({esc('; '.join(said))}); coloured by {esc(spec.group)}"
            f"{f', one panel per {esc(spec.facet)}' if spec.facet else ''}. Every value is "
            f"validation, never the test set. Written {stamp}{source}{again}.</p>")


def _strata(frames: StudyFrames) -> str:
    """A stratified study's finished trials and best per stratum, as a sentence (or "")."""
    said = [f"{s.name}: {s.finished} finished, best "
            + ("-" if s.best_value is None else f"{s.best_value:.4f} (trial {s.best_trial})")
            for s in frames.by_stratum()]
    return f" By stratum: {esc('; '.join(said))}." if said else ""


def dashboard_html(frames: StudyFrames, *, refresh_s: float | None = None) -> str:
    """The default view of one study (:func:`~rnnlab.dashboards.spec.study_board`), from its
    frames as read already; plotly.js inline."""
    n = len(frames.trials)
    return board_html(study_board(frames.name), Selection(((frames.name, frames),), kept=n,
                                                          total=n), refresh_s=refresh_s)
