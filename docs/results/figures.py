"""Draw the figures of docs/results.md as PNG files beside it, from the study's own stores.

The figures are rnnlab's dashboard figures (the same records as the reports), exported with
Plotly's static export (kaleido, which drives the machine's Chromium; offline), plus one figure
of the test-set confirmations read from the study's JSON report in this folder.

    .venv/bin/pip install -e '.[docs]'
    .venv/bin/python docs/results/figures.py --storage rnnlab.journal \\
        --tracking-uri sqlite:///mlflow.db

``--only STUDY --tag TAG`` draws one study's figures alone, named ``STUDY-TAG-FIGURE.png``: the
later L2 ablation (planned from the report with docs/results/ablate_from_report.py, in its own
store) is ``--only tutorial_sweep-ablate-train.l2 --tag strong``; the lr ablation, made there
too, ``--only tutorial_sweep-ablate-train.lr``. Studies not in ``--storage`` are skipped; on
that store always give ``--only``, or the later L2 ablation's figure (a study of the same name)
replaces the spec's own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import plotly.graph_objects as go

from rnnlab.analysis.frames import study_frames
from rnnlab.dashboards.box import plot_box
from rnnlab.dashboards.importances import plot_importances
from rnnlab.dashboards.learning_curves import plot_learning_curves
from rnnlab.dashboards.lr_l2 import plot_lr_l2
from rnnlab.dashboards.normalisation import plot_normalisation
from rnnlab.dashboards.style import colour
from rnnlab.errors import RnnlabError

HERE = Path(__file__).resolve().parent
STUDY = "tutorial_sweep"
FIGURES = {  # study: {figure name: how to draw it}
    STUDY: {"curves": plot_learning_curves, "lr_l2": plot_lr_l2,
            "importances": plot_importances},
    f"{STUDY}-ablate-data.normalisation": {"normalisation": plot_normalisation},
    f"{STUDY}-ablate-train.l2": {"l2": lambda frames: plot_box(frames, ["train.l2"])},
    f"{STUDY}-ablate-train.lr": {"lr": lambda frames: plot_box(frames, ["train.lr"])},
}


def confirmations(report: dict) -> go.Figure:
    """Test accuracy of each confirmed config (each cell's best, and the search's own where an
    ablation found a better level): every run, on the study's own training subset and on the
    other subsets, in the cell's colour (as on the dashboards)."""
    fig = go.Figure()
    for c in report["confirmations"]:
        cell = next((r.split()[-1] for r in c["roles"] if r != "best overall"), "")
        what = ", ".join(c["roles"]) + f" (trial {c['trial']}" + "".join(
            f", {k}={v:g}" if isinstance(v, float) else f", {k}={v}"
            for k, v in c["changes"]) + ")"
        for own, label in ((True, "own subset"), (False, "other subsets")):
            acc = [a for a, s in zip(c["test_acc"], c["splits"], strict=True)
                   if (s == c["own_split"]) == own]
            if acc:
                fig.add_trace(go.Box(
                    y=acc, x=[f"{what}<br>{label}"] * len(acc),
                    name=label, showlegend=False, boxpoints="all", pointpos=0, boxmean="sd",
                    marker={"color": colour(cell), "opacity": 1.0 if own else 0.6},
                    line={"color": colour(cell)}, hovertemplate="%{y:.4f}<extra></extra>"))
    seeds = len({s for c in report["confirmations"] for s in c["seeds"]})
    others = len({s for c in report["confirmations"] for s in c["splits"]}) - 1
    test_set = report["confirmations"][0]["test_set"] if report["confirmations"] else ""
    fig.update_layout(
        title={"text": f"Each cell's best config, re-trained and scored on the test set<br>"
               f"<sub>{seeds} seeds on the study's own training subset and on each of "
               f"{others} other subsets; test set: {test_set}; box: quartiles, dashed: "
               "mean and sd</sub>"},
        yaxis_title="test accuracy")
    return fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", default="rnnlab.journal")
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--only", choices=list(FIGURES), help="draw this study's figures alone")
    ap.add_argument("--tag", default="", help="with --only: a word added to their names")
    args = ap.parse_args()
    out = Path(args.out)
    for study, figures in FIGURES.items():
        if args.only not in (None, study):
            continue
        try:
            frames = study_frames(args.storage, study, tracking_uri=args.tracking_uri)
        except RnnlabError as exc:  # a later ablation, made in a store of its own
            if args.only:
                raise
            print(f"skipped {study}: {exc}")
            continue
        for name, plot in figures.items():
            path = out / ("-".join(x for x in (study, args.tag, name) if x) + ".png")
            plot(frames).write_image(path, width=1100, height=620)
            print(path)
    report = out / f"{STUDY}.json"
    if args.only is None and report.exists():
        path = out / "cells-test.png"
        confirmations(json.loads(report.read_text())).write_image(path, width=1100,
                                                                   height=560)
        print(path)


if __name__ == "__main__":
    main()
