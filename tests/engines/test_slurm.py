"""``rnnlab slurm``: the batch script it writes, every refusal, and a real job array.

The last tests start a single-node Slurm of their own (``slurm_cluster.py``: munged, slurmctld and
slurmd as root, two fake GPUs) and run a study to its exact budget with a 2-task array on a real
PostgreSQL; they are skipped, with the reason, where Slurm cannot run (not root, not installed).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
import urllib.parse
import uuid
from pathlib import Path

import optuna
import psycopg2
import pytest
import yaml
from conftest import PG
from mlflow.tracking import MlflowClient
from slurm_cluster import LocalSlurm, SlurmUnavailable
from typer.testing import CliRunner

from rnnlab.cli.app import app
from rnnlab.tracking.tracker import Tracker

N_TRIALS = 4
FIRE = Path(__file__).resolve().parents[1] / "fire"  # holds a task at one point
SPEC = {
    "data": {"source": "mnist-5k", "train_size": 200, "val_size": 100, "patch": 28},
    "model": {"hidden": 8},
    "train": {"epochs": 2, "threads": 1, "device": "cpu"},  # the GPUs Slurm hands out are fake
    "study": {"name": "arrayed", "n_trials": N_TRIALS, "sampler": {"name": "random", "seed": 0},
              "pruner": {"name": "none"}},
    "search": {"model.cell": {"choices": ["rnn", "gru"]},
               "train.lr": {"low": 1e-3, "high": 5e-3, "log": True}},  # none diverges
}


@pytest.fixture(autouse=True)
def _shared_tracking(monkeypatch):
    """An MLflow server the compute nodes would reach (a dry run reaches no store)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow-host:5000")


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "arrayed.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


def rnnlab(*args: str):
    return CliRunner().invoke(app, list(args))


def one_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnlab: error: "), result.stderr
    return lines[0]


def test_dry_run_prints_the_array_script_and_submits_nothing(spec, tmp_path):
    journal = tmp_path / "shared" / "s.journal"
    result = rnnlab("slurm", str(spec), "--array", "3%2", "--gpus-per-task", "2",
                    "--trials-per-gpu", "4", "--partition", "gpu", "--time", "2:00:00",
                    "--account", "lab", "--extra", "#SBATCH --mem=8G", "--extra", "--qos=low",
                    "--storage", str(journal), "--set", "train.epochs=3", "--dry-run")
    assert result.exit_code == 0, result.output
    script = tmp_path / "slurm" / "arrayed.sbatch"
    assert result.stdout == script.read_text()
    assert stat.S_IMODE(script.stat().st_mode) == 0o600  # a storage URL may hold a password
    sbatch = [line.split(" ", 1)[1] for line in result.stdout.splitlines()
              if line.startswith("#SBATCH ")]
    assert sbatch == ["--job-name=rnnlab-arrayed", "--array=0-2%2",
                      f"--output={tmp_path}/slurm/arrayed-%A_%a.out", f"--chdir={tmp_path}",
                      "--requeue", "--open-mode=append", "--gres=gpu:2", "--partition=gpu",
                      "--time=2:00:00", "--account=lab", "--mem=8G", "--qos=low"]
    assert f"export MLFLOW_TRACKING_URI={os.environ['MLFLOW_TRACKING_URI']}\n" in result.stdout
    assert "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-}" in result.stdout
    worker = result.stdout.strip().splitlines()[-1].split()
    assert worker[0] == "exec" and Path(worker[1]).is_absolute()
    assert worker[2:] == ["-m", "rnnlab", "worker", str(spec), "--storage", str(journal),
                          "--trials-per-gpu", "4", "--set", "train.epochs=3"]
    assert "nothing submitted" in result.stderr
    assert not journal.parent.exists(), "a dry run reaches no store"


def test_no_password_reaches_the_script_or_a_tasks_command_line(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://admin:tr@ck/er@mlflow-host:5000")
    url = "postgresql://rnnlab:s3c/r@t@127.0.0.1:5432/optuna"
    result = rnnlab("slurm", str(spec), "--array", "2", "--storage", url, "--dry-run")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "slurm" / "arrayed.sbatch").read_text()
    for secret in ("s3c/r@t", "s3c", "tr@ck/er", "tr@ck"):
        assert secret not in text and secret not in result.output
    worker = text.strip().splitlines()[-1].split()
    assert worker[worker.index("--storage") + 1] == "postgresql://rnnlab@127.0.0.1:5432/optuna"
    assert "export MLFLOW_TRACKING_URI=http://mlflow-host:5000\n" in text
    assert "--gres" not in result.stdout  # no GPUs asked for
    assert "storage postgresql://rnnlab:***@127.0.0.1:5432/optuna is on this machine's " \
           "loopback address" in result.stderr


@pytest.mark.parametrize(("args", "env", "expected"), [
    ([], {}, "storage 'rnnlab.journal' is the default journal, a file in this folder"),
    (["--storage", "rel.journal"], {}, "'rel.journal' is a relative path"),
    (["--storage", "sqlite:////shared/s.db"], {}, "'sqlite:////shared/s.db' is a SQLite file"),
    (["--storage", "/s.journal"], {"MLFLOW_TRACKING_URI": None},
     "MLFLOW_TRACKING_URI is not set"),
    (["--storage", "/s.journal"], {"MLFLOW_TRACKING_URI": "sqlite:////shared/mlflow.db"},
     "'sqlite:////shared/mlflow.db' is a SQLite file"),
    (["--storage", "/s.journal"], {"MLFLOW_TRACKING_URI": "mlruns"},
     "'mlruns' is a relative path"),
    (["--storage", "/s.journal", "--array", "x"], {}, "--array 'x': give the number of tasks"),
    (["--storage", "/s.journal", "--array", "0"], {}, "--array '0': give the number of tasks"),
    (["--storage", "/s.journal", "--array", "4%0"], {}, "--array '4%0'"),
    (["--storage", "/s.journal", "--extra", "mem=4G"], {}, "--extra 'mem=4G': give an #SBATCH"),
    (["--storage", "/s.journal", "--partition", "a\n#SBATCH --x"], {}, "spans lines"),
    (["--storage", "/s.journal", "--set", "model.nope=1"], {}, "model.nope"),
])
def test_refusals_are_one_line_and_write_nothing(spec, tmp_path, monkeypatch, args, env,
                                                 expected):
    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key)
        else:
            monkeypatch.setenv(key, value)
    if "--array" not in args:
        args = [*args, "--array", "2"]
    line = one_line(rnnlab("slurm", str(spec), *args, "--dry-run"))
    assert expected in line, line
    if "file" in expected or "relative" in expected or "not set" in expected:
        assert "compute nodes cannot reach" in line, line
        assert "absolute path on a shared filesystem" in line, line
    assert not (tmp_path / "slurm").exists()


def test_without_sbatch_it_says_where_to_run(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sbatch on it
    journal = tmp_path / "s.journal"
    line = one_line(rnnlab("slurm", str(spec), "--array", "2", "--storage", str(journal)))
    assert "sbatch not found" in line and "login node" in line and "--dry-run" in line
    assert not journal.exists() and not (tmp_path / "slurm").exists()


@pytest.fixture(scope="session")
def slurm_cluster():
    try:
        cluster = LocalSlurm()
    except SlurmUnavailable as exc:
        pytest.skip(f"no Slurm here: {exc}")
    yield cluster
    cluster.close()


@pytest.fixture
def on_cluster(slurm_cluster, monkeypatch, databases):
    """This test's commands reach the cluster; the study and the runs on PostgreSQL, as the
    compute nodes of a real cluster would reach them, as a role with a password (one a URL
    must quote); returns (cluster, storage URL)."""
    role, password = f"rnnlab_{uuid.uuid4().hex[:8]}", "p@ss/w:rd"
    admin = psycopg2.connect(dbname="postgres", **PG)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", (password,))
        for url in databases:
            cur.execute(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" OWNER TO {role}')
    quoted = urllib.parse.quote(password, safe="")
    storage, tracking = (url.replace("postgres@", f"{role}:{quoted}@") for url in databases)
    monkeypatch.setenv("SLURM_CONF", slurm_cluster.env()["SLURM_CONF"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    MlflowClient(tracking).search_experiments()  # its schema, made before any command
    yield slurm_cluster, storage
    with admin.cursor() as cur:  # the databases the role owns go first, then the role
        for url in databases:
            cur.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        cur.execute(f"DROP ROLE {role}")
    admin.close()


def test_an_array_runs_the_study_to_its_exact_budget_on_gpus_slurm_hands_out(spec, tmp_path,
                                                                            on_cluster):
    cluster, storage = on_cluster
    result = rnnlab("slurm", str(spec), "--array", "2", "--gpus-per-task", "1",
                    "--storage", storage)
    assert result.exit_code == 0, result.output
    job = re.search(r"submitted job (\d+): 2 task\(s\)", result.stdout)[1]
    assert f"squeue -j {job}" in result.stdout and "rnnlab status arrayed --storage" \
        in result.stdout
    outputs = [tmp_path / "slurm" / f"arrayed-{job}_{task}.out" for task in (0, 1)]
    tasks = cluster.wait(job, timeout=600)
    logs = "\n".join(p.read_text() for p in outputs if p.exists())
    assert tasks == {0: ("COMPLETED", "0:0"), 1: ("COMPLETED", "0:0")}, logs

    study = optuna.load_study(study_name="arrayed", storage=storage)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE"] * N_TRIALS, states  # exactly the budget, nothing RUNNING
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("arrayed").experiment_id])
    assert len(runs) == N_TRIALS + 1  # the trials and the study's own run
    assert {r.info.status for r in runs} == {"FINISHED"}

    # Each task saw the one GPU Slurm gave it; the two ran at once, so on different GPUs.
    seen = []
    for out in outputs:
        text = out.read_text()
        assert "worker(s) on this machine ran" in text, text
        seen += re.findall(r"CUDA_VISIBLE_DEVICES=(\S*)", text)
    assert sorted(seen) == ["0", "1"], logs

    again = one_line(rnnlab("slurm", str(spec), "--array", "2", "--storage", storage))
    assert f"has {N_TRIALS} trials finished already, its whole budget" in again


def test_a_job_sbatch_refuses_is_one_line(spec, on_cluster):
    _, storage = on_cluster
    line = one_line(rnnlab("slurm", str(spec), "--array", "2", "--partition", "nosuch",
                           "--storage", storage))
    assert line.endswith("sbatch refused slurm/arrayed.sbatch: Batch job submission failed: "
                         "Invalid partition name specified"), line


def wait_for_checkpoint(storage: str, name: str, epoch: int, timeout: float = 300) -> None:
    """Until a running trial of the study has a checkpoint of ``epoch`` or later stored."""
    tracker, deadline = Tracker(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(KeyError):  # no study yet
            study = optuna.load_study(study_name=name, storage=storage)
            for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
                run = t.user_attrs.get("mlflow_run_id")
                ckpt = run and tracker.load_checkpoint(run)
                if ckpt and ckpt.epoch >= epoch:
                    return
        time.sleep(0.3)
    raise AssertionError(f"no checkpoint of epoch {epoch} in {timeout} s")


def test_a_requeued_task_runs_again_and_resumes_its_trial_from_its_checkpoint(
        tmp_path, on_cluster, monkeypatch):
    # What a failed or preempted node does to a task: Slurm stops it (SIGTERM) and, with
    # --requeue, runs it again. One task and one trial, held at its epoch-2 report (tests/fire)
    # until Slurm stops it, however slow the machine: the trial it was running is the one it
    # resumes. The task's second run finds the marker and is not held.
    cluster, storage = on_cluster
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FIRE),
                                                      os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("RNNLAB_TEST_FIRE", "report:hang")
    monkeypatch.setenv("RNNLAB_TEST_MARKER", str(tmp_path / "fired"))
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["train"].update(epochs=4, checkpoint_every=1)
    raw["study"].update(name="requeued", n_trials=1, heartbeat_interval=0.5, grace_period=3)
    spec = tmp_path / "requeued.yaml"
    spec.write_text(yaml.safe_dump(raw))
    result = rnnlab("slurm", str(spec), "--array", "1", "--storage", storage)
    assert result.exit_code == 0, result.output
    job = re.search(r"submitted job (\d+)", result.stdout)[1]
    wait_for_checkpoint(storage, "requeued", 2)
    assert (tmp_path / "fired-report").is_file()  # held at epoch 2's report
    cluster.run("scontrol", "requeue", f"{job}_0")
    # Slurm holds a requeued job back for two minutes: release it now.
    deadline = time.monotonic() + 60
    while "PENDING" not in cluster.run("squeue", "-h", "-j", job, "-o", "%T", check=False):
        assert time.monotonic() < deadline, "the requeued task never went back to the queue"
        time.sleep(0.3)
    cluster.run("scontrol", "update", f"JobId={job}_0", "StartTime=now")
    out = tmp_path / "slurm" / f"requeued-{job}_0.out"
    assert cluster.wait(job, timeout=600) == {0: ("COMPLETED", "0:0")}, out.read_text()

    log = out.read_text()  # both runs of the task, appended
    assert "(restart 0)" in log and "(restart 1)" in log, log
    study = optuna.load_study(study_name="requeued", storage=storage)
    trials = study.get_trials()
    assert [t.state.name for t in trials].count("COMPLETE") == 1, log
    assert not [t for t in trials if t.state.name == "RUNNING"]
    [lost] = [t for t in trials if t.state.name == "FAIL"]
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == lost.number)
    assert retry.state.name == "COMPLETE" and retry.params == lost.params
    assert retry.user_attrs["resumed_from_epoch"] == 2  # where it was held
    assert sorted(retry.intermediate_values) == [1, 2, 3, 4]
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("requeued").experiment_id])
    status = {r.info.run_id: r.info.status for r in runs}
    assert status.pop(lost.user_attrs["mlflow_run_id"]) == "KILLED"
    assert set(status.values()) == {"FINISHED"}  # the trials, retry included, and the study
