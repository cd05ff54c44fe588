"""The tutorial config's epoch time per cell on a GPU (fp32 with cuDNN's TF32 on and off, bf16;
4 epochs at lr 2e-3, the median of epochs 2-4), then whether a run of each cell repeats bit for
bit. One JSON line a measurement (docs/results/gpu/epoch_times.jsonl).

    python docs/results/gpu/epoch_times.py DATA_DIR
"""

import json
import os
import statistics
import sys

import torch

from rnnlab.core.data import load_data
from rnnlab.core.spec import RunConfig, apply_overrides, validate
from rnnlab.train import fit

BASE = {"data": {"source": "mnist", "split": "holdout", "train_size": 5000, "val_size": 1000,
                 "patch": 7},
        "model": {"hidden": 128},
        "train": {"optimizer": "rmsprop", "batch_size": 50, "epochs": 4, "grad_clip": 5.0,
                  "device": os.environ.get("PROBE_DEVICE", "cuda"), "lr": 2e-3}}


def main() -> None:
    BASE["data"]["dir"] = sys.argv[1]
    data = load_data(validate(RunConfig, BASE, "probe").data, BASE["train"]["device"])

    def run(cell: str, precision: str = "fp32", tf32: bool = True, epochs: int = 4):
        torch.backends.cudnn.allow_tf32 = tf32
        cfg = validate(RunConfig, apply_overrides(BASE, {
            "model.cell": cell, "train.precision": precision, "train.epochs": epochs}), "probe")
        return fit(cfg, data=data)

    for cell in ("rnn", "lstm", "gru"):
        for precision, tf32 in (("fp32", True), ("fp32", False), ("bf16", True)):
            r = run(cell, precision, tf32)
            print(json.dumps({
                "cell": cell, "precision": precision, "cudnn_tf32": tf32,
                "epoch_s": round(statistics.median(h["epoch_time_s"] for h in r.history[1:]), 3),
                "val_acc": [round(h["val_acc"], 4) for h in r.history],
                "train_loss": [round(h["train_loss"], 5) for h in r.history]}), flush=True)
    torch.backends.cudnn.allow_tf32 = True
    for cell in ("rnn", "lstm", "gru"):
        a, b = run(cell, epochs=2), run(cell, epochs=2)
        print(json.dumps({"cell": cell, "repeat_bit_for_bit": [h["train_loss"] for h in a.history]
                          == [h["train_loss"] for h in b.history],
                          "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}), flush=True)


if __name__ == "__main__":
    main()
