"""What MLflow tracking costs a sweep trial, against the same trial without tracking.

"Tracking" is everything a sweep's trial does in MLflow, in worker.Worker's order: create the
nested run (the flattened config as params, config.yaml), the metrics of every epoch, the
checkpoints its spec asks for, the outcome tags, and closing the run. Trial shapes:

- quickstart-<cell>: studies/quickstart.yaml's trial (28 steps, 2000 samples, 6 epochs), the
  shortest trials rnnlab runs, where a fixed cost weighs most; rnn is its fastest cell;
- tutorial: studies/tutorial_sweep.yaml's trial (RNN-128, 112 steps, a checkpoint every 2
  epochs), cut to 4 epochs of 2000 samples to keep the benchmark short.

Two identical fits on this machine differ by 5-20% from one run to the next, far more than what
tracking costs, so a plain on/off difference mostly measures noise. Tracking's cost is
therefore measured on its own: the tracking calls of a real trial (its own metrics and
checkpoints) replayed without the training, timed until closing the run has waited for every
background write. Its share of the bare trial is the figure held to the target; it counts the
background writes as if they stole their whole time from training, so it is an upper bound.
On/off pairs in alternating order are printed as a cross-check, with their spread.
Target: at most 2% of a trial's wall time.

    python benchmarks/tracking_overhead.py [--repeats 5] [--shape quickstart-rnn ...]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import yaml
from _common import REPO, mnist_dir, scratch

from rnnlab.core.data import load_data
from rnnlab.core.spec import RunConfig, flatten
from rnnlab.tracking.tracker import Tracker
from rnnlab.train import Checkpoint, FitResult, fit

TARGET = 0.02
SHAPES = ("quickstart-rnn", "quickstart-lstm", "quickstart-gru", "tutorial")


def shape(name: str) -> RunConfig:
    """The base config of a study in studies/, as its trials train it (2 CPU threads)."""
    study, _, cell = name.partition("-")
    raw = yaml.safe_load((REPO / f"studies/{study}{'_sweep' * (study == 'tutorial')}.yaml")
                         .read_text())
    raw = {k: raw.get(k, {}) for k in ("data", "model", "train")}
    raw["train"]["threads"] = 2
    if cell:
        raw["model"]["cell"] = cell
    if study == "tutorial":  # 4 epochs of 2000 samples: minutes, not hours
        raw["train"]["epochs"] = 4
        raw["data"].update(train_size=2000, val_size=500, dir=mnist_dir())
    return RunConfig.model_validate(raw)


def track(tracker: Tracker, parent: str, n: int, config: RunConfig, run) -> str:
    """Open a trial's run, train it with ``run(callback, on_checkpoint)`` and close it."""
    run_id = tracker.start_run(
        "overhead", f"trial-{n}", config=config, parent_run_id=parent,
        extra_params={"rnnlab.sampled_keys": "train.lr"},
        tags={"rnnlab.kind": "trial", "rnnlab.study": "overhead",
              "rnnlab.trial_number": str(n), "rnnlab.storage": "rnnlab.journal"})
    result = run(tracker.epoch_logger(run_id),
                 lambda ckpt: tracker.log_checkpoint(run_id, ckpt))
    tracker.log_result(run_id, result, weights=False, tags={"rnnlab.trial_state": "COMPLETE"})
    tracker.end_run(run_id)
    return run_id


def replay(result: FitResult, checkpoints: list[Checkpoint]):
    """A stand-in for ``fit`` that hands over a finished fit's epochs and checkpoints."""
    def run(log, on_checkpoint) -> FitResult:
        ckpts = {c.epoch: c for c in checkpoints}
        for epoch, metrics in enumerate(result.history, start=1):
            log(epoch, metrics)
            if epoch in ckpts:
                on_checkpoint(ckpts[epoch])
        return result
    return run


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def measure(name: str, repeats: int) -> float:
    config = shape(name)
    data = load_data(config.data)
    checkpoints: list[Checkpoint] = []
    result = fit(config, data=data, on_checkpoint=checkpoints.append)  # warm-up, and the data
    with scratch():
        tracker = Tracker()
        parent = tracker.start_run("overhead", "overhead-study", tags={"rnnlab.kind": "study"})
        track(tracker, parent, -1, config, replay(result, checkpoints))  # store schema, imports
        alone = [timed(track, tracker, parent, i, config, replay(result, checkpoints))
                 for i in range(3 * repeats)]
        on = functools.partial(track, tracker, parent, 100, config,
                               lambda log, ck: fit(config, [log], data=data, on_checkpoint=ck))
        off = functools.partial(fit, config, data=data)
        pairs = []
        for i in range(repeats):
            first, second = (on, off) if i % 2 else (off, on)
            a, b = timed(first), timed(second)
            pairs.append((a, b) if i % 2 else (b, a))  # (on, off)
        tracker.end_run(parent)
    bare = statistics.median(off for _, off in pairs)
    cost = statistics.median(alone)
    share = cost / bare
    diffs = sorted((on - off) / off for on, off in pairs)
    t = config.train
    print(f"\n{name}: {config.model.cell}-{config.model.hidden}, {784 // config.data.patch} "
          f"steps, {config.data.train_size} samples x {t.epochs} epochs, checkpoint every "
          f"{t.checkpoint_every or '-'}; {len(flatten(config))} params")
    print(f"  trial without tracking: {bare:.3f} s (median of {repeats}; "
          f"{min(o for _, o in pairs):.3f}-{max(o for _, o in pairs):.3f} s)")
    print(f"  tracking alone: {cost * 1000:.1f} ms a trial (median of {len(alone)}; "
          f"{min(alone) * 1000:.1f}-{max(alone) * 1000:.1f} ms)")
    print(f"  cross-check, on/off pairs: on costs {statistics.median(diffs):+.1%} "
          f"(pairs {diffs[0]:+.1%} to {diffs[-1]:+.1%}: the machine's noise)")
    print(f"  tracking = {share:.2%} of the trial's wall time (target <= {TARGET:.0%}): "
          f"{'PASS' if share <= TARGET else 'FAIL'}")
    return share


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--shape", choices=SHAPES, action="append")
    args = ap.parse_args()
    print("tracking store: sqlite (MLflow's default); 2 CPU threads")
    shares = {name: measure(name, args.repeats) for name in args.shape or SHAPES}
    print("\nsummary: " + ", ".join(f"{k} {v:.2%}" for k, v in shares.items()))


if __name__ == "__main__":
    main()
