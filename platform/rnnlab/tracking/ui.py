"""The MLflow UI: a ``mlflow server`` on the store the sweeps used, and the saved view of each
study's trials (what the UI reads: docs/decisions.md, "The MLflow UI")."""

from __future__ import annotations

import hashlib
import json
import os
import signal
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
from typing import Any

from mlflow.exceptions import MlflowException

from rnnlab.core.study_spec import BEST_EPOCH, objective_key
from rnnlab.errors import RnnlabError, mask_url
from rnnlab.tracking.server import check_exists, check_store, is_server, tracking_uri
from rnnlab.tracking.store import RunReader

HOST = "127.0.0.1"
VIEW_TAG = "mlflow.sharedViewState."  # + the view's key: a saved view of the runs table
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
OUTCOME_TAG = "rnnlab.outcome"  # a trial run's: complete, pruned at epoch N, failed, ...
_FIXED_COLUMNS = ("attributes.`Run Name`", "runDateAndNestInfo", "duration")
STOP_GRACE_S = 5.0  # a server's workers given to end on SIGTERM before they are killed
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
    params: tuple[str, ...] = ()  # the searched config keys, shown as columns
    objective: str = "best"  # the study's objective over epochs: best or last

    @property
    def view_key(self) -> str:
        """The key of this study's saved view (stable, so each `rnnlab ui` rewrites it)."""
        digest = hashlib.sha256(f"{self.study}\0{self.parent_run_id}".encode()).hexdigest()
        return f"rnnlab-{digest[:16]}"


def view_state(s: StudyRuns, sort_metric: str) -> dict:
    """The runs table as the UI's saved view holds it: filter, order and columns."""
    metric = s.metric or "val_acc"
    # In this order, once each: the objective, the last epoch's value of the metric and the
    # best epoch (val_loss and the rest: each run's charts), so that the outcome and four
    # searched params fit beside them.
    metrics = dict.fromkeys([objective_key(metric, s.objective), metric, BEST_EPOCH])
    objective, *others = (f"metrics.`{m}`" for m in metrics)
    outcome = f"tags.`{OUTCOME_TAG}`"
    columns = [objective, outcome, *others, *(f"params.`{p}`" for p in s.params)]
    state = {"orderByKey": f"metrics.`{sort_metric}`",
             "orderByAsc": s.direction == "minimize", "selectedColumns": columns,
             # The table's own column ids: these columns first, objective leftmost, narrow
             # enough that the run's name, these and four params fit a 1920-pixel-wide window
             # beside the assistant.
             "columnOrder": [*_FIXED_COLUMNS, *columns],
             "columnWidths": {_FIXED_COLUMNS[0]: 110, _FIXED_COLUMNS[1]: 140,
                              **dict.fromkeys(columns, 90), outcome: 125}}
    if s.parent_run_id:
        state["searchFilter"] = _trials_of(s)
    return state


def _trials_of(s: StudyRuns) -> str:
    """The study's trial runs, as a search filter: its confirmation runs are not trials."""
    return f"tags.mlflow.parentRunId = '{s.parent_run_id}' and tags.`rnnlab.kind` = 'trial'"


def saved_view(s: StudyRuns, sort_metric: str, now_ms: int) -> str:
    """The value of the experiment tag ``VIEW_TAG + s.view_key``: the UI's saved-view record."""
    return json.dumps({"name": f"rnnlab: study {s.study}, trials by objective",
                       "createdAt": now_ms, "updatedAt": now_ms,
                       "state": json.dumps(view_state(s, sort_metric))})


def runs_path(experiment_id: str, view_key: str | None = None) -> str:
    """The UI route of an experiment's runs table in the training-runs view, with a saved view."""
    query = {"workflowType": "machine_learning"}
    if view_key:
        query["viewStateShareKey"] = view_key
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


def stop_server(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """End the server's process group: SIGTERM to all, ``grace_s`` for the server to exit,
    then SIGKILL to what is left (its workers, uvicorn, MLflow's job runner and huey
    consumers, can outlive it)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
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
    check_exists(uri)  # nothing to show: no store is made for it
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
        out.append((s.study, runs_path(experiment_id, _save_view(reader, experiment_id, s))))
    return out


def _save_view(reader: RunReader, experiment_id: str, s: StudyRuns) -> str:
    try:
        return save_view(reader.client, experiment_id, s)
    except MlflowException as exc:
        raise RnnlabError(f"could not save the runs view of study {s.study!r} in "
                          f"{reader.masked_uri} ({str(exc).splitlines()[0][:160]})") from None


def save_view(client: Any, experiment_id: str, s: StudyRuns) -> str:
    """Write the study's saved view (and the experiment's kind) into its experiment; its key.

    Written when the study's run is created, so any MLflow UI on the store lists it under
    "Views"; ``rnnlab ui`` (same key) writes it again only when it changed, or is gone.

    Raises:
        MlflowException: the store refused the write.
    """
    metric = s.metric or "val_acc"
    sort = objective_key(metric, s.objective)
    if s.parent_run_id:  # a study tracked before runs logged their objective: sort by metric
        first = client.search_runs([experiment_id],
                                   f"{_trials_of(s)} and attributes.status = 'FINISHED'",
                                   max_results=1)
        if first and sort not in first[0].data.metrics:
            sort = metric
    tags = client.get_experiment(experiment_id).tags
    if tags.get(KIND_TAG) != KIND:
        client.set_experiment_tag(experiment_id, KIND_TAG, KIND)
    if _state(tags.get(VIEW_TAG + s.view_key)) != view_state(s, sort):
        client.set_experiment_tag(experiment_id, VIEW_TAG + s.view_key,
                                  saved_view(s, sort, int(time.time() * 1000)))
    return s.view_key


def _state(saved: str | None) -> dict | None:
    """The table state a saved view holds (None: no view, or one the UI cannot read either)."""
    try:
        return json.loads(json.loads(saved)["state"])
    except (TypeError, ValueError, KeyError):
        return None
