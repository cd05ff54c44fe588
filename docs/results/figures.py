"""Draw the figures of docs/results.md as PNG files beside it, from the studies' own stores.

The figures are rnnlab's dashboard figures (the same records as the reports), exported with
Plotly's static export (kaleido, which drives the machine's Chromium; offline), plus one figure
of the test-set confirmations read from the JSON reports in this folder.

    .venv/bin/pip install -e '.[docs]'
    .venv/bin/python docs/results/figures.py --storage rnnlab.journal \\
        --tracking-uri sqlite:///mlflow.db
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import plotly.graph_objects as go

from rnnlab.analysis.frames import study_frames
from rnnlab.dashboards.importances import plot_importances
from rnnlab.dashboards.learning_curves import plot_learning_curves
from rnnlab.dashboards.lr_l2 import plot_lr_l2
from rnnlab.dashboards.normalisation import plot_normalisation

HERE = Path(__file__).resolve().parent
FIGURES = {
    "tutorial_sweep": {"curves": plot_learning_curves, "normalisation": plot_normalisation,
                       "lr_l2": plot_lr_l2, "importances": plot_importances},
    "normalisation_ablation": {"normalisation": plot_normalisation,
                               "curves": plot_learning_curves},
    "tutorial_rnn": {"curves": plot_learning_curves},
    "tutorial_lstm": {"curves": plot_learning_curves},
}
# The confirmed configs compared in one figure: (report, roles to show)
CONFIRMED = ("tutorial_sweep", "tutorial_lstm", "tutorial_rnn")


def confirmations(reports: list[Path]) -> go.Figure:
    """Test accuracy of each confirmed config, one point per seed, with mean and std."""
    fig = go.Figure()
    test_set = ""
    for report in reports:
        data = json.loads(report.read_text())
        for c in data["confirmations"]:
            cell = data["per_cell"][0]["cell"] if len(data["per_cell"]) == 1 else ", ".join(
                r.removeprefix("best ") for r in c["roles"] if r != "best overall")
            name = f"{cell}<br>{data['study']} trial {c['trial']}"
            fig.add_trace(go.Box(y=c["test_acc"], name=name, boxpoints="all", pointpos=0,
                                 boxmean="sd", hovertemplate="%{y:.4f}<extra></extra>"))
            test_set = c["test_set"]
    fig.update_layout(title=f"Each cell's best config re-trained with 3 seeds, scored on the "
                      f"test set ({test_set})", yaxis_title="test accuracy", showlegend=False)
    return fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", default="rnnlab.journal")
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--out", default=str(HERE))
    args = ap.parse_args()
    out = Path(args.out)
    for study, figures in FIGURES.items():
        frames = study_frames(args.storage, study, tracking_uri=args.tracking_uri)
        for name, plot in figures.items():
            path = out / f"{study}-{name}.png"
            plot(frames).write_image(path, width=1100, height=620)
            print(path)
    reports = [out / f"{s}.json" for s in CONFIRMED if (out / f"{s}.json").exists()]
    if reports:
        path = out / "cells-test.png"
        confirmations(reports).write_image(path, width=1100, height=560)
        print(path)


if __name__ == "__main__":
    main()
