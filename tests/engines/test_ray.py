"""``rnnlab sweep --ray`` on a real Ray cluster of two nodes on this machine, with fake GPUs.

The head declares 2 GPUs and 4 CPUs, a second node 1 CPU and no GPU; each is a ``ray start
--block`` in a session of its own, stopped by killing its process group (never ``ray stop``,
which would stop every Ray cluster of the machine). Ray registers the nodes under the machine's
own address; nothing outside this machine is reached. The study lives in a PostgreSQL database
and its runs on a real ``mlflow server``; training runs on the CPU, as torch sees no CUDA.

The node-loss test adds a third node, with 1 GPU, whose worker stops at its trial's second epoch
(tests/fire/sitecustomize.py, ``report:hang``): once that trial's checkpoint is on the tracking
server, the node's raylet is killed. Until then the head's GPUs are held by a placement group,
so the lost trial is the only one running and the node surely has one.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml
from servers import MlflowServer, free_port

from rnnlab.core.study_spec import load_study_spec
from rnnlab.engines.ray_engine import RayPlan, check_stores, plan_workers
from rnnlab.errors import RnnlabError

FIRE = Path(__file__).resolve().parents[1] / "fire"
START_S = 180  # a node imports Ray's agents; slow on a busy machine
SWEEP_S = 420
N_TRIALS = 4
# No token: whether Ray asks for one depends on files in ~/.ray that other Ray runs left.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}


class RayNode:
    """``ray start ... --block`` in a session of its own, on free loopback ports."""

    def __init__(self, folder: Path, name: str, args: list[str], env: dict | None = None):
        self.log = folder / f"ray-{name}.log"
        for _ in range(3):  # a port free when chosen may be taken before Ray binds it
            with open(self.log, "w") as out:
                self.proc = subprocess.Popen(
                    [str(Path(sys.executable).with_name("ray")), "start", *args, *_ports(args),
                     "--disable-usage-stats", "--object-store-memory", str(100 * 2**20),
                     "--temp-dir", str(folder / "tmp"), "--block"],
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                    env={**os.environ, **RAY_ENV, **(env or {})})
            deadline = time.monotonic() + START_S
            while self.proc.poll() is None and "Ray runtime started" not in self.log.read_text():
                if time.monotonic() > deadline:
                    self.kill()
                    pytest.fail(f"ray start did not start:\n{self.log.read_text()[-3000:]}")
                time.sleep(0.3)
            if self.proc.poll() is None:
                return
        pytest.fail(f"ray start exited:\n{self.log.read_text()[-3000:]}")

    def pid_of(self, command: str) -> int:
        """The pid of this node's ``command`` (a process of the node's group; Ray's workers
        have groups of their own)."""
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and (stat := _stat(int(entry.name))):
                if stat[0] == command and stat[2] == self.proc.pid:
                    return int(entry.name)
        raise AssertionError(f"no {command} in the node's process group")

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def _stat(pid: int) -> tuple[str, int, int] | None:
    """A process's command name, parent and process group (None once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return stat[stat.index("(") + 1:stat.rindex(")")], int(fields[1]), int(fields[2])


def _ports(args: list[str]) -> list[str]:
    """Free ports for every server a node starts (Ray's fixed defaults would collide with any
    other Ray on the machine)."""
    ports = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]
    if "--head" in args:
        ports.append("--dashboard-port")  # (the minimal wheel starts no Ray Client server)
    return [x for p in ports for x in (p, str(free_port()))]


@pytest.fixture(scope="module")
def cluster():
    """The head (2 fake GPUs, 4 CPUs) and a second node (1 CPU); yields the head's address."""
    pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
    folder = Path(tempfile.mkdtemp(prefix="rnnlab-ray-"))  # short: Ray's socket paths live here
    nodes = []
    try:
        port = free_port()
        nodes.append(RayNode(folder, "head", [
            "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "4",
            "--num-gpus", "2", "--include-dashboard=false"]))
        address = f"127.0.0.1:{port}"
        nodes.append(RayNode(folder, "second", [
            "--address", address, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
            "--num-gpus", "0"]))
        yield address, folder
    finally:
        for node in reversed(nodes):
            node.kill()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def tracking(module_databases, tmp_path_factory):
    server = MlflowServer(module_databases[1], tmp_path_factory.mktemp("mlflow"))
    yield server.uri
    server.stop()


def _spec(folder: Path, name: str, epochs: int) -> Path:
    spec = {
        "data": {"source": "mnist-5k", "train_size": 200, "val_size": 100, "patch": 28},
        "model": {"hidden": 8},
        "train": {"epochs": epochs, "lr": 3e-3, "threads": 1, "device": "auto",
                  "checkpoint_every": 1},
        "study": {"name": name, "n_trials": N_TRIALS, "heartbeat_interval": 0.5,
                  "grace_period": 3, "sampler": {"name": "random", "seed": 0},
                  "pruner": {"name": "none"}},
        "search": {"model.cell": {"choices": ["rnn", "gru"]},
                   "train.lr": {"low": 1e-3, "high": 1e-2, "log": True}},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _sweep(spec: Path, address: str, storage: str, uri: str, *args: str) -> subprocess.Popen:
    """``rnnlab sweep SPEC --ray ADDRESS``, its stderr in a file (a lost node fills a pipe)."""
    with open(spec.parent / "sweep.err", "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "rnnlab", "sweep", str(spec), "--ray", address, "--storage",
             storage, *args], env={**os.environ, "MLFLOW_TRACKING_URI": uri},
            cwd=spec.parent, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def _said(proc: subprocess.Popen) -> str:
    return (Path(proc.args[3]).parent / "sweep.err").read_text()[-4000:]


def _ended(proc: subprocess.Popen) -> str:
    try:
        proc.wait(timeout=SWEEP_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"the sweep did not end:\n{_said(proc)}")
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{_said(proc)}"
    return _said(proc)


def _closed(storage: str, uri: str, name: str):
    """The study's trials and runs, checked: exactly the budget finished, nothing running."""
    import optuna
    from mlflow.tracking import MlflowClient

    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    states = collections.Counter(t.state.name for t in trials)
    assert states["COMPLETE"] + states["PRUNED"] == N_TRIALS, states
    assert not states["RUNNING"] and not states["WAITING"], states
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    by_id = {r.info.run_id: r for r in runs}
    for t in trials:
        if t.state.name != "FAIL":
            assert by_id[t.user_attrs["mlflow_run_id"]].info.status == "FINISHED"
    return trials, by_id


@pytest.mark.slow
def test_a_study_runs_its_budget_on_shares_of_the_gpus_ray_assigns(cluster, tracking,
                                                                   module_databases, tmp_path):
    address, _ = cluster
    name = f"ray-{uuid.uuid4().hex[:6]}"
    proc = _sweep(_spec(tmp_path, name, epochs=2), address, module_databases[0], tracking,
                  "--trials-per-gpu", "2")
    err = _ended(proc)
    assert "4 Ray worker(s) x 0.5 GPU + 1 CPU each, on the 2-node cluster" in err, err
    trials, runs = _closed(module_databases[0], tracking, name)
    assert len(trials) == N_TRIALS
    workers_on = collections.defaultdict(set)
    for t in trials:
        where = t.user_attrs["placement"]
        gpu = where["rnnlab.ray.gpu_ids"]
        assert gpu in ("0", "1") and where["rnnlab.cuda_visible_devices"] == gpu, where
        workers_on[where["rnnlab.ray.node"], gpu].add(t.user_attrs["worker"])
        tags = runs[t.user_attrs["mlflow_run_id"]].data.tags
        assert {k: tags[k] for k in where} == where
    assert len({node for node, _ in workers_on}) == 1  # the one node with GPUs
    assert all(1 <= len(w) <= 2 for w in workers_on.values()), workers_on  # half a GPU each


HOLD = """
import sys
import ray
from ray.util.placement_group import placement_group
ray.init(address=sys.argv[1], logging_level="ERROR")
ray.get(placement_group([{"GPU": 2}]).ready())
print("held", flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
def test_a_node_lost_mid_trial_is_resumed_from_its_checkpoint_elsewhere(
        cluster, tracking, module_databases, tmp_path):
    from mlflow.tracking import MlflowClient

    address, folder = cluster
    marker = tmp_path / "fired"
    victim = RayNode(folder, "victim", [
        "--address", address, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
        "--num-gpus", "1"], env={
        "PYTHONPATH": os.pathsep.join([str(FIRE), os.environ.get("PYTHONPATH", "")]),
        "RNNLAB_TEST_FIRE": "report:hang", "RNNLAB_TEST_FIRE_ONLY": "default_worker.py",
        "RNNLAB_TEST_MARKER": str(marker)})
    hold = subprocess.Popen([sys.executable, "-c", HOLD, address], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    proc = None
    try:
        assert hold.stdout.readline().strip() == "held"  # the head's 2 GPUs
        name = f"ray-lost-{uuid.uuid4().hex[:6]}"
        proc = _sweep(_spec(tmp_path, name, epochs=3), address, module_databases[0], tracking)
        fired = Path(f"{marker}-report")
        lost_pid = _wait_for(lambda: fired.is_file() and fired.read_text(), proc)
        raylet = victim.pid_of("raylet")
        assert _stat(int(lost_pid))[1] == raylet  # a worker of the victim node
        client = MlflowClient(tracking)
        run = _wait_for(lambda: _running_run(module_databases[0], name, lost_pid), proc)
        _wait_for(lambda: client.list_artifacts(run, "checkpoint"), proc)
        os.kill(raylet, signal.SIGKILL)  # the node is lost mid-trial
        os.kill(int(lost_pid), signal.SIGKILL)  # and with it, its worker
        hold.stdin.close()  # the head's GPUs are free: its workers start
        err = _ended(proc)
    finally:
        victim.kill()
        hold.kill()
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "3 Ray worker(s) x 1 GPU + 1 CPU each, on the 3-node cluster" in err, err
    trials, runs = _closed(module_databases[0], tracking, name)
    lost = [t for t in trials if f":{lost_pid} " in t.user_attrs["worker"]]
    assert len(lost) == 1 and lost[0].state.name == "FAIL", lost
    assert lost[0].user_attrs["reason"].startswith("worker lost"), lost[0].user_attrs
    assert runs[lost[0].user_attrs["mlflow_run_id"]].info.status == "KILLED"
    retry = [t for t in trials if t.user_attrs.get("retry_of") == lost[0].number]
    assert len(retry) == 1 and retry[0].state.name in ("COMPLETE", "PRUNED"), retry
    assert retry[0].user_attrs["resumed_from_epoch"] >= 1
    assert (retry[0].user_attrs["placement"]["rnnlab.ray.node"]
            != lost[0].user_attrs["placement"]["rnnlab.ray.node"])  # on the surviving node


def _running_run(storage: str, name: str, pid: str) -> str | None:
    """The MLflow run of the trial that worker ``pid`` is running, once it has one."""
    import optuna

    for t in optuna.load_study(study_name=name, storage=storage).get_trials():
        if t.state.name == "RUNNING" and f":{pid} " in t.user_attrs.get("worker", ""):
            return t.user_attrs.get("mlflow_run_id")
    return None


def _wait_for(found, proc: subprocess.Popen, timeout_s: float = SWEEP_S):
    """Poll ``found()`` until it is truthy; fail if the sweep ends or time runs out first."""
    deadline = time.monotonic() + timeout_s
    while not (value := found()):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the sweep ended (or hung) first:\n{_said(proc)}")
        time.sleep(0.2)
    return value


@pytest.mark.slow
def test_ctrl_c_cancels_the_tasks_and_leaves_the_study_resumable(cluster, tracking,
                                                                 module_databases, tmp_path):
    """Ctrl-C reaches the command alone (Ray's workers are in no terminal's process group):
    its cancel closes every trial running as interrupted, with its retry queued."""
    import optuna
    from mlflow.tracking import MlflowClient

    address, _ = cluster
    name = f"ray-stop-{uuid.uuid4().hex[:6]}"
    # 1000 epochs: minutes of training, stopped a moment after the first epoch
    proc = _sweep(_spec(tmp_path, name, epochs=1000), address, module_databases[0], tracking,
                  "--workers", "2", "--trials-per-gpu", "2")

    def reported() -> bool:
        try:
            study = optuna.load_study(study_name=name, storage=module_databases[0])
        except KeyError:
            return False
        return any(t.intermediate_values for t in study.get_trials(deepcopy=False))

    _wait_for(reported, proc)
    proc.send_signal(signal.SIGINT)
    try:
        assert proc.wait(timeout=120) == 130, _said(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert _said(proc).strip().splitlines()[-1].startswith("rnnlab: interrupted (Ctrl-C)")
    trials = optuna.load_study(study_name=name, storage=module_databases[0]).get_trials()
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert failed and all(t.user_attrs["reason"] == "interrupted (Ctrl-C)" for t in failed)
    retries = {t.user_attrs.get("retry_of") for t in trials if t.state.name == "WAITING"}
    assert {t.number for t in failed} == retries, "each interrupted trial is queued again"
    assert not [t for t in trials if t.state.name == "RUNNING"]
    client = MlflowClient(tracking)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    assert {r.info.status for r in runs} == {"KILLED"}  # the trials' and the study's


def test_a_remote_cluster_refuses_a_storage_only_this_machine_has(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from rnnlab.cli.app import app

    spec = _spec(tmp_path, "refused", epochs=1)
    for args, store in ((["--ray", "127.0.0.1:6379"], "Optuna storage 'rnnlab.journal'"),
                        (["--ray", "auto", "--storage", "postgresql://postgres@127.0.0.1:1/s"],
                         "MLflow tracking store 'sqlite:///")):
        result = CliRunner().invoke(app, ["sweep", str(spec), *args])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and store in lines[0] and "--ray local" in lines[0], lines
    assert not (tmp_path / "rnnlab.journal").exists()


def test_by_default_each_gpu_gets_trials_per_gpu_workers_else_each_cpu_one(tmp_path):
    def plan(resources, workers=None, per_gpu=1, **train):
        path = _spec(tmp_path, "plan", epochs=1)
        spec = load_study_spec(path, [f"train.{k}={v}" for k, v in train.items()])
        return plan_workers(resources, 2, spec, workers, per_gpu, "auto")

    gpus = {"GPU": 3.0, "CPU": 8.0}
    assert plan(gpus, per_gpu=2) == RayPlan("auto", 2, N_TRIALS, 0.5, 1, True)  # 6, capped
    assert plan(gpus, per_gpu=1) == RayPlan("auto", 2, 3, 1.0, 1, True)
    assert plan(gpus, device="cpu") == RayPlan("auto", 2, N_TRIALS, 0.0, 1, True)
    assert plan({"CPU": 6.0}, threads=2) == RayPlan("auto", 2, 3, 0.0, 2, True)
    assert plan({"CPU": 6.0}, workers=9) == RayPlan("auto", 2, 9, 0.0, 1, False)


def test_a_local_cluster_takes_any_store_a_remote_one_only_shared_ones():
    check_stores("local", "rnnlab.journal", "sqlite:///mlflow.db")  # one machine: any store
    check_stores("10.0.0.1:6379", "postgresql://u@h/db", "http://mlflow:5000")
    with pytest.raises(RnnlabError, match="the nodes of --ray 10.0.0.1:6379 cannot reach"):
        check_stores("10.0.0.1:6379", "rnnlab.journal", "http://mlflow:5000")
