"""MLflow tracking through ``MlflowClient`` with explicit run ids.

No global active run: several trials in one process, or many worker processes, each hold their
own run id. The store is MLflow's default (or ``MLFLOW_TRACKING_URI``), so ``mlflow ui`` run in
the same place shows the runs. A tracking server (``http(s)://``) is probed once when a tracker
is made, so a wrong or down server fails at once instead of after MLflow's long HTTP retries
(which still cover blips mid-study: ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
``MLFLOW_HTTP_REQUEST_TIMEOUT``).
"""

from __future__ import annotations

import contextlib
import platform
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import torch
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from rnnlab import __version__
from rnnlab.errors import RnnlabError
from rnnlab.spec import RunConfig, flatten, to_yaml
from rnnlab.storage import mask_url

if TYPE_CHECKING:
    from rnnlab.train import Checkpoint, FitResult

PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
_MLFLOW_STATUS = {"completed": "FINISHED", "stopped": "FINISHED", "diverged": "FAILED"}
PROBE_TIMEOUT_S = 5


def environment_tags(result: FitResult | None = None) -> dict[str, str]:
    tags = {
        "rnnlab.version": __version__, "torch.version": torch.__version__,
        "mlflow.version": mlflow.__version__, "python.version": platform.python_version(),
        "host.platform": sys.platform,
    }
    if result is not None:
        tags["rnnlab.device"] = result.device
        tags.update(result.data_info)
    return tags


class Tracker:
    """One tracking store; every call names its run explicitly."""

    def __init__(self, tracking_uri: str | None = None):
        """Use ``tracking_uri``, else MLflow's own (``MLFLOW_TRACKING_URI`` or the default).

        Raises:
            RnnlabError: the URI names a tracking server that does not answer.
        """
        self.uri = tracking_uri or mlflow.get_tracking_uri()
        if self.uri.startswith(("http://", "https://")):
            check_server(self.uri)
        self._client: MlflowClient | None = None
        self._pending: dict[str, list[Any]] = {}
        self._experiments: dict[str, str] = {}

    @property
    def client(self) -> MlflowClient:
        """The client, made on first use: a local store is created only when a run needs it,
        so a command that fails on its input first leaves no ``mlflow.db`` behind."""
        if self._client is None:
            self._client = MlflowClient(self.uri)
        return self._client

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created on first use (safe against a racing worker)."""
        if name not in self._experiments:
            self._experiments[name] = self._experiment_id(name)
        return self._experiments[name]

    def _experiment_id(self, name: str) -> str:
        try:
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                return found.experiment_id
            try:
                return self.client.create_experiment(name)
            except MlflowException:  # another worker created it between our two calls
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
                return found.experiment_id
        except MlflowException as exc:
            raise RnnlabError(
                f"MLflow tracking store {mask_url(self.uri)} is not usable "
                f"({str(exc).splitlines()[0][:160]}); check MLFLOW_TRACKING_URI"
            ) from None

    def start_run(self, experiment: str, name: str, *, config: RunConfig | None = None,
                  tags: Mapping[str, str] | None = None, parent_run_id: str | None = None,
                  extra_params: Mapping[str, Any] | None = None) -> str:
        """Create a run (nested when ``parent_run_id`` is given) and log its params."""
        all_tags = {RUN_NAME_TAG: name, **environment_tags(), **(tags or {})}
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        run = self.client.create_run(self.experiment_id(experiment), run_name=name,
                                     tags=all_tags)
        run_id = run.info.run_id
        params = dict(flatten(config)) if config is not None else {}
        params.update(extra_params or {})
        if params:
            self._queue(run_id, params=[Param(k, _param_value(v)) for k, v in params.items()])
        return run_id

    def epoch_logger(self, run_id: str):
        """A ``fit`` callback that logs each epoch's metrics with ``step=epoch``.

        One batch call per epoch, queued to MLflow's background logger so the training loop
        never waits on the store; :meth:`end_run` waits for the queue before closing the run.
        """

        def log(epoch: int, metrics: dict[str, float]) -> None:
            now = int(time.time() * 1000)
            self._queue(run_id, metrics=[
                Metric(k, float(v), now, epoch) for k, v in metrics.items()])

        return log

    def flush(self, run_id: str) -> None:
        """Wait until every queued metric of ``run_id`` is in the store."""
        for op in self._pending.pop(run_id, []):
            op.wait()

    def log_checkpoint(self, run_id: str, ckpt: Checkpoint) -> None:
        """Store a training checkpoint as the run's ``checkpoint/checkpoint.pt`` artifact."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "checkpoint.pt"
            torch.save(asdict(ckpt), path)
            self.client.log_artifact(run_id, str(path), "checkpoint")

    def load_checkpoint(self, run_id: str) -> Checkpoint | None:
        """The run's last checkpoint, or None when it has none. Loaded with weights_only."""
        from rnnlab.train import Checkpoint

        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self.client.download_artifacts(run_id, "checkpoint/checkpoint.pt", tmp)
            except (MlflowException, OSError):
                return None
            return Checkpoint(**torch.load(path, weights_only=True))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        # Synchronous: tags come at the end of a run, and a queued batch is only picked up on
        # the background logger's next tick (about a second), which end_run would wait for.
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def _queue(self, run_id: str, **batch: Any) -> None:
        """Hand a batch to MLflow's background logger: a trial never waits on the store for
        params, metrics or tags. :meth:`flush` (and so :meth:`end_run`) waits for them."""
        op = self.client.log_batch(run_id, synchronous=False, **batch)
        self._pending.setdefault(run_id, []).append(op)

    def log_result(self, run_id: str, config: RunConfig, result: FitResult,
                   *, weights: bool = True) -> None:
        """Log the resolved config, the final weights, and the environment of a finished fit."""
        tags = environment_tags(result)
        tags["rnnlab.status"] = result.status
        if result.stop_reason:
            tags["rnnlab.stop_reason"] = result.stop_reason
        if result.diverged_epoch is not None:
            tags["rnnlab.diverged_epoch"] = str(result.diverged_epoch)
        self.set_tags(run_id, tags)
        self.flush(run_id)
        self.client.log_text(run_id, to_yaml(config), "config.yaml")
        if weights:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.pt"
                torch.save({k: v.cpu() for k, v in result.model.state_dict().items()}, path)
                self.client.log_artifact(run_id, str(path))

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

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """Close a run once its queued batches are in the store.

        ``MlflowClient.set_terminated`` shuts the process's whole background logger down first
        (about 0.8 s, and the other runs of this process lose their queue); the store's own
        update closes just this run, as set_terminated does after that.
        """
        self.flush(run_id)
        self.client._tracking_client.store.update_run_info(
            run_id, run_status=RunStatus.from_string(status),
            end_time=int(time.time() * 1000), run_name=None)

    @staticmethod
    def status_for(result: FitResult) -> str:
        return _MLFLOW_STATUS[result.status]


def check_server(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """One quick request to a tracking server's ``/health``, with no retries.

    Any HTTP answer counts as reachable (a wrong path or missing credentials show up, with
    MLflow's own message, at the first real call); only a connection failure is an error.

    Raises:
        RnnlabError: the server cannot be connected to within ``timeout`` seconds.
    """
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        http_request(get_default_host_creds(uri), "/health", "GET", max_retries=0,
                     backoff_factor=0, timeout=timeout, raise_on_status=False)
    except MlflowException as exc:
        found = re.search(r"\[Errno -?\d+\] ([^\"')(]+)", str(exc))
        reason = (found.group(1).strip() if found else
                  f"no answer within {timeout:g} s" if "timed out" in str(exc).lower() else
                  str(exc).splitlines()[0][-160:])
        raise RnnlabError(
            f"MLflow tracking server {mask_url(uri)} is not reachable ({reason}); start it "
            "(mlflow server ...) or fix MLFLOW_TRACKING_URI"
        ) from None


def _param_value(value: Any) -> str:
    return "None" if value is None else str(value)[:6000]
