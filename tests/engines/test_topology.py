"""The docker-compose topology, run as local processes with the real parts.

A database of its own on the PostgreSQL at 127.0.0.1:5432 holds the Optuna study; a real
``mlflow server`` on a free loopback port keeps runs in a second database and serves artifacts
from a temporary folder; two ``rnnlab worker`` processes, as two machines would run them, share
the study. Afterwards the study has exactly ``n_trials`` finished trials, each with its
finished run, curve and config artifact on the server, and nothing is left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from support import refused_port, serve_on_a_free_port

N_TRIALS = 6
EPOCHS = 2

pytestmark = pytest.mark.slow


START_S = 240  # a cold mlflow server imports and checks its store; slow on a busy machine


@pytest.fixture
def mlflow_server(databases, tmp_path):
    """A real tracking server with a PostgreSQL backend store, serving artifacts itself."""
    artifacts, log = tmp_path / "served-artifacts", tmp_path / "mlflow-server.log"

    def start(port: int) -> subprocess.Popen:
        with open(log, "w") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
                 str(port), "--backend-store-uri", databases[1], "--serve-artifacts",
                 "--artifacts-destination", str(artifacts), "--workers", "1"],
                stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True,
                # no GenAI job runners: they are a handful of extra processes rnnlab never uses
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})

    def ready(proc: subprocess.Popen, port: int) -> bool | None:
        deadline = time.monotonic() + START_S
        while proc.poll() is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                return True
            except OSError:
                if time.monotonic() > deadline:
                    _stop(proc)
                    pytest.fail(f"mlflow server did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)
        if "already in use" not in log.read_text():  # else: taken before it bound; another
            pytest.fail(f"mlflow server exited:\n{log.read_text()[-3000:]}")
        return None

    proc, port, _ = serve_on_a_free_port(start, ready)
    try:
        yield f"http://127.0.0.1:{port}", artifacts
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)  # the server's own worker processes are in its group
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _spec(tmp_path: Path, name: str) -> Path:
    spec = {
        "data": {"source": "mnist-5k", "train_size": 200, "val_size": 100, "patch": 28},
        "model": {"hidden": 8},
        "train": {"epochs": EPOCHS, "batch_size": 50, "threads": 1, "device": "cpu"},
        "study": {"name": name, "n_trials": N_TRIALS, "sampler": {"name": "random", "seed": 0},
                  "pruner": {"name": "none"}},
        "search": {"model.cell": {"choices": ["rnn", "lstm", "gru"]},
                   "train.lr": {"low": 1e-4, "high": 1e-2, "log": True}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _rnnlab(*args: str, env: dict, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rnnlab", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_workers_share_a_study_through_postgres_and_an_mlflow_server(
        databases, mlflow_server, tmp_path):
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    from rnnlab.tracking.store import RunReader

    uri, served = mlflow_server
    storage, name = databases[0], f"topology-{uuid.uuid4().hex[:8]}"
    spec = _spec(tmp_path, name)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    procs = [_rnnlab("worker", str(spec), "--storage", storage, env=env, cwd=tmp_path)
             for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, f"worker exited {p.returncode}:\n{err[-3000:]}"

    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    assert len(trials) == N_TRIALS, states  # exactly the budget, and nothing left running
    assert all(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states), states

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), "not served"
    parent = study.user_attrs["mlflow_parent_run_id"]
    for t in trials:
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent
        history = client.get_metric_history(run.info.run_id, "val_acc")
        epochs = EPOCHS if t.state == TrialState.COMPLETE else len(history)  # diverged: fewer
        assert sorted(m.step for m in history) == list(range(1, epochs + 1)) and epochs
        path = client.download_artifacts(run.info.run_id, "config.yaml",
                                         str(tmp_path / run.info.run_id))
        config = yaml.safe_load(Path(path).read_text())
        assert config["model"]["hidden"] == 8
        assert config["model"]["cell"] == t.params["model.cell"]
    stored = list(served.rglob("config.yaml"))
    assert len(stored) == N_TRIALS, "artifacts must be stored by the server"

    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert len(runs) == N_TRIALS + 1  # the trials and the study's own run
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    assert client.get_run(parent).info.status == "FINISHED"

    # rnnlab delete through the server: its list read page by page, each page counted
    reader, reads = RunReader(uri), []
    reader.page = 4
    ours = {t.user_attrs["mlflow_run_id"] for t in trials}
    ids = reader.study_run_ids(parent, reads.append)
    assert sorted(ids[:-1]) == sorted(ours) and ids[-1] == parent and reads == [4, N_TRIALS]
    deleted = _rnnlab("delete", name, "--yes", "--storage", storage, env=env, cwd=tmp_path)
    out, err = deleted.communicate(timeout=120)
    assert deleted.returncode == 0, err[-3000:]
    assert f"deleted study {name!r}: {N_TRIALS} trial(s) and {N_TRIALS + 1} MLflow run(s)" in err
    assert {client.get_run(r).info.lifecycle_stage for r in {*ours, parent}} == {"deleted"}
    assert name not in optuna.get_all_study_names(storage)


def _worker_on(uri: str, tmp_path: Path, monkeypatch, *words: str) -> str:
    from typer.testing import CliRunner

    from rnnlab.cli.app import app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = CliRunner().invoke(app, ["worker", str(_spec(tmp_path, "unreachable")),
                                      "--storage", str(tmp_path / "s.journal")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "MLFLOW_TRACKING_URI" in lines[0], lines
    assert all(word in lines[0] for word in words or ("not reachable",)), lines[0]
    assert not (tmp_path / "s.journal").exists(), "no study when tracking is down"
    return lines[0]


def test_unreachable_tracking_server_fails_in_one_line(tmp_path, monkeypatch):
    with refused_port() as port:  # nothing serves there
        _worker_on(f"http://127.0.0.1:{port}", tmp_path, monkeypatch)


def test_a_tracking_database_that_does_not_answer_is_asked_once(tmp_path, monkeypatch, caplog):
    """A PostgreSQL store with no such database, or no server: MLflow's first connection
    retried for about 100 s, logging each attempt, then called the store damaged."""
    missing = f"postgresql://postgres:pw@127.0.0.1:5432/rnnlab_none_{uuid.uuid4().hex[:8]}"
    line = _worker_on(missing, tmp_path, monkeypatch, "cannot be reached", "does not exist")
    assert "postgres:***@" in line and ":pw@" not in line
    with refused_port() as port:
        _worker_on(f"postgresql://postgres@127.0.0.1:{port}/x", tmp_path, monkeypatch,
                   "cannot be reached", "refused")
    assert "will be retried" not in caplog.text


def test_a_tracking_server_that_drops_connections_is_asked_once(tmp_path, monkeypatch):
    """MLflow's HTTP retries (minutes of backoff) are not waited out: one attempt, counted."""
    accepted, stop = [], threading.Event()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.1)

        def drop() -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    conn, _ = server.accept()
                    accepted.append(1)
                    conn.close()

        thread = threading.Thread(target=drop, daemon=True)
        thread.start()
        try:
            _worker_on(f"http://127.0.0.1:{server.getsockname()[1]}", tmp_path, monkeypatch)
        finally:
            stop.set()
            thread.join()
    assert len(accepted) == 1


def test_worker_workers_n_runs_local_processes_with_their_own_seeds(tmp_path, mlflow_db):
    """``rnnlab worker --workers 2``: two local processes, numbered after the study's workers."""
    import optuna
    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    from rnnlab.cli.app import app
    from rnnlab.storage.adapter import open_storage

    spec = _spec(tmp_path, "local-workers")
    result = CliRunner().invoke(app, ["worker", str(spec), "--storage", "s.journal",
                                      "--workers", "2"])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="local-workers", storage=open_storage("s.journal"))
    assert len(study.trials) == N_TRIALS
    assert study.user_attrs["rnnlab:workers_started"] == 2  # the next worker seeds from 2
    parent = MlflowClient().get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED"
