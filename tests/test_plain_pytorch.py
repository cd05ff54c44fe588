"""rnnlab trains what the config says, nothing else: docs/results/plain_pytorch.py, about a
hundred lines of plain PyTorch that read the exported config and the IDX files themselves,
reaches the same validation accuracy at every epoch, for every cell and normalisation, with an
L2 penalty and gradient clipping (one CPU thread: the order of a sum depends on the threads)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from rnnlab.core.spec import to_yaml
from rnnlab.train import fit

SCRIPT = Path(__file__).resolve().parents[1] / "docs/results/plain_pytorch.py"


@pytest.fixture(scope="module")
def plain():
    spec = importlib.util.spec_from_file_location("plain_pytorch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("cell, normalisation", [
    ("rnn", "per_pixel"), ("lstm", "global"), ("gru", "none"), ("gru", "per_pixel_tutorial")])
def test_plain_pytorch_trains_the_config_to_rnnlabs_curve(plain, tiny, mnist_dir, cell,
                                                          normalisation):
    config = tiny({"model.cell": cell, "data.normalisation": normalisation, "train.epochs": 3,
                   "train.lr": 3e-3, "train.l2": 1e-3, "train.grad_clip": 1.0, "train.seed": 2})
    ours = [h["val_acc"] for h in fit(config).history]
    exported = yaml.safe_load(to_yaml(config))  # as `rnnlab report --format yaml` writes it
    test_acc, epoch, theirs = plain.train_and_test(exported, mnist_dir, seed=2)
    assert theirs == ours  # exact: the same batches, initial weights, penalty and clipping
    assert epoch == ours.index(max(ours)) + 1 and 0.1 < test_acc <= 1.0
