"""Dashboard generation time and HTML size for a study of N trials x 100 epochs (default 200).

Synthesises the study in a temporary folder with the real stores (an Optuna journal file and an
MLflow SQLite store, written the way a sweep writes them: a parent run, one nested run per
trial with its resolved config as params and seven metrics per epoch), then times
``write_dashboard`` end to end (reading both stores, building the frames, drawing, writing).

    python benchmarks/dashboard_scale.py [--trials 200] [--epochs 100] [--keep DIR]

Targets (issues 4 and 24): under 10 s and under 10 MB, up to 10,000 trials. Synthesising takes
about 0.2-0.35 s a trial (MLflow writes each run): keep it with --keep DIR and time again.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from rnnlab.core.spec import RunConfig, apply_overrides, flatten, validate
from rnnlab.core.study_spec import load_study_spec
from rnnlab.storage.adapter import open_storage
from rnnlab.storage.keys import (
    ATTR_BUDGET,
    ATTR_EXPERIMENT,
    ATTR_PARENT,
    ATTR_SPEC,
    TRIAL_CONFIG,
    TRIAL_REASON,
    TRIAL_RUN_ID,
)
from rnnlab.tracking.tracker import PARENT_TAG, RUN_NAME_TAG, Tracker
from rnnlab.train import EPOCH_METRICS as METRICS

REPO = Path(__file__).resolve().parents[1]


def _distributions(spec) -> dict:
    out = {}
    for key, d in spec.search.items():
        if d.type == "categorical":
            out[key] = CategoricalDistribution(d.choices)
        elif d.type == "int":
            out[key] = IntDistribution(int(d.low), int(d.high), log=d.log)
        else:
            out[key] = FloatDistribution(d.low, d.high, log=d.log)
    return out


def _curve(rng: np.random.Generator, epochs: int, ceiling: float) -> dict[str, list[float]]:
    e = np.arange(1, epochs + 1)
    tau = rng.uniform(3, 20)
    val_acc = np.clip(ceiling * (1 - np.exp(-e / tau)) + rng.normal(0, 0.01, epochs), 0, 1)
    train_acc = np.clip(val_acc + 0.02 * e / epochs, 0, 1)
    val_loss = -np.log(np.clip(val_acc, 1e-3, 1)) + rng.normal(0, 0.01, epochs)
    return {"train_loss": list(val_loss * 0.9), "l2_penalty": [0.0] * epochs,
            "train_acc": list(train_acc), "val_loss": list(val_loss), "val_acc": list(val_acc),
            "epoch_time_s": list(rng.uniform(2, 3, epochs)),
            "samples_per_s": list(rng.uniform(2000, 2500, epochs))}


def synthesise(folder: Path, trials: int, epochs: int, seed: int = 0) -> tuple[str, str, str]:
    """Write a study named ``scale`` into ``folder``; returns (storage, tracking_uri, name)."""
    name = "scale"
    storage = str(folder / "rnnlab.journal")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    spec = load_study_spec(REPO / "studies" / "quickstart.yaml",
                           [f"study.name={name}", f"train.epochs={epochs}"], n_trials=trials)
    tracker = Tracker(uri)
    client = MlflowClient(uri)  # synthetic runs, written in bulk as no trial would
    exp_id = tracker.experiment_id(name)
    study = optuna.create_study(study_name=name, storage=open_storage(storage),
                                direction="maximize")
    parent = tracker.start_run(name, name, tags={"rnnlab.kind": "study", "rnnlab.study": name})
    study.set_user_attr(ATTR_BUDGET, trials)
    study.set_user_attr(ATTR_SPEC, spec.model_dump(mode="json"))
    study.set_user_attr(ATTR_PARENT, parent)
    study.set_user_attr(ATTR_EXPERIMENT, name)
    dists = _distributions(spec)
    rng = np.random.default_rng(seed)
    now = int(time.time() * 1000)
    for number in range(trials):
        params = {k: (d.choices[rng.integers(len(d.choices))] if isinstance(
            d, CategoricalDistribution) else float(math.exp(rng.uniform(math.log(d.low),
                                                                        math.log(d.high)))))
                  for k, d in dists.items()}
        config = validate(RunConfig, apply_overrides(spec.base.model_dump(), params), "synth")
        roll = rng.uniform()
        state = (TrialState.COMPLETE if roll < 0.65 else TrialState.PRUNED if roll < 0.95
                 else TrialState.FAIL)
        n_epochs = epochs if state == TrialState.COMPLETE else int(rng.integers(3, epochs // 2))
        curve = _curve(rng, n_epochs, ceiling=rng.uniform(0.5, 0.98))
        run = client.create_run(exp_id, run_name=f"trial-{number}", tags={
            RUN_NAME_TAG: f"trial-{number}", PARENT_TAG: parent, "rnnlab.kind": "trial",
            "rnnlab.study": name, "rnnlab.trial_number": str(number),
            "rnnlab.trial_state": state.name})
        run_id = run.info.run_id
        client.log_batch(
            run_id,
            params=[Param(k, str(v)) for k, v in flatten(config).items()],
            metrics=[Metric(k, float(curve[k][i]), now, i + 1)
                     for k in METRICS for i in range(n_epochs)],
            tags=[RunTag("rnnlab.pruned", "true")] if state == TrialState.PRUNED else [])
        client.set_terminated(run_id, "FAILED" if state == TrialState.FAIL else "FINISHED")
        attrs = {TRIAL_RUN_ID: run_id, TRIAL_CONFIG: flatten(config)}
        if state != TrialState.COMPLETE:
            attrs[TRIAL_REASON] = (f"pruned at epoch {n_epochs}" if state == TrialState.PRUNED
                               else "RuntimeError: synthetic failure")
        study.add_trial(create_trial(
            params=params, distributions=dists, state=state,
            value=max(curve["val_acc"]) if state == TrialState.COMPLETE else None,
            intermediate_values={i + 1: v for i, v in enumerate(curve["val_acc"])},
            user_attrs=attrs))
    client.set_terminated(parent, "FINISHED")
    return storage, uri, name


def _write(storage: str, name: str, out: Path, uri: str) -> None:
    # Imported here so the timing includes what a fresh `rnnlab dashboard` process imports
    # (MLflow's store, scikit-learn for fANOVA), minus what synthesising already loaded.
    from rnnlab.dashboards.write import write_dashboard

    write_dashboard(storage, name, out, tracking_uri=uri)


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--keep", type=Path,
                    help="synthesise into this folder and keep it (reused when it has a study)")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="rnnlab-dash-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if (folder / "rnnlab.journal").exists():  # --keep DIR from an earlier run: reuse it
            storage, uri, name = (str(folder / "rnnlab.journal"),
                                  f"sqlite:///{folder / 'mlflow.db'}", "scale")
            print(f"reusing the study synthesised in {folder}")
        else:
            started = time.perf_counter()
            storage, uri, name = synthesise(folder, args.trials, args.epochs)
            print(f"synthesised {args.trials} trials x {args.epochs} epochs in "
                  f"{time.perf_counter() - started:.1f} s ({folder})")
        out = folder / "dashboard.html"
        seconds, cpu = _timed(lambda: _write(storage, name, out, uri))
        size_mb = out.stat().st_size / 1e6
        ok = "OK" if seconds < 10 and size_mb < 10 else "MISS"
        print(f"write_dashboard: {seconds:.2f} s wall ({cpu:.2f} s CPU), {size_mb:.2f} MB "
              f"(targets: < 10 s, < 10 MB) -> {ok}")
        load = os.getloadavg()[0]
        print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at the end")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
