"""A single tracked training run: ``fit`` plus its MLflow run (what ``rnnlab train`` does)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rnnlab.core.data import load_data
from rnnlab.core.spec import RunConfig
from rnnlab.train import EpochCallback, FitResult, fit, resolve_device

DEFAULT_EXPERIMENT = "rnnlab-train"


@dataclass
class TrainOutcome:
    result: FitResult
    run_id: str | None
    tracking_uri: str | None


def train_run(config: RunConfig, *, track: bool = True, experiment: str = DEFAULT_EXPERIMENT,
              callbacks: Sequence[EpochCallback] = ()) -> TrainOutcome:
    """Train one config, tracked as an MLflow run unless ``track`` is false.

    The data is loaded before any run is created, so a missing or corrupt data set leaves no
    stray run behind. An interrupted or crashed fit ends its run KILLED or FAILED, never RUNNING.

    Raises:
        RnnlabError: bad data, device or tracking store.
    """
    device = resolve_device(config.train.device)
    data = load_data(config.data, device)
    if not track:
        return TrainOutcome(fit(config, callbacks, data=data), None, None)
    from rnnlab.tracking.tracker import Tracker  # mlflow is imported only when tracking is on

    tracker = Tracker()
    tags = {"rnnlab.kind": "train", **data.info}
    if config.data.split == "tutorial":
        tags["rnnlab.tutorial_split"] = "true"
    run_id = tracker.start_run(experiment, f"{config.model.cell}-train", config=config, tags=tags)
    with tracker.closing_on_error(run_id):
        result = fit(config, [tracker.epoch_logger(run_id), *callbacks], data=data)
        tracker.log_result(run_id, result)
    tracker.end_run(run_id, tracker.status_for(result))
    return TrainOutcome(result, run_id, tracker.uri)
