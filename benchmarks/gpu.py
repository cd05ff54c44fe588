"""GPU throughput: how long a full-MNIST GRU-128 epoch takes, and how many workers per GPU to run.

Two measurements on the first visible NVIDIA GPU (pick one with CUDA_VISIBLE_DEVICES):

1. Epoch time of the full-MNIST config (``studies/full_mnist.yaml``: GRU, hidden 128, 112 steps
   of 7 pixels, 55,000 training images, batch 100), in fp32 and bf16. The first epoch (cuDNN
   warm-up) is left out; the figure is the median of the others, training plus validation.
2. Trials per hour with 1, 2, 4 and 8 worker processes on that GPU (``rnnlab sweep --workers K
   --trials-per-gpu K``), each running short trials of the same config (one epoch by default).
   A small recurrent model leaves a big GPU mostly idle, so several workers per GPU should
   finish more trials per hour, up to a point; this finds the point. "Steady" counts only the
   trials that finished after every worker had finished its first one (process start-up and
   data loading excluded); "wall" is the whole sweep, start-up included.

    python benchmarks/gpu.py [--data-dir DIR] [--epochs 3] [--workers 1,2,4,8]
                             [--trial-epochs 1] [--trials-per-worker 3] [--set key=value]

Needs an NVIDIA GPU and a CUDA build of torch; without one it says so and exits with code 1.
Tracking goes to a throwaway SQLite store in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import mnist_dir

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "studies" / "full_mnist.yaml"


def _spec(data_dir: str | None, overrides: list[str]):
    from rnnlab.core.study_spec import load_study_spec

    return load_study_spec(SPEC, [*([f"data.dir={data_dir}"] if data_dir else []), *overrides])


def epoch_times(data_dir: str | None, epochs: int, precisions: list[str],
                overrides: list[str], device: str = "cuda:0") -> list[dict]:
    """Median epoch time (after the first) of the full-MNIST GRU-128 base config."""
    from rnnlab.core.data import load_data
    from rnnlab.core.spec import RunConfig, apply_overrides, validate
    from rnnlab.train import fit

    base = _spec(data_dir, overrides).base
    data = load_data(base.data, device)
    rows = []
    for precision in precisions:
        config = validate(RunConfig, apply_overrides(base.model_dump(), {
            "train.epochs": epochs, "train.device": device, "train.precision": precision,
        }), "benchmark")
        result = fit(config, data=data)
        later = result.history[1:] or result.history
        rows.append({
            "precision": precision,
            "epoch_s": statistics.median(h["epoch_time_s"] for h in later),
            "samples_per_s": statistics.median(h["samples_per_s"] for h in later),
            "val_acc": result.history[-1]["val_acc"],
        })
    return rows


def trials_per_hour(data_dir: str | None, per_gpu: int, trial_epochs: int,
                    trials_per_worker: int, workdir: Path, overrides: list[str]) -> dict:
    """Sweep ``per_gpu`` workers on one GPU through short trials; time them from the storage."""
    import optuna

    from rnnlab.core.spec import validate
    from rnnlab.core.study_spec import StudySpec
    from rnnlab.engines.local import sweep
    from rnnlab.storage.adapter import open_storage

    raw = _spec(data_dir, overrides).model_dump(mode="json")
    raw["train"].update({"epochs": trial_epochs, "device": "auto"})
    n = per_gpu * trials_per_worker
    raw["study"].update({"name": f"gpu-bench-{per_gpu}", "n_trials": n,
                         "sampler": {"name": "random", "seed": 0}, "pruner": {"name": "none"}})
    # The same cell for every trial, so that trials cost the same whatever the worker count.
    raw["search"] = {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}}
    spec = validate(StudySpec, raw, "benchmark")
    storage = str(workdir / f"bench-{per_gpu}.journal")
    started = time.time()
    sweep(spec, storage, workers=per_gpu, per_gpu=per_gpu)
    wall = time.time() - started
    study = optuna.load_study(study_name=spec.study.name, storage=open_storage(storage))
    done = sorted((t for t in study.get_trials(deepcopy=False) if t.datetime_complete),
                  key=lambda t: t.datetime_complete)
    ends = [t.datetime_complete.timestamp() for t in done]
    steady = None
    if len(ends) > per_gpu and ends[-1] > ends[per_gpu - 1]:
        steady = (len(ends) - per_gpu) / (ends[-1] - ends[per_gpu - 1]) * 3600
    return {
        "workers_per_gpu": per_gpu, "trials": len(done), "wall_s": wall,
        "wall_trials_per_h": len(done) / wall * 3600, "steady_trials_per_h": steady,
        "trial_s": statistics.median(
            (t.datetime_complete - t.datetime_start).total_seconds() for t in done),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", help="folder with the four MNIST IDX files "
                    "(default $RNNLAB_DATA_DIR, ../shared/data/mnist, else the cache)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per epoch-time run")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--workers", default="1,2,4,8", help="workers per GPU to compare")
    ap.add_argument("--trial-epochs", type=int, default=1)
    ap.add_argument("--trials-per-worker", type=int, default=3)
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="KEY=VALUE", help="override a key of the spec (repeatable)")
    args = ap.parse_args()

    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs an NVIDIA GPU: torch.cuda.is_available() is False "
                 f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). "
                 "Run it on a GPU machine with a CUDA build of torch.")
    data_dir = mnist_dir(args.data_dir)
    print(f"GPU: {torch.cuda.get_device_name(0)} | torch {torch.__version__} "
          f"(CUDA {torch.version.cuda}) | data: {data_dir or 'the rnnlab cache'}")

    print(f"\nEpoch time, {SPEC.relative_to(REPO)} base config (GRU-128, 55,000 train, "
          f"batch 100), median of epochs 2-{args.epochs}")
    print(f"{'precision':>9} {'epoch s':>8} {'samples/s':>10} {'val_acc':>8}")
    for r in epoch_times(data_dir, args.epochs, args.precisions.split(","), args.overrides):
        print(f"{r['precision']:>9} {r['epoch_s']:8.2f} {r['samples_per_s']:10.0f} "
              f"{r['val_acc']:8.4f}")

    print(f"\nTrials per hour on one GPU, trials of {args.trial_epochs} epoch(s), "
          f"{args.trials_per_worker} per worker")
    print(f"{'workers/GPU':>11} {'trials':>6} {'wall s':>7} {'wall/h':>7} {'steady/h':>9} "
          f"{'trial s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        for k in (int(v) for v in args.workers.split(",")):
            r = trials_per_hour(data_dir, k, args.trial_epochs, args.trials_per_worker,
                                Path(tmp), args.overrides)
            steady = "-" if r["steady_trials_per_h"] is None else f"{r['steady_trials_per_h']:.0f}"
            print(f"{k:>11} {r['trials']:>6} {r['wall_s']:7.1f} {r['wall_trials_per_h']:7.0f} "
                  f"{steady:>9} {r['trial_s']:8.1f}", flush=True)


if __name__ == "__main__":
    main()
