"""Many workers at once: 4 local workers x 40 short trials, on the journal file, on PostgreSQL
and on MySQL (MariaDB). Every trial is accounted for in both stores, and no worker hits a lock
error.

The sweeps run as a user runs them, ``rnnlab sweep --workers N`` in a process of its own, and
the test reads that command's stderr. In this test process it could not: worker processes are
forked from a fork server (:mod:`rnnlab.engines.launch`) that keeps the stderr of the moment it
started, which in a test session is whichever earlier test started it, never this test's capture.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from rnnlab.storage.adapter import load_study
from rnnlab.storage.keys import TRIAL_REASON, TRIAL_RUN_ID

N_TRIALS, WORKERS = 40, 4


def _spec(path: Path, name: str, n_trials: int = N_TRIALS, **study) -> Path:
    path.write_text(yaml.safe_dump({
        "data": {"source": "mnist-5k", "train_size": 100, "val_size": 50, "patch": 28},
        "model": {"hidden": 4},
        "train": {"epochs": 1},
        "study": {"name": name, "n_trials": n_trials, "sampler": {"name": "random", "seed": 0},
                  "pruner": {"name": "none"}, **study},
        "search": {"model.cell": {"choices": ["rnn", "gru", "lstm"]},
                   "train.lr": {"low": 1e-3, "high": 1e-2, "log": True}},
    }))
    return path


def _sweep(spec: Path, storage: str, workers: int) -> subprocess.CompletedProcess:
    """``rnnlab sweep`` in a process of its own (the MLflow store: the test's, from the env)."""
    return subprocess.run([sys.executable, "-m", "rnnlab", "sweep", str(spec), "--storage",
                           storage, "--workers", str(workers)],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_what_a_worker_process_logs_reaches_the_commands_stderr(tmp_path, mlflow_db):
    """The channel the test below reads: a worker's own warning shows in the command's stderr.
    Every trial fails for real (2e6 hidden units want 16 TB of weights), not as a user error:
    each worker logs it, and stops after one (max_failures_in_a_row)."""
    path = _spec(tmp_path / "s.yaml", "oom", 4, max_failures_in_a_row=1)
    raw = yaml.safe_load(path.read_text())
    raw["model"]["hidden"] = 2_000_000
    path.write_text(yaml.safe_dump(raw))
    done = _sweep(path, "rnnlab.journal", 2)
    assert done.returncode == 2, done.stderr
    failed = load_study("rnnlab.journal", "oom").get_trials()
    assert failed and {t.state.name for t in failed} == {"FAIL"}
    for t in failed:  # logged by the worker process that ran it, and by nothing else
        assert f"trial {t.number} failed: RuntimeError: " in done.stderr, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["journal", "postgresql", "mysql"])
def test_four_workers_forty_trials_no_lock_errors(tmp_path, mlflow_db, request, backend):
    storage = ("rnnlab.journal" if backend == "journal" else
               request.getfixturevalue("databases")[0] if backend == "postgresql" else
               request.getfixturevalue("mysql_database"))
    name = f"many-{backend}"
    done = _sweep(_spec(tmp_path / "s.yaml", name), storage, WORKERS)
    assert done.returncode == 0, done.stderr

    logs = (done.stdout + done.stderr).lower()
    assert "locked" not in logs and "traceback" not in logs, done.stderr
    trials = load_study(storage, name).get_trials()
    assert sorted(t.number for t in trials) == list(range(N_TRIALS))  # none failed, none retried
    assert {t.state.name for t in trials} == {"COMPLETE"}
    assert [t.user_attrs[TRIAL_REASON] for t in trials if TRIAL_REASON in t.user_attrs] == []
    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    runs = [r for r in client.search_runs([exp.experiment_id], max_results=1000)
            if r.data.tags.get("rnnlab.kind") == "trial"]
    assert {r.info.run_id for r in runs} == {t.user_attrs[TRIAL_RUN_ID] for t in trials}
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert not [r.data.tags["rnnlab.reason"] for r in runs if "rnnlab.reason" in r.data.tags]
