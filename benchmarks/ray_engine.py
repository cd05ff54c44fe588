"""Trials per hour of the same small study with local worker processes and with ``--ray local``.

The study: 6 trials of 2 epochs of an 8-unit GRU on 200 mnist-5k images (offline), pruning off,
the learning rate and seed searched, so every trial costs the same. Each way runs ``rnnlab sweep``
in a fresh process and folder with 2 workers (1 thread each), so each pays what a user pays:
importing, starting its workers (forked from a server; or Ray's cluster and worker processes)
and creating its stores. Printed: trials per hour over the whole command, and once running
(first trial's start to last trial's end), for each way, and Ray's as a ratio of the local one:
what the engine costs on one machine.

    python benchmarks/ray_engine.py [--trials 6] [--epochs 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import optuna
from _common import scratch, spec_from

from rnnlab.study.storage import open_storage

SPEC = {
    "data": {"source": "mnist-5k", "train_size": 200, "val_size": 100, "patch": 28},
    "model": {"hidden": 8, "cell": "gru"},
    "train": {"epochs": 2, "lr": 3e-3, "threads": 1, "device": "auto"},
    "study": {"name": "engines", "n_trials": 6, "sampler": {"name": "random", "seed": 0},
              "pruner": {"name": "none"}},
    "search": {"train.seed": {"low": 0, "high": 10_000},
               "train.lr": {"low": 1e-3, "high": 1e-2, "log": True}},
}
WAYS = {"local workers": [], "--ray local": ["--ray", "local"]}


def timed(way: list[str], trials: int, epochs: int) -> tuple[float, float]:
    """Seconds of the whole ``rnnlab sweep`` command, and from its first trial's start to its
    last trial's end."""
    with scratch() as folder:
        raw = {**SPEC, "train": {**SPEC["train"], "epochs": epochs},
               "study": {**SPEC["study"], "n_trials": trials}}
        spec_from(raw, folder, "engines")
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rnnlab", "sweep", "engines.yaml", "--workers",
                        "2", *way], check=True, capture_output=True, text=True,
                       env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
        wall = time.perf_counter() - started
        done = optuna.load_study(study_name="engines",
                                 storage=open_storage("rnnlab.journal")).get_trials()
        assert len(done) == trials and all(t.state.name == "COMPLETE" for t in done), done
        busy = (max(t.datetime_complete for t in done)
                - min(t.datetime_start for t in done)).total_seconds()
    return wall, busy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    rates = {}
    for name, way in WAYS.items():
        runs = [timed(way, args.trials, args.epochs) for _ in range(args.repeats)]
        wall, busy = (statistics.median(r[i] for r in runs) for i in (0, 1))
        rates[name] = (3600 * args.trials / wall, 3600 * args.trials / busy)
        print(f"{name:14s} {args.trials} trials in {wall:5.1f} s: {rates[name][0]:6.0f} "
              f"trials/h over the command, {rates[name][1]:6.0f} once running "
              f"({busy:.1f} s)", flush=True)
    ray, local = rates["--ray local"], rates["local workers"]
    print(f"--ray local / local workers: {ray[0] / local[0]:.2f} over the command, "
          f"{ray[1] / local[1]:.2f} once running")


if __name__ == "__main__":
    main()
