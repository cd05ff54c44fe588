"""What ``rnnlab delete`` costs for a study of 1,000 to 10,000 trials: planning (the study read,
its MLflow runs found), the runs soft-deleted (MLflow's own delete, one call a run), the study
deleted, on a journal file with MLflow's SQLite store (one machine) or PostgreSQL with an MLflow
server (a deployment's topology; benchmarks/study_machinery.py says how it is started).

The study is grown as benchmarks/study_machinery.py grows it: finished trials of
studies/quickstart.yaml and their MLflow runs written in bulk (each run 6 epochs of 2 metrics).

    python benchmarks/delete_scale.py [--storages journal postgresql] [--sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from study_machinery import grow, spec_for, stores

from rnnlab.study.parent import open_study
from rnnlab.study.removal import delete, plan_deletion
from rnnlab.tracking.store import RunReader
from rnnlab.tracking.tracker import Tracker


def one(kind: str, size: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="rnnlab-delete-") as tmp, stores(
            kind, Path(tmp)) as (storage, uri, backend):
        os.environ["MLFLOW_TRACKING_URI"] = uri
        tracker = Tracker(uri)
        spec = spec_for(size, "tpe", Path(tmp))
        grow(open_study(spec, storage, tracker), storage, spec, tracker, backend, size,
             np.random.default_rng(0))
        reader = RunReader(uri)
        started = time.perf_counter()
        plan = plan_deletion(storage, spec.study.name, reader)
        planned = time.perf_counter()
        delete(storage, plan, reader)
        done = time.perf_counter()
        return {"storage": kind, "trials": plan.trials, "runs": len(plan.runs),
                "plan_s": planned - started, "delete_s": done - planned,
                "ms_per_run": 1000 * (done - planned) / len(plan.runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storages", nargs="+", default=["journal", "postgresql"],
                        choices=["journal", "sqlite", "postgresql"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 10000])
    args = parser.parse_args()
    print("| storage | trials | MLflow runs | plan s | delete s | ms per run |")
    print("|---|---|---|---|---|---|")
    for kind in args.storages:
        for size in args.sizes:
            r = one(kind, size)
            print(f"| {r['storage']} | {r['trials']} | {r['runs']} | {r['plan_s']:.1f} | "
                  f"{r['delete_s']:.1f} | {r['ms_per_run']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
