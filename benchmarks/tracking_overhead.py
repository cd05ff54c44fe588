"""What MLflow tracking costs a trial: the same trial timed with tracking on and off.

"On" is everything a sweep's trial does in MLflow (create the nested run, log the flattened
config as params, one metrics batch per epoch, tags, the config artifact, close the run); "off"
is the bare ``fit``. Data is loaded once, outside the timings; runs alternate so both see the
same machine load. Target: tracking costs at most 2% of the trial's wall time.

    python benchmarks/tracking_overhead.py [--repeats 3] [--epochs 3] [--cell rnn]
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import scratch

from rnnlab.data import load_data
from rnnlab.spec import RunConfig, flatten
from rnnlab.tracking import Tracker
from rnnlab.train import fit

TARGET = 0.02


def tracked_trial(config: RunConfig, data, tracker: Tracker, parent: str, n: int) -> float:
    started = time.perf_counter()
    run_id = tracker.start_run("overhead", f"trial-{n}", config=config, parent_run_id=parent,
                               tags={"rnnlab.kind": "trial"},
                               extra_params={"rnnlab.sampled_keys": "train.lr"})
    result = fit(config, [tracker.epoch_logger(run_id)], data=data)
    tracker.log_result(run_id, config, result, weights=False)
    tracker.set_tags(run_id, {"rnnlab.trial_state": "COMPLETE"})
    tracker.end_run(run_id)
    return time.perf_counter() - started


def bare_trial(config: RunConfig, data) -> float:
    started = time.perf_counter()
    fit(config, data=data)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--cell", default="rnn")
    args = ap.parse_args()
    config = RunConfig.model_validate({
        "data": {"source": "mnist-5k", "train_size": 3000, "val_size": 1000, "patch": 7},
        "model": {"cell": args.cell, "hidden": 128},
        "train": {"epochs": args.epochs, "threads": 2}})
    data = load_data(config.data)
    with scratch():
        tracker = Tracker()
        parent = tracker.start_run("overhead", "overhead-study", tags={"rnnlab.kind": "study"})
        tracked_trial(config, data, tracker, parent, -1)  # warm-up: store schema, imports
        on, off = [], []
        for i in range(args.repeats):
            off.append(bare_trial(config, data))
            on.append(tracked_trial(config, data, tracker, parent, i))
        tracker.end_run(parent)
    print(f"config: {args.cell}, {len(flatten(config))} params, {args.epochs} epochs, "
          f"{config.data.train_size} samples/epoch; tracking store sqlite (MLflow default)")
    print(f"{'run':>6} {'off (s)':>9} {'on (s)':>9} {'overhead':>9}")
    for i, (a, b) in enumerate(zip(off, on, strict=True)):
        print(f"{i:>6} {a:9.3f} {b:9.3f} {(b - a) / a:9.2%}")
    med_off, med_on = statistics.median(off), statistics.median(on)
    share = (med_on - med_off) / med_on
    print(f"median: off {med_off:.3f} s, on {med_on:.3f} s; tracking = {share:.2%} of the "
          f"trial's wall time (target <= {TARGET:.0%}): {'PASS' if share <= TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()
