"""Chaos check: kill and interrupt workers as people and machines do, or take their stores
away, then check the study.

Two ``rnnlab worker`` processes share a study. The faults (``--fault``):

- ``kill`` (default): journal storage and MLflow's SQLite store. Three times, at a random
  moment, one worker is SIGKILLed and restarted; then both get SIGINT (Ctrl-C in their
  terminal) and the study is resumed with ``rnnlab sweep --workers 2``.
- ``postgres-outage``: the study on a PostgreSQL cluster of its own, stopped at once
  (``pg_ctl stop -m immediate``) in the middle of the sweep and started again ``--outage-s``
  later, on the same port.
- ``mlflow-outage``: runs on a real ``mlflow server``, killed in the middle of the sweep and
  started again ``--outage-s`` later (plus its start-up time), on the same port and store.

Afterwards, for every fault:

- exactly ``n_trials`` finished trials (complete or pruned), nothing RUNNING in Optuna;
- nothing RUNNING in MLflow, the study's run included;
- every finished trial has its MLflow run, FINISHED, with one continuous curve (epochs 1..k,
  k = the epochs it reported to Optuna, no epoch twice);
- after an outage: both workers exited 0, each said once that the store was unreachable and
  once that it was back.

    python benchmarks/chaos.py [--fault kill|postgres-outage|mlflow-outage] [--outage-s 30]
        [--trials 12] [--epochs 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import yaml
from _common import REPO, scratch
from mlflow.tracking import MlflowClient

from rnnlab.storage.adapter import open_storage
from rnnlab.study.reclaim import VOIDED

DOWN, BACK = "unreachable (", "is back after"


def start_worker(spec: Path, storage: str, log: Path) -> subprocess.Popen:
    with open(log, "a") as fh:
        return subprocess.Popen([sys.executable, "-m", "rnnlab", "worker", str(spec),
                                 "--storage", storage],
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def load(storage: str) -> optuna.Study:
    return optuna.load_study(study_name="chaos", storage=open_storage(storage))


def busy_worker(storage: str, workers: list[subprocess.Popen], rng: random.Random) -> int:
    """The index of a worker that is in the middle of a trial (waits until one is)."""
    while True:
        try:  # a journal is not made here: the workers make it
            running = load(storage).get_trials(states=(optuna.trial.TrialState.RUNNING,)) \
                if "://" in storage or Path(storage).exists() else []
        except KeyError:  # no study yet
            running = []
        pids = {int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in running
                if t.intermediate_values and "worker" in t.user_attrs}
        busy = [i for i, w in enumerate(workers) if w.pid in pids]
        if busy:
            return rng.choice(busy)
        if all(w.poll() is not None for w in workers):  # else this would wait forever
            raise SystemExit("the workers finished the study before every fault landed; give "
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


def check(storage: str, trials: int) -> tuple[dict[str, int], list[str]]:
    """The counts, and the invariants that do not hold."""
    all_trials = load(storage).get_trials()
    states = collections.Counter(t.state.name for t in all_trials)
    finished = [t for t in all_trials if t.state.name in ("COMPLETE", "PRUNED")]
    client = MlflowClient()
    exp = client.get_experiment_by_name("chaos")
    runs = {r.info.run_id: r for r in client.search_runs([exp.experiment_id], max_results=5000)}
    running = [r.info.run_name for r in runs.values() if r.info.status == "RUNNING"]
    broken = [f"{len(finished)} finished trials, expected {trials}"] * (len(finished) != trials)
    broken += [f"{states['RUNNING']} trials left RUNNING in Optuna"] * bool(states["RUNNING"])
    broken += [f"MLflow runs left RUNNING: {running}"] * bool(running)
    for t in finished:
        run = runs.get(t.user_attrs.get("mlflow_run_id"))
        if run is None or run.info.status != "FINISHED":
            broken.append(f"trial {t.number}: run {run and run.info.status}")
            continue
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_acc"))
        if not steps == sorted(t.intermediate_values) == list(range(1, len(steps) + 1)):
            broken.append(f"trial {t.number}: curve {steps}")
    reasons = collections.Counter(
        t.user_attrs.get("reason", "").split(":")[0].split(" (")[0]
        for t in all_trials if t.state.name == "FAIL")
    return {
        "trials": len(all_trials), "complete": states["COMPLETE"], "pruned": states["PRUNED"],
        "failed": states["FAIL"],
        "failed: worker lost": reasons["worker lost"],
        "failed: interrupted": reasons["interrupted"],
        "failed: claim voided in an outage": reasons[VOIDED.split(" (")[0]],
        "retries": sum("retry_of" in t.user_attrs for t in all_trials),
        "resumed from a checkpoint": sum("resumed_from_epoch" in t.user_attrs
                                         for t in all_trials),
        "mlflow runs": len(runs), "RUNNING left in Optuna": states["RUNNING"],
        "RUNNING left in MLflow": len(running),
    }, broken


def kill_and_interrupt(spec: Path, storage: str, folder: Path, rng: random.Random,
                       started: float) -> list[str]:
    """SIGKILL a busy worker three times, then Ctrl-C both, then resume the study."""
    log = folder / "w.log"
    workers = [start_worker(spec, storage, log), start_worker(spec, storage, log)]
    for kill in range(3):
        time.sleep(rng.uniform(1, 5))
        i = busy_worker(storage, workers, rng)
        workers[i].kill()
        workers[i].wait()
        print(f"t={time.time() - started:5.1f}s  SIGKILL worker {i} (kill {kill + 1}/3), "
              "restarting it", flush=True)
        workers[i] = start_worker(spec, storage, log)
    time.sleep(rng.uniform(1, 5))
    busy_worker(storage, workers, rng)  # Ctrl-C lands mid-trial, not after the last one
    for w in workers:
        os.killpg(w.pid, signal.SIGINT)
    codes = [w.wait(timeout=120) for w in workers]
    print(f"t={time.time() - started:5.1f}s  SIGINT to both workers: exit codes {codes}",
          flush=True)
    done = subprocess.run([sys.executable, "-m", "rnnlab", "sweep", str(spec), "--storage",
                           storage, "--workers", "2"], capture_output=True, text=True)
    print(f"t={time.time() - started:5.1f}s  resumed with `rnnlab sweep --workers 2`: "
          f"exit code {done.returncode}", flush=True)
    return [] if done.returncode == 0 else [f"resume exited {done.returncode}: "
                                            f"{done.stderr[-2000:]}"]


def outage(spec: Path, storage: str, folder: Path, store, outage_s: float, rng: random.Random,
           started: float) -> tuple[dict[str, float], list[str]]:
    """Take ``store`` away mid-sweep for ``outage_s`` seconds, bring it back, let the workers
    finish; the figures, and what went wrong."""
    logs = [folder / f"w{i}.log" for i in range(2)]
    workers = [start_worker(spec, storage, log) for log in logs]
    busy_worker(storage, workers, rng)
    down = time.time()
    store.stop()
    print(f"t={down - started:5.1f}s  store stopped, mid-trial", flush=True)
    time.sleep(outage_s)
    store.start()
    up = time.time()
    print(f"t={up - started:5.1f}s  store answers again", flush=True)
    said = [""] * len(logs)
    while not all(BACK in s for s in said) and any(w.poll() is None for w in workers):
        said = [log.read_text() for log in logs]
        time.sleep(0.1)
    recovered = time.time()
    codes = [w.wait(timeout=600) for w in workers]
    said = [log.read_text() for log in logs]
    print(f"t={time.time() - started:5.1f}s  workers exited with {codes}", flush=True)
    broken = [f"worker {i} exited {c}:\n{said[i][-2000:]}" for i, c in enumerate(codes) if c]
    for i, text in enumerate(said):
        lines = text.splitlines()
        down_lines, back_lines = ([x for x in lines if w in x] for w in (DOWN, BACK))
        if len(down_lines) != 1 or len(back_lines) != 1 or "Traceback" in text:
            broken.append(f"worker {i} said the outage {len(down_lines)} and its end "
                          f"{len(back_lines)} times (once each expected):\n{text[-2000:]}")
        for line in down_lines + back_lines:
            print(f"  worker {i}: {line}")
    return {
        "outage (s, store unreachable)": round(up - down, 1),
        "store restart (s, within the outage)": round(up - down - outage_s, 1),
        "time to recover (s, store back -> both workers back)": round(recovered - up, 1),
        "retry lines logged (unreachable)": sum(s.count(DOWN) for s in said),
        "back lines logged": sum(s.count(BACK) for s in said),
    }, broken


@contextlib.contextmanager
def stores(fault: str, folder: Path) -> Iterator[tuple[str, object]]:
    """The study's storage URL, and the store the fault takes away (None: no outage)."""
    sys.path.insert(0, str(REPO / "tests"))
    from servers import MlflowServer, PrivatePostgres  # the real stores the tests stop

    if fault == "postgres-outage":
        cluster = PrivatePostgres()
        try:
            yield cluster.url("chaos"), cluster
        finally:
            cluster.close()
    elif fault == "mlflow-outage":
        server = MlflowServer(f"sqlite:///{folder}/served.db", folder)
        os.environ["MLFLOW_TRACKING_URI"] = server.uri  # scratch() puts it back
        try:
            yield str(folder / "rnnlab.journal"), server
        finally:
            server.stop()
    else:
        yield str(folder / "rnnlab.journal"), None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fault", choices=["kill", "postgres-outage", "mlflow-outage"],
                    default="kill")
    ap.add_argument("--outage-s", type=float, default=30.0)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    started = time.time()
    with scratch() as folder, stores(args.fault, folder) as (storage, store):
        spec = write_spec(folder, args.trials, args.epochs, args.seed)
        if store is None:
            figures, broken = {}, kill_and_interrupt(spec, storage, folder, rng, started)
        else:
            figures, broken = outage(spec, storage, folder, store, args.outage_s, rng,
                                     started)
        counts, unmet = check(storage, args.trials)
    figures |= {"n_trials": args.trials,
                "finished (complete + pruned)": counts["complete"] + counts["pruned"]} | counts
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    problems = broken + unmet
    for problem in problems:
        print(f"FAILED: {problem}")
    print(f"fault {args.fault}: exactly {args.trials} finished trials, nothing RUNNING in "
          f"Optuna or MLflow, every finished trial has its run and full curve"
          f"{', each worker said the outage and its end once' if store else ''}: "
          f"{'FAIL' if problems else 'PASS'} ({time.time() - started:.0f} s)")
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
