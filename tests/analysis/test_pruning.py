"""The pruner replayed on a study's complete trials: it cuts exactly where Optuna's own pruner,
built from the same spec by rnnlab, would, and the report says when a stratum's best trial is
among the cut, and from which warm-up on the pruner keeps it."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
from datetime import datetime

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import FrozenTrial, TrialState
from support import SPEC, synthetic_frames
from typer.testing import CliRunner

from rnnlab.analysis.pruning import replay, replay_pruning
from rnnlab.cli.app import app
from rnnlab.core.spec import RunConfig, flatten, validate
from rnnlab.core.study_spec import study_spec
from rnnlab.reports.info import get_report_info
from rnnlab.reports.render import render
from rnnlab.study.parts import make_pruner

EPOCHS = 8


def _frozen(number: int, curve: dict[int, float], done: bool) -> FrozenTrial:
    return FrozenTrial(number=number, state=TrialState.COMPLETE if done else TrialState.RUNNING,
                       value=curve[max(curve)] if done else None, values=None,
                       datetime_start=datetime.now(),
                       datetime_complete=datetime.now() if done else None, params={},
                       distributions={}, user_attrs={}, system_attrs={},
                       intermediate_values=dict(curve), trial_id=number)


def _optuna_first_cut(pruner: optuna.pruners.BasePruner, direction: str,
                      curves: dict[int, dict[int, float]], n: int) -> int | None:
    """The epoch at which Optuna's pruner cuts trial ``n`` when every other trial is complete:
    the trial reports epoch by epoch and asks after each but the last, as rnnlab's worker does."""
    study = optuna.create_study(direction=direction)
    for other, curve in curves.items():
        if other != n:
            study.add_trial(_frozen(other, curve, done=True))
    steps = sorted(curves[n])
    for step in steps[:-1]:
        running = _frozen(n, {s: v for s, v in curves[n].items() if s <= step}, done=False)
        if pruner.prune(study, running):
            return step
    return None


SETTINGS = [
    {"name": "median", "n_startup_trials": 0, "n_warmup_steps": 0},
    {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 2},
    {"name": "median", "n_startup_trials": 5, "n_warmup_steps": 1, "interval_steps": 3},
    {"name": "median", "n_startup_trials": 15, "n_warmup_steps": 0},  # more than the others
    {"name": "percentile", "percentile": 25.0, "n_startup_trials": 2, "n_warmup_steps": 3},
    {"name": "percentile", "percentile": 75.0, "n_startup_trials": 1, "n_warmup_steps": 0,
     "interval_steps": 2},
    {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1, "patience": 1},
    {"name": "percentile", "percentile": 60.0, "n_startup_trials": 2, "n_warmup_steps": 2,
     "interval_steps": 2, "patience": 1, "min_delta": 0.01},
]


@pytest.mark.parametrize(("pruner", "direction"),
                         list(itertools.product(SETTINGS, ["maximize", "minimize"])))
def test_the_replay_cuts_exactly_where_optunas_pruner_from_the_same_spec_would(pruner,
                                                                                direction):
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["study"].update(pruner=pruner, direction=direction)
    spec = study_spec(raw, "test")
    rng = random.Random(json.dumps(pruner, sort_keys=True) + direction)
    curves = {}
    for n in range(15):  # noisy rising curves that cross; some trials stop early (diverged)
        rate, level = rng.uniform(0.05, 0.5), rng.uniform(0.6, 1.0)
        last = EPOCHS if n % 4 else rng.randint(3, EPOCHS)
        curves[n] = {s: round(level * (1 - (1 - rate) ** s) + rng.gauss(0, 0.06), 3)
                     for s in range(1, last + 1)}
    steps = pd.DataFrame([(n, s, v) for n, c in curves.items() for s, v in c.items()],
                         columns=["number", "step", "value"])
    trials = pd.DataFrame([{"number": n, "state": "COMPLETE", "value": c[max(c)]}
                           for n, c in curves.items()])
    got = replay(steps, trials, spec.study.pruner.model_dump(mode="json"), direction, "test",
                 {n: max(c) for n, c in curves.items()})
    cut = {c.number: c.step for c in got.strata[0].cuts}
    expected = {n: _optuna_first_cut(make_pruner(spec), direction, curves, n) for n in curves}
    assert cut == {n: s for n, s in expected.items() if s is not None}
    if pruner["n_startup_trials"] <= 5:
        assert cut  # the comparison is not vacuous
    if "patience" in pruner:  # fewer cuts, and later, than without patience
        plain = replay(steps, trials, {k: v for k, v in spec.study.pruner.model_dump(
            mode="json").items() if k not in ("patience", "min_delta")}, direction, "test",
            {n: max(c) for n, c in curves.items()})
        before = {c.number: c.step for c in plain.strata[0].cuts}
        assert set(cut) <= set(before) and all(cut[n] >= before[n] for n in cut)
    if pruner["n_startup_trials"] >= len(curves):
        assert not cut


SLOW_BEST = {1: 0.30, 2: 0.50, 3: 0.70, 4: 0.90, 5: 0.95, 6: 0.96}  # ends best of its stratum
QUICK = [{1: 0.60 + d, 2: 0.75 + d, 3: 0.80 + d, 4: 0.82 + d, 5: 0.84 + d, 6: 0.85 + d}
         for d in (0.0, 0.02, 0.03)]


def _stratified_frames(pruner: dict):
    """Two strata: in lstm a slow starter ends best, in gru the order never changes."""
    rows, curves = [], []
    base = flatten(validate(RunConfig, {k: SPEC[k] for k in ("data", "model", "train")}, "spec"),
                   mode="json")  # whole configs: the report exports the best
    for cell, stratum in (("lstm", [*QUICK, SLOW_BEST]), ("gru", QUICK)):
        for curve in stratum:
            rows.append({**base, "model.cell": cell, "train.lr": 1e-3, "train.epochs": 6,
                         "value": max(curve.values())})
            curves.append(curve)
    frames = synthetic_frames(rows, {"model.cell": {"choices": ["lstm", "gru"]},
                                     "train.lr": {"low": 1e-4, "high": 1e-2, "log": True}})
    trials = frames.trials.assign(stratum=[f"model.cell={r['model.cell']}" for r in rows])
    steps = pd.DataFrame([(n, s, v) for n, c in enumerate(curves) for s, v in c.items()],
                         columns=["number", "step", "value"])
    spec = {**frames.spec, "study": {**frames.spec["study"], "strata": ["model.cell"],
                                     "pruner": pruner}}
    return dataclasses.replace(frames, trials=trials, steps=steps, spec=spec,
                               judged_by=("synthetic", pruner))


def test_a_stratums_slow_starting_best_is_flagged_with_the_warm_up_that_keeps_it():
    frames = _stratified_frames({"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1})
    got = replay_pruning(frames)
    lstm, gru = got.strata
    assert (lstm.name, lstm.complete, lstm.best) == ("model.cell=lstm", 4, 3)
    # below the others' median at epochs 1-3, above from epoch 4: cut at 1, kept from 4 on
    assert lstm.best_cut is not None and lstm.best_cut.step == 1
    assert lstm.best_cut.final == 0.96 and lstm.keeps_best_from == 4
    assert (gru.best, gru.best_cut, gru.keeps_best_from, gru.judged) == (6, None, None, True)
    assert [c.number for c in gru.cuts] == [4]  # its worst trial, always below the median

    info = get_report_info(frames)
    md = render(info, "md")
    assert "## Pruning, replayed on the complete trials (validation)" in md
    assert ("The pruner would cut the best trial of model.cell=lstm, trial 3 (0.9600 in the "
            "end), at epoch 1") in md
    assert "It keeps this one from a warm-up of 4 epochs on." in md
    assert "model.cell=gru" in md.split("## Pruning")[1]
    assert "best trial of model.cell=gru" not in md
    data = json.loads(render(info, "json"))
    assert data["pruning"]["strata"][0]["keeps_best_from"] == 4
    assert "would cut the best trial of model.cell=lstm" in render(info, "html")

    # the same curves under a warm-up of 4: nothing the best is cut by
    later = replay_pruning(_stratified_frames({"name": "median", "n_startup_trials": 2,
                                               "n_warmup_steps": 4}))
    assert later.strata[0].best_cut is None and not later.best_cut
    assert "would cut the best trial" not in render(get_report_info(
        _stratified_frames({"name": "median", "n_startup_trials": 2, "n_warmup_steps": 4})),
        "md")

    # gru's trials have two others each: three start-up trials never let the pruner judge
    few = _stratified_frames({"name": "median", "n_startup_trials": 3, "n_warmup_steps": 1})
    lstm, gru = replay_pruning(few).strata
    assert (lstm.judged, gru.judged, gru.cuts) == (True, False, ())
    assert "| model.cell=gru | 3 | never judged: 2 others, fewer than its 3 start-up trials |" \
        in render(get_report_info(few), "md")


@pytest.mark.parametrize("name", ["none", "hyperband", "successive_halving", "wilcoxon"])
def test_pruners_whose_rule_does_not_replay_get_no_section(name):
    frames = _stratified_frames({"name": name})
    assert replay_pruning(frames) is None
    assert "## Pruning, replayed" not in render(get_report_info(frames), "md")


def test_patience_keeps_a_slow_starter_that_still_climbs_and_cuts_a_stalled_trial():
    """A stratum's median pruner with and without patience, on a real journal: a trial still
    climbing below the median (a learning rate that rises late) is kept; one stuck at chance
    below it (a constant curve has stalled too) is cut."""
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    rule = {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 2}
    study = optuna.create_study(direction="maximize")
    for d in (0.0, 0.01, 0.02):
        study.add_trial(_frozen(0, {s: v + d for s, v in QUICK[0].items()}, done=True))
    climbing = _frozen(9, {1: 0.30, 2: 0.50, 3: 0.70}, done=False)
    flat = _frozen(9, {1: 0.1135, 2: 0.1135, 3: 0.1135}, done=False)
    for patience, keeps_climbing in ((None, False), (2, True)):
        raw["study"]["pruner"] = {**rule, "patience": patience}
        pruner = make_pruner(study_spec(raw, "test"))
        assert bool(pruner.prune(study, climbing)) is not keeps_climbing
        assert bool(pruner.prune(study, flat)) is True


@pytest.mark.parametrize("name", ["hyperband", "successive_halving", "wilcoxon", "none"])
def test_patience_with_a_pruner_it_does_not_apply_to_is_one_line(tmp_path, name):
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["study"]["pruner"] = {"name": name, "patience": 3}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["sweep", str(path), "--storage",
                                      str(tmp_path / "s.journal")])
    assert result.exit_code == 2 and not (tmp_path / "s.journal").exists()
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"rnnlab: error: {path}: study.pruner: patience applies to the "
                           f"median and percentile pruners, not {name}; drop it or use one")
