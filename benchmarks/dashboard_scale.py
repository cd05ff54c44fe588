"""Dashboard generation time and HTML size for a study of N trials x 100 epochs (default 200).

Synthesises the study in a temporary folder with the real stores (an Optuna journal file and an
MLflow SQLite store, written the way a sweep writes them: a parent run, one nested run per
trial with its resolved config as params and seven metrics per epoch), then times
``write_dashboard`` end to end (reading both stores, building the frames, drawing, writing),
the page's opening in Chromium until every figure is drawn, and the reading commands a user
runs on the study (``rnnlab status``, ``trials``, ``report --no-confirm`` as Markdown and as
HTML), each a whole process.

    python benchmarks/dashboard_scale.py [--trials 200] [--epochs 100] [--keep DIR]

Targets (issues 4 and 24): under 10 s and under 10 MB, up to 10,000 trials. The runs are written
in bulk into MLflow's tables (benchmarks/_synth.py): about 10 ms a trial; keep a synthesised
study with --keep DIR to time it again.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
from _common import chromium
from _synth import SynthRun, bulk_runs, distributions, draw_params
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
from rnnlab.tracking.tracker import PARENT_TAG, Tracker
from rnnlab.train import EPOCH_METRICS as METRICS

REPO = Path(__file__).resolve().parents[1]
OUTCOMES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned at epoch {}",
            TrialState.FAIL: "failed"}
# Every figure of the page drawn: what a person waits for after opening it.
DRAWN_JS = """() => { const figs = document.querySelectorAll('.plotly-graph-div');
  return figs.length > 0 && [...figs].every(f => f.querySelector('.main-svg')); }"""


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
    exp_id = tracker.experiment_id(name)
    study = optuna.create_study(study_name=name, storage=open_storage(storage),
                                direction="maximize")
    parent = tracker.start_run(name, name, tags={"rnnlab.kind": "study", "rnnlab.study": name})
    study.set_user_attr(ATTR_BUDGET, trials)
    study.set_user_attr(ATTR_SPEC, spec.model_dump(mode="json"))
    study.set_user_attr(ATTR_PARENT, parent)
    study.set_user_attr(ATTR_EXPERIMENT, name)
    dists = distributions(spec)
    rng = np.random.default_rng(seed)
    drawn = []  # (params, config, state, curve) of each trial
    for _ in range(trials):
        params = draw_params(dists, rng)
        config = flatten(validate(RunConfig, apply_overrides(spec.base.model_dump(), params),
                                  "synth"))
        roll = rng.uniform()
        state = (TrialState.COMPLETE if roll < 0.65 else TrialState.PRUNED if roll < 0.95
                 else TrialState.FAIL)
        n_epochs = epochs if state == TrialState.COMPLETE else int(rng.integers(3, epochs // 2))
        drawn.append((params, config, state, _curve(rng, n_epochs, rng.uniform(0.5, 0.98))))
    run_ids = bulk_runs(uri, exp_id, (SynthRun(
        name=f"trial-{number}",
        tags={PARENT_TAG: parent, "rnnlab.kind": "trial", "rnnlab.study": name,
              "rnnlab.trial_number": str(number), "rnnlab.trial_state": state.name,
              "rnnlab.outcome": OUTCOMES[state].format(len(curve["val_acc"])),
              **({"rnnlab.pruned": "true"} if state == TrialState.PRUNED else {})},
        params={k: str(v) for k, v in config.items()},
        metrics={**{k: curve[k] for k in METRICS},  # and the objective so far, as trials log it
                 "best_val_acc": list(np.maximum.accumulate(curve["val_acc"]))},
        status="FAILED" if state == TrialState.FAIL else "FINISHED")
        for number, (_, config, state, curve) in enumerate(drawn)))
    made = []
    for (params, config, state, curve), run_id in zip(drawn, run_ids, strict=True):
        attrs = {TRIAL_RUN_ID: run_id, TRIAL_CONFIG: config}
        if state != TrialState.COMPLETE:
            attrs[TRIAL_REASON] = (f"pruned at epoch {len(curve['val_acc'])}"
                                   if state == TrialState.PRUNED
                                   else "RuntimeError: synthetic failure")
        made.append(create_trial(
            params=params, distributions=dists, state=state,
            value=max(curve["val_acc"]) if state == TrialState.COMPLETE else None,
            intermediate_values={i + 1: v for i, v in enumerate(curve["val_acc"])},
            user_attrs=attrs))
    study.add_trials(made)
    tracker.client.set_terminated(parent, "FINISHED")
    tracker.refresh_statistics()  # as the sweep that ran them would have, as it settled
    return storage, uri, name


def study_in(folder: Path, trials: int, epochs: int) -> tuple[str, str, str]:
    """The study synthesised in ``folder`` (``--keep DIR`` from an earlier run), or a new one
    of ``trials`` x ``epochs``; returns (storage, tracking_uri, name)."""
    if (folder / "rnnlab.journal").exists():
        print(f"reusing the study synthesised in {folder}")
        return str(folder / "rnnlab.journal"), f"sqlite:///{folder / 'mlflow.db'}", "scale"
    started = time.perf_counter()
    made = synthesise(folder, trials, epochs)
    print(f"synthesised {trials} trials x {epochs} epochs in "
          f"{time.perf_counter() - started:.1f} s ({folder})")
    return made


def _write(storage: str, name: str, out: Path, uri: str) -> None:
    # Imported here so the timing includes what a fresh `rnnlab dashboard` process imports
    # (MLflow's store, scikit-learn for fANOVA), minus what synthesising already loaded.
    from rnnlab.dashboards.write import write_dashboard

    write_dashboard(storage, name, out, tracking_uri=uri)


def open_times(page: Path) -> tuple[float, float] | None:
    """Seconds from opening the page in Chromium until every figure is drawn: in a fresh
    browser (cold), then again in the same one (warm); None without a Chromium."""
    with chromium() as browser:
        if browser is None:
            return None
        times = []
        for _ in range(2):
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            started = time.perf_counter()
            tab.goto(page.as_uri(), wait_until="load", timeout=120_000)
            tab.wait_for_function(DRAWN_JS, timeout=120_000)
            times.append(time.perf_counter() - started)
            tab.close()
        return times[0], times[1]


# The reading commands a user runs on a large study, each with its target (issue 24).
COMMANDS = ((["status", "scale"], 2.0), (["trials", "scale"], 5.0),
            (["report", "scale", "--no-confirm", "--format", "md"], 10.0),
            (["report", "scale", "--no-confirm", "--format", "html"], 10.0))


def _command(args: list[str], folder: Path, uri: str) -> float:
    """Seconds the whole ``rnnlab`` command takes in ``folder`` (its output thrown away)."""
    started = time.perf_counter()
    if args[0] == "report" and "html" in args:
        args = [*args, "--out", str(folder / "report.html")]
    subprocess.run([sys.executable, "-m", "rnnlab", *args], cwd=folder, check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    return time.perf_counter() - started


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def arguments(doc: str, trials: int) -> tuple[argparse.Namespace, Path]:
    """The arguments of a benchmark on a synthesised study (``--trials``, ``--epochs``,
    ``--keep``), and the folder it works in (a temporary one without ``--keep``)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--trials", type=int, default=trials)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--keep", type=Path,
                    help="synthesise into this folder and keep it (reused when it has a study)")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="rnnlab-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    return args, folder


def main() -> None:
    args, folder = arguments(__doc__, 200)
    try:
        storage, uri, name = study_in(folder, args.trials, args.epochs)
        out = folder / "dashboard.html"
        seconds, cpu = _timed(lambda: _write(storage, name, out, uri))
        size_mb = out.stat().st_size / 1e6
        ok = "OK" if seconds < 10 and size_mb < 10 else "MISS"
        print(f"write_dashboard: {seconds:.2f} s wall ({cpu:.2f} s CPU), {size_mb:.2f} MB "
              f"(targets: < 10 s, < 10 MB) -> {ok}")
        opened = open_times(out)
        if opened is None:
            print("no Chromium (apt-get install chromium): the page's opening is not timed")
        else:
            print(f"opens in Chromium, every figure drawn: {opened[0]:.2f} s cold, "
                  f"{opened[1]:.2f} s warm (target: < 5 s) -> "
                  f"{'OK' if max(opened) < 5 else 'MISS'}")
        for command, target in COMMANDS:
            took = _command(command, folder, uri)
            print(f"rnnlab {' '.join(command[:2])}: {took:.2f} s, Python's start included "
                  f"(target: < {target:.0f} s) -> {'OK' if took < target else 'MISS'}")
        load = os.getloadavg()[0]
        print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at the end")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
