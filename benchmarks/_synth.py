"""Synthetic trial runs written in bulk into an MLflow SQL store, for benchmarks that need a
study of thousands of trials without training (or tracking) each of them.

``MlflowClient`` writes a run of 100 epochs x 7 metrics in 0.2-0.35 s: 10,000 runs would take
most of an hour. Here rows go straight into MLflow's own tables (its SQLAlchemy models, so the
schema is the installed MLflow's), in one transaction per 500 runs: a run reads back through
``MlflowClient`` and the MLflow UI as one that was logged (tags, params, every metric point and
the latest-metrics table MLflow keeps beside them).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from mlflow.tracking import MlflowClient
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

CHUNK = 500  # runs per transaction


def distributions(spec) -> dict[str, BaseDistribution]:
    """Optuna's distributions of a study spec's search keys."""
    out: dict[str, BaseDistribution] = {}
    for key, d in spec.search.items():
        if d.type == "categorical":
            out[key] = CategoricalDistribution(d.choices)
        elif d.type == "int":
            out[key] = IntDistribution(int(d.low), int(d.high), log=d.log)
        else:
            out[key] = FloatDistribution(d.low, d.high, log=d.log)
    return out


def draw_params(dists: Mapping[str, BaseDistribution], rng: np.random.Generator) -> dict:
    """A random point: categorical keys uniform, numeric ones log-uniform."""
    return {k: (d.choices[rng.integers(len(d.choices))]
                if isinstance(d, CategoricalDistribution)
                else float(math.exp(rng.uniform(math.log(d.low), math.log(d.high)))))
            for k, d in dists.items()}


@dataclass
class SynthRun:
    """One run as a trial leaves it: ``metrics`` maps a key to its value at epochs 1, 2, ..."""

    name: str
    tags: Mapping[str, str]
    params: Mapping[str, str]
    metrics: Mapping[str, list[float]] = field(default_factory=dict)
    status: str = "FINISHED"


def bulk_runs(uri: str, experiment_id: str, runs: Iterable[SynthRun]) -> list[str]:
    """Write ``runs`` into the experiment of the SQL tracking store at ``uri``; their ids."""
    from mlflow.store.tracking.dbmodels import models as m
    from sqlalchemy import insert

    client = MlflowClient(uri)
    store = client._tracking_client.store  # the SQL store: benchmarks only, see module doc
    location = client.get_experiment(experiment_id).artifact_location.rstrip("/")
    ids: list[str] = []
    batch: list[SynthRun] = []

    def flush() -> None:
        rows: dict = {t: [] for t in (m.SqlRun, m.SqlTag, m.SqlParam, m.SqlMetric,
                                      m.SqlLatestMetric)}
        now = int(time.time() * 1000)
        for run in batch:
            rid = uuid.uuid4().hex
            ids.append(rid)
            rows[m.SqlRun].append(dict(
                run_uuid=rid, name=run.name, source_type="LOCAL", source_name="",
                entry_point_name="", user_id="bench", status=run.status, start_time=now,
                end_time=now, source_version="", lifecycle_stage="active",
                artifact_uri=f"{location}/{rid}/artifacts", experiment_id=int(experiment_id)))
            rows[m.SqlTag] += [dict(key=k, value=v, run_uuid=rid) for k, v in
                               {"mlflow.runName": run.name, **run.tags}.items()]
            rows[m.SqlParam] += [dict(key=k, value=v, run_uuid=rid)
                                 for k, v in run.params.items()]
            for key, values in run.metrics.items():
                points = [dict(key=key, value=0.0 if math.isnan(v) else float(v),
                               is_nan=math.isnan(v), timestamp=now, step=step, run_uuid=rid)
                          for step, v in enumerate(values, start=1)]
                rows[m.SqlMetric] += points
                if points:
                    rows[m.SqlLatestMetric].append(points[-1])
        with store.engine.begin() as conn:
            for model, values in rows.items():
                if values:
                    conn.execute(insert(model.__table__), values)
        batch.clear()

    for run in runs:
        batch.append(run)
        if len(batch) == CHUNK:
            flush()
    if batch:
        flush()
    return ids
