"""Stores that go down mid-sweep: a private PostgreSQL cluster and a real MLflow server are
stopped under two ``rnnlab worker`` processes and brought back (or not), on the real parts.

Afterwards the study has exactly ``n_trials`` finished trials, nothing RUNNING in Optuna or
MLflow, every finished trial its FINISHED run with one curve and no step twice; each worker said
once that the store was down and once that it was back. A store down for longer than
``study.store_outage_limit`` stops the workers in one line with exit code 2, and a later sweep
finishes the budget exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from servers import MlflowServer, PrivatePostgres

from rnnlab.errors import RnnlabError
from rnnlab.storage.adapter import open_storage

pytestmark = pytest.mark.slow

N_TRIALS = 6
OUTAGE_S = 5.0  # long enough that heartbeats go stale (grace_period 3 s), short for a test
SPEC = {
    "data": {"source": "mnist-5k", "train_size": 200, "val_size": 100, "patch": 28},
    "model": {"hidden": 8},
    "train": {"epochs": 3, "lr": 3e-3, "threads": 1, "device": "cpu", "checkpoint_every": 1},
    "study": {"name": "outage", "n_trials": N_TRIALS, "heartbeat_interval": 0.5,
              "grace_period": 3, "sampler": {"name": "random", "seed": 0},
              "pruner": {"name": "none"}},
    "search": {"model.cell": {"choices": ["rnn", "gru"]},
               "train.lr": {"low": 1e-3, "high": 1e-2, "log": True}},
}
DOWN, BACK = "unreachable (", "is back after"
FIRE = Path(__file__).resolve().parents[1] / "fire"  # holds a worker at one point


@pytest.fixture
def postgres():
    cluster = PrivatePostgres()
    yield cluster
    cluster.close()


def write_spec(folder: Path, **study) -> Path:
    spec = yaml.safe_load(yaml.safe_dump(SPEC))
    spec["study"].update(study)
    path = folder / "outage.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def start_workers(spec: Path, storage: str, folder: Path, n: int = 2,
                  fire: str | None = None) -> list:
    """``n`` ``rnnlab worker`` processes, each with its own log (stdout and stderr); ``fire``
    holds one of them at a point (tests/fire/sitecustomize.py)."""
    env = dict(os.environ)
    if fire:
        env.update(PYTHONPATH=os.pathsep.join([str(FIRE), env.get("PYTHONPATH", "")]),
                   RNNLAB_TEST_FIRE=fire, RNNLAB_TEST_MARKER=str(folder / "fired"))
    procs = []
    for i in range(n):
        log = open(folder / f"worker-{i}.log", "w")  # noqa: SIM115 - closed by finish()
        procs.append((subprocess.Popen(
            [sys.executable, "-m", "rnnlab", "worker", str(spec), "--storage", storage],
            stdout=log, stderr=subprocess.STDOUT, cwd=folder, env=env), log))
    return procs


def finish(procs: list, timeout: float = 300) -> list[tuple[int, str]]:
    """Wait for the workers; their exit codes and logs."""
    out = []
    for proc, log in procs:
        proc.wait(timeout=timeout)
        log.close()
        out.append((proc.returncode, Path(log.name).read_text()))
    return out


def load(storage: str) -> optuna.Study:
    return optuna.load_study(study_name="outage", storage=open_storage(storage))


def wait_mid_sweep(storage: str, timeout: float = 180) -> None:
    """Until a trial has finished and another is running: the first moment of the sweep's
    middle, with most of its trials still to come. (Not "until a running trial has reported
    an epoch": a trial's first epoch is most of its time, so its values come in a burst right
    before it completes, and polls missed that moment in a whole sweep, 1 run in 3.)"""
    deadline, seen = time.time() + timeout, []
    while time.time() < deadline:
        started = time.time()
        try:
            trials = load(storage).get_trials()
        except (KeyError, RnnlabError) as exc:  # not created yet
            trials, why = [], f"{type(exc).__name__}: {str(exc)[:120]}"
        else:
            why = ""
        states = Counter(t.state.name for t in trials)
        if states["COMPLETE"] and states["RUNNING"]:
            return
        # what the last polls saw, and how long each took: for a failure to say
        seen = [*seen[-29:], f"at {started - deadline + timeout:.1f}s: {dict(states)} {why} "
                f"(read in {time.time() - started:.2f}s)"]
        time.sleep(0.2)
    pytest.fail("the sweep never got going; the polls saw:\n" + "\n".join(seen))


def check_study(storage: str, tracking_uri: str) -> list[optuna.trial.FrozenTrial]:
    """The invariants; returns the trials."""
    trials = load(storage).get_trials()
    states = Counter(t.state for t in trials)
    assert states[TrialState.COMPLETE] + states[TrialState.PRUNED] == N_TRIALS, states
    assert not states[TrialState.RUNNING] and not states[TrialState.WAITING], states
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("outage")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    for t in trials:
        if t.state.is_finished() and t.state != TrialState.FAIL:
            run = client.get_run(t.user_attrs["mlflow_run_id"])
            assert run.info.status == "FINISHED", (t.number, run.info.status)
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
            assert sorted(steps) == sorted(t.intermediate_values) == list(
                range(1, len(steps) + 1)), (t.number, steps)  # no step lost, none twice
    return trials


def said_once(log: str) -> None:
    """The store's going and coming back, one line each, and no traceback."""
    assert "Traceback" not in log, log[-3000:]
    lines = log.splitlines()
    assert len([x for x in lines if DOWN in x]) == 1, log[-3000:]
    assert len([x for x in lines if BACK in x]) == 1, log[-3000:]


def test_postgres_down_mid_sweep_is_ridden_out(postgres, tmp_path, mlflow_db):
    storage = postgres.url("optuna")
    procs = start_workers(write_spec(tmp_path), storage, tmp_path)
    wait_mid_sweep(storage)
    postgres.stop()
    time.sleep(OUTAGE_S)
    postgres.start()
    for code, log in finish(procs):
        assert code == 0, log[-3000:]
        said_once(log)
        assert "PostgreSQL at postgresql://postgres@127.0.0.1:" in log
    check_study(storage, mlflow_db)


def test_mlflow_server_down_mid_sweep_is_ridden_out(tmp_path, monkeypatch):
    server = MlflowServer(f"sqlite:///{tmp_path}/served.db", tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    storage = str(tmp_path / "rnnlab.journal")
    try:
        procs = start_workers(write_spec(tmp_path), storage, tmp_path)
        wait_mid_sweep(storage)
        server.stop()
        time.sleep(OUTAGE_S)
        server.start()  # on the same port, with the same store
        for code, log in finish(procs):
            assert code == 0, log[-3000:]
            said_once(log)
            assert f"MLflow tracking server at {server.uri}" in log
        check_study(storage, server.uri)
    finally:
        server.stop()


def test_postgres_down_too_long_stops_workers_in_one_line_and_resumes(postgres, tmp_path,
                                                                       mlflow_db):
    storage = postgres.url("optuna")
    spec = write_spec(tmp_path, store_outage_limit=3)
    # One worker is held before its trial reports epoch 2, so a trial is RUNNING when the
    # database stops; it lets go once the database is down and finds it gone.
    procs = start_workers(spec, storage, tmp_path, fire="report:hold")
    held = tmp_path / "fired-report"
    deadline = time.time() + 180
    while not held.exists():
        assert time.time() < deadline, "no trial reached its epoch-2 report"
        time.sleep(0.1)
    postgres.stop()
    Path(f"{held}.go").touch()
    for code, log in finish(procs, timeout=120):
        assert code == 2, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        errors = [x for x in log.splitlines() if x.startswith("rnnlab: error:")]
        assert len(errors) == 1 and "PostgreSQL at postgresql://" in errors[0], log[-3000:]
        assert "unreachable for 3 s" in errors[0] and "resumable" in errors[0]
    postgres.start()
    resumed = subprocess.run(
        [sys.executable, "-m", "rnnlab", "sweep", str(spec), "--storage", storage,
         "--workers", "2"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = check_study(storage, mlflow_db)
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert lost and all("worker lost" in t.user_attrs["reason"] for t in lost)
