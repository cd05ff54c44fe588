"""Reproduce the tutorial "RNN on MNIST": validation accuracy for the first epochs.

Trains ``studies/tutorial.yaml`` (identity-initialised vanilla RNN, 112 steps of 7 pixels,
per-pixel ``(x - mean) / (std + 1e-5)``, hidden 128, batch 50, RMSprop lr 2e-4; first 5000
training images train, first 1000 test images validate) with no tracking, and prints the
validation accuracy per epoch next to the tutorial's published log. Passes when epoch 6 lands
within 0.05 of the tutorial's 0.680.

    python benchmarks/reproduce_tutorial.py [--data-dir DIR] [--epochs 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rnnlab.core.spec import load_config
from rnnlab.train import fit

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = {1: 0.470, 2: 0.555, 3: 0.595, 4: 0.630, 5: 0.674, 6: 0.680}
CHECK_EPOCH, TARGET, TOLERANCE = 6, 0.680, 0.05


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared/data/mnist"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    config = load_config(REPO / "studies/tutorial.yaml", [
        f"data.dir={args.data_dir}", f"train.epochs={args.epochs}",
        f"train.threads={args.threads}", f"train.device={args.device}",
    ])
    print(f"tutorial config, {args.epochs} epochs, device {args.device}, "
          f"{args.threads} threads, data {args.data_dir}")
    print(f"{'epoch':>5}  {'val_acc':>8}  {'tutorial':>8}  {'train_loss':>10}  {'time_s':>6}")

    def show(epoch: int, m: dict[str, float]) -> None:
        published = f"{PUBLISHED[epoch]:.3f}" if epoch in PUBLISHED else "-"
        print(f"{epoch:>5}  {m['val_acc']:>8.3f}  {published:>8}  {m['train_loss']:>10.4f}  "
              f"{m['epoch_time_s']:>6.1f}", flush=True)

    started = time.perf_counter()
    result = fit(config, [show])
    print(f"status {result.status}, {time.perf_counter() - started:.1f} s in all")
    if result.epochs_run < CHECK_EPOCH:
        print(f"FAIL: only {result.epochs_run} epochs ran; epoch {CHECK_EPOCH} is checked")
        return 1
    got = result.history[CHECK_EPOCH - 1]["val_acc"]
    ok = abs(got - TARGET) <= TOLERANCE
    print(f"{'PASS' if ok else 'FAIL'}: epoch {CHECK_EPOCH} val_acc {got:.3f}, "
          f"tutorial {TARGET:.3f}, tolerance {TOLERANCE}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
