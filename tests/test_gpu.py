"""On an NVIDIA GPU: every cell trains there as it does on the CPU, a run repeats bit for bit, a
GPU worker's checkpoint resumes on a machine without a GPU, and a sweep puts its workers on the
GPU.

Skipped where torch sees no CUDA device (CI has none): run them on a GPU machine with
``make test-gpu``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import optuna
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from rnnlab.core.study_spec import load_study_spec
from rnnlab.engines.local import sweep
from rnnlab.storage.adapter import open_storage
from rnnlab.tracking.tracker import Tracker
from rnnlab.train import Checkpoint, fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs an NVIDIA GPU and a CUDA build of torch")
CELLS = ("rnn", "lstm", "gru")


def _curve(result) -> list[tuple[float, float, float]]:
    return [(h["train_loss"], h["val_loss"], h["val_acc"]) for h in result.history]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_trains_on_the_gpu_as_on_the_cpu(tiny, cell, precision):
    """The same seed starts from the same weights and batch order on either device, so the
    curves differ by rounding only (more of it in bf16)."""
    overrides = {"model.cell": cell, "train.epochs": 3, "train.precision": precision}
    gpu = fit(tiny({**overrides, "train.device": "cuda"}))
    cpu = fit(tiny({**overrides, "train.device": "cpu"}))
    assert gpu.status == "completed" and gpu.device.startswith("cuda")
    assert all(p.is_cuda for p in gpu.model.parameters())
    tolerance = 0.01 if precision == "fp32" else 0.05
    for g, c in zip(gpu.history, cpu.history, strict=True):
        assert math.isfinite(g["train_loss"]) and math.isfinite(g["val_loss"])
        assert abs(g["train_loss"] - c["train_loss"]) < tolerance * c["train_loss"], (g, c)
        assert abs(g["val_acc"] - c["val_acc"]) <= 0.03, (g, c)  # 3 of 100 images


@pytest.mark.parametrize("cell", CELLS)
def test_the_same_seed_gives_the_same_curve_bit_for_bit_on_the_gpu(tiny, cell):
    cfg = tiny({"model.cell": cell, "train.epochs": 2, "train.device": "cuda"})
    assert _curve(fit(cfg)) == _curve(fit(cfg))


def test_resume_on_the_gpu_repeats_the_uninterrupted_run(tiny):
    cfg = tiny({"train.epochs": 3, "train.checkpoint_every": 1, "model.cell": "lstm",
                "train.device": "cuda"})
    saved: list[Checkpoint] = []
    full = fit(cfg, on_checkpoint=saved.append)
    assert _curve(fit(cfg, resume=saved[0])) == _curve(full)


def test_a_gpu_workers_checkpoint_resumes_on_a_machine_without_one(mlflow_db, tiny):
    """Stored through MLflow as a GPU worker stores it, then read and trained on by a process
    that sees no GPU (CUDA_VISIBLE_DEVICES empty), as a retry on a CPU worker would."""
    cfg = tiny({"train.epochs": 2, "train.checkpoint_every": 1, "model.cell": "gru",
                "train.device": "cuda"})
    saved: list[Checkpoint] = []
    gpu = fit(cfg, on_checkpoint=saved.append)
    tracker = Tracker()
    run_id = tracker.start_run("exp", "gpu-worker", config=cfg)
    tracker.log_checkpoint(run_id, saved[0])
    tracker.flush(run_id)
    tracker.end_run(run_id)

    cpu_cfg = json.dumps(cfg.model_dump(mode="json") | {
        "train": {**cfg.train.model_dump(mode="json"), "device": "cpu"}})
    code = textwrap.dedent(f"""
        import json, torch
        from rnnlab.core.spec import RunConfig
        from rnnlab.tracking.tracker import Tracker
        from rnnlab.train import fit
        assert not torch.cuda.is_available()
        ckpt = Tracker().load_checkpoint({run_id!r})
        result = fit(RunConfig.model_validate(json.loads({cpu_cfg!r})), resume=ckpt)
        print(json.dumps([ckpt.epoch, result.device, result.history]))
    """)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    epoch, device, history = json.loads(out.stdout.splitlines()[-1])
    assert (epoch, device, len(history)) == (1, "cpu", 2)
    assert history[0] == gpu.history[0]  # the checkpoint's epoch, not trained again
    assert abs(history[1]["train_loss"] - gpu.history[1]["train_loss"]) < 0.01 * \
        gpu.history[1]["train_loss"]


def test_a_sweep_puts_its_workers_on_the_gpu(tmp_path, mlflow_db, mnist_dir):
    """``train.device: auto`` and two workers per GPU: every trial trains on the GPU, in a
    worker process, and repeats there as its config does alone."""
    raw = {
        "data": {"dir": str(mnist_dir), "train_size": 200, "val_size": 100, "patch": 28},
        "model": {"hidden": 16},
        "train": {"epochs": 2, "threads": 1, "device": "auto"},
        "study": {"name": "gpu", "n_trials": 4, "sampler": {"name": "random", "seed": 0},
                  "pruner": {"name": "none"}},
        "search": {"model.cell": {"choices": list(CELLS)},
                   "train.lr": {"low": 1e-3, "high": 1e-2, "log": True}},
    }
    (tmp_path / "gpu.yaml").write_text(yaml.safe_dump(raw))
    spec = load_study_spec(tmp_path / "gpu.yaml")
    final = sweep(spec, "rnnlab.journal", workers=None, per_gpu=2)
    assert final.finished == 4 and final.counts["COMPLETE"] == 4
    study = optuna.load_study(study_name="gpu", storage=open_storage("rnnlab.journal"))
    assert study.user_attrs["rnnlab:workers_started"] == 2
    client = MlflowClient()
    for trial in study.get_trials():
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.tags["rnnlab.device"] == "cuda:0"
        assert run.data.params["train.device"] == "cuda:0"
    trial = study.get_trials()[0]
    from rnnlab.core.spec import RunConfig, apply_overrides, validate

    config = validate(RunConfig, apply_overrides({}, trial.user_attrs["config"]), "trial")
    alone = [h["val_acc"] for h in fit(config).history]
    assert alone == [trial.intermediate_values[e] for e in sorted(trial.intermediate_values)]
