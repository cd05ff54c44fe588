"""An ablation of a searched study whose store is gone, planned from its exported JSON report:
what ``rnnlab ablate STUDY --factor KEY --levels ...`` would run with the store at hand.

The report (``rnnlab report STUDY --format json``) names each stratum's best trial and the
params it trained with; the study's spec gives the base config and the searched ranges. From
the two, rnnlab's own ablation planner (:func:`rnnlab.study.ablation.planned_spec`: fresh paired
seeds, each best's own level always an arm, the level checks) makes the derived study
``STUDY-ablate-KEY``, and rnnlab's sweep runs it (resumable like any study) into ``--storage``
and the MLflow store of ``$MLFLOW_TRACKING_URI``; ``rnnlab report`` then gives its verdicts.

    python docs/results/ablate_from_report.py studies/tutorial_sweep.yaml \\
        docs/results/tutorial_sweep.json --factor train.l2 --levels 1e-4,1e-3 \\
        --storage sqlite:///l2.db --workers 2
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from rnnlab.core.study_spec import StudySpec, load_study_spec, strata_levels, stratum_name
from rnnlab.engines.ablate import ablation
from rnnlab.engines.local import sweep
from rnnlab.errors import RnnlabError
from rnnlab.study.ablation import planned_spec

WHERE = "ablate_from_report"


def read_report(path: Path, study: str) -> dict:
    """The JSON report at ``path``, which must be one of ``study``."""
    try:
        report = json.loads(path.read_text())
        for key in ("best", "top", "per_cell", "per_stratum"):
            report[key]  # noqa: B018 (a report has them all)
        if report["study"] == study:
            return report
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RnnlabError(f"{path} is not a JSON report ({type(exc).__name__}: {exc}); write "
                          "one with rnnlab report STUDY --format json --out FILE") from None
    raise RnnlabError(f"{path} reports study {report['study']!r}, not the spec's {study!r}: "
                      "give the JSON report of the spec's study")


def bests(report: dict, spec) -> list[dict]:
    """The params of each stratum's best trial, in the order of the spec's strata: the trial
    its selection chose on fresh seeds where the report has one (rnnlab select)."""
    rows = {r["number"]: r for r in (*report["top"], *report["per_cell"], report["best"])}
    chosen = {r["stratum"]: r["trial"] for r in selection(report)["rows"] if r["chosen"]}
    if chosen:
        report = {**report, "per_stratum": [{**s, "best_trial": chosen[s["name"]]}
                                            for s in report["per_stratum"]]}
    if missing := [s["name"] for s in report["per_stratum"] if s["best_trial"] not in rows]:
        # the report lists the top trials and each cell's best: strata on another key can
        # have a best below them
        raise RnnlabError(f"the report lists no params for the best trial of {missing}; plan "
                          "this ablation from the study's store (rnnlab ablate)")
    # the report names its strata as rnnlab does (model.cell=gru)
    best_of = {s["name"]: rows[s["best_trial"]]["params"] for s in report["per_stratum"]}
    matched = []
    for match in strata_levels(spec):
        if (params := best_of.get(stratum_name(match))) is None:
            raise RnnlabError(f"the report has no best trial for stratum {match}: report the "
                              "study once its search is done (rnnlab report --format json)")
        matched.append(params)
    return matched


def selection(report: dict) -> dict:
    """The report's selection once done (its chosen rows and seeds), else none."""
    found = report.get("selection") or {}
    return found if found.get("done") else {"rows": [], "seeds": 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("spec", type=Path, help="the searched study's spec YAML")
    ap.add_argument("report", type=Path, help="its report, rnnlab report --format json")
    ap.add_argument("--factor", required=True)
    ap.add_argument("--levels")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    def plan() -> StudySpec:
        spec = load_study_spec(args.spec)
        report = read_report(args.report, spec.study.name)
        # the ablation's seeds come after the selection's, as rnnlab ablate plans them
        return planned_spec(spec, spec.model_dump(mode="json"), bests(report, spec),
                            ablation(args.factor, args.levels, args.seeds), WHERE,
                            after=selection(report)["seeds"])

    run_planned(plan, args.storage, args.workers, WHERE, "ablation")


def run_planned(plan: Callable[[], StudySpec], storage: str, workers: int, where: str,
                what: str) -> StudySpec:
    """Plan a derived study (``what``: ablation, selection) and run it with rnnlab's sweep into
    ``storage``, as a script does: a user's mistake is one line and exit code 2, Ctrl-C exit
    code 130 (the same command resumes it). Returns the derived study's spec."""
    try:
        derived = plan()
        final = sweep(derived, storage, workers)
    except RnnlabError as exc:
        print(f"{where}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{where}: interrupted; the same command resumes the {what}", file=sys.stderr)
        sys.exit(130)
    print(f"{derived.study.name}: {final.trials_run} trial(s) run here")
    return derived


if __name__ == "__main__":
    main()
