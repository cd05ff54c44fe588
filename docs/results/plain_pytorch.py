"""Re-train an exported best config with plain PyTorch, without rnnlab, and score it on the
official MNIST test set: a check that the winner is the config, not something rnnlab does.

It reads the YAML that `rnnlab report --format yaml` exports (the `data`, `model` and `train`
sections) and does what they say in about a hundred lines of its own: the four IDX files, the
holdout split (validation images carved from the training images with `split_seed`, the
official test set kept apart), the normalisation from the training images only, a fused
RNN/LSTM/GRU read-out from the last step, RMSprop (decay 0.99, eps 1e-8) with the L2 penalty
l2/2 * sum(w**2) over weight matrices and gradient-norm clipping; it keeps the weights of the
epoch with the best validation accuracy (as `rnnlab report` does for a study whose objective
is the best epoch; `--last` keeps the last epoch's) and scores them once on the 10,000 test
images.

    python docs/results/plain_pytorch.py docs/results/best_gru.yaml \\
        --data-dir ../shared/data/mnist --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import copy
import gzip
import statistics
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn import functional as F

FILES = {"train_x": "train-images-idx3-ubyte.gz", "train_y": "train-labels-idx1-ubyte.gz",
         "test_x": "t10k-images-idx3-ubyte.gz", "test_y": "t10k-labels-idx1-ubyte.gz"}


def idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def splits(data: dict, folder: Path):
    a = {k: idx(folder / f) for k, f in FILES.items()}
    train_x, train_y = a["train_x"].reshape(-1, 784), a["train_y"]
    assert data.get("split", "holdout") == "holdout" and data.get("source") == "mnist"
    pool = np.random.default_rng(data.get("split_seed", 0)).permutation(len(train_x))
    n_val, n_train = data["val_size"], data["train_size"]
    tr, va = pool[n_val:n_val + n_train], pool[:n_val]
    x = train_x[tr].astype(np.float64)
    norm = data.get("normalisation", "per_pixel")
    if norm == "none":
        mean, scale = 0.0, 255.0
    elif norm == "global":
        mean, scale = x.mean(), x.std()
    elif norm == "per_pixel_tutorial":
        mean, scale = x.mean(0), x.std(0) + 1e-5
    else:
        mean, scale = x.mean(0), np.maximum(x.std(0), data.get("std_floor", 0.1) * x.std())
    patch = data["patch"]

    def seq(images):
        z = (images.reshape(-1, 784).astype(np.float64) - mean) / scale
        return torch.from_numpy(z.astype(np.float32).reshape(len(images), 784 // patch, patch))

    def lab(y):
        return torch.from_numpy(y.astype(np.int64))

    return (seq(train_x[tr]), lab(train_y[tr]), seq(train_x[va]), lab(train_y[va]),
            seq(a["test_x"]), lab(a["test_y"]))


class Net(nn.Module):
    def __init__(self, model: dict, patch: int):
        super().__init__()
        cell = model.get("cell", "rnn")
        kind = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = kind(patch, model["hidden"], num_layers=model.get("layers", 1),
                        batch_first=True)
        self.out = nn.Linear(model["hidden"], 10)
        if model.get("init", "tutorial") == "tutorial":  # identity RNN; orthogonal gates
            for name, w in self.rnn.named_parameters():
                if name.startswith("weight_ih"):
                    nn.init.xavier_uniform_(w)
                elif name.startswith("weight_hh") and cell == "rnn":
                    nn.init.eye_(w)
                elif name.startswith("weight_hh"):
                    for gate in w.data.chunk(w.shape[0] // w.shape[1]):
                        nn.init.orthogonal_(gate)
                else:
                    nn.init.zeros_(w)
                    if cell == "lstm" and name.startswith("bias_ih"):
                        w.data[w.shape[0] // 4: w.shape[0] // 2] = 1.0
            nn.init.xavier_uniform_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x):
        return self.out(self.rnn(x)[0][:, -1])


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        hits = sum(int((net(x[i:i + 2000]).argmax(1) == y[i:i + 2000]).sum())
                   for i in range(0, len(x), 2000))
    return hits / len(x)


def train_and_test(config: dict, folder: Path, seed: int,
                   last: bool = False) -> tuple[float, int, list[float]]:
    """Test accuracy, the epoch whose weights were scored, and each epoch's validation
    accuracy (to set beside ``rnnlab train``'s)."""
    t = config["train"]
    x, y, val_x, val_y, test_x, test_y = splits(config["data"], folder)
    torch.manual_seed(seed)
    net = Net(config["model"], config["data"]["patch"])
    opt = {"rmsprop": lambda p: torch.optim.RMSprop(p, lr=t["lr"], alpha=0.99, eps=1e-8),
           "adam": lambda p: torch.optim.Adam(p, lr=t["lr"]),
           "sgd": lambda p: torch.optim.SGD(p, lr=t["lr"], momentum=t.get("momentum", 0.9)),
           }[t.get("optimizer", "rmsprop")](net.parameters())
    weights = [w for name, w in net.named_parameters() if "weight" in name]
    order = torch.Generator().manual_seed(seed)
    best, curve = (-1.0, 0, None), []
    for epoch in range(1, t["epochs"] + 1):
        perm = torch.randperm(len(x), generator=order)
        for i in range(0, len(x), t["batch_size"]):
            b = perm[i:i + t["batch_size"]]
            loss = F.cross_entropy(net(x[b]), y[b])
            if t.get("l2"):
                loss = loss + 0.5 * t["l2"] * sum(w.pow(2).sum() for w in weights)
            opt.zero_grad()
            loss.backward()
            if t.get("grad_clip"):
                nn.utils.clip_grad_norm_(net.parameters(), t["grad_clip"])
            opt.step()
        val = accuracy(net, val_x, val_y)
        curve.append(val)
        if last or val > best[0]:
            best = (val, epoch, copy.deepcopy(net.state_dict()))
    net.load_state_dict(best[2])
    return accuracy(net, test_x, test_y), best[1], curve


def main() -> None:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("config")
    ap.add_argument("--data-dir", default="../shared/data/mnist")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--last", action="store_true", help="score the last epoch's weights")
    ap.add_argument("--threads", type=int, help="CPU threads (default: the config's, else "
                    "PyTorch's); the order of a sum depends on them, and so a run's last digits")
    ap.add_argument("--curve", action="store_true", help="print each epoch's validation accuracy")
    args = ap.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    threads = args.threads or config["train"].get("threads")
    if threads:
        torch.set_num_threads(threads)
    accs = []
    for seed in map(int, args.seeds.split(",")):
        acc, epoch, curve = train_and_test(config, Path(args.data_dir), seed, args.last)
        if args.curve:
            for n, val in enumerate(curve, start=1):
                print(f"seed {seed} epoch {n}/{len(curve)} val_acc {val:.4f}")
        accs.append(acc)
        print(f"{args.config} seed {seed}: test accuracy {acc:.4f} (weights of epoch {epoch})",
              flush=True)
    sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
    print(f"{args.config}: test accuracy {statistics.mean(accs):.4f} ± {sd:.4f} "
          f"over {len(accs)} seed(s) (official MNIST test set, plain PyTorch)")


if __name__ == "__main__":
    main()
