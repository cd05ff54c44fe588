"""The MLflow tracker: explicit run ids, nesting, parameters, writes held and sent in the
background."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from rnnlab.core.spec import RunConfig
from rnnlab.tracking.tracker import PARENT_TAG, Tracker
from rnnlab.train import Checkpoint


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


def _history(client: MlflowClient, run_id: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, "val_acc"))


def test_metrics_are_held_until_a_send_interval_a_checkpoint_or_the_end(mlflow_db, tiny,
                                                                         monkeypatch, capfd):
    from rnnlab.tracking import tracker as tracking
    from rnnlab.train import fit

    tracker, client = Tracker(), MlflowClient()
    run_id = tracker.start_run("exp", "held", config=RunConfig())
    log = tracker.epoch_logger(run_id)
    log(1, {"val_acc": 0.1})
    log(2, {"val_acc": 0.2})
    tracker.flush(run_id)  # params and config.yaml are stored at once, in the background
    assert _history(client, run_id) == [(1, 0.1), (2, 0.2)]
    assert "train.lr" in client.get_run(run_id).data.params
    assert [a.path for a in client.list_artifacts(run_id)] == ["config.yaml"]

    # Held: the last send was less than SEND_EVERY_S ago (an hour: however busy the machine).
    monkeypatch.setattr(tracking, "SEND_EVERY_S", 3600.0)
    log(3, {"val_acc": 0.3})
    assert _history(client, run_id) == [(1, 0.1), (2, 0.2)]
    # a checkpoint takes the held metrics with it: the stored curve reaches the checkpoint
    result = fit(tiny({"train.epochs": 1, "train.checkpoint_every": 1}),
                 on_checkpoint=lambda ckpt: tracker.log_checkpoint(run_id, ckpt))
    tracker.flush(run_id)
    assert _history(client, run_id) == [(1, 0.1), (2, 0.2), (3, 0.3)]
    capfd.readouterr()
    assert tracker.load_checkpoint(run_id).epoch == 1
    assert "Downloading artifacts" not in capfd.readouterr().err  # a resumed retry prints none

    monkeypatch.setattr(tracking, "SEND_EVERY_S", 0.0)  # every epoch is sent, in the background
    log(4, {"val_acc": 0.4})
    deadline = time.monotonic() + 30  # no flush: the background thread sends it by itself
    while _history(client, run_id)[-1] != (4, 0.4) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _history(client, run_id)[-1] == (4, 0.4)
    monkeypatch.setattr(tracking, "SEND_EVERY_S", 3600.0)
    log(5, {"val_acc": 0.5})  # held, then sent with the outcome tags
    tracker.log_result(run_id, result, weights=False, tags={"rnnlab.trial_state": "COMPLETE"})
    tracker.end_run(run_id)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["rnnlab.trial_state"] == "COMPLETE"
    assert run.data.tags["rnnlab.status"] == "completed"
    assert _history(client, run_id)[-1] == (5, 0.5)


def test_a_run_whose_background_write_failed_is_still_closed(mlflow_db, tmp_path):
    tracker = Tracker()
    run_id = tracker.start_run("exp", "broken")
    # A file where the run's artifact folder should be: storing the checkpoint fails
    artifacts = Path(MlflowClient().get_run(run_id).info.artifact_uri.removeprefix("file://"))
    artifacts.parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_text("in the way")
    tracker.log_checkpoint(run_id, Checkpoint(1, {}, {}, torch.zeros(1), []))
    with pytest.raises(OSError):
        tracker.end_run(run_id, "FINISHED")
    assert MlflowClient().get_run(run_id).info.status == "FINISHED"


def test_a_checkpoint_a_gpu_worker_wrote_resumes_on_a_machine_without_one(mlflow_db, tiny,
                                                                          monkeypatch):
    """A GPU worker's checkpoint holds tensors tagged with their CUDA device; a retry on a
    machine without one (or on the CPU workers of the same study) must resume from it, not
    skip it as unreadable and train the trial again from epoch 1."""
    import torch.serialization as serialization

    from rnnlab.train import fit

    cfg = tiny({"train.epochs": 2, "train.checkpoint_every": 1})
    saved: list[Checkpoint] = []
    full = fit(cfg, on_checkpoint=saved.append)
    tracker = Tracker()
    run_id = tracker.start_run("exp", "gpu-worker", config=cfg)
    with monkeypatch.context() as m:
        # Saved as on a GPU: torch.save writes each tensor's device as a tag beside its bytes,
        # and the tag is all a CUDA tensor's file has that this one has not.
        m.setattr(serialization, "_package_registry",
                  [(0, lambda storage: "cuda:0", lambda storage, location: None),
                   *serialization._package_registry])
        tracker.log_checkpoint(run_id, saved[0])
        tracker.flush(run_id)
    path = tracker.client.download_artifacts(run_id, "checkpoint/checkpoint-1.pt")
    if not torch.cuda.is_available():  # the trap is real: a plain load refuses it here
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)

    ckpt = tracker.load_checkpoint(run_id)
    assert ckpt is not None and ckpt.epoch == 1
    assert {t.device.type for t in ckpt.model.values()} == {"cpu"}
    resumed = fit(cfg, resume=ckpt)
    assert resumed.history == full.history[:1] + resumed.history[1:]
    assert [h["val_acc"] for h in resumed.history] == [h["val_acc"] for h in full.history]
    tracker.end_run(run_id)
