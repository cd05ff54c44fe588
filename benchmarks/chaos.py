"""Chaos check: kill and interrupt workers as people and machines do, then check the study.

Two ``rnnlab worker`` processes share a study (journal storage, MLflow's SQLite store). Three
times, at a random moment, one of them is SIGKILLed and restarted; then both get SIGINT (Ctrl-C
in their terminal) and the study is resumed with ``rnnlab sweep --workers 2``. Afterwards:

- exactly ``n_trials`` finished trials (complete or pruned), nothing RUNNING in Optuna;
- nothing RUNNING in MLflow, the study's run included;
- every finished trial has its MLflow run, FINISHED, with one continuous curve (epochs 1..k,
  k = the epochs it reported to Optuna).

    python benchmarks/chaos.py [--trials 12] [--epochs 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml
from _common import scratch
from mlflow.tracking import MlflowClient

from rnnlab.study.storage import open_storage


def start_worker(spec: Path, log: Path) -> subprocess.Popen:
    with open(log, "a") as fh:
        return subprocess.Popen([sys.executable, "-m", "rnnlab", "worker", str(spec)],
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def busy_worker(folder: Path, workers: list[subprocess.Popen], rng: random.Random) -> int:
    """The index of a worker that is in the middle of a trial (waits until one is)."""
    while True:
        journal = folder / "rnnlab.journal"
        if journal.exists():
            try:
                study = optuna.load_study(study_name="chaos", storage=open_storage(str(journal)))
                running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
            except KeyError:
                running = []
            pids = {int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in running
                    if t.intermediate_values and "worker" in t.user_attrs}
            busy = [i for i, w in enumerate(workers) if w.pid in pids]
            if busy:
                return rng.choice(busy)
        if all(w.poll() is not None for w in workers):  # else this would wait forever
            raise SystemExit("the workers finished the study before every kill landed; give "
                             "more --trials or --epochs")
        time.sleep(0.2)


def write_spec(folder: Path, trials: int, epochs: int, seed: int) -> Path:
    path = folder / "chaos.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"source": "mnist-5k", "train_size": 400, "val_size": 200, "patch": 28},
        "model": {"hidden": 16},
        "train": {"epochs": epochs, "checkpoint_every": 1, "threads": 1},
        "study": {"name": "chaos", "n_trials": trials, "heartbeat_interval": 0.5,
                  "grace_period": 4, "max_retries": 3,
                  "sampler": {"name": "tpe", "seed": seed, "n_startup_trials": 4},
                  "pruner": {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 2}},
        "search": {"model.cell": {"choices": ["rnn", "gru", "lstm"]},
                   "train.lr": {"low": 1e-3, "high": 3e-2, "log": True}},
    }))
    return path


def check(folder: Path, trials: int) -> dict[str, int]:
    """Check the invariants; returns the counts. Raises AssertionError on a violation."""
    study = optuna.load_study(study_name="chaos",
                              storage=open_storage(str(folder / "rnnlab.journal")))
    all_trials = study.get_trials()
    states = collections.Counter(t.state.name for t in all_trials)
    finished = [t for t in all_trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == trials, f"{len(finished)} finished trials, expected {trials}"
    assert states["RUNNING"] == 0, f"{states['RUNNING']} trials left RUNNING in Optuna"
    client = MlflowClient()
    exp = client.get_experiment_by_name("chaos")
    runs = {r.info.run_id: r for r in client.search_runs([exp.experiment_id], max_results=5000)}
    running = [r.info.run_name for r in runs.values() if r.info.status == "RUNNING"]
    assert not running, f"MLflow runs left RUNNING: {running}"
    for t in finished:
        run = runs.get(t.user_attrs.get("mlflow_run_id"))
        assert run is not None, f"trial {t.number} has no MLflow run"
        assert run.info.status == "FINISHED", f"trial {t.number}: run {run.info.status}"
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_acc"))
        assert steps == sorted(t.intermediate_values), f"trial {t.number}: curve {steps}"
        assert steps == list(range(1, len(steps) + 1)), f"trial {t.number}: gaps {steps}"
    reasons = collections.Counter(
        t.user_attrs.get("reason", "").split(":")[0].split(" (")[0]
        for t in all_trials if t.state.name == "FAIL")
    return {
        "trials": len(all_trials), "complete": states["COMPLETE"], "pruned": states["PRUNED"],
        "failed": states["FAIL"], "running": states["RUNNING"],
        "failed: worker lost": reasons["worker lost"],
        "failed: interrupted": reasons["interrupted"],
        "retries": sum("retry_of" in t.user_attrs for t in all_trials),
        "resumed from a checkpoint": sum("resumed_from_epoch" in t.user_attrs
                                         for t in all_trials),
        "mlflow runs": len(runs), "mlflow runs RUNNING": len(running),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    started = time.time()
    with scratch() as folder:
        spec, log = write_spec(folder, args.trials, args.epochs, args.seed), folder / "w.log"
        workers = [start_worker(spec, log), start_worker(spec, log)]
        for kill in range(3):
            time.sleep(rng.uniform(1, 5))
            i = busy_worker(folder, workers, rng)
            workers[i].kill()
            workers[i].wait()
            print(f"t={time.time() - started:5.1f}s  SIGKILL worker {i} (kill {kill + 1}/3), "
                  "restarting it", flush=True)
            workers[i] = start_worker(spec, log)
        time.sleep(rng.uniform(1, 5))
        busy_worker(folder, workers, rng)  # Ctrl-C lands mid-trial, not after the last one
        for w in workers:
            os.killpg(w.pid, signal.SIGINT)
        codes = [w.wait(timeout=120) for w in workers]
        print(f"t={time.time() - started:5.1f}s  SIGINT to both workers: exit codes {codes}",
              flush=True)
        done = subprocess.run([sys.executable, "-m", "rnnlab", "sweep", str(spec),
                               "--workers", "2"], capture_output=True, text=True)
        print(f"t={time.time() - started:5.1f}s  resumed with `rnnlab sweep --workers 2`: "
              f"exit code {done.returncode}", flush=True)
        if done.returncode != 0:
            print(done.stderr[-2000:])
        counts = check(folder, args.trials)
    width = max(map(len, counts))
    for key, value in counts.items():
        print(f"{key:<{width}}  {value}")
    print(f"invariants hold: exactly {args.trials} finished trials, nothing RUNNING in Optuna "
          f"or MLflow, every finished trial has its run and full curve: PASS "
          f"({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
