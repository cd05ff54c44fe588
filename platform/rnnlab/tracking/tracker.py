"""MLflow writes through ``MlflowClient`` with explicit run ids.

No global active run: several trials in one process, or many worker processes, each hold their
own run id. Every caller writes through a :class:`Tracker`'s methods and never reaches for its
client. A method that writes runs whole: Ctrl-C waits for it (:mod:`rnnlab.interrupts`). Which
store, and the probe of a tracking server, is :mod:`rnnlab.tracking.server`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow.entities import Metric, Param, RunTag
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from rnnlab import __version__
from rnnlab.core.spec import RunConfig, flatten, to_yaml
from rnnlab.errors import RnnlabError, mask_url
from rnnlab.files import sqlite_file
from rnnlab.interrupts import whole
from rnnlab.tracking.checkpoints import artifact_path, load_newest
from rnnlab.tracking.internals import close_run, refresh_statistics
from rnnlab.tracking.riding import RidingClient, ride
from rnnlab.tracking.server import check_store, open_client
from rnnlab.tracking.server import tracking_uri as resolve_uri
from rnnlab.train import Checkpoint, FitResult

# No artifact progress bars in a sweep's output (a resumed retry printed three), unless asked.
os.environ.setdefault(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, "false")
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
_MLFLOW_STATUS = {"completed": "FINISHED", "stopped": "FINISHED", "diverged": "FAILED"}
# While a run trains, its metrics reach the store at most this often (and at every
# checkpoint and at its end): a short trial then writes them once, in the call that records its
# outcome, instead of competing with its own training for the CPU on every epoch.
SEND_EVERY_S = 5.0


def environment_tags() -> dict[str, str]:
    """What a run's numerics depend on beyond its config and seed: versions, and the CPU
    kernels torch picked (AVX2, AVX512, ...: float reductions differ between them, and at an
    edge-of-stability learning rate that can decide whether a run takes off)."""
    return {
        "rnnlab.version": __version__, "torch.version": torch.__version__,
        "mlflow.version": mlflow.__version__, "python.version": platform.python_version(),
        "host.platform": sys.platform, "host.machine": platform.machine(),
        "torch.cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


class Tracker:
    """One tracking store; every call names its run explicitly."""

    def __init__(self, tracking_uri: str | None = None):
        """Use ``tracking_uri``, else MLflow's own (``MLFLOW_TRACKING_URI`` or the default).

        Raises:
            RnnlabError: the store cannot be used: a tracking server that does not answer as
                MLflow, or a damaged or foreign SQLite file (nothing is written first).
        """
        self.uri = resolve_uri(tracking_uri)
        check_store(self.uri)
        self._client: MlflowClient | None = None
        self._pending: dict[str, list[Callable[[], Any]]] = {}  # per run: waits for its writes
        self._unsent: dict[str, list[Metric]] = {}  # per run: metrics held
        self._sent_at: dict[str, float] = {}
        self._experiments: dict[str, str] = {}
        self._writes: ThreadPoolExecutor | None = None  # the background thread, in order
        self._artifact_uris: dict[str, str] = {}  # of the runs this tracker created

    @property
    def client(self) -> MlflowClient | RidingClient:
        """The client, made on first use: a local store is created only when a run needs it,
        so a command that fails on its input first leaves no ``mlflow.db`` behind."""
        if self._client is None:
            self._client = open_client(self.uri)
        return self._client

    @whole
    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created on first use (safe against a racing worker).

        Raises:
            RnnlabError: the store cannot be used, or the experiment is deleted (in the MLflow
                UI, say): MLflow refuses runs there, and its name stays taken until purged.
        """
        if name not in self._experiments:
            self._experiments[name] = self._experiment_id(name)
        return self._experiments[name]

    def check_experiment(self, name: str) -> None:
        """Refuse experiment ``name`` if it is deleted (see :meth:`experiment_id`), reading
        only: a local store not made yet has none, and is not made.

        Raises:
            RnnlabError: the experiment is deleted, or the store cannot be used.
        """
        path = sqlite_file(self.uri)
        if path is not None and not path.is_file():
            return
        try:
            self._found(name)
        except MlflowException as exc:
            raise self._unusable(exc) from None

    def _found(self, name: str) -> Any:
        """Experiment ``name``, None if there is none; one line if it is deleted."""
        found = self.client.get_experiment_by_name(name)
        if found is not None and found.lifecycle_stage == "deleted":
            exp = found.experiment_id  # MLflow takes no run there, and keeps its name
            raise RnnlabError(
                f"MLflow experiment {name!r} (id {exp}) is deleted in tracking store "
                f"{mask_url(self.uri)}, and MLflow takes no run there: restore it "
                f"(`mlflow experiments restore --experiment-id {exp}`) or purge it "
                f"(`mlflow gc --experiment-ids {exp}`), with MLFLOW_TRACKING_URI set to "
                "that store (a study of another name gets an experiment of its own)")
        return found

    def _experiment_id(self, name: str) -> str:
        try:
            if (found := self._found(name)) is not None:
                return found.experiment_id
            try:
                return self.client.create_experiment(name)
            except MlflowException:  # another worker created it between our two calls
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
                return found.experiment_id
        except MlflowException as exc:
            raise self._unusable(exc) from None

    def _unusable(self, exc: MlflowException) -> RnnlabError:
        return RnnlabError(f"MLflow tracking store {mask_url(self.uri)} is not usable "
                           f"({str(exc).splitlines()[0][:160]}); check MLFLOW_TRACKING_URI")

    @whole
    def start_run(self, experiment: str, name: str, *, config: RunConfig | None = None,
                  tags: Mapping[str, str] | None = None, parent_run_id: str | None = None,
                  extra_params: Mapping[str, Any] | None = None) -> str:
        """Create a run (nested when ``parent_run_id`` is given) and log its params, and its
        config as ``config.yaml`` (a run killed mid-way keeps what it was training)."""
        all_tags = {RUN_NAME_TAG: name, **environment_tags(), **(tags or {})}
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        run = self.client.create_run(self.experiment_id(experiment), run_name=name,
                                     tags=all_tags)
        run_id = run.info.run_id
        self._artifact_uris[run_id] = run.info.artifact_uri
        params = dict(flatten(config)) if config is not None else {}
        params.update(extra_params or {})
        if params:  # at once, in the background: a running trial can be found by its params
            self._queue(run_id, params=[Param(k, _param_value(v)) for k, v in params.items()])
        if config is not None:
            self._in_background(run_id, self._write_file, run_id, "config.yaml",
                                to_yaml(config).encode())
        return run_id

    def epoch_logger(self, run_id: str):
        """A ``fit`` callback that logs each epoch's metrics with ``step=epoch``.

        Metrics are held and sent every :data:`SEND_EVERY_S` seconds by this tracker's
        background thread, so the training loop never waits on the store; a checkpoint and
        the end of the run send what is held (a worker killed outright loses at most the
        last few seconds of the curve, which a retry replays from its checkpoint).
        """

        def log(epoch: int, metrics: dict[str, float]) -> None:
            now = int(time.time() * 1000)
            self._hold(run_id, [
                Metric(k, float(v), now, epoch) for k, v in metrics.items()])

        return log

    def _hold(self, run_id: str, metrics: list[Metric]) -> None:
        self._unsent.setdefault(run_id, []).extend(metrics)
        sent_at = self._sent_at.setdefault(run_id, time.monotonic())
        if time.monotonic() - sent_at >= SEND_EVERY_S:
            self._send(run_id)

    @whole
    def _send(self, run_id: str, tags: list[RunTag] | None = None) -> None:
        """Send what is held for ``run_id``: queued, or with ``tags`` in one synchronous call."""
        held = self._unsent.pop(run_id, [])
        self._sent_at[run_id] = time.monotonic()
        if tags is not None:
            self.client.log_batch(run_id, metrics=held, tags=tags)
        elif held:
            self._queue(run_id, metrics=held)

    @whole
    def flush(self, run_id: str) -> None:
        """Store everything held or queued for ``run_id`` (params, metrics, files).

        Raises:
            Exception: the first write that failed, once all have been waited for.
        """
        if self._unsent.get(run_id):
            self._send(run_id, [])
        errors = []
        for wait in self._pending.pop(run_id, []):
            try:
                wait()
            except Exception as exc:  # noqa: BLE001 - raised below, after the others
                errors.append(exc)
        if errors:
            raise errors[0]

    def log_checkpoint(self, run_id: str, ckpt: Checkpoint) -> None:
        """Store a training checkpoint as an artifact (:mod:`rnnlab.tracking.checkpoints`).

        Written in the background: ``ckpt`` must not change afterwards (``fit`` hands over
        copies); :meth:`flush` waits for it. The metrics held so far are sent with it, so the
        stored curve reaches at least the checkpoint.
        """
        self._send(run_id)
        self._in_background(run_id, self._write_file, run_id, artifact_path(ckpt.epoch), ckpt)

    @whole
    def _write_file(self, run_id: str, path: str, content: Any) -> None:
        """Store ``content`` as artifact ``path``: bytes as they are, anything else (a
        checkpoint, a state dict) serialised with ``torch.save``.

        Through the run's artifact repository, known from when the run was created: MLflow's
        ``log_artifact`` would read the whole run back first to find it (half the cost).
        """
        folder, _, name = path.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / name
            if isinstance(content, bytes):
                local.write_bytes(content)
            else:
                torch.save(asdict(content) if is_dataclass(content) else content, local)
            if run_id in self._artifact_uris:
                repo = get_artifact_repository(self._artifact_uris[run_id], tracking_uri=self.uri)
                ride(self.client, repo.log_artifact, str(local), folder or None)
            else:
                self.client.log_artifact(run_id, str(local), folder or None)

    def load_checkpoint(self, run_id: str) -> Checkpoint | None:
        """The run's newest readable checkpoint, or None (:mod:`rnnlab.tracking.checkpoints`)."""
        return load_newest(self.client, run_id)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set tags now, in one call with the params and metrics held for the run."""
        # Synchronous: tags come at the end of a run, right before it is closed, and queuing
        # them would only add a hand-over to the wait.
        self._send(run_id, [RunTag(k, str(v)) for k, v in tags.items()])

    def _queue(self, run_id: str, **batch: Any) -> None:
        """Send a batch on the background thread: a trial never waits on the store for params,
        metrics or tags, not even on a server that is down. :meth:`flush` waits for them."""
        self._in_background(run_id, functools.partial(self.client.log_batch, run_id, **batch))

    def _in_background(self, run_id: str, write: Callable[..., Any], *args: Any) -> None:
        """Run a write on this tracker's background thread, in order; :meth:`flush` waits for
        it. Training goes on meanwhile instead of waiting on the disk or the server."""
        if self._writes is None:
            self._writes = ThreadPoolExecutor(1, thread_name_prefix="rnnlab-tracking")
        self._pending.setdefault(run_id, []).append(
            self._writes.submit(write, *args).result)

    def log_result(self, run_id: str, result: FitResult, *, weights: bool = True,
                   tags: Mapping[str, str] | None = None) -> None:
        """Log the outcome of a finished fit, where it ran, its data and final weights, with
        ``tags`` in the same call (a trial's state, say)."""
        all_tags = {"rnnlab.device": result.device, **result.data_info,
                    "rnnlab.status": result.status}
        if result.stop_reason:
            all_tags["rnnlab.stop_reason"] = result.stop_reason
        if result.diverged_epoch is not None:
            all_tags["rnnlab.diverged_epoch"] = str(result.diverged_epoch)
        self.set_tags(run_id, {**all_tags, **(tags or {})})
        if weights:
            self._write_file(run_id, "model.pt",
                             {k: v.cpu() for k, v in result.model.state_dict().items()})

    @contextlib.contextmanager
    def closing_on_error(self, run_id: str) -> Iterator[None]:
        """Close the run KILLED on an interrupt and FAILED on an error, never leaving it
        RUNNING; on success the caller closes it with the status it earned."""
        try:
            yield
        except KeyboardInterrupt:
            self.end_run(run_id, "KILLED")
            raise
        except BaseException:
            self.end_run(run_id, "FAILED")
            raise

    @whole
    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """Close a run (FINISHED, FAILED or KILLED) once its queued writes are in the store."""
        try:
            self.flush(run_id)
        finally:  # closed even when a write failed: never left RUNNING
            self._sent_at.pop(run_id, None)
            self._artifact_uris.pop(run_id, None)
            ride(self.client, close_run, self.client, run_id, status)

    def refresh_statistics(self) -> None:
        """Let a SQLite store's query planner know its tables' sizes (as a study doubles, and
        as it ends): the MLflow UI's ranked search of a large study's trials then takes
        milliseconds, not seconds (:func:`rnnlab.tracking.internals.refresh_statistics`)."""
        refresh_statistics(self.client)

    @whole
    def mark_running(self, run_id: str) -> None:
        """Open a closed run again (a study's run, when a sweep resumes it)."""
        self.client.update_run(run_id, status="RUNNING")

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Store ``metrics`` at ``step`` now, with what is held for the run (test scores)."""
        now = int(time.time() * 1000)
        self._hold(run_id, [Metric(k, float(v), now, step) for k, v in metrics.items()])
        self._send(run_id, [])

    @staticmethod
    def status_for(result: FitResult) -> str:
        return _MLFLOW_STATUS[result.status]


def _param_value(value: Any) -> str:
    return "None" if value is None else str(value)[:6000]
