"""Trials per hour of the same small study on each engine that launches rnnlab's workers.

One study (6 trials of 2 epochs, GRU/RNN-16 on 800 mnist-5k images, offline) runs to its budget
once per engine and repeat, each time in a fresh PostgreSQL database (the study) and a fresh
MLflow SQLite file (an absolute path, as compute nodes need), with the same number of workers:

- ``local``: ``rnnlab sweep SPEC --workers N`` on this machine;
- ``slurm``: ``rnnlab slurm SPEC --array N`` on a single-node Slurm this script starts (as root;
  ``tests/slurm_cluster.py``: munged, slurmctld, slurmd), from submission to the job's end;
- ``ray``: ``rnnlab sweep SPEC --ray local --workers N``: a throwaway Ray cluster on this machine
  started by the command (the ``ray`` extra), its workers Ray tasks.

Each run is timed from the command's start (a fresh process) to the study's last trial: starting
the engine's processes is part of the price, starting the Slurm daemons is not (a cluster is
already up). Printed per engine: wall time, trials per hour, the wait before the first trial
started, and the ratio of trials per hour to local workers', so an engine's overhead is a
measured ratio. Engines and repeats are interleaved, so a busy machine weighs on all alike.

    python benchmarks/engines.py [--engines local,slurm,ray] [--trials 6] [--epochs 2]
        [--workers 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import psycopg2
import yaml
from _common import REPO, scratch

sys.path.insert(0, str(REPO / "tests"))
from slurm_cluster import LocalSlurm, SlurmUnavailable  # noqa: E402 - the tests' own cluster

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
SPEC = {
    "data": {"source": "mnist-5k", "train_size": 800, "val_size": 200, "patch": 28},
    "model": {"hidden": 16},
    "train": {"epochs": 2, "threads": 1, "device": "cpu"},
    "study": {"name": "engines", "n_trials": 6, "sampler": {"name": "random", "seed": 0},
              "pruner": {"name": "none"}},
    "search": {"model.cell": {"choices": ["rnn", "gru"]},
               "train.lr": {"low": 1e-3, "high": 1e-2, "log": True}},
}
TIMEOUT_S = 3600


@dataclass
class Run:
    engine: str
    wall_s: float
    first_s: float  # from the command's start to the first trial's start
    trials: int


def rnnlab(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "rnnlab", *args], capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    if done.returncode != 0:
        raise SystemExit(f"rnnlab {args[0]} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done


def run_local(spec: Path, storage: str, workers: int, _: object) -> None:
    rnnlab("sweep", str(spec), "--workers", str(workers), "--storage", storage)


def run_slurm(spec: Path, storage: str, workers: int, cluster: LocalSlurm) -> None:
    os.environ["SLURM_CONF"] = cluster.env()["SLURM_CONF"]
    out = rnnlab("slurm", str(spec), "--array", str(workers), "--storage", storage).stdout
    job = re.search(r"submitted job (\d+)", out)[1]
    tasks = cluster.wait(job, TIMEOUT_S)
    if any(state != ("COMPLETED", "0:0") for state in tasks.values()):
        raise SystemExit(f"Slurm job {job} ended {tasks}:\n" + "\n".join(
            p.read_text()[-2000:] for p in Path("slurm").glob("*.out")))


def run_ray(spec: Path, storage: str, workers: int, _: object) -> None:
    rnnlab("sweep", str(spec), "--ray", "local", "--workers", str(workers), "--storage", storage)


# An engine: (spec, storage, workers, what its setup() gave) -> None once the study is done.
ENGINES: dict[str, Callable[[Path, str, int, object], None]] = {
    "local": run_local,
    "slurm": run_slurm,
    "ray": run_ray,
}


@contextlib.contextmanager
def setup(engine: str) -> Iterator[object]:
    """What an engine needs up before it is timed (a cluster); stopped afterwards."""
    if engine != "slurm":
        yield None
        return
    try:
        cluster = LocalSlurm()
    except SlurmUnavailable as exc:
        raise SystemExit(f"slurm: cannot run here: {exc}") from None
    try:
        yield cluster
    finally:
        cluster.close()


@contextlib.contextmanager
def database() -> Iterator[str]:
    """A fresh database on the PostgreSQL at 127.0.0.1:5432, dropped afterwards."""
    name = f"rnnlab_bench_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(dbname="postgres", **PG)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def timed(engine: str, raw: dict, workers: int, ready: object) -> Run:
    with scratch() as folder, database() as storage:
        spec = folder / "engines.yaml"
        spec.write_text(yaml.safe_dump(raw))
        start, t0 = time.time(), time.perf_counter()
        ENGINES[engine](spec, storage, workers, ready)
        wall = time.perf_counter() - t0
        trials = optuna.load_study(study_name=raw["study"]["name"], storage=storage).trials
        finished = [t for t in trials if t.state.is_finished() and t.state.name != "FAIL"]
        if len(finished) != raw["study"]["n_trials"]:
            raise SystemExit(f"{engine}: {len(finished)} trials finished, not "
                             f"{raw['study']['n_trials']}")
        first = min(t.datetime_start.timestamp() for t in trials) - start
        return Run(engine, wall, first, len(finished))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engines", default="local,slurm,ray",
                    help=f"comma-separated, of {', '.join(ENGINES)}")
    ap.add_argument("--trials", type=int, default=SPEC["study"]["n_trials"])
    ap.add_argument("--epochs", type=int, default=SPEC["train"]["epochs"])
    ap.add_argument("--workers", type=int, default=2, help="workers (array tasks) per engine")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    engines = args.engines.split(",")
    if unknown := [e for e in engines if e not in ENGINES]:
        ap.error(f"unknown engine(s) {unknown}; available: {', '.join(ENGINES)}")
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["study"]["n_trials"], raw["train"]["epochs"] = args.trials, args.epochs
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    runs: list[Run] = []
    with contextlib.ExitStack() as stack:
        ready = {e: stack.enter_context(setup(e)) for e in engines}
        for repeat in range(args.repeats):
            for engine in engines:
                runs.append(timed(engine, raw, args.workers, ready[engine]))
                r = runs[-1]
                print(f"[{repeat + 1}/{args.repeats}] {engine}: {r.wall_s:.1f} s, first trial "
                      f"after {r.first_s:.1f} s", flush=True)
    rate = {e: statistics.median(r.trials / r.wall_s * 3600 for r in runs if r.engine == e)
            for e in engines}
    print(f"\n{args.trials} trials x {args.epochs} epochs, {args.workers} workers, median of "
          f"{args.repeats}, on {os.cpu_count()} CPUs")
    print(f"{'engine':8} {'wall s':>8} {'trials/h':>9} {'first trial s':>14} {'vs local':>9}")
    for e in engines:
        mine = [r for r in runs if r.engine == e]
        ratio = f"{rate[e] / rate['local']:.2f}x" if "local" in rate else "-"
        print(f"{e:8} {statistics.median(r.wall_s for r in mine):8.1f} {rate[e]:9.0f} "
              f"{statistics.median(r.first_s for r in mine):14.1f} {ratio:>9}")


if __name__ == "__main__":
    main()
