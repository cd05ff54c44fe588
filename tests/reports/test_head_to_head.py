"""docs/results/head_to_head.py: two configs on the same subsets and seeds, scored on the test
set; its runs are kept and a second call trains nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.train_size=200", "data.val_size=100", "train.epochs=1", "model.hidden=8",
        "data.patch=28"]


def h2h(mnist_dir: Path, out: Path) -> str:
    sets = [x for s in TINY for x in ("--a-set", s, "--b-set", s)]
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs/results/head_to_head.py"),
         "--a", f"old={ROOT / 'docs/results/before-strata/best_gru.yaml'}",
         "--b", f"new={ROOT / 'docs/results/best_gru.yaml'}", "--b-set",
         "data.normalisation=none", *sets, "--splits", "0,1", "--seeds", "0", "--jobs", "2",
         "--data-dir", str(mnist_dir), "--out", str(out)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_both_configs_train_on_each_subset_and_seed_and_are_reused(mnist_dir, tmp_path):
    out = tmp_path / "runs.json"
    first = h2h(mnist_dir, out)
    runs = json.loads(out.read_text())
    assert sorted(runs) == ["new 0 0", "new 1 0", "old 0 0", "old 1 0"]
    assert all(0.0 <= v <= 1.0 for v in runs.values())
    assert "old subset 1 seed 0: test" in first
    # Kept runs are not trained again: marked values come back as they are.
    out.write_text(json.dumps({"new 0 0": 0.5, "new 1 0": 0.75, "old 0 0": 0.25,
                               "old 1 0": 0.5}))
    again = h2h(mnist_dir, out)
    assert ": test " not in again
    assert "all (2 runs each): old 0.3750, new 0.6250, new - old +0.2500 [" in again
