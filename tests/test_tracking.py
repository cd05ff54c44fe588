"""The MLflow tracker: explicit run ids, nesting, parameters, and URLs with secrets masked."""

from __future__ import annotations

import os

import pytest
from mlflow.tracking import MlflowClient

from rnnlab.spec import RunConfig
from rnnlab.storage import mask_url
from rnnlab.tracking import PARENT_TAG, Tracker


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql://user:s3cret@db.example:5432/optuna", "postgresql://user:***@db.example:5432/optuna"),
    ("postgresql+psycopg2://u:p%40ss@h/db", "postgresql+psycopg2://u:***@h/db"),
    ("http://admin:pw@127.0.0.1:5000", "http://admin:***@127.0.0.1:5000"),
    ("postgresql://user@host/db", "postgresql://user@host/db"),
    ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
    ("rnnlab.journal", "rnnlab.journal"),
    (None, ""),
])
def test_mask_url_hides_only_the_password(url, masked):
    assert mask_url(url) == masked


def test_runs_nest_by_explicit_ids_with_the_config_as_params(mlflow_db):
    tracker = Tracker()
    assert tracker.uri == os.environ["MLFLOW_TRACKING_URI"]
    assert tracker.experiment_id("exp") == tracker.experiment_id("exp")  # created once
    parent = tracker.start_run("exp", "study")
    child = tracker.start_run("exp", "trial-0", config=RunConfig(), parent_run_id=parent,
                              extra_params={"trial.number": 0})
    tracker.epoch_logger(child)(1, {"val_acc": 0.5})
    tracker.end_run(child)
    tracker.end_run(parent)

    client = MlflowClient(tracker.uri)
    run = client.get_run(child)
    assert run.data.tags[PARENT_TAG] == parent and run.data.tags["mlflow.runName"] == "trial-0"
    assert run.data.params["data.dir"] == "None" and run.data.params["train.lr"] == "0.0002"
    assert run.data.params["trial.number"] == "0"
    assert [(m.step, m.value) for m in client.get_metric_history(child, "val_acc")] == [(1, 0.5)]
    assert client.get_run(parent).info.status == run.info.status == "FINISHED"
