"""A selection of a searched study whose store is gone, planned from its exported JSON report:
what ``rnnlab select STUDY --top K --seeds N`` would run with the store at hand, among the
trials the report lists (its top trials and each cell's best: a stratum with fewer listed than
K has fewer candidates).

The report gives each listed trial's number, value and params; the study's spec gives the base
config and the strata. From the two, rnnlab's own planner
(:func:`rnnlab.study.selection.planned_selection`: each stratum's top trials, fresh paired
seeds) makes the derived study ``STUDY-select``, rnnlab's sweep runs it (resumable like any
study) into ``--storage`` and the MLflow store of ``$MLFLOW_TRACKING_URI``, and the script
prints each candidate's mean over the fresh seeds and each stratum's choice (validation).

    python docs/results/select_from_report.py studies/tutorial_sweep.yaml \\
        docs/results/tutorial_sweep.json --top 2 --seeds 2 --storage select.journal
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ablate_from_report import read_report, run_planned

from rnnlab.analysis.selection import selection
from rnnlab.core.study_spec import StudySpec, load_study_spec, strata_levels
from rnnlab.engines.select import selection as select_config
from rnnlab.errors import RnnlabError
from rnnlab.study.selection import planned_selection

WHERE = "select_from_report"


def listed(report: dict, spec) -> list[list[tuple[int, float, dict]]]:
    """Each stratum's trials the report lists, ``(number, value, params)``, in the order of
    the spec's strata."""
    rows = {r["number"]: r for r in (*report["top"], *report["per_cell"], report["best"])}
    out = []
    for match in strata_levels(spec):
        mine = [(n, r["value"], r["params"]) for n, r in sorted(rows.items())
                if all(r["params"].get(k) == v for k, v in match.items())]
        if not mine:
            raise RnnlabError(f"the report lists no trial of stratum {match}: report the study "
                              "once its search is done (rnnlab report --format json)")
        out.append(mine)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("spec", type=Path, help="the searched study's spec YAML")
    ap.add_argument("report", type=Path, help="its report, rnnlab report --format json")
    ap.add_argument("--top", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    def plan() -> StudySpec:
        spec = load_study_spec(args.spec)
        return planned_selection(spec, spec.model_dump(mode="json"),
                                 listed(read_report(args.report, spec.study.name), spec),
                                 select_config(args.top, args.seeds))

    derived = run_planned(plan, args.storage, args.workers, WHERE, "selection")
    found = selection(args.storage, derived.study.selection.of, derived.study.direction)
    for row in found.rows:
        values = ", ".join(f"{s}: {v:.4f}" for s, v in zip(row.seeds, row.values, strict=True))
        print(f"{row.stratum}: trial {row.trial} (search {row.search_value:.4f}): mean "
              f"{row.mean:.4f} over seeds {values}" + (" <- chosen" if row.chosen else ""))
    for lead in found.leads:
        interval = ("no interval" if lead.low is None else
                    f"[{lead.low:+.4f}, {lead.high:+.4f}]")
        print(f"{lead.stratum}: trial {lead.chosen} ahead of trial {lead.runner_up} by "
              f"{lead.diff:+.4f} {interval}, paired over {lead.n} seed(s)")


if __name__ == "__main__":
    main()
