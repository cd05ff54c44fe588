"""Nothing lost: killed workers, Ctrl-C, SIGTERM, and many workers at once, on real stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from rnnlab.core.study_spec import load_study_spec
from rnnlab.study.storage import ATTR_PARENT, open_storage
from rnnlab.study.worker import work

SPEC = {
    "data": {"source": "mnist-5k", "train_size": 200, "val_size": 100, "patch": 28},
    "model": {"hidden": 8},
    "train": {"epochs": 12, "lr": 3e-3, "checkpoint_every": 1},
    "study": {"name": "chaos", "n_trials": 2, "heartbeat_interval": 0.5, "grace_period": 3,
              "sampler": {"name": "random", "seed": 0}, "pruner": {"name": "none"}},
    "search": {"model.cell": {"choices": ["rnn", "gru"]}},
}


@pytest.fixture
def here(tmp_path, mlflow_db):
    """An empty folder (the cwd) with a ready MLflow store in it (see conftest)."""
    return tmp_path


def write(path: Path, **changes) -> Path:
    spec = yaml.safe_load(yaml.safe_dump(SPEC))
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        spec[section][key] = value
    path.write_text(yaml.safe_dump(spec))
    return path


def rnnlab(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rnnlab", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def load(name: str = "chaos") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage("rnnlab.journal"))


def wait_for_epochs(name: str, epochs: int, timeout: float = 120) -> None:
    """Block until some running trial has reported ``epochs`` epochs (so it has checkpoints)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if Path("rnnlab.journal").exists():
            try:
                trials = load(name).get_trials(states=(optuna.trial.TrialState.RUNNING,))
            except KeyError:
                trials = []
            if any(len(t.intermediate_values) >= epochs for t in trials):
                return
        time.sleep(0.3)
    raise AssertionError(f"no trial reached epoch {epochs} in {timeout} s")


def assert_nothing_running(study: optuna.Study) -> MlflowClient:
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    client = MlflowClient()
    exp = client.get_experiment_by_name(study.study_name)
    for run in client.search_runs([exp.experiment_id]):
        assert run.info.status != "RUNNING", run.info.run_name
    return client


def test_a_killed_worker_is_reaped_retried_and_resumed_from_its_checkpoint(here):
    path = write(here / "s.yaml")
    victim = rnnlab("worker", str(path))
    wait_for_epochs("chaos", 3)
    victim.kill()  # SIGKILL: no chance to clean up
    victim.wait()
    work(load_study_spec(path), "rnnlab.journal")  # a live worker finds the silent trial

    study = load()
    trials = study.get_trials()
    lost = [t for t in trials if t.state.name == "FAIL"]
    assert len(lost) == 1 and lost[0].user_attrs["reason"].startswith("worker lost")
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 2
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == lost[0].number)
    assert retry.state.name == "COMPLETE" and retry.params == lost[0].params
    # The victim had reported epoch 3; its epoch-3 checkpoint may still have been on its way to
    # the store (checkpoints are written in the background) when SIGKILL landed, so the retry
    # resumes from epoch 3's checkpoint or epoch 2's: never from scratch.
    assert retry.user_attrs["resumed_from_epoch"] >= 2
    assert sorted(retry.intermediate_values) == list(range(1, 13))

    client = assert_nothing_running(study)
    assert client.get_run(lost[0].user_attrs["mlflow_run_id"]).info.status == "KILLED"
    history = client.get_metric_history(retry.user_attrs["mlflow_run_id"], "val_acc")
    assert sorted(m.step for m in history) == list(range(1, 13))  # one continuous curve
    assert client.get_run(study.user_attrs[ATTR_PARENT]).info.status == "FINISHED"


@pytest.mark.parametrize("sig, code, what", [(signal.SIGINT, 130, "Ctrl-C"),
                                             (signal.SIGTERM, 143, "SIGTERM")])
def test_an_interrupted_sweep_closes_its_trials_and_resumes(here, sig, code, what):
    path = write(here / "s.yaml")
    sweep = rnnlab("sweep", str(path), "--workers", "2", start_new_session=True)
    wait_for_epochs("chaos", 2)
    if sig == signal.SIGINT:
        os.killpg(sweep.pid, sig)  # a terminal sends Ctrl-C to the whole process group
    else:
        sweep.send_signal(sig)  # `kill PID` reaches the main process only; it must forward it
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == code, err
    assert err.strip().splitlines()[-1].startswith(f"rnnlab: interrupted ({what})")
    assert "Traceback" not in err, err

    study = load()
    interrupted = [t for t in study.get_trials() if t.state.name == "FAIL"]
    assert interrupted and all(
        t.user_attrs["reason"] == f"interrupted ({what})" for t in interrupted)
    assert not [t for t in study.get_trials() if t.state.name == "COMPLETE"
                and t.number in {i.number for i in interrupted}]
    client = assert_nothing_running(study)
    for t in interrupted:
        assert client.get_run(t.user_attrs["mlflow_run_id"]).info.status == "KILLED"

    again = rnnlab("sweep", str(path))
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    study = load()
    finished = [t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 2
    assert any(t.user_attrs.get("resumed_from_epoch", 0) >= 1 for t in finished)
    assert_nothing_running(study)
