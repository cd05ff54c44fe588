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
from pathlib import Path

from rnnlab.core.study_spec import load_study_spec, strata_levels
from rnnlab.engines.ablate import ablation
from rnnlab.engines.local import sweep
from rnnlab.study.ablation import planned_spec


def bests(report: dict, spec) -> list[dict]:
    """The params of each stratum's best trial, in the order of the spec's strata."""
    rows = {r["number"]: r for r in (*report["top"], *report["per_cell"], report["best"])}
    found = [rows[s["best_trial"]]["params"] for s in report["per_stratum"]]
    return [next(p for p in found if all(p.get(k) == v for k, v in match.items()))
            for match in strata_levels(spec)]


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
    spec = load_study_spec(args.spec)
    report = json.loads(args.report.read_text())
    if report["study"] != spec.study.name:
        raise SystemExit(f"{args.report} reports study {report['study']!r}, the spec is "
                         f"{spec.study.name!r}")
    derived = planned_spec(spec, spec.model_dump(mode="json"), bests(report, spec),
                           ablation(args.factor, args.levels, args.seeds), "ablate_from_report")
    final = sweep(derived, args.storage, args.workers)
    print(f"{derived.study.name}: {final.trials_run} trial(s) run here")


if __name__ == "__main__":
    main()
