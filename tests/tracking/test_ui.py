"""`rnnlab ui` as a user runs it: a real `mlflow server`, its printed URL opened in Chromium."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest
from mlflow.tracking import MlflowClient
from support import refused_port, serve_on_a_free_port
from typer.testing import CliRunner

from rnnlab.cli.app import app
from rnnlab.study.storage import load_study
from rnnlab.tracking.ui import runs_path

START_S = 240  # a cold mlflow server imports and checks its store; slow on a busy machine


def test_runs_path_lands_on_the_runs_table_filtered_to_the_study():
    path = runs_path("7", "abc123", "val_loss", "minimize")
    route, _, query = path.partition("?")
    assert route == "/#/experiments/7/runs"
    q = dict(urllib.parse.parse_qsl(query))
    assert q == {"searchFilter": "tags.mlflow.parentRunId = 'abc123'",
                 "orderByKey": "metrics.`val_loss`", "orderByAsc": "true"}


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
    errors = tmp_path / "ui.stderr"

    def start(port: int) -> subprocess.Popen:
        with open(errors, "w") as err:
            return subprocess.Popen(
                [sys.executable, "-m", "rnnlab", "ui", "--port", str(port), "--storage",
                 study.storage, "--study", study.name], cwd=study.folder, env=study.env(),
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
        trials = load_study(study.storage, study.name).trials
        for t in trials:
            assert f"trial-{t.number}" in text
        # Listed flat: the study run's children (trials, and confirmation runs if a report
        # made some), not the study run folding them away.
        parent = load_study(study.storage, study.name).user_attrs["mlflow_parent_run_id"]
        client = MlflowClient(study.uri)
        children = client.search_runs([client.get_experiment_by_name(study.name).experiment_id],
                                      f"tags.mlflow.parentRunId = '{parent}'")
        assert f"{len(children)} matching runs" in text
        page.close()
        # With the tracking server as MLFLOW_TRACKING_URI, `rnnlab ui` starts nothing and
        # points at that server.
        env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
        result = CliRunner().invoke(app, ["ui", "--storage", study.storage], env=env)
        assert result.exit_code == 0, result.output
        assert f"study {study.name} trials: http://127.0.0.1:{port}/#/experiments/" in (
            result.stdout)
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the UI stops its server
        code = proc.wait(timeout=60)
    assert code == 0
    with pytest.raises(ConnectionRefusedError):  # no server left behind on the port
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


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
