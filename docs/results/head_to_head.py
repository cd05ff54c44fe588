"""Two configs trained on the same training subsets with the same seeds and scored on the
official MNIST test set: a like-with-like comparison of configs that were confirmed apart (other
seeds, other subsets, other runs), with the paired gap and its 95% interval.

Each run is what `rnnlab report` trains to confirm a config (rnnlab's own training, the weights
of the epoch with the best validation accuracy, one pass over the 10,000 test images), untracked
and with one CPU thread, so that a run gives the same figure on any machine of this kind. The
runs are written to --out as they finish, and a second call reuses them.

    python docs/results/head_to_head.py \\
        --a old=docs/results/before-strata/best_gru.yaml \\
        --b new=docs/results/best_gru.yaml --b-set data.normalisation=none \\
        --splits 0,1 --seeds 0,1,2 --data-dir ../shared/data/mnist --jobs 2 --out gru.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from rnnlab.analysis.intervals import paired_interval
from rnnlab.core.data import load_data
from rnnlab.core.spec import load_config
from rnnlab.train import evaluate, fit


def key(name: str, split: int, seed: int) -> str:
    """A run's name in --out: the side, the subset, the seed."""
    return f"{name} {split} {seed}"


def one_run(path: str, sets: list[str], split: int, seed: int) -> float:
    """The test accuracy of the config at ``path`` (with ``sets``) on subset ``split``, seed."""
    config = load_config(path, [*sets, f"data.split_seed={split}", f"train.seed={seed}",
                                "train.threads=1", "train.device=cpu"])
    data = load_data(config.data, "cpu")
    result = fit(config, data=data, keep_best=("val_acc", True))
    return evaluate(result.model, data.test_x, data.test_y)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="NAME=CONFIG.yaml")
    ap.add_argument("--b", required=True, help="NAME=CONFIG.yaml")
    ap.add_argument("--a-set", action="append", default=[], help="section.key=value for a")
    ap.add_argument("--b-set", action="append", default=[], help="section.key=value for b")
    ap.add_argument("--splits", default="0,1", help="data.split_seed values (0: the study's)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--data-dir", default=os.environ.get("RNNLAB_DATA_DIR", "../shared/data/mnist"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True, help="JSON of the runs (reused)")
    args = ap.parse_args()
    sides = {}
    for spec, sets in ((args.a, args.a_set), (args.b, args.b_set)):
        name, _, path = spec.partition("=")
        sides[name] = (path, [*sets, f"data.dir={args.data_dir}"])
    pairs = [(int(s), int(k)) for s in args.splits.split(",") for k in args.seeds.split(",")]
    done = json.loads(args.out.read_text()) if args.out.exists() else {}
    todo = [(name, split, seed) for split, seed in pairs for name in sides
            if key(name, split, seed) not in done]
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(one_run, *sides[name], split, seed): (name, split, seed)
                   for name, split, seed in todo}
        for future, (name, split, seed) in futures.items():
            done[key(name, split, seed)] = accuracy = future.result()
            args.out.write_text(json.dumps(done, indent=1))
            print(f"{name} subset {split} seed {seed}: test {accuracy:.4f}", flush=True)
    (a, _), (b, _) = sides.items()
    for label, chosen in (("own subset", [p for p in pairs if p[0] == 0]),
                          ("other subsets", [p for p in pairs if p[0] != 0]),
                          ("all", pairs)):
        if not chosen:
            continue
        va = [done[key(a, s, k)] for s, k in chosen]
        vb = [done[key(b, s, k)] for s, k in chosen]
        low, high = paired_interval([x - y for x, y in zip(vb, va, strict=True)])
        interval = f"[{low:+.4f}, {high:+.4f}]" if low is not None else "(one pair)"
        print(f"{label} ({len(chosen)} runs each): {a} {statistics.mean(va):.4f}, "
              f"{b} {statistics.mean(vb):.4f}, {b} - {a} "
              f"{statistics.mean(vb) - statistics.mean(va):+.4f} {interval}")


if __name__ == "__main__":
    main()
