"""Does cuDNN's TF32 change what a config trains to? (PyTorch lets cuDNN's RNN kernels use TF32
on Ampere and later GPUs by default; rnnlab leaves it so.)

One exported config (`rnnlab report STUDY --format yaml`), seeds 0, 1, 2, each with TF32 on and
off: the best validation accuracy and the official test set's accuracy of the best epoch's
weights, as rnnlab's confirmation scores a config on its own subset. One JSON line a run.

    python docs/results/gpu/tf32.py CONFIG.yaml DATA_DIR TAG > runs.jsonl

Needs an NVIDIA GPU (``PROBE_DEVICE=cpu`` runs the same on the CPU, where TF32 does nothing).
"""

import json
import os
import sys
import time

import torch
import yaml

from rnnlab.core.data import load_data
from rnnlab.core.spec import RunConfig, apply_overrides, validate
from rnnlab.train import evaluate, fit


def main() -> None:
    path, data_dir, tag = sys.argv[1:4]
    raw = yaml.safe_load(open(path))
    raw["data"]["dir"] = data_dir
    raw["train"]["device"] = os.environ.get("PROBE_DEVICE", "cuda")
    base = validate(RunConfig, raw, tag)
    data = load_data(base.data, base.train.device)
    for seed in (0, 1, 2):
        for tf32 in (True, False):
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            cfg = validate(RunConfig, apply_overrides(base.model_dump(), {"train.seed": seed}),
                           tag)
            started = time.time()
            result = fit(cfg, data=data, keep_best=("val_acc", True))
            _, test = evaluate(result.model, data.test_x, data.test_y)
            print(json.dumps({"config": tag, "seed": seed, "tf32": tf32, "status": result.status,
                              "best_val": result.best(), "best_epoch": result.best_epoch(),
                              "test": test, "wall_s": round(time.time() - started, 1)}),
                  flush=True)


if __name__ == "__main__":
    main()
