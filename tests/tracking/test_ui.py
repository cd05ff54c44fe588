"""`rnnlab ui` as a user runs it: a real `mlflow server`, its printed URL opened in Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest
from mlflow.tracking import MlflowClient
from support import SPEC, refused_port, serve_on_a_free_port
from typer.testing import CliRunner

from rnnlab.cli.app import app
from rnnlab.storage.adapter import load_study
from rnnlab.storage.keys import ATTR_PARENT
from rnnlab.tracking.ui import StudyRuns, runs_path, saved_view, view_state

START_S = 240  # a cold mlflow server imports and checks its store; slow on a busy machine


def test_runs_path_opens_the_training_runs_view_on_the_studys_saved_view():
    route, _, query = runs_path("7", "rnnlab-abc").partition("?")
    assert route == "/#/experiments/7/runs"
    assert dict(urllib.parse.parse_qsl(query)) == {"workflowType": "machine_learning",
                                                   "viewStateShareKey": "rnnlab-abc"}
    s = StudyRuns("s", "s", "abc123", "val_loss", "minimize", params=("model.cell", "train.lr"),
                  objective="last")
    state = view_state(s, "last_val_loss")
    assert state["searchFilter"] == ("tags.mlflow.parentRunId = 'abc123' and "
                                     "tags.`rnnlab.kind` = 'trial'")  # no confirmation run
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`last_val_loss`", True)
    assert state["selectedColumns"] == [
        "metrics.`last_val_loss`", "tags.`rnnlab.outcome`", "metrics.`val_loss`",
        "metrics.`best_epoch`", "params.`model.cell`", "params.`train.lr`"]
    record = json.loads(saved_view(s, "last_val_loss", 5))
    assert (record["createdAt"], json.loads(record["state"])) == (5, state)
    assert s.view_key.startswith("rnnlab-") and s.view_key != StudyRuns(
        "s", "s", "other", "val_loss", "minimize").view_key  # one view per study run


def _new_study(folder):
    """Open a new study from ``SPEC`` in ``folder`` (its spec and the open study)."""
    import yaml

    from rnnlab.core.study_spec import load_study_spec
    from rnnlab.study.parent import open_study
    from rnnlab.tracking.tracker import Tracker

    (folder / "s.yaml").write_text(yaml.safe_dump(SPEC))
    spec = load_study_spec(folder / "s.yaml")
    return spec, open_study(spec, str(folder / "rnnlab.journal"), Tracker())


def test_a_new_study_saves_its_trials_view_in_its_experiment(tmp_path, mlflow_db):
    # Any MLflow UI on the store (not only `rnnlab ui`) lists the view under "Views"; `rnnlab
    # ui` rewrites the same one (same key) and opens it.
    from rnnlab.tracking.ui import KIND, KIND_TAG, VIEW_TAG

    spec, study = _new_study(tmp_path)
    tags = MlflowClient().get_experiment_by_name(spec.study.name).tags
    assert tags[KIND_TAG] == KIND
    [key] = [k.removeprefix(VIEW_TAG) for k in tags if k.startswith(VIEW_TAG)]
    s = StudyRuns(spec.study.name, spec.study.name, study.user_attrs[ATTR_PARENT],
                  "val_acc", "maximize", params=tuple(spec.search))
    assert key == s.view_key
    assert json.loads(json.loads(tags[VIEW_TAG + key])["state"]) == view_state(s, "best_val_acc")


def test_a_store_that_refuses_the_view_stops_no_sweep(tmp_path, mlflow_db, monkeypatch, caplog):
    # Fault injection: a real store that refuses experiment tags (a server's permissions)
    # cannot be made here. The view is a convenience: the study and its run are made anyway.
    from mlflow.exceptions import MlflowException

    def refuse(*args, **kwargs):
        raise MlflowException("PERMISSION_DENIED: no tags for you")

    monkeypatch.setattr(MlflowClient, "set_experiment_tag", refuse)
    _, study = _new_study(tmp_path)
    assert MlflowClient().get_run(study.user_attrs[ATTR_PARENT]).info.status == "RUNNING"
    assert "trials view of study" in caplog.text and "PERMISSION_DENIED" in caplog.text


def read_line(proc: subprocess.Popen, pattern: str, deadline: float) -> re.Match | None:
    """Lines of the process's stdout until one matches (the process prints as it goes); None
    once it has exited without printing one."""
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout=60)
            return None
        seen.append(line)
        if found := re.search(pattern, line):
            return found
    pytest.fail(f"no line matching {pattern!r} within the deadline; stdout so far: {seen}")


def test_ui_shows_the_studys_trials_in_chromium(study, browser, tmp_path):  # noqa: F811
    """The view a user opens from `rnnlab ui`: every trial, the best first with its outcome
    and objective; and so again once a report has made confirmation runs in the study."""
    copy = tmp_path / "copy"  # a report adds runs: not to the study other tests read
    shutil.copytree(study.folder, copy)
    env = {**study.env(), "MLFLOW_TRACKING_URI": f"sqlite:///{copy}/mlflow.db"}
    storage = str(copy / "rnnlab.journal")
    errors = tmp_path / "ui.stderr"

    def start(port: int) -> subprocess.Popen:
        with open(errors, "w") as err:
            return subprocess.Popen(
                [sys.executable, "-m", "rnnlab", "ui", "--port", str(port), "--storage",
                 storage, "--study", study.name], cwd=copy, env=env,
                text=True, stdout=subprocess.PIPE, stderr=err)

    def ready(proc: subprocess.Popen, port: int) -> re.Match | None:
        found = read_line(proc, rf"study {study.name} trials: (http://\S+)",
                          time.monotonic() + START_S)
        said = errors.read_text()  # the port taken first: "port N ... is in use", or the
        # server it started could not bind it ("mlflow server exited ..."): try another
        if found is None and f"port {port} " not in said and "mlflow server exited" not in said:
            pytest.fail(f"rnnlab ui exited with code {proc.returncode}: {said}")
        return found

    proc, port, found = serve_on_a_free_port(start, ready)
    try:
        url = found.group(1)
        assert url.startswith(f"http://127.0.0.1:{port}/#/experiments/")
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url, wait_until="load", timeout=120_000)
        page.get_by_text("trial-0", exact=True).first.wait_for(timeout=120_000)
        text = page.inner_text("body")
        trials = load_study(storage, study.name).trials
        for t in trials:
            assert f"trial-{t.number}" in text
        page.close()
        best = load_study(storage, study.name).best_trial
        check_columns(browser, url, len(trials), best)
        # a report's confirmation runs go under the study's run, and stay out of its view
        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        experiment = client.get_experiment_by_name(study.name).experiment_id
        made = subprocess.run(
            [sys.executable, "-m", "rnnlab", "report", study.name, "--storage", storage,
             "--confirm-seeds", "1", "--confirm-splits", "1", "--format", "json", "--out",
             str(tmp_path / "r.json")], cwd=copy, env=env, capture_output=True, text=True,
            timeout=600)
        assert made.returncode == 0, made.stderr
        parent = load_study(storage, study.name).user_attrs[ATTR_PARENT]
        confirmations = client.search_runs([experiment], f"tags.mlflow.parentRunId = "
                                           f"'{parent}' and tags.`rnnlab.kind` != 'trial'")
        assert confirmations  # the newest runs of the study now: none is a trial
        check_columns(browser, url, len(trials), best)
        # With the tracking server as MLFLOW_TRACKING_URI, `rnnlab ui` starts nothing and
        # points at that server.
        served = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
        result = CliRunner().invoke(app, ["ui", "--storage", storage], env=served)
        assert result.exit_code == 0, result.output
        assert f"study {study.name} trials: http://127.0.0.1:{port}/#/experiments/" in (
            result.stdout)
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the UI stops its server
        code = proc.wait(timeout=60)
    assert code == 0
    with pytest.raises(ConnectionRefusedError):  # no server left behind on the port
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    # nor any of its workers (uvicorn, MLflow's job runner and huey consumers outlive the
    # server itself on SIGTERM): every process the UI started ran in the copy's folder
    assert _running_in(copy) == []


def _running_in(folder) -> list[str]:
    """The command lines of live processes whose working folder is ``folder``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd") == str(folder):
                found.append(open(f"/proc/{pid}/cmdline").read().replace("\0", " ")[:120])
        except OSError:  # gone meanwhile, or a zombie: no cwd
            continue
    return found


# For each column the runs table shows: its header, and its cells top to bottom, with where
# they are drawn and the part of the table that is on screen (the grid draws only columns
# that are, and clips the rest).
_COLUMNS_JS = """ids => {
  const box = e => { const r = e.getBoundingClientRect();
                     return [r.left, r.right, r.top, r.bottom]; };
  const view = document.querySelector('.ag-body-viewport');
  const row = c => +c.closest('.ag-row').getAttribute('row-index');
  return {view: view && box(view), columns: ids.map(id => {
    const head = document.querySelector(`.ag-header-cell[col-id="${id}"]`);
    // a column's cells, top row first, whether pinned (the run's name) or not
    const cells = Array.from(document.querySelectorAll(
        `.ag-pinned-left-cols-container .ag-cell[col-id="${id}"],
         .ag-center-cols-container .ag-cell[col-id="${id}"]`))
      .sort((a, b) => row(a) - row(b));
    return {id, head: head && [head.innerText.trim(), box(head)],
            cells: cells.map(c => [c.innerText.trim(), box(c)])};
  })};
}"""


def check_columns(browser, url: str, runs: int, best) -> None:
    """The study's view on a first visit, at 1920 x 1080 (the assistant panel open, as MLflow
    opens it once per browser): the run name, the objective, the outcome, val_acc, the best
    epoch and every searched param are columns with a header and values on screen;
    its rows are the study's trials (``runs`` of them), best first: the top row is ``best``
    (Optuna's best trial), complete, with its objective."""
    expected = {"attributes.`Run Name`": "Run Name", "metrics.`best_val_acc`": "best_val_acc",
                "tags.`rnnlab.outcome`": "rnnlab.outcome", "metrics.`val_acc`": "val_acc",
                "metrics.`best_epoch`": "best_epoch",
                **{f"params.`{k}`": k for k in SPEC["search"]}}
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    try:
        page.goto(url, wait_until="load", timeout=120_000)  # never network idle: it polls
        page.locator(".ag-center-cols-container .ag-cell[col-id='params.`train.lr`']").first \
            .wait_for(timeout=120_000)
        found = page.evaluate(_COLUMNS_JS, list(expected))
    finally:
        page.close()
    left, right, top, bottom = found["view"]
    for col in found["columns"]:
        assert col["head"] and col["head"][0] == expected[col["id"]], col
        head_left, head_right = col["head"][1][:2]
        assert left <= head_left and head_right <= right, (col["id"], found["view"])
        assert len(col["cells"]) == runs, col  # the trials, no confirmation run
        assert all(text for text, _ in col["cells"]), col  # every trial has every column
        cell_left, cell_right, cell_top, _ = col["cells"][0][1]
        assert left <= cell_left and cell_right <= right and top <= cell_top < bottom, col
    cells = {col["id"]: [text for text, _ in col["cells"]] for col in found["columns"]}
    # whole, not cut (the UI draws the run's colour before its name)
    assert cells["attributes.`Run Name`"][0].split()[-1] == f"trial-{best.number}"
    assert cells["tags.`rnnlab.outcome`"][0] == "complete"
    assert float(cells["metrics.`best_val_acc`"][0]) == pytest.approx(best.value, abs=5e-5)
    values = [float(text) for text in cells["metrics.`best_val_acc`"]]
    assert values == sorted(values, reverse=True)  # best first, pruned trials ranked too
    lefts = [col["head"][1][0] for col in found["columns"]]
    assert lefts[1] == min(lefts[1:])  # the objective leftmost, after the run's name


def test_ui_unknown_study_and_busy_port_are_one_line_errors(study, monkeypatch, tmp_path):
    result = CliRunner().invoke(app, ["ui", "--study", "nope"])  # in an empty folder
    assert result.exit_code == 2 and "no study named 'nope'" in result.stderr
    assert list(tmp_path.iterdir()) == []  # neither a journal nor an MLflow store created
    monkeypatch.setenv("MLFLOW_TRACKING_URI", study.uri)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        result = CliRunner().invoke(app, ["ui", "--port", str(busy), "--storage", study.storage])
    assert result.exit_code == 2 and f"port {busy}" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.output


def test_ui_on_a_tracking_server_that_is_down_is_one_line(tmp_path, monkeypatch):
    with refused_port() as port:  # nothing serves there
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
        result = CliRunner().invoke(app, ["ui"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "is not reachable" in lines[0], result.stderr
    assert not os.path.exists(tmp_path / "rnnlab.journal")  # nothing created on the way


def test_stopping_the_server_ends_the_workers_it_started_too():
    """MLflow's server starts workers (uvicorn, a job runner, huey consumers) that can outlive
    it on SIGTERM: stopping the UI ends its whole process group, SIGKILL for what stays."""
    from rnnlab.tracking.ui import stop_server

    stubborn = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print(flush=True); time.sleep(600)")
    proc = subprocess.Popen(["sh", "-c", f"{sys.executable} -c '{stubborn}' & exec sleep 600"],
                            start_new_session=True, stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()  # the worker is up, SIGTERM ignored
    members = [int(p) for p in os.listdir("/proc") if p.isdigit() and _group(p) == proc.pid]
    assert len(members) == 2
    stop_server(proc, grace_s=2)
    time.sleep(0.5)
    assert [p for p in members if _alive(p)] == []
    proc.stdout.close()


def _group(pid: str) -> int | None:
    try:
        return os.getpgid(int(pid))
    except ProcessLookupError:
        return None


def _alive(pid: int) -> bool:
    """Running or sleeping: gone or a zombie waiting to be reaped is not."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
