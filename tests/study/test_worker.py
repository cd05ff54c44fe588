"""Nothing lost: killed workers, Ctrl-C, SIGTERM, and many workers at once, on real stores."""

from __future__ import annotations

import contextlib
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
from rnnlab.storage.adapter import open_storage
from rnnlab.storage.keys import ATTR_PARENT
from rnnlab.study.worker import work
from rnnlab.tracking.tracker import Tracker

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


def freeze_at_a_checkpoint(victim: subprocess.Popen, name: str, epochs: range,
                           timeout: float = 120) -> tuple[int, int]:
    """Freeze ``victim`` (SIGSTOP) at a moment when the trial it runs has a checkpoint of an
    epoch in ``epochs`` stored; returns (trial number, checkpoint epoch).

    The worker is frozen *before* anything is read, so what is read is what a kill that
    follows will cut: the trial cannot finish, nor another one start, between the look and the
    kill, however loaded the machine. A later write cannot take that checkpoint back
    (checkpoints alternate between two artifacts: see rnnlab.tracking.checkpoints). Only
    files are read, never through a lock: a worker frozen inside a write to the MLflow
    database would hold its lock, and every reader would wait.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)  # let it train a little
        victim.send_signal(signal.SIGSTOP)
        with contextlib.suppress(KeyError):  # no study yet
            for t in load(name).get_trials(states=(optuna.trial.TrialState.RUNNING,)):
                epoch = newest_checkpoint(t.user_attrs.get("mlflow_run_id"))
                if epoch in epochs:
                    return t.number, epoch
        victim.send_signal(signal.SIGCONT)
    raise AssertionError(f"no checkpoint of an epoch in {epochs} in {timeout} s")


def newest_checkpoint(run_id: str | None) -> int | None:
    """The epoch of the newest whole checkpoint that run ``run_id`` has in ./mlruns, if any."""
    import torch

    from rnnlab.tracking.checkpoints import UNREADABLE

    epochs = []
    for path in Path("mlruns").glob(f"*/{run_id}/artifacts/checkpoint/*.pt") if run_id else ():
        with contextlib.suppress(*UNREADABLE):  # cut short by the freeze: the other one holds
            epochs.append(torch.load(path, weights_only=True)["epoch"])
    return max(epochs, default=None)


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
    number, stored = freeze_at_a_checkpoint(victim, "chaos", range(3, 12))  # not the last one
    victim.kill()  # SIGKILL: no chance to clean up
    victim.wait()
    work(load_study_spec(path), "rnnlab.journal")  # a live worker finds the silent trial

    study = load()
    trials = study.get_trials()
    lost = [t for t in trials if t.state.name == "FAIL"]
    assert [t.number for t in lost] == [number]
    assert lost[0].user_attrs["reason"].startswith("worker lost")
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 2
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == lost[0].number)
    assert retry.state.name == "COMPLETE" and retry.params == lost[0].params
    assert retry.user_attrs["resumed_from_epoch"] >= stored  # never from an older one
    assert sorted(retry.intermediate_values) == list(range(1, 13))

    client = assert_nothing_running(study)
    assert client.get_run(lost[0].user_attrs["mlflow_run_id"]).info.status == "KILLED"
    history = client.get_metric_history(retry.user_attrs["mlflow_run_id"], "val_acc")
    assert sorted(m.step for m in history) == list(range(1, 13))  # one continuous curve
    assert client.get_run(study.user_attrs[ATTR_PARENT]).info.status == "FINISHED"


def test_a_checkpoint_cut_short_by_a_kill_leaves_the_one_before_it(here, caplog):
    # A worker SIGKILLed while its epoch-2 checkpoint was being written (in the background)
    # leaves that file cut short: its retry resumes from epoch 1's, instead of failing.
    from urllib.parse import urlparse

    from rnnlab.core.spec import RunConfig, apply_overrides
    from rnnlab.study.parent import open_study
    from rnnlab.train import fit

    spec = load_study_spec(write(here / "s.yaml", study__n_trials=1, train__epochs=3))
    tracker = Tracker()
    study = open_study(spec, "rnnlab.journal", tracker)
    victim = tracker.start_run("chaos", "trial-0")
    config = RunConfig.model_validate(apply_overrides(spec.base.model_dump(),
                                                      {"model.cell": "gru"}))
    checkpoints = []
    fit(config, on_checkpoint=checkpoints.append)
    for ckpt in checkpoints[:2]:  # killed while writing epoch 2's
        tracker.log_checkpoint(victim, ckpt)
    tracker.end_run(victim, "KILLED")
    artifacts = Path(urlparse(MlflowClient().get_run(victim).info.artifact_uri).path)
    cut = artifacts / "checkpoint" / "checkpoint-0.pt"  # epoch 2's
    cut.write_bytes(cut.read_bytes()[:40])
    study.enqueue_trial({"model.cell": "gru"},
                        user_attrs={"retry_of": 0, "retries": 1, "resume_run_id": victim})

    assert work(spec, "rnnlab.journal") == 1
    [retry] = load().get_trials()
    assert retry.state.name == "COMPLETE" and retry.user_attrs["resumed_from_epoch"] == 1
    assert sorted(retry.intermediate_values) == [1, 2, 3]
    assert "checkpoint/checkpoint-0.pt of run" in caplog.text and "unreadable" in caplog.text


def test_a_study_refreshes_its_stores_planner_statistics_as_it_doubles_and_ends(
        here, monkeypatch):
    """The MLflow UI ranks a study's trials in milliseconds only with SQLite's statistics (4 s
    at 10,000 runs without): a worker gathers them each time the study doubles, the sweep
    as it ends."""
    import rnnlab.study.worker as worker

    monkeypatch.setattr(worker, "ANALYSE_FROM", 2)
    calls = []
    real = Tracker.refresh_statistics
    monkeypatch.setattr(Tracker, "refresh_statistics",
                        lambda self: calls.append(len(load().trials)) or real(self))
    path = write(here / "spec.yaml", train__epochs=1, study__n_trials=4)
    assert work(load_study_spec(path), "rnnlab.journal") == 4
    assert calls == [2, 4, 4]  # after trials 2 and 4 (each in its turn, then told), at the end
    import sqlite3

    with sqlite3.connect("mlflow.db") as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'runs'").fetchone()[0]
