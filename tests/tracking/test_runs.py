"""A tracked training run, read back from a real MLflow store through ``MlflowClient``."""

from __future__ import annotations

import os

import pytest
import torch
from mlflow.tracking import MlflowClient

from rnnlab import __version__
from rnnlab.core.mnist import MNIST_MD5
from rnnlab.core.spec import flatten, load_config
from rnnlab.tracking.runs import DEFAULT_EXPERIMENT, train_run
from rnnlab.train import EPOCH_METRICS


@pytest.fixture(autouse=True)
def _store(mlflow_db):
    """Every test here tracks into its own ready store."""


def _client() -> MlflowClient:
    return MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


def _runs(client: MlflowClient):
    experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT)
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def test_a_tracked_run_holds_config_metrics_tags_and_artifacts(tiny, mnist_dir, tmp_path):
    cfg = tiny({"train.epochs": 2, "train.l2": 1e-4})
    outcome = train_run(cfg)
    result = outcome.result
    client = _client()
    run = client.get_run(outcome.run_id)

    assert run.info.status == "FINISHED" and [r.info.run_id for r in _runs(client)] == [
        outcome.run_id]
    assert run.data.params == {k: "None" if v is None else str(v)
                               for k, v in flatten(cfg).items()}
    for name in EPOCH_METRICS:
        history = client.get_metric_history(outcome.run_id, name)
        assert [m.step for m in history] == [1, 2]
        assert [m.value for m in history] == [h[name] for h in result.history]

    tags = run.data.tags
    assert tags["data.source"] == "mnist" and tags["data.origin"] == f"local:{mnist_dir}"
    assert all(tags[f"data.md5.{stem}"] == md5 for stem, md5 in MNIST_MD5.items())
    assert tags["rnnlab.device"] == "cpu" and tags["rnnlab.status"] == "completed"
    assert tags["rnnlab.version"] == __version__ and tags["torch.version"] == torch.__version__
    assert tags["torch.cpu_capability"] == torch.backends.cpu.get_cpu_capability() != ""
    assert {"mlflow.version", "python.version", "data.split", "data.test_set"} <= set(tags)
    assert "rnnlab.tutorial_split" not in tags

    assert {a.path for a in client.list_artifacts(outcome.run_id)} >= {"config.yaml", "model.pt"}
    config_path = client.download_artifacts(outcome.run_id, "config.yaml", str(tmp_path))
    assert load_config(config_path) == cfg  # `rnnlab train` accepts the stored config back
    weights_path = client.download_artifacts(outcome.run_id, "model.pt", str(tmp_path))
    weights = torch.load(weights_path, weights_only=True)
    final = result.model.state_dict()
    assert weights.keys() == final.keys()
    assert all(torch.equal(weights[k], final[k]) for k in final)


def test_the_tutorial_split_is_tagged(tiny):
    outcome = train_run(tiny({"data.split": "tutorial", "model.hidden": 4}))
    tags = _client().get_run(outcome.run_id).data.tags
    assert tags["rnnlab.tutorial_split"] == "true" and tags["data.split"] == "tutorial"


def test_untracked_runs_touch_no_store(tiny, tmp_path):
    outcome = train_run(tiny(), track=False)
    assert outcome.run_id is None and outcome.result.status == "completed"
    assert _runs(_client()) == [] and not (tmp_path / "mlruns").exists()


def test_a_diverged_run_is_failed_with_its_epoch(tiny):
    outcome = train_run(tiny({"train.optimizer": "sgd", "train.lr": 1e36, "train.epochs": 3}))
    run = _client().get_run(outcome.run_id)
    assert outcome.result.status == "diverged"
    assert run.info.status == "FAILED" and run.data.tags["rnnlab.diverged_epoch"] == "1"


@pytest.mark.parametrize(("error", "status"), [(RuntimeError, "FAILED"),
                                                (KeyboardInterrupt, "KILLED")])
def test_a_crashed_run_is_never_left_running(tiny, error, status):
    def crash(epoch, metrics):
        raise error("boom")

    with pytest.raises(error):
        train_run(tiny(), callbacks=[crash])
    (run,) = _runs(_client())
    assert run.info.status == status


def test_bad_data_creates_no_run(tiny, tmp_path):
    from rnnlab.errors import RnnlabError

    with pytest.raises(RnnlabError, match="nowhere"):
        train_run(tiny({"data.dir": str(tmp_path / "nowhere")}))
    assert _runs(_client()) == []
