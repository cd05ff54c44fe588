"""MLflow runs read back into tidy pandas frames: learning curves and confirmation runs.

Everything that reads the tracking store goes through a :class:`RunReader`; the study side of
the frames (trials, configs, importances) is :mod:`rnnlab.analysis.frames`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException

from rnnlab.errors import RnnlabError, mask_url
from rnnlab.tracking.internals import child_run_ids_sql, last_points_sql, metric_histories_sql
from rnnlab.tracking.server import client as make_client
from rnnlab.tracking.server import tracking_uri

CONFIRM_KIND = "confirm"  # the rnnlab.kind tag of a confirmation run
CURVE_COLUMNS = ["number", "epoch", "metric", "value"]
CONFIRM_COLUMNS = ["run_id", "config_hash", "weights", "trial", "seed", "test_acc",
                   "test_loss", "test_set"]
LAST_EPOCH = "last epoch"  # the weights a confirmation run scored, unless its tag says otherwise


class RunReader:
    """Reads runs from one tracking store; the client is made (a server probed) on first use,
    so a reader that reads nothing leaves the store untouched."""

    page = 1000  # runs a search asks for at a time (MLflow's most)

    def __init__(self, uri: str | None = None):
        self.uri = tracking_uri(uri)
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = make_client(self.uri)
        return self._client

    @property
    def masked_uri(self) -> str:
        return mask_url(self.uri)

    def check_run(self, run_id: str, study: str = "") -> Any:
        """The run, or one line saying it is not in this store (run where the sweep ran).

        Raises:
            RnnlabError: no such run in the store.
        """
        try:
            return self.client.get_run(run_id)
        except MlflowException as exc:
            what = f"study {study!r}'s MLflow run" if study else "MLflow run"
            raise RnnlabError(
                f"{what} {run_id} is not in tracking store {self.masked_uri} "
                f"({str(exc).splitlines()[0][:120]}); run where the sweep ran or set "
                "MLFLOW_TRACKING_URI") from None

    def experiment_id(self, name: str) -> str | None:
        found = self.client.get_experiment_by_name(name)
        return None if found is None else found.experiment_id

    def curves(self, runs: dict[str, int], metrics: Sequence[str]) -> pd.DataFrame:
        """One row per trial, epoch and metric (``number``, ``epoch``, ``metric``, ``value``)
        of the runs ``{run_id: trial number}``; a step logged twice (a resumed trial re-logs
        its epoch) keeps its latest value."""
        if not runs or not metrics:
            return pd.DataFrame(columns=CURVE_COLUMNS)
        raw = metric_histories_sql(self.client, runs, metrics)
        if raw is None:
            raw = metric_histories(self.client, runs, metrics)
        return _tidy(raw)

    def last_points(self, runs: dict[str, int], metrics: Sequence[str]) -> pd.DataFrame:
        """:meth:`curves` cut to each run's last epoch of each metric: what a table of final
        values needs, without reading every epoch where the store keeps the latest apart."""
        if not runs or not metrics:
            return pd.DataFrame(columns=CURVE_COLUMNS)
        raw = last_points_sql(self.client, runs, metrics)
        if raw is None:
            curves = self.curves(runs, metrics)
            return curves.groupby(["number", "metric"]).tail(1).reset_index(drop=True)
        return _tidy(raw)

    def study_run_ids(self, parent_run_id: str,
                      on_read: Callable[[int], None] = lambda read: None) -> list[str]:
        """A study's run and the active runs nested under it (its trials, its confirmations),
        the study's run last; none where the store does not have it. ``on_read`` is told how
        many runs are read so far after each page (only a server's are read page by page:
        10,000 trials' runs take it about 20 s)."""
        try:
            run = self.client.get_run(parent_run_id)
        except MlflowException:
            return []
        ids = child_run_ids_sql(self.client, run.info.experiment_id, parent_run_id)
        if ids is None:
            ids = []
            for page in self._pages(run.info.experiment_id,
                                    f"tags.`mlflow.parentRunId` = '{parent_run_id}'"):
                ids += [r.info.run_id for r in page]
                on_read(len(ids))
        return ids + ([parent_run_id] if run.info.lifecycle_stage == "active" else [])

    def confirmations(self, parent_run_id: str) -> pd.DataFrame:
        """Finished confirmation runs nested under a study's run, one row per run: columns
        :data:`CONFIRM_COLUMNS`, from the runs' ``rnnlab.*`` tags and ``test_*`` metrics.

        Raises:
            RnnlabError: the study's run is not in the store.
        """
        run = self.check_run(parent_run_id)
        query = (f"tags.`rnnlab.kind` = '{CONFIRM_KIND}' and "
                 f"tags.`mlflow.parentRunId` = '{parent_run_id}' and "
                 "attributes.status = 'FINISHED'")
        rows = [_confirmation_row(r) for r in self._search(run.info.experiment_id, query)
                if "test_acc" in r.data.metrics]
        return pd.DataFrame(rows, columns=CONFIRM_COLUMNS)

    def _search(self, experiment_id: str, query: str) -> Iterator[Any]:
        """Every active run of the experiment that ``query`` matches."""
        for page in self._pages(experiment_id, query):
            yield from page

    def _pages(self, experiment_id: str, query: str) -> Iterator[Any]:
        """:meth:`_search`'s runs page after page (:attr:`page` a page)."""
        token = None
        while True:
            page = self.client.search_runs([experiment_id], query, max_results=self.page,
                                           page_token=token)
            yield page
            token = page.token
            if not token:
                break


def _tidy(raw: pd.DataFrame) -> pd.DataFrame:
    """Points as :data:`CURVE_COLUMNS`; a step logged twice (a resumed trial re-logs its epoch)
    keeps its latest value."""
    if raw.empty:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    # the metric as categorical codes while sorting: a million points in a fraction of a second
    raw = raw.assign(metric=raw["metric"].astype("category")).sort_values(
        ["number", "metric", "epoch", "timestamp"], kind="stable")
    key = ["number", "metric", "epoch"]
    if raw.duplicated(key, keep="last").any():
        raw = raw.drop_duplicates(key, keep="last")
    raw["metric"] = raw["metric"].astype(object)
    return raw[CURVE_COLUMNS].reset_index(drop=True)


def _confirmation_row(r: Any) -> dict[str, Any]:
    tags, metrics = r.data.tags, r.data.metrics
    return {"run_id": r.info.run_id, "config_hash": tags.get("rnnlab.config_hash"),
            "weights": tags.get("rnnlab.confirm_weights", LAST_EPOCH),
            "trial": int(tags.get("rnnlab.confirm_trial", -1)),
            "seed": int(tags.get("rnnlab.confirm_seed", 0)),
            "test_acc": metrics["test_acc"], "test_loss": metrics.get("test_loss"),
            "test_set": tags.get("data.test_set", "")}


def metric_histories(client: Any, runs: dict[str, int], metrics: Sequence[str]) -> pd.DataFrame:
    """Any store, public API: ``get_metric_history`` per run and metric of the runs
    ``{run_id: trial number}``, 8 requests at a time. Columns as
    :func:`rnnlab.tracking.internals.metric_histories_sql`'s."""

    def one(job: tuple[str, str]) -> list[tuple]:
        run_id, key = job
        try:
            history = client.get_metric_history(run_id, key)
        except MlflowException:  # a run deleted from the store has no curve
            return []
        return [(runs[run_id], key, h.step, h.value, h.timestamp) for h in history]

    jobs = [(r, k) for r in runs for k in metrics]
    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = [row for rows in pool.map(one, jobs) for row in rows]
    return pd.DataFrame(rows, columns=["number", "metric", "epoch", "value", "timestamp"])
