"""What the study machinery costs per trial as a study grows to 10,000 trials, with 1 to 64
workers sharing a journal file, SQLite or PostgreSQL.

The workers are rnnlab's own (``rnnlab.engines.local.sweep``: worker processes, claims under the
study's lock, heartbeats, strata, the spec's sampler and pruner, an MLflow run per trial with
its per-epoch metrics); only the model is replaced by an instant objective
(benchmarks/_instant.py), so what a trial costs is the machinery alone. The study is
studies/quickstart.yaml's (TPE, median pruner, strata on the cell, 6 epochs). To reach a size,
the study is grown with finished trials written directly (params, curves, config, their MLflow
runs in bulk: benchmarks/_synth.py), then ``--window`` more trials are run by 1, then 4, ...
workers and timed, phase by phase:

- claim: the study's lock (``wait`` for it, ``held``: what every other worker's claim waits
  for meanwhile), reaping, the stratum's turn, ``study.ask``, the first heartbeat;
- sample: the trial's config drawn from the search space (TPE's model is fitted here);
- report: each epoch's report and the pruner's verdict;
- tracking: the trial's MLflow run (params, per-epoch metrics, outcome, closing);
- tell: the study told;
- sampler: of the above, what the sampler itself spent (in claim and sample).

A trial's overhead is the wall time of all of it in its worker, over the trials that began once
every worker had joined the study (joining, from a worker's start to its first claim, is
``join s``: it reads the whole study once, and takes CPU from the workers already running);
CPU is the worker process's CPU time for it (the database server's is not counted). Each
number of workers runs at least 8 trials a worker, so that most of them are in that steady
state. With more workers than CPUs, workers wait
for a CPU as much as for each other: the wall time per trial then says more about this machine
than about the machinery, and CPU per trial and trials/s (the window's trials over the time
from its first claim to its last tell) are the figures that carry to a cluster.

The journal and SQLite cases track into an MLflow SQLite file, as one machine does. The
PostgreSQL case is a deployment's topology: a PostgreSQL cluster of its own (started here, in a
temporary folder, with max_connections raised for 64 workers and fsync off) holds the study,
and an MLflow server (2 worker processes) on a database of the same cluster takes every run.

    python benchmarks/study_machinery.py [--storages journal sqlite postgresql]
        [--workers 1 4 16 64] [--sizes 1000 3000 10000] [--window 64] [--sampler tpe]
        [--sampler-window N [N ...]]

Goal (issue 24): under 100 ms of overhead per trial at 10,000 trials with TPE on PostgreSQL with
16 workers, growing no worse than linearly with the trials already in the study.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import yaml
from _common import spec_from
from _instant import PHASES, TIMINGS_ENV, work_here, work_instant
from _synth import SynthRun, bulk_runs, distributions, draw_params
from optuna.trial import TrialState, create_trial

from rnnlab.core.spec import RunConfig, apply_overrides, flatten, validate
from rnnlab.core.study_spec import StudySpec
from rnnlab.engines import local
from rnnlab.storage.keys import (
    ATTR_PARENT,
    ATTR_SPEC,
    TRIAL_CONFIG,
    TRIAL_RUN_ID,
    TRIAL_WORKER,
)
from rnnlab.study.parent import open_study
from rnnlab.tracking.tracker import PARENT_TAG, Tracker

REPO = Path(__file__).resolve().parents[1]
NAME = "machinery"
# Each worker holds up to 3 connections at once (its storage calls, the study's lock during a
# claim, its heartbeat thread): 64 workers need more than PostgreSQL's default of 100.
MAX_CONNECTIONS = 400
GOAL_S = 0.100


@contextlib.contextmanager
def stores(kind: str, folder: Path) -> Iterator[tuple[str, str, str]]:
    """(Optuna storage, MLflow tracking URI, MLflow's database) of a fresh study of ``kind``.
    PostgreSQL: a cluster of its own (tests/servers.py), with room for 64 workers'
    connections, and an MLflow server on a database of it, as a deployment shares one server
    between many machines (docker-compose.yml)."""
    if kind == "journal":
        yield str(folder / "rnnlab.journal"), *[f"sqlite:///{folder / 'mlflow.db'}"] * 2
        return
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'optuna.db'}", *[f"sqlite:///{folder / 'mlflow.db'}"] * 2
        return
    sys.path.insert(0, str(REPO / "tests"))
    from servers import MlflowServer, PrivatePostgres

    cluster = PrivatePostgres({"max_connections": MAX_CONNECTIONS})
    server = None
    try:
        backend = cluster.url("mlflow")
        server = MlflowServer(backend, folder, workers=2)
        yield cluster.url("optuna"), server.uri, backend
    finally:
        if server is not None:
            server.stop()
        cluster.close()


def spec_for(budget: int, sampler: str, folder: Path, window: int | None = None) -> StudySpec:
    raw = yaml.safe_load((REPO / "studies" / "quickstart.yaml").read_text())
    raw["study"].update(name=NAME, n_trials=budget)
    raw["study"]["sampler"].update(name=sampler, window=window)
    return spec_from(raw, folder, NAME)


def grow(study: optuna.Study, storage: str, spec: StudySpec, tracker: Tracker, backend: str,
         size: int, rng: np.random.Generator) -> None:
    """Add finished trials (and their MLflow runs) until the study holds ``size``, the strata
    kept balanced: what ``size`` trials of past work leave in both stores. On a database
    server they go through Optuna's own storage: rnnlab's makes each creation safe to repeat
    through an outage by finding it again among all the study's trials, which for 10,000
    trials added in a row is minutes."""
    have = len(study.get_trials(deepcopy=False))
    if have >= size:
        return
    dists = distributions(spec)
    cells = spec.search["model.cell"].choices
    parent = study.user_attrs[ATTR_PARENT]
    drawn = []
    for number in range(have, size):
        params = draw_params(dists, rng) | {"model.cell": cells[number % len(cells)]}
        config = flatten(validate(RunConfig, apply_overrides(spec.base.model_dump(), params),
                                  "synth"))
        epochs = spec.train.epochs if rng.uniform() < 0.7 else int(rng.integers(3, 6))
        ceiling = rng.uniform(0.3, 0.98)
        curve = [ceiling * (1 - 0.5 ** e) for e in range(1, epochs + 1)]
        drawn.append((number, params, config, curve))
    ids = bulk_runs(backend, tracker.experiment_id(NAME), (SynthRun(
        name=f"trial-{n}", params={k: str(v) for k, v in config.items()},
        tags={PARENT_TAG: parent, "rnnlab.kind": "trial", "rnnlab.study": NAME,
              "rnnlab.trial_number": str(n)},
        metrics={"val_acc": curve, "best_val_acc": list(np.maximum.accumulate(curve))})
        for n, _, config, curve in drawn))
    direct = (optuna.load_study(study_name=NAME, storage=optuna.storages.RDBStorage(storage))
              if storage.startswith("postgresql") else study)
    direct.add_trials([create_trial(
        params=params, distributions=dists,
        state=TrialState.COMPLETE if len(curve) == spec.train.epochs else TrialState.PRUNED,
        value=max(curve) if len(curve) == spec.train.epochs else None,
        intermediate_values={e: v for e, v in enumerate(curve, start=1)},
        user_attrs={TRIAL_RUN_ID: run_id, TRIAL_CONFIG: config, TRIAL_WORKER: "synth:0"})
        for (_, params, config, curve), run_id in zip(drawn, ids, strict=True)])


def timed_window(spec: StudySpec, storage: str, workers: int, folder: Path) -> list[dict]:
    """Run the study's remaining budget with ``workers`` instant workers; each trial's record."""
    timings = folder / f"timings-{time.monotonic_ns()}"
    timings.mkdir()
    os.environ[TIMINGS_ENV] = str(timings)
    local.work_process, local.work = work_instant, work_here  # the model, made instant
    local.sweep(spec, storage, workers=workers)
    return [r for f in timings.glob("*.json") for r in json.loads(f.read_text())]


def summary(records: list[dict]) -> dict:
    """Means over the window's trials that began once every worker had joined (each worker's
    first claim: joining the study, from its process's start to that claim, is timed apart as
    ``join``, and a worker still joining takes CPU from those already running); trials/s over
    those trials too, from the first's claim to the last's tell."""
    joins = [r["join"] for r in records if "join" in r]
    joined = max((r["start"] for r in records if "join" in r), default=0.0)
    steady = ([r for r in records if r["start"] > joined]
              or [r for r in records if "join" not in r] or records)
    wall = max(r["end"] for r in steady) - min(r["start"] for r in steady)
    total = [r["total"] for r in steady]
    out = {"trials": len(steady), "mean": statistics.fmean(total),
           "p90": float(np.quantile(total, 0.9)), "per_s": len(steady) / wall,
           "join": statistics.fmean(joins) if joins else 0.0}
    for phase in PHASES:
        out[phase] = statistics.fmean(r.get(phase, 0.0) for r in steady)
    return out


def run_case(kind: str, workers: list[int], sizes: list[int], window: int, sampler: str,
             sampler_windows: list[int | None], print_row) -> None:
    """One study on ``kind`` of storage, grown to each size in turn; at each, a window of
    trials timed with each number of workers and each of the sampler's windows."""
    with tempfile.TemporaryDirectory(prefix="rnnlab-machinery-") as tmp, stores(
            kind, Path(tmp)) as (storage, uri, backend):
        folder = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = uri
        tracker = Tracker(uri)
        rng = np.random.default_rng(0)
        for size in sizes:
            spec = spec_for(size, sampler, folder)
            study = open_study(spec, storage, tracker)
            started = time.perf_counter()
            grow(study, storage, spec, tracker, backend, size, rng)
            grown = time.perf_counter() - started
            for sampler_window in sampler_windows:
                for n in workers:
                    budget = len(study.get_trials(deepcopy=False)) + max(window, 8 * n)
                    timed = spec_for(budget, sampler, folder, sampler_window)
                    # the same study, its sampler's window changed (a change rnnlab refuses
                    # on resume, as one that alters results): stored as the study's spec
                    study.set_user_attr(ATTR_SPEC, timed.model_dump(mode="json"))
                    records = timed_window(timed, storage, n, folder)
                    print_row(kind, n, size, sampler_window, summary(records), grown)
                    grown = 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storages", nargs="+", default=["journal", "sqlite", "postgresql"],
                    choices=["journal", "sqlite", "postgresql"])
    ap.add_argument("--workers", nargs="+", type=int, default=[1, 4, 16, 64])
    ap.add_argument("--sizes", nargs="+", type=int, default=[1000, 3000, 10_000])
    ap.add_argument("--window", type=int, default=64,
                    help="trials run at each size and number of workers (at least 8 per "
                         "worker)")
    ap.add_argument("--sampler", default="tpe", choices=["tpe", "random", "gp"])
    ap.add_argument("--sampler-window", type=int, nargs="+", default=[0],
                    help="study.sampler.window: model the N most recent trials of each stratum "
                         "and the best 25 of the others (0: all trials); several: each in turn")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sys.stdout.reconfigure(line_buffering=True)
    # stopped (timeout, kill): the PostgreSQL cluster and MLflow server it started go too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    print(f"sampler {args.sampler} (window: the trials it models, each stratum's most recent; "
          "all: no window); times are per trial, in ms (means; p90 of the "
          "overhead); trials: in the study when the timed ones began; timed: the trials that "
          "began once every worker had joined")
    print(f"{'storage':<10} {'workers':>7} {'trials':>7} {'window':>6} {'overhead':>9} "
          f"{'p90':>7} {'CPU':>6} "
          f"{'claim':>7} {'wait':>7} {'held':>6} {'sampler':>7} {'sample':>7} {'report':>7} "
          f"{'tracking':>8} {'tell':>6} {'trials/s':>8} {'timed':>5} {'join s':>6} {'grow s':>7}")

    def row(kind: str, workers: int, size: int, window: int | None, s: dict,
            grown: float) -> None:
        ms = {k: s[k] * 1000 for k in ("mean", "p90", *PHASES)}
        print(f"{kind:<10} {workers:>7} {size:>7} {window or 'all':>6} {ms['mean']:>9.1f} "
              f"{ms['p90']:>7.1f} "
              f"{ms['cpu']:>6.1f} "
              f"{ms['claim']:>7.1f} {ms['wait']:>7.1f} {ms['held']:>6.1f} "
              f"{ms['sampler']:>7.1f} {ms['sample']:>7.1f} "
              f"{ms['report']:>7.1f} {ms['tracking']:>8.1f} {ms['tell']:>6.1f} "
              f"{s['per_s']:>8.1f} {s['trials']:>5} {s['join']:>6.1f} {grown:>7.1f}")

    for kind in args.storages:
        run_case(kind, args.workers, sorted(args.sizes), args.window, args.sampler,
                 [w or None for w in args.sampler_window], row)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; "
          f"goal: < {GOAL_S * 1000:.0f} ms overhead per trial at 10,000 trials, TPE, "
          "PostgreSQL, 16 workers")


if __name__ == "__main__":
    main()
