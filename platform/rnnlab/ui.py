"""The MLflow UI on the store the sweeps used, opened where a study's trials are.

MLflow 3's UI opens an experiment on a GenAI overview page, and lists nested runs folded under
their parent run. The URL printed here goes straight to the experiment's runs table
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
from pathlib import Path

from rnnlab.errors import RnnlabError
from rnnlab.storage import is_rdb, load_study, mask_url, study_names

HOST = "127.0.0.1"
START_TIMEOUT_S = 180.0  # a cold `mlflow server` takes 10-60 s to import and migrate its store


@dataclass(frozen=True)
class StudyLink:
    """Where one study's trial runs are in the UI."""

    study: str
    path: str  # the part after the server's base URL, starting with "/#/"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else MLflow's default (``sqlite:///mlflow.db`` here)."""
    import mlflow

    return mlflow.get_tracking_uri()


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def runs_path(experiment_id: str, parent_run_id: str | None, metric: str | None = None,
              direction: str = "maximize") -> str:
    """The UI route of an experiment's runs table, filtered to a parent's children."""
    query = {"orderByKey": f"metrics.`{metric or 'val_acc'}`",
             "orderByAsc": "true" if direction == "minimize" else "false"}
    if parent_run_id:
        query = {"searchFilter": f"tags.mlflow.parentRunId = '{parent_run_id}'", **query}
    return (f"/#/experiments/{urllib.parse.quote(str(experiment_id))}/runs?"
            + urllib.parse.urlencode(query, quote_via=urllib.parse.quote))


def study_links(storage: str, study: str | None, uri: str) -> list[StudyLink]:
    """Links for ``study``, or for every study in ``storage`` (none when it does not exist).

    Raises:
        RnnlabError: ``study`` is not in the storage, or its experiment is not in the store.
    """
    from mlflow.tracking import MlflowClient

    if study is None:
        if not is_rdb(storage) and not Path(storage).expanduser().exists():
            return []  # no journal here: do not create one just to list nothing
        names = sorted(study_names(storage))
    else:
        names = [study]
    studies = [load_study(storage, name) for name in names]  # an unknown one fails first
    client = MlflowClient(uri) if studies else None
    links = []
    for name, s in zip(names, studies, strict=True):
        spec = s.user_attrs.get("spec") or {}
        experiment = client.get_experiment_by_name(s.user_attrs.get("mlflow_experiment", name))
        if experiment is None:
            if study is None:
                continue
            raise RnnlabError(f"study {name!r} has no MLflow experiment in {mask_url(uri)}; "
                              "run `rnnlab ui` where the sweep ran or set MLFLOW_TRACKING_URI")
        links.append(StudyLink(name, runs_path(
            experiment.experiment_id, s.user_attrs.get("mlflow_parent_run_id"),
            spec.get("study", {}).get("metric"), s.direction.name.lower())))
    return links


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


def serve(storage: str, study: str | None, port: int,
          on_ready: Callable[[str, list[tuple[str, str]], bool], None]) -> None:
    """Start the UI (or find the tracking server) and report its URLs; block until it stops.

    ``on_ready(base_url, [(study, url), ...], started)`` is called once the UI answers. With a
    tracking server (``http(s)://``) nothing is started (``started`` is False): the links point
    at that server. Ctrl-C (``KeyboardInterrupt``) stops the UI this started.

    Raises:
        RnnlabError: unknown study, busy port, or a server that does not start.
    """
    uri = tracking_uri()
    if is_server(uri):  # fail in seconds, not after MLflow's retries
        from rnnlab.tracking import check_server

        check_server(uri)
    links = study_links(storage, study, uri)
    if is_server(uri):
        base = uri.rstrip("/")
        on_ready(base, [(link.study, base + link.path) for link in links], False)
        return
    proc = start_server(uri, port)
    try:
        base = f"http://{HOST}:{port}"
        on_ready(base, [(link.study, base + link.path) for link in links], True)
        proc.wait()
    finally:
        stop_server(proc)
