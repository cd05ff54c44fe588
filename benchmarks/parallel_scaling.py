"""Trials per hour of a sweep with --workers 1 and --workers 2 on this machine.

The quickstart study at its own budget (24 trials of 6 epochs, GRU-64) runs once with one worker
(all CPU threads) and once with two worker processes (threads divided between them). Its trials
are made to cost the same in both runs: the cell is fixed, pruning is off and only the seed and
learning rate are searched. Trials per hour are counted over the whole sweep call (starting the
workers included) and, for the rate once running, from the first trial's start to the last
trial's end. Each sweep runs in a fresh process and folder, so each pays for starting its
worker processes and creating its stores. Target: two workers give at least 1.7x the trials
per hour of one.

    python benchmarks/parallel_scaling.py [--trials 24] [--epochs 6]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml
from _common import scratch, spec_from

from rnnlab.engines.local import sweep
from rnnlab.storage.adapter import open_storage

REPO = Path(__file__).resolve().parents[1]
TARGET = 1.7


def timed_sweep(workers: int, trials: int, epochs: int, folder: Path) -> list[float]:
    """Wall time of the sweep call, first start to last end of its trials, and the time to
    the first trial's start, in seconds."""
    raw = yaml.safe_load((REPO / "studies/quickstart.yaml").read_text())
    raw["train"]["epochs"] = epochs
    raw["model"]["cell"] = "gru"
    raw["study"].update(name=f"scaling-{workers}", n_trials=trials,
                        sampler={"name": "random", "seed": 0}, pruner={"name": "none"})
    raw["search"] = {"train.seed": {"low": 0, "high": 10_000},
                     "train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}
    spec = spec_from(raw, folder, f"scaling-{workers}")
    started, clock = time.perf_counter(), time.time()
    final = sweep(spec, "rnnlab.journal", workers=workers)
    assert final.finished == trials, final
    wall = time.perf_counter() - started
    done = optuna.load_study(study_name=f"scaling-{workers}",
                             storage=open_storage("rnnlab.journal")).get_trials()
    first = min(t.datetime_start for t in done)
    busy = (max(t.datetime_complete for t in done) - first).total_seconds()
    return [wall, busy, first.timestamp() - clock]


def in_fresh_process(workers: int, args: argparse.Namespace) -> list[float]:
    out = subprocess.run(
        [sys.executable, __file__, "--trials", str(args.trials), "--epochs", str(args.epochs),
         "--one", str(workers)], check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # one sweep, in this process
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.one:
        with scratch() as folder:
            print(json.dumps(timed_sweep(args.one, args.trials, args.epochs, folder)))
        return
    times = {w: in_fresh_process(w, args) for w in (1, 2)}
    print(f"{args.trials} trials of {args.epochs} epochs (GRU-64, 28 steps, 2000 samples)")
    print(f"{'workers':>7} {'wall s':>8} {'to 1st trial s':>15} {'trials/h (wall)':>16} "
          f"{'trials/h (running)':>19}")
    for w, (wall, busy, startup) in times.items():
        print(f"{w:>7} {wall:>8.1f} {startup:>15.1f} {args.trials / wall * 3600:>16.0f} "
              f"{args.trials / busy * 3600:>19.0f}")
    for label, k in (("wall time, worker start-up included", 0),
                     ("first trial start to last trial end", 1)):
        ratio = times[1][k] / times[2][k]
        print(f"speed-up with 2 workers ({label}): {ratio:.2f}x (target >= {TARGET}x): "
              f"{'PASS' if ratio >= TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()
