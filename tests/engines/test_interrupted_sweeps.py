"""Ctrl-C and SIGTERM at each exact moment of a 2-worker sweep leave every trial it claimed
finished or failed "interrupted" with its retry queued and every MLflow run closed; running the
same command again finishes the budget exactly.

Each case is deterministic: the signal is sent from inside the command, at one exact point
(tests/fire/sitecustomize.py), never after a sleep.
"""

from __future__ import annotations

import collections
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
from support import fire_env

from rnnlab.errors import WorkersLost
from rnnlab.storage.adapter import open_storage
from rnnlab.study.exits import Exits

NAME, N_TRIALS = "stop", 2
SPEC = {
    "data": {"source": "mnist-5k", "train_size": 200, "val_size": 100, "patch": 28},
    "model": {"hidden": 8},
    "train": {"epochs": 4, "lr": 3e-3, "checkpoint_every": 1},
    "study": {"name": NAME, "n_trials": N_TRIALS, "heartbeat_interval": 0.5,
              "grace_period": 3, "sampler": {"name": "random", "seed": 0},
              "pruner": {"name": "none"}},
    "search": {"model.cell": {"choices": ["rnn", "gru"]}},
}
SIGNAL = {"group": ("Ctrl-C", 130), "leader": ("Ctrl-C", 130), "term": ("SIGTERM", 143),
          "double": ("Ctrl-C", 130)}


@pytest.fixture
def here(tmp_path, mlflow_db):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(SPEC))
    return tmp_path


def start(here: Path, *args: str, fire: str | None = None) -> subprocess.Popen:
    """``rnnlab ARGS`` in a session of its own (its own process group, as in a terminal)."""
    env = fire_env(fire, here / "fired") if fire else dict(os.environ)
    return subprocess.Popen([sys.executable, "-m", "rnnlab", *args, str(here / "s.yaml")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def records():
    try:
        study = optuna.load_study(study_name=NAME, storage=open_storage("rnnlab.journal"))
        trials = study.get_trials()
    except KeyError:
        trials = []
    client = MlflowClient()
    exp = client.get_experiment_by_name(NAME)
    runs = {r.info.run_id: r for r in client.search_runs([exp.experiment_id])} if exp else {}
    return trials, runs


def assert_closed(what: str) -> collections.Counter:
    """Every claimed trial finished or failed as interrupted with its retry queued; every
    run FINISHED or KILLED (interrupted trials' KILLED). Returns the trials' states."""
    trials, runs = records()
    retries = {t.user_attrs.get("retry_of") for t in trials if t.state.name == "WAITING"}
    for t in trials:
        assert t.state.name in ("COMPLETE", "PRUNED", "FAIL", "WAITING"), t
        run = runs.get(t.user_attrs.get("mlflow_run_id"))
        if t.state.name == "FAIL":
            assert t.user_attrs["reason"] == f"interrupted ({what})"
            assert t.number in retries, f"trial {t.number} failed with no retry queued"
            assert run is None or run.info.status == "KILLED"
        elif t.state.name != "WAITING":
            assert run is not None and run.info.status == "FINISHED"
    assert {r.info.status for r in runs.values()} <= {"FINISHED", "KILLED"}
    return collections.Counter(t.state.name for t in trials)


def resume_and_check(here: Path) -> None:
    again = start(here, "sweep")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    trials, runs = records()
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == N_TRIALS
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert {r.info.status for r in runs.values()} <= {"FINISHED", "KILLED"}
    for t in finished:
        assert runs[t.user_attrs["mlflow_run_id"]].info.status == "FINISHED"


def finish(proc: subprocess.Popen, code: int, what: str) -> str:
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1].startswith(f"rnnlab: interrupted ({what})"), err
    assert "Traceback" not in err, err
    return err


@pytest.mark.slow
@pytest.mark.parametrize("point, how", [
    ("import", "leader"),  # while the command line is still loading
    ("start", "group"),  # while the command starts its workers
    ("ask", "term"),  # while a worker asks for a trial
    ("train", "group"),  # mid-epoch
    ("report", "leader"),  # while a trial reports an epoch
    ("tell", "group"),  # while a worker tells the study a trial's outcome
    ("end_run", "term"),  # while a trial's run is being closed
    ("train", "double"),  # Ctrl-C twice, 50 ms apart: the workers are killed mid-close
])
def test_an_interrupt_at_each_moment_closes_everything_and_resumes(here, point, how):
    what, code = SIGNAL[how]
    store = (here / "mlflow.db").read_bytes()
    finish(start(here, "sweep", "--workers", "2", fire=f"{point}:{how}"), code, what)
    assert (here / f"fired-{point}").exists()  # the signal was sent at that point
    if point == "import":
        # cut before it opened anything: no journal, no lock or other file, the MLflow store
        # as it was; so the same command again is the fresh sweep that each other case starts
        # with, and is not run a second time here
        assert sorted(p.name for p in here.iterdir()) == ["fired-import", "mlflow.db", "s.yaml"]
        assert (here / "mlflow.db").read_bytes() == store
        return
    states = assert_closed(what)
    if point in ("ask", "train", "report") and how != "double":
        assert states["FAIL"] >= 1  # a trial was cut, and is retried
    resume_and_check(here)


def wait_for(predicate, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_second_ctrl_c_kills_a_stuck_worker_and_its_trial_is_still_closed(here):
    # The worker that takes the first Ctrl-C hangs while failing its trial (a store that does
    # not answer): a second Ctrl-C kills it, and the command closes its trial for it.
    sweep = start(here, "sweep", "--workers", "2", fire="report:group,fail:hang")
    wait_for((here / "fired-fail").exists, "a worker stuck failing its trial")
    os.killpg(sweep.pid, signal.SIGINT)
    finish(sweep, 130, "Ctrl-C")
    stuck = int((here / "fired-fail").read_text())
    trials, _ = records()
    theirs = [t for t in trials if t.user_attrs.get("worker", "").endswith(f":{stuck}")]
    assert [t.state.name for t in theirs] == ["FAIL"]
    assert_closed("Ctrl-C")
    resume_and_check(here)


@pytest.mark.slow
def test_a_worker_the_kernel_kills_is_one_line_and_the_others_finish_the_study(here):
    # The out-of-memory killer's SIGKILL: no handler runs in that worker. The other worker
    # fails its trial once the heartbeat has been silent for the grace period (3 s), runs the
    # retry and finishes the budget; the command says in one line what happened (exit code 1).
    sweep = start(here, "sweep", "--workers", "2", fire="report:kill")
    _, err = sweep.communicate(timeout=240)
    assert sweep.returncode == 1, err
    assert "Traceback" not in err, err
    said = [line for line in err.splitlines() if "workers died" in line]
    assert said == ["rnnlab: error: 1 of 2 workers died: 1 killed by SIGKILL (SIGKILL is what the "
                    "kernel's out-of-memory killer sends: `dmesg` says; fewer workers need less "
                    "memory); the study is kept: run the same command again to resume it (a "
                    "trial they held is failed and retried once its heartbeat has been silent "
                    "for study.grace_period)"], err
    killed = int((here / "fired-report").read_text())
    trials, runs = records()
    theirs = [t for t in trials if t.user_attrs.get("worker", "").endswith(f":{killed}")]
    assert [t.state.name for t in theirs] == ["FAIL"]
    assert theirs[0].user_attrs["reason"].startswith("worker lost: no heartbeat for ")
    assert runs[theirs[0].user_attrs["mlflow_run_id"]].info.status == "KILLED"
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == N_TRIALS and theirs[0].number in {
        t.user_attrs.get("retry_of") for t in finished}
    resume_and_check(here)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["group", "term"])
def test_an_interrupted_rnnlab_worker_closes_its_trial_and_resumes(here, how):
    what, code = SIGNAL[how]
    finish(start(here, "worker", fire=f"report:{how}"), code, what)
    assert assert_closed(what)["FAIL"] == 1
    resume_and_check(here)


@pytest.mark.slow
def test_an_interrupted_stratified_sweep_resumes_with_every_stratum_at_its_share(here):
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["study"].update(n_trials=4, strata=["model.cell"])
    (here / "s.yaml").write_text(yaml.safe_dump(raw))
    finish(start(here, "sweep", "--workers", "2", fire="report:group"), 130, "Ctrl-C")
    assert assert_closed("Ctrl-C")["FAIL"] >= 1  # a trial was cut, and is retried
    again = start(here, "sweep")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    trials, _ = records()
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    finished = collections.Counter(t.params["model.cell"] for t in trials
                                   if t.state.name in ("COMPLETE", "PRUNED"))
    assert finished == {"rnn": 2, "gru": 2}


def test_workers_that_died_are_said_by_how_they_died_and_what_resuming_does():
    with pytest.raises(WorkersLost) as lost:
        Exits(codes=[0, -9, -9, 3, None, -15], errors=[], trials_run=1,
              interrupted=None).raise_for_exits("the confirmation runs that finished are reused")
    assert lost.value.exit_code == 1
    assert str(lost.value) == (
        "5 of 6 workers died: 2 killed by SIGKILL, 1 with exit code 3, 1 with no exit code, "
        "1 killed by SIGTERM (SIGKILL is what the kernel's out-of-memory killer sends: `dmesg` "
        "says; fewer workers need less memory); the study is kept: run the same command again "
        "to resume it (the confirmation runs that finished are reused)")
