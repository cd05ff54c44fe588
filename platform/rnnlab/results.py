"""A study and its MLflow runs, read back into tidy pandas DataFrames.

Dashboards and reports draw only from what this module returns; they never open a store.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from rnnlab.errors import RnnlabError
from rnnlab.spec import METRICS as CURVE_METRICS
from rnnlab.spec import StudySpec
from rnnlab.storage import load_study, mask_url

FORMATS = ("csv", "parquet", "json")
CONFIRM_KIND = "confirm"
_CHUNK = 500  # run ids per SQL IN (...) clause


@dataclass(frozen=True, eq=False)
class StudyFrames:
    """Everything dashboards and reports draw from: a study's meta data and its frames.

    ``trials`` is :func:`trials_frame`; ``configs`` has one row per trial that got a config
    (``number`` and every dotted config key, the values trained with); ``curves`` is
    :func:`curves_frame`; ``finals`` has one row per trial with curves (``number``, ``epochs``
    and ``final_<metric>``, the last epoch's value); ``importances`` has ``param`` and
    ``importance`` (empty with fewer than two complete trials, see ``importance_note``).
    """

    name: str
    metric: str
    direction: str
    budget: int | None
    search: tuple[str, ...]
    log_keys: tuple[str, ...]
    parent_run_id: str | None
    experiment: str | None
    spec: dict[str, Any]
    trials: pd.DataFrame
    configs: pd.DataFrame
    curves: pd.DataFrame
    finals: pd.DataFrame
    importances: pd.DataFrame
    importance_note: str = ""
    tracking_uri: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Trials per state name (``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``, ...)."""
        return self.trials["state"].value_counts().to_dict() if len(self.trials) else {}

    def table(self, states: Sequence[str] = ("COMPLETE",)) -> pd.DataFrame:
        """One row per trial in ``states``: number, state, value, duration_s, mlflow_run_id,
        every dotted config key and the ``finals`` columns; ordered by number."""
        base = ["number", "state", "value", "duration_s", "mlflow_run_id", "reason"]
        t = self.trials.reindex(columns=base)
        t = t[t["state"].isin(list(states))]
        out = t.merge(self.configs, on="number", how="left")
        out = out.merge(self.finals, on="number", how="left")
        return out.sort_values("number").reset_index(drop=True)


def trials_frame(storage: str, name: str) -> pd.DataFrame:
    """One row per trial: number, state, value, timings, every param (``params_<key>``), the
    trial's MLflow run id and reason (for pruned or failed trials).

    Raises:
        RnnlabError: the study does not exist.
    """
    return _trials_frame(load_study(storage, name))


def _trials_frame(study: optuna.Study) -> pd.DataFrame:
    df = study.trials_dataframe(attrs=("number", "value", "state", "datetime_start",
                                       "datetime_complete", "duration", "params", "user_attrs"))
    if df.empty:
        return pd.DataFrame(columns=["number", "value", "state", "duration_s"])
    df["duration_s"] = df.pop("duration").dt.total_seconds()
    df = df.rename(columns=lambda c: c.replace("user_attrs_", ""))
    if "config" in df:  # the values trained with (a draw below zero_below trained as 0)
        for col in [c for c in df.columns if c.startswith("params_")]:
            key = col.removeprefix("params_")
            df[col] = [cfg.get(key, raw) if isinstance(cfg, dict) else raw
                       for cfg, raw in zip(df["config"], df[col], strict=True)]
        df = df.drop(columns="config")
    return df


def curves_frame(storage: str, name: str, *, tracking_uri: str | None = None,
                 metrics: Sequence[str] = CURVE_METRICS) -> pd.DataFrame:
    """One row per trial, epoch and metric: ``number``, ``epoch``, ``metric``, ``value``.

    Read from the trials' MLflow runs (per-epoch metrics logged at ``step=epoch``).

    Raises:
        RnnlabError: the study does not exist or the tracking store cannot be read.
    """
    study = load_study(storage, name)
    client = _client(tracking_uri)
    return _curves(client, _run_numbers(study.get_trials(deepcopy=False)), metrics)


def study_frames(storage: str, name: str, *, tracking_uri: str | None = None,
                 metrics: Sequence[str] = CURVE_METRICS) -> StudyFrames:
    """Read a study and its trials' MLflow runs into :class:`StudyFrames`.

    Raises:
        RnnlabError: the study does not exist, or its runs are not in the tracking store.
    """
    study = load_study(storage, name)
    trials = study.get_trials(deepcopy=False)
    spec = study.user_attrs.get("spec") or {}
    search = StudySpec.model_validate(spec).search if spec else {}
    parent = study.user_attrs.get("mlflow_parent_run_id")
    runs = _run_numbers(trials)
    client = _client(tracking_uri) if runs else None  # no runs: leave the store untouched
    if parent and runs:
        _check_run_exists(client, parent, name)
    curves = _curves(client, runs, metrics)
    importances, note = _importances(study, trials)
    return StudyFrames(
        name=name, metric=spec.get("study", {}).get("metric", "value"),
        direction=study.direction.name.lower(), budget=study.user_attrs.get("n_trials"),
        search=tuple(search) or tuple(sorted({k for t in trials for k in t.params})),
        log_keys=tuple(k for k, d in search.items() if d.log), parent_run_id=parent,
        experiment=study.user_attrs.get("mlflow_experiment"), spec=spec,
        trials=_trials_frame(study), configs=_configs(trials), curves=curves,
        finals=_finals(curves), importances=importances, importance_note=note,
        tracking_uri=mask_url(client.tracking_uri if client else _uri(tracking_uri)))


def confirmations_frame(parent_run_id: str, *, tracking_uri: str | None = None) -> pd.DataFrame:
    """Finished confirmation runs nested under a study's run: one row per run.

    Columns: ``run_id``, ``config_hash``, ``trial``, ``seed``, ``test_acc``, ``test_loss``,
    ``test_set`` (from the runs' ``rnnlab.*`` tags and ``test_*`` metrics).
    """
    client = _client(tracking_uri)
    run = _check_run_exists(client, parent_run_id, "")
    query = (f"tags.`rnnlab.kind` = '{CONFIRM_KIND}' and "
             f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'FINISHED'")
    rows, token = [], None
    while True:
        page = client.search_runs([run.info.experiment_id], query, max_results=1000,
                                  page_token=token)
        for r in page:
            tags, metrics = r.data.tags, r.data.metrics
            if "test_acc" not in metrics:
                continue
            rows.append({"run_id": r.info.run_id, "config_hash": tags.get("rnnlab.config_hash"),
                         "trial": int(tags.get("rnnlab.confirm_trial", -1)),
                         "seed": int(tags.get("rnnlab.confirm_seed", 0)),
                         "test_acc": metrics["test_acc"], "test_loss": metrics.get("test_loss"),
                         "test_set": tags.get("data.test_set", "")})
        token = page.token
        if not token:
            break
    columns = ["run_id", "config_hash", "trial", "seed", "test_acc", "test_loss", "test_set"]
    return pd.DataFrame(rows, columns=columns)


def _uri(tracking_uri: str | None) -> str:
    import mlflow

    return tracking_uri or mlflow.get_tracking_uri()


def _client(tracking_uri: str | None):
    from mlflow.tracking import MlflowClient

    uri = _uri(tracking_uri)
    if uri.startswith(("http://", "https://")):  # fail in seconds, not after MLflow's retries
        from rnnlab.tracking import check_server

        check_server(uri)
    return MlflowClient(uri)


def _check_run_exists(client, run_id: str, study: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        what = f"study {study!r}'s MLflow run" if study else "MLflow run"
        raise RnnlabError(
            f"{what} {run_id} is not in tracking store {mask_url(client.tracking_uri)} "
            f"({str(exc).splitlines()[0][:120]}); run where the sweep ran or set "
            "MLFLOW_TRACKING_URI") from None


def _run_numbers(trials: Iterable[optuna.trial.FrozenTrial]) -> dict[str, int]:
    return {t.user_attrs["mlflow_run_id"]: t.number for t in trials
            if t.user_attrs.get("mlflow_run_id")}


def _curves(client, runs: dict[str, int], metrics: Sequence[str]) -> pd.DataFrame:
    columns = ["number", "epoch", "metric", "value"]
    if not runs or not metrics:
        return pd.DataFrame(columns=columns)
    raw = _histories_sql(client, list(runs), metrics)
    if raw is None:
        raw = _histories_api(client, list(runs), metrics)
    if raw.empty:
        return pd.DataFrame(columns=columns)
    # A step logged twice (a resumed trial re-logs its epoch) keeps its latest value.
    raw = raw.sort_values("timestamp").drop_duplicates(["run_id", "metric", "epoch"],
                                                      keep="last")
    raw["number"] = raw["run_id"].map(runs).astype(int)
    raw["epoch"] = raw["epoch"].astype(int)
    return raw[columns].sort_values(["number", "metric", "epoch"]).reset_index(drop=True)


def _histories_sql(client, run_ids: list[str], metrics: Sequence[str]) -> pd.DataFrame | None:
    """SQL tracking stores: one query per 500 runs. MlflowClient builds an ORM object per
    point (about 0.1 ms each: seconds for 200 trials x 100 epochs), so read the rows directly.
    Returns None for any other store (an HTTP server, a file store)."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    engine = getattr(store, "engine", None)
    if engine is None:
        return None
    from mlflow.store.tracking.dbmodels.models import SqlMetric
    from sqlalchemy import select

    m = SqlMetric
    frames = []
    with engine.connect() as conn:
        for i in range(0, len(run_ids), _CHUNK):
            query = select(m.run_uuid, m.key, m.step, m.value, m.is_nan, m.timestamp).where(
                m.key.in_(list(metrics)), m.run_uuid.in_(run_ids[i:i + _CHUNK]))
            frames.append(pd.DataFrame(conn.execute(query).all(), columns=[
                "run_id", "metric", "epoch", "value", "is_nan", "timestamp"]))
    raw = pd.concat(frames, ignore_index=True)
    raw["value"] = raw["value"].astype(float).mask(raw.pop("is_nan").astype(bool))
    return raw


def _histories_api(client, run_ids: list[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Any store: ``get_metric_history`` per run and metric, 8 requests at a time."""
    from mlflow.exceptions import MlflowException

    def one(job: tuple[str, str]) -> list[tuple]:
        run_id, key = job
        try:
            history = client.get_metric_history(run_id, key)
        except MlflowException:  # a run deleted from the store has no curve
            return []
        return [(run_id, key, h.step, h.value, h.timestamp) for h in history]

    jobs = [(r, k) for r in run_ids for k in metrics]
    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = [row for rows in pool.map(one, jobs) for row in rows]
    return pd.DataFrame(rows, columns=["run_id", "metric", "epoch", "value", "timestamp"])


def _configs(trials: Iterable[optuna.trial.FrozenTrial]) -> pd.DataFrame:
    rows = [{"number": t.number, **t.user_attrs["config"]} for t in trials
            if isinstance(t.user_attrs.get("config"), dict)]
    return pd.DataFrame(rows) if rows else pd.DataFrame({"number": pd.Series(dtype=int)})


def _finals(curves: pd.DataFrame) -> pd.DataFrame:
    if curves.empty:
        return pd.DataFrame({"number": pd.Series(dtype=int), "epochs": pd.Series(dtype=int)})
    last = curves.sort_values("epoch").groupby(["number", "metric"]).tail(1)
    wide = last.pivot(index="number", columns="metric", values="value").add_prefix("final_")
    wide.columns.name = None
    wide.insert(0, "epochs", curves.groupby("number")["epoch"].max())
    return wide.reset_index()


def _importances(study: optuna.Study,
                 trials: list[optuna.trial.FrozenTrial]) -> tuple[pd.DataFrame, str]:
    """fANOVA importances over complete trials (32 trees, fixed seed: about 1 s for 200)."""
    empty = pd.DataFrame(columns=["param", "importance"])
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if len(complete) < 2:
        return empty, f"needs at least 2 complete trials (has {len(complete)})"
    searched = {k for t in complete for k, d in t.distributions.items() if not d.single()}
    if not searched:
        return empty, "no searched parameter varies across the complete trials"
    evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=32, seed=0)
    scores = optuna.importance.get_param_importances(study, evaluator=evaluator)
    rows = [{"param": k, "importance": float(v)} for k, v in scores.items()]
    return pd.DataFrame(rows, columns=["param", "importance"]), "fANOVA over complete trials"


def write_frame(df: pd.DataFrame, fmt: str, out: str | Path | None) -> str | None:
    """Write ``df`` as csv/parquet/json to ``out`` atomically, or return the text when out is None.

    Raises:
        RnnlabError: unknown format, parquet without a file, or an unwritable path.
    """
    if fmt not in FORMATS:
        raise RnnlabError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if out is None:
        if fmt == "parquet":
            raise RnnlabError("parquet is binary: give --out FILE.parquet")
        return df.to_csv(index=False) if fmt == "csv" else df.to_json(
            orient="records", date_format="iso", indent=1)
    atomic_write(out, lambda path: (
        df.to_csv(path, index=False) if fmt == "csv"
        else df.to_parquet(path, index=False) if fmt == "parquet"
        else df.to_json(path, orient="records", date_format="iso", indent=1)))
    return None


def check_writable(out: str | Path) -> None:
    """Fail early, before minutes of work, when ``out`` could not be written.

    Raises:
        RnnlabError: the folder does not exist or is not writable, or ``out`` is a folder.
    """
    target = Path(out).expanduser()
    if target.is_dir():
        raise RnnlabError(f"cannot write {str(target)!r}: it is a folder; give a file name")
    if not target.parent.is_dir():
        raise RnnlabError(f"cannot write {str(target)!r}: folder {str(target.parent)!r} "
                          "does not exist")
    if not os.access(target.parent, os.W_OK):
        raise RnnlabError(f"cannot write {str(target)!r}: folder {str(target.parent)!r} "
                          "is not writable")


def atomic_write(out: str | Path, write) -> Path:
    """Call ``write(tmp_path)`` beside ``out``, then rename: a failure leaves no partial file.

    Raises:
        RnnlabError: the folder does not exist or cannot be written.
    """
    target = Path(out).expanduser()
    check_writable(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise RnnlabError(f"cannot write {str(target)!r}: {exc.strerror}") from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, target)
    except OSError as exc:  # disk full, a folder in the way: still no partial file
        Path(tmp).unlink(missing_ok=True)
        raise RnnlabError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
