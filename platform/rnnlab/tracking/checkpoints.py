"""Training checkpoints as MLflow artifacts, whole even when a worker is killed mid-write.

A checkpoint is written in the background while training goes on, and a worker SIGKILLed
meanwhile leaves that file cut short. So checkpoints alternate between two artifacts by the
parity of their epoch, ``checkpoint/checkpoint-0.pt`` and ``checkpoint/checkpoint-1.pt``: a cut
write leaves the one before it whole, and loading takes the newest that reads.
``checkpoint/checkpoint.pt`` (the one artifact of runs made before) is read too.

Checkpoints are read onto the CPU, whatever device wrote them: a trial a GPU worker started
resumes on a machine without one (``fit`` moves the state to its own device).
"""

from __future__ import annotations

import logging
import pickle
import tempfile
from pathlib import Path

import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from rnnlab.train import Checkpoint

NAMES = ("checkpoint/checkpoint-0.pt", "checkpoint/checkpoint-1.pt", "checkpoint/checkpoint.pt")
UNREADABLE = (RuntimeError, EOFError, ValueError, TypeError, KeyError, pickle.UnpicklingError)
log = logging.getLogger(__name__)


def artifact_path(epoch: int) -> str:
    """Where the checkpoint of ``epoch`` is stored: the slot the one before it is not in."""
    return f"checkpoint/checkpoint-{epoch % 2}.pt"


def load_newest(client: MlflowClient, run_id: str) -> Checkpoint | None:
    """The run's newest readable checkpoint (loaded with weights_only, on the CPU), or None
    when it has none; an unreadable one is skipped with a warning."""
    found = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(NAMES):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            try:
                path = client.download_artifacts(run_id, name, str(folder))
            except (MlflowException, OSError):
                continue  # not written (yet)
            try:
                found.append(Checkpoint(**torch.load(path, map_location="cpu", weights_only=True)))
            except UNREADABLE as exc:
                log.warning("rnnlab: checkpoint %s of run %s is unreadable (%s; cut short by a "
                            "kill mid-write?), so it is skipped", name, run_id,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return max(found, key=lambda c: c.epoch, default=None)
