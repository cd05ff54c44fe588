"""Pruner settings replayed on a study's complete trials: what each would have cut.

The replay `rnnlab report` shows for the study's own pruner (rnnlab.analysis.pruning), for any
settings you give: each complete trial judged, epoch by epoch, against every other complete
trial of its stratum, as the pruner would judge it had it run last. Run it on an unpruned study
(an ablation, a grid) to see what a pruner would do to configs that all ran to the end.

    python docs/results/replay_pruner.py lstm_lr_grid --storage sqlite:///grid.db \\
        '{"name": "median", "n_startup_trials": 3, "n_warmup_steps": 5}' \\
        '{"name": "median", "n_startup_trials": 3, "n_warmup_steps": 5, "patience": 5,
          "min_delta": 0.01}'

Prints, per settings and stratum: the trials cut (of the complete ones), the epochs they would
not have trained, the epoch of the earliest cut, and whether (and when) the best is cut.
"""

from __future__ import annotations

import argparse
import json
import sys

import optuna

from rnnlab.analysis.frames import study_frames
from rnnlab.analysis.pruning import replay, trial_epochs
from rnnlab.core.spec import validate
from rnnlab.core.study_spec import PrunerConfig
from rnnlab.errors import RnnlabError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study")
    parser.add_argument("settings", nargs="+", help="a pruner's settings as JSON, as in a spec")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--tracking-uri", default=None)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        pruners = [validate(PrunerConfig, json.loads(s), f"settings {s!r}").model_dump(
            mode="json") for s in args.settings]
        frames = study_frames(args.storage, args.study, tracking_uri=args.tracking_uri,
                              curves=False)
    except (ValueError, RnnlabError) as exc:
        print(f"replay_pruner: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    epochs = trial_epochs(frames)
    print("| settings | stratum | complete | cut | epochs not trained | earliest cut | best cut |")
    print("|---|---|---|---|---|---|---|")
    for pruner in pruners:
        got = replay(frames.steps, frames.trials, pruner, frames.direction, args.study, epochs)
        if got is None:
            print(f"| {pruner['name']} | - | - | not replayed (median and percentile only) "
                  "| - | - | - |")
            continue
        for s in got.strata:
            saved = sum(epochs.get(c.number, c.step) - c.step for c in s.cuts)
            first = min((c.step for c in s.cuts), default=None)
            best = "no" if s.best_cut is None else (
                f"at epoch {s.best_cut.step} (kept from warm-up {s.keeps_best_from})")
            print(f"| {got.pruner}: {got.settings} | {s.name or 'all'} | {s.complete} | "
                  f"{len(s.cuts)} | {saved} | {first or '-'} | {best} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
