"""Training throughput of ``fit`` against a plain PyTorch loop, per cell, in one run.

For each cell (rnn, lstm, gru) on the tutorial config (batch 50, hidden 128, patch 7, the first
5000 training images), this times epochs of the platform's ``fit`` (no tracking) and epochs of
a plain loop written below (the same architecture, data as tensors, randperm slices, RMSprop,
cross-entropy), interleaved so that both see the same machine load. Both sides
are timed the same way, with ``time.perf_counter`` around the epoch's training steps only
(``fit`` reports exactly that as ``samples_per_s``). Each round runs one epoch of each side
from a fresh model, in alternating order; the ratio is the median of the per-round ratios.

    python benchmarks/train_throughput.py [--rounds 4] [--threads 2] [--cells rnn,lstm,gru]

On a machine shared with other work, OpenMP threads that spin while they wait collapse
multi-threaded throughput (measured: 2 threads fell from ~800 to 35-230 samples/s for the
vanilla RNN at a load of 3.7 on 2 CPUs); run with ``OMP_WAIT_POLICY=PASSIVE`` there, or
``--threads 1``. Both sides are affected alike, so the ratio holds either way.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.core.data import load_data
from rnnlab.core.spec import load_config
from rnnlab.train import fit

REPO = Path(__file__).resolve().parents[1]
TARGET = 0.95
_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class PlainNet(nn.Module):
    """The same network as rnnlab's classifier, written out by hand."""

    def __init__(self, cell: str, patch: int, hidden: int):
        super().__init__()
        self.rnn = _CELLS[cell](patch, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (batch, steps, hidden)
        return self.head(out[:, -1])


def plain_epoch(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor, batch: int) -> float:
    """One epoch of the plain loop; returns samples/s over the training steps."""
    started = time.perf_counter()
    perm = torch.randperm(len(x))
    for i in range(0, len(x), batch):
        idx = perm[i : i + batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return len(x) / (time.perf_counter() - started)


def measure(cell: str, args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """Samples/s of the plain loop and of ``fit``, one epoch each per round, ABBA order."""
    config = load_config(REPO / "studies/tutorial.yaml", [
        f"data.dir={args.data_dir}", f"model.cell={cell}", "train.epochs=1",
        f"train.threads={args.threads}", "train.device=cpu",
    ])
    data = load_data(config.data, "cpu")
    x, y, b = data.train_x, data.train_y, config.train.batch_size

    def plain_run() -> float:  # a fresh model each time, as fit starts from its init
        model = PlainNet(cell, config.data.patch, config.model.hidden)
        opt = torch.optim.RMSprop(model.parameters(), lr=config.train.lr, alpha=0.99, eps=1e-8)
        return plain_epoch(model, opt, x, y, b)

    def fit_run() -> float:  # fit's own figure: the same perf_counter span over the steps
        return fit(config, data=data).history[-1]["samples_per_s"]

    plain_run(), fit_run()  # warm-up: allocator, thread pool, lazy imports
    plain: list[float] = []
    ours: list[float] = []
    sides = [(plain, plain_run), (ours, fit_run)]
    for r in range(args.rounds):  # ABBA order: a drifting machine load favours neither side
        for out, run in sides if r % 2 == 0 else sides[::-1]:
            out.append(run())
    return plain, ours


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared/data/mnist"))
    parser.add_argument("--rounds", type=int, default=4, help="timed epochs per side per cell")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cells", default="rnn,lstm,gru")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"tutorial config (batch 50, hidden 128, patch 7, 5000 images), CPU, "
          f"{args.threads} threads, {args.rounds} interleaved epochs per side after warm-up; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    rows = []
    for cell in args.cells.split(","):
        plain, ours = measure(cell, args)
        ratio = statistics.median(o / p for o, p in zip(ours, plain, strict=True))
        rows.append((cell, statistics.median(plain), statistics.median(ours), ratio))
        print(f"  {cell}: plain {[round(v) for v in plain]}  fit {[round(v) for v in ours]}",
              flush=True)

    print("\nmedians; ratio = median of the paired per-round ratios fit/plain")
    print(f"{'cell':<5} {'plain samples/s':>16} {'fit samples/s':>14} {'ratio':>6}")
    for cell, p, o, r in rows:
        print(f"{cell:<5} {p:>16.0f} {o:>14.0f} {r:>6.3f}")
    print(f"load average at the end {os.getloadavg()[0]:.1f} (figures from a busy machine "
          "swing; both sides ran interleaved, so the ratio stays comparable)")
    worst = min(r for *_, r in rows)
    ok = worst >= TARGET
    print(f"{'PASS' if ok else 'FAIL'}: lowest ratio {worst:.3f} (target >= {TARGET})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
