"""Trials per hour of a sweep with --workers 1 and --workers 2 on this machine.

The same study (fixed-cost trials: no pruning, a fixed number of epochs, only the seed and
learning rate searched) runs once with one worker (all CPU threads) and once with two worker
processes (threads divided between them); the wall time includes starting the workers.
Target: two workers give at least 1.7x the trials per hour of one.

    python benchmarks/parallel_scaling.py [--trials 12] [--epochs 4]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import optuna
import yaml
from _common import scratch, spec_from

from rnnlab.storage import open_storage
from rnnlab.study import sweep

REPO = Path(__file__).resolve().parents[1]
TARGET = 1.7


def timed_sweep(workers: int, trials: int, epochs: int, folder: Path) -> float:
    raw = yaml.safe_load((REPO / "studies/quickstart.yaml").read_text())
    raw["train"]["epochs"] = epochs
    raw["model"]["cell"] = "gru"
    raw["study"].update(name=f"scaling-{workers}", n_trials=trials,
                        sampler={"name": "random", "seed": 0}, pruner={"name": "none"})
    raw["search"] = {"train.seed": {"low": 0, "high": 10_000},
                     "train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}
    spec = spec_from(raw, folder, f"scaling-{workers}")
    started = time.perf_counter()
    final = sweep(spec, "rnnlab.journal", workers=workers)
    assert final.finished == trials, final
    wall = time.perf_counter() - started
    done = optuna.load_study(study_name=f"scaling-{workers}",
                             storage=open_storage("rnnlab.journal")).get_trials()
    busy = (max(t.datetime_complete for t in done)
            - min(t.datetime_start for t in done)).total_seconds()
    return wall, busy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with scratch() as folder:
        times = {w: timed_sweep(w, args.trials, args.epochs, folder) for w in (1, 2)}
    print(f"{args.trials} trials of {args.epochs} epochs (GRU-64, 28 steps, 2000 samples)")
    print(f"{'workers':>7} {'wall s':>8} {'trials/h (wall)':>16} {'trials/h (running)':>19}")
    for w, (wall, busy) in times.items():
        print(f"{w:>7} {wall:>8.1f} {args.trials / wall * 3600:>16.0f} "
              f"{args.trials / busy * 3600:>19.0f}")
    for label, k in (("wall time, worker start-up included", 0),
                     ("first trial start to last trial end", 1)):
        ratio = times[1][k] / times[2][k]
        print(f"speed-up with 2 workers ({label}): {ratio:.2f}x (target >= {TARGET}x): "
              f"{'PASS' if ratio >= TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()
