"""The MLflow UI: a ``mlflow server`` on the store the sweeps used, and where a study's trials are.

MLflow 3's UI opens an experiment on a GenAI overview page, and lists nested runs folded under
their parent run. The URL made here goes straight to the experiment's runs table
(``#/experiments/<id>/runs``) with a search filter on the study's parent run and an order by
the study's metric: with a filter and an order other than start time, the UI does not fetch
parent runs, so the trials are listed flat, best first.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from rnnlab.errors import RnnlabError, mask_url
from rnnlab.tracking.server import check_store, is_server, tracking_uri
from rnnlab.tracking.store import RunReader

HOST = "127.0.0.1"
START_TIMEOUT_S = 180.0  # a cold `mlflow server` takes 10-60 s to import and migrate its store


@dataclass(frozen=True)
class StudyRuns:
    """Where one study's trial runs are: its experiment and parent run, and how to order them."""

    study: str
    experiment: str
    parent_run_id: str | None
    metric: str | None
    direction: str
    required: bool = True  # a study asked for by name: no experiment is an error, not a skip


def runs_path(experiment_id: str, parent_run_id: str | None, metric: str | None = None,
              direction: str = "maximize") -> str:
    """The UI route of an experiment's runs table, filtered to a parent's children."""
    query = {"orderByKey": f"metrics.`{metric or 'val_acc'}`",
             "orderByAsc": "true" if direction == "minimize" else "false"}
    if parent_run_id:
        query = {"searchFilter": f"tags.mlflow.parentRunId = '{parent_run_id}'", **query}
    return (f"/#/experiments/{urllib.parse.quote(str(experiment_id))}/runs?"
            + urllib.parse.urlencode(query, quote_via=urllib.parse.quote))


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do: connections of an earlier server left in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def start_server(uri: str, port: int, timeout: float = START_TIMEOUT_S) -> subprocess.Popen:
    """Start ``mlflow server`` on ``HOST:port`` over the store ``uri``; return once it answers.

    The server runs in its own process group, so :func:`stop_server` ends it and its workers.

    Raises:
        RnnlabError: the port is taken, or the server exits or stays silent past ``timeout``.
    """
    if not port_free(port):
        raise RnnlabError(f"port {port} on {HOST} is in use; pass another with --port N")
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
           "--host", HOST, "--port", str(port), "--workers", "1"]
    log = tempfile.TemporaryFile()  # the server's chatter; read back only if it fails
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc.log = log  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()
            log.close()
            raise RnnlabError(f"mlflow server exited with code {proc.returncode} "
                              f"({tail[-1][:200] if tail else 'no output'}); check the store "
                              f"{mask_url(uri)}")
        if _answers(f"http://{HOST}:{port}/health"):
            return proc
        time.sleep(0.5)
    stop_server(proc)
    raise RnnlabError(f"mlflow server did not answer on port {port} within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    """End the server's process group (the server and the workers it started)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        except ProcessLookupError:
            pass
    log = getattr(proc, "log", None)
    if log is not None and not log.closed:
        log.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def serve(studies: list[StudyRuns], port: int,
          on_ready: Callable[[str, list[tuple[str, str]], bool], None]) -> None:
    """Start the UI (or find the tracking server) and report its URLs; block until it stops.

    Args:
        studies: the studies to link to (none: the UI alone).
        port: where to start the UI on :data:`HOST` (unused with a tracking server).
        on_ready: called once the UI answers, as ``on_ready(base_url, [(study, url), ...],
            started)``; with a tracking server (``http(s)://``) nothing is started
            (``started`` is False) and the links point at that server.

    Raises:
        RnnlabError: a study's experiment is not in the store, a busy port, or a server that
            does not start. Ctrl-C (``KeyboardInterrupt``) stops the UI this started.
    """
    uri = tracking_uri()
    check_store(uri)  # in seconds, before a server starts: not after MLflow's retries
    paths = _paths(RunReader(uri), studies) if studies else []
    if is_server(uri):
        base = uri.rstrip("/")
        on_ready(base, [(study, base + path) for study, path in paths], False)
        return
    proc = start_server(uri, port)
    try:
        base = f"http://{HOST}:{port}"
        on_ready(base, [(study, base + path) for study, path in paths], True)
        proc.wait()
    finally:
        stop_server(proc)


def _paths(reader: RunReader, studies: list[StudyRuns]) -> list[tuple[str, str]]:
    out = []
    for s in studies:
        experiment_id = reader.experiment_id(s.experiment)
        if experiment_id is None and not s.required:
            continue
        if experiment_id is None:
            raise RnnlabError(f"study {s.study!r} has no MLflow experiment in "
                              f"{reader.masked_uri}; run `rnnlab ui` where the sweep ran or "
                              "set MLFLOW_TRACKING_URI")
        out.append((s.study, runs_path(experiment_id, s.parent_run_id, s.metric, s.direction)))
    return out
