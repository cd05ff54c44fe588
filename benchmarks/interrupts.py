"""Interrupt stress: Ctrl-C or SIGTERM a 2-worker sweep at a random moment, N rounds per mode.

Each round starts ``rnnlab sweep SPEC --workers 2`` in a fresh folder (its own journal and MLflow
store) in a process group of its own, as a terminal does, and interrupts it after a random
delay: while the command imports and opens the study, while its workers start, ask for trials,
train, report, tell, or close runs. An uninterrupted sweep is timed first: odd rounds draw the
delay uniformly from its whole length, even rounds from the part where trials run (on a busy
machine, starting up takes most of a short sweep), counted from the moment the first trial
appears in the study, so that a machine busier than when it was timed still has them land
while trials run. Modes:

- ``group``: SIGINT to the whole process group (Ctrl-C in a terminal);
- ``leader``: SIGINT to the command's process only (``kill -INT PID``);
- ``term``: SIGTERM to the command's process only (``kill PID``, a scheduler's stop).

Invariants checked after the interrupt: exit code 130 (SIGINT) or 143 (SIGTERM), the command's
last line says it was interrupted, no traceback; in Optuna nothing RUNNING, every FAIL trial
failed "interrupted (...)" with its retry queued; in MLflow every run FINISHED or KILLED and
every trial's run found. Then the same command is run again: it must exit 0 with exactly
``n_trials`` finished, nothing RUNNING or WAITING, and each finished trial's run FINISHED.
A signal that lands before the Python interpreter has even started (its first tenth of a second
or so) kills the command as it kills any program, before anything is written: such a round is
checked for exactly that (killed by the signal, no output, no study, no run) and counted apart.

    python benchmarks/interrupts.py [--rounds 20] [--mode all|group|leader|term] [--window 8]
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml
from _common import mnist_dir, scratch
from mlflow.tracking import MlflowClient

from rnnlab.storage.adapter import open_storage

NAME = "stress"
NOTHING = "no study | runs none"
BEFORE_START = "killed before Python started, nothing written"
MODES = {"group": ("SIGINT", 130, "Ctrl-C"), "leader": ("SIGINT", 130, "Ctrl-C"),
         "term": ("SIGTERM", 143, "SIGTERM")}


def write_spec(folder: Path, trials: int, epochs: int, seed: int) -> Path:
    path = folder / "stress.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"source": "mnist-5k", "train_size": 800, "val_size": 200, "patch": 28},
        "model": {"hidden": 16},
        "train": {"epochs": epochs, "checkpoint_every": 1},
        "study": {"name": NAME, "n_trials": trials, "heartbeat_interval": 0.5,
                  "grace_period": 4, "max_retries": 100,
                  "sampler": {"name": "random", "seed": seed}, "pruner": {"name": "none"}},
        "search": {"model.cell": {"choices": ["rnn", "gru"]},
                   "train.lr": {"low": 1e-3, "high": 1e-2, "log": True}},
    }))
    return path


def trials_of(folder: Path) -> list:
    """The study's trials (none when it does not exist yet)."""
    try:
        return optuna.load_study(study_name=NAME, storage=open_storage(
            str(folder / "rnnlab.journal"))).get_trials()
    except (KeyError, FileNotFoundError):
        return []


def records(folder: Path):
    """The study's trials and its MLflow runs by id."""
    trials = trials_of(folder)
    client = MlflowClient()
    exp = client.get_experiment_by_name(NAME)
    runs = ({r.info.run_id: r for r in client.search_runs([exp.experiment_id],
                                                          max_results=5000)}
            if exp else {})
    return trials, runs


def check_interrupted(folder: Path, code: int, err: str, want_code: int, what: str) -> list[str]:
    """What is wrong after the interrupt (empty when every invariant holds)."""
    bad = []
    if code != want_code:
        bad.append(f"exit code {code}, expected {want_code}")
    lines = err.strip().splitlines()
    if not lines or not lines[-1].startswith(f"rnnlab: interrupted ({what})"):
        bad.append(f"last line {lines[-1] if lines else '(none)'!r}")
    if "Traceback" in err:
        bad.append("a traceback: " + err[err.index("Traceback"):][:300].replace("\n", " | "))
    trials, runs = records(folder)
    retried = {t.user_attrs.get("retry_of") for t in trials if t.state.name == "WAITING"}
    for t in trials:
        if t.state.name == "RUNNING":
            bad.append(f"trial {t.number} RUNNING")
        if t.state.name == "FAIL":
            if t.user_attrs.get("reason") != f"interrupted ({what})":
                bad.append(f"trial {t.number} FAIL {t.user_attrs.get('reason')!r}")
            if t.number not in retried:
                bad.append(f"trial {t.number} FAIL with no retry queued")
        run_id = t.user_attrs.get("mlflow_run_id")
        if run_id and run_id not in runs:
            bad.append(f"trial {t.number}: its run {run_id} is missing")
    bad += [f"run {r.info.run_name} {r.info.status}" for r in runs.values()
            if r.info.status not in ("FINISHED", "KILLED")]
    return bad


def check_resumed(folder: Path, code: int, err: str, n_trials: int) -> list[str]:
    bad = [] if code == 0 else [f"resume exit code {code}: {err.strip()[-300:]}"]
    trials, runs = records(folder)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    if len(finished) != n_trials:
        bad.append(f"{len(finished)} finished trials after resuming, expected {n_trials}")
    bad += [f"trial {t.number} {t.state.name} after resuming" for t in trials
            if t.state.name in ("RUNNING", "WAITING")]
    for t in finished:
        run = runs.get(t.user_attrs.get("mlflow_run_id"))
        if run is None or run.info.status != "FINISHED":
            bad.append(f"trial {t.number}: run {run.info.status if run else 'missing'}")
    bad += [f"run {r.info.run_name} RUNNING after resuming" for r in runs.values()
            if r.info.status == "RUNNING"]
    return bad


def states(folder: Path) -> str:
    trials, runs = records(folder)
    optuna_states = collections.Counter(t.state.name for t in trials)
    mlflow_states = collections.Counter(r.info.status for r in runs.values())
    return (" ".join(f"{k}:{v}" for k, v in sorted(optuna_states.items())) or "no study") + \
        " | runs " + (" ".join(f"{k}:{v}" for k, v in sorted(mlflow_states.items())) or "none")


def one_round(mode: str, delay: float, after_trial: bool, args,
              env: dict[str, str]) -> tuple[list[str] | None, str, str]:
    sig_name, want, what = MODES[mode]
    sig = getattr(signal, sig_name)
    with scratch() as folder:
        spec = write_spec(folder, args.trials, args.epochs, args.seed)
        cmd = [sys.executable, "-m", "rnnlab", "sweep", str(spec), "--workers", "2"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, start_new_session=True, env=env)
        if after_trial:  # from the moment a trial exists, whatever the machine's load
            while proc.poll() is None and not trials_of(folder):
                time.sleep(0.05)
        time.sleep(delay)
        if proc.poll() is not None:
            return None, "", ""  # it ended before the signal: not an interrupt
        if mode == "group":
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
            return [f"no exit within 180 s of {sig_name}"], states(folder), ""
        if proc.returncode == 0 and not check_resumed(folder, 0, err, args.trials):
            return None, "", ""  # it had finished the budget before the signal: too late
        # Signalled before the interpreter had started (no handler of its own yet): killed by
        # the signal as any program is (a shell reports 128 + N, the same 130 or 143), with
        # nothing written anywhere. Counted apart in the summary.
        before = proc.returncode == -sig and not err.strip() and states(folder) == NOTHING
        bad = [] if before else check_interrupted(folder, proc.returncode, err, want, what)
        found = BEFORE_START if before else states(folder)
        again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        bad += check_resumed(folder, again.returncode, again.stderr, args.trials)
        return bad, found, states(folder)


def calibrate(args, env: dict[str, str]) -> tuple[float, float]:
    """How long the sweep takes uninterrupted on this machine now: until its first trial
    starts, and start to end."""
    with scratch() as folder:
        spec = write_spec(folder, args.trials, args.epochs, args.seed)
        started, first = time.time(), None
        proc = subprocess.Popen([sys.executable, "-m", "rnnlab", "sweep", str(spec),
                                 "--workers", "2"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        while proc.poll() is None:
            if first is None and (folder / "rnnlab.journal").exists() and trials_of(folder):
                first = time.time() - started
            time.sleep(0.2)
    took = 0.9 * (time.time() - started)  # a little less: the sweep is not always as fast
    first = min(first or 0.0, took)
    print(f"an uninterrupted sweep took {took / 0.9:.1f} s, its first trial started at "
          f"{first:.1f} s: odd rounds interrupt uniformly in [0, {took:.1f}] s after the start, "
          f"even rounds in [0, {took - first:.1f}] s after the first trial appears (while trials "
          "run, however long starting takes)", flush=True)
    return first, took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20, help="rounds per mode")
    ap.add_argument("--mode", choices=["all", *MODES], default="all")
    ap.add_argument("--window", type=float, default=None,
                    help="every interrupt lands uniformly in [0, WINDOW] s after the start "
                         "(default: timed first; then half the rounds land while trials run)")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(args.seed)
    env = {**os.environ, "RNNLAB_DATA_DIR": mnist_dir() or ""}
    modes = list(MODES) if args.mode == "all" else [args.mode]
    first, window = calibrate(args, env) if args.window is None else (0.0, args.window)
    summary = {}
    for mode in modes:
        passed, found_all = 0, collections.Counter()
        for i in range(args.rounds):
            bad = None
            after_trial = i % 2 == 1 and args.window is None
            while bad is None:  # the sweep was done before the signal: draw again
                delay = rng.uniform(0, window - first if after_trial else window)
                started = time.time()
                bad, found, after = one_round(mode, delay, after_trial, args, env)
            passed += not bad
            found_all[found.split(" | ")[0]] += 1
            when = "after the first trial" if after_trial else "after the start"
            print(f"{mode:6} round {i + 1:2}/{args.rounds}  signal {delay:4.1f} s {when:21}  "
                  f"{'PASS' if not bad else 'FAIL'}  after the interrupt: {found}  "
                  f"after resuming: {after}  ({time.time() - started:.0f} s)", flush=True)
            for line in bad:
                print(f"    {line}", flush=True)
        summary[mode] = (passed, found_all)
    print()
    for mode, (passed, found_all) in summary.items():
        print(f"{mode:6} {passed}/{args.rounds} rounds passed; Optuna states found after the "
              f"interrupt: " + "; ".join(f"{k} x{v}" for k, v in found_all.most_common()))


if __name__ == "__main__":
    main()
