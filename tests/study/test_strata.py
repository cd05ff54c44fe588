"""Strata on a real journal: each pruner rnnlab ships judges a trial against its own stratum
only, the samplers model each stratum from its own trials, and claims share the budget out
equally (with two workers too)."""

from __future__ import annotations

from datetime import datetime

import optuna
import pytest
import yaml
from optuna.trial import FrozenTrial, TrialState
from support import SPEC
from typer.testing import CliRunner

from rnnlab.analysis.frames import study_frames
from rnnlab.cli.app import app
from rnnlab.core.study_spec import load_study_spec, shares, strata_levels
from rnnlab.dashboards.board import dashboard_html
from rnnlab.engines.local import sweep
from rnnlab.reports.build import report
from rnnlab.storage.adapter import open_storage
from rnnlab.study.parts import make_pruner, make_sampler
from rnnlab.study.strata import next_stratum

FAST = (0.80, 0.85, 0.88, 0.90)  # a cell that learns at once, then stalls: it ends at 0.97
SLOW = (0.20, 0.40, 0.60, 0.80)  # a cell that starts slow and ends best: 0.98
NEW = (0.25, 0.45, 0.65, 0.85)  # a slow-cell trial doing better than its own kind


def _spec(tmp_path, pruner: dict, strata: bool, epochs: int = 4):
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["train"]["epochs"] = epochs
    raw["study"].update(n_trials=20, pruner=pruner, sampler={"name": "tpe", "seed": 0,
                                                              "n_startup_trials": 2})
    raw["search"] = {"model.cell": {"choices": ["gru", "rnn"]},
                     "train.lr": {"low": 1e-5, "high": 1e-1, "log": True}}
    if strata:
        raw["study"]["strata"] = ["model.cell"]
    path = tmp_path / f"s{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_study_spec(path)


def _trial(cell: str, curve: tuple, value: float | None, rungs: float | None = None,
           lr: float = 1e-3) -> FrozenTrial:
    done = value is not None
    dists = {"model.cell": optuna.distributions.CategoricalDistribution(["gru", "rnn"]),
             "train.lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)}
    # what successive halving keeps of the rungs a trial passed (its value at each)
    system = {f"completed_rung_{r}": rungs for r in range(3)} if rungs is not None else {}
    return FrozenTrial(number=-1, state=TrialState.COMPLETE if done else TrialState.RUNNING,
                       value=value, values=None, datetime_start=datetime.now(),
                       datetime_complete=datetime.now() if done else None,
                       params={"model.cell": cell, "train.lr": lr}, distributions=dists,
                       user_attrs={}, system_attrs=system,
                       intermediate_values=dict(enumerate(curve, start=1)), trial_id=-1)


def _study(tmp_path, name: str, fast_value: float = 0.97) -> optuna.Study:
    """Nine fast-cell trials, three slow-cell ones, and a running slow-cell trial at epoch 4."""
    study = optuna.create_study(study_name=name, direction="maximize",
                                storage=open_storage(str(tmp_path / "rnnlab.journal")))
    for i in range(9):
        study.add_trial(_trial("gru", tuple(v + 0.001 * i for v in FAST), fast_value,
                               rungs=0.9))
    for i in range(3):
        study.add_trial(_trial("rnn", tuple(v - 0.001 * i for v in SLOW), 0.98 - 0.001 * i,
                               rungs=0.8))
    study.add_trial(_trial("rnn", NEW, None))
    return study


PRUNERS = {
    "median": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
    "percentile": {"name": "percentile", "percentile": 25.0, "n_startup_trials": 1,
                   "n_warmup_steps": 0},
    "successive_halving": {"name": "successive_halving", "min_resource": 1},
    "hyperband": {"name": "hyperband", "min_resource": 1},  # one bracket: train.epochs 1
    "wilcoxon": {"name": "wilcoxon", "n_warmup_steps": 0, "p_threshold": 0.1},
}


@pytest.mark.parametrize("kind", sorted(PRUNERS))
def test_a_slow_starting_stratum_is_pruned_by_the_plain_pruner_and_kept_by_the_stratified(
        tmp_path, kind):
    epochs = 1 if kind == "hyperband" else 4
    # Wilcoxon compares a trial with the study's best: there, the fast cell's ends best
    study = _study(tmp_path, kind, fast_value=0.99 if kind == "wilcoxon" else 0.97)
    trial = study.get_trials(deepcopy=False)[-1]
    assert trial.state == TrialState.RUNNING and trial.last_step == 4
    plain = make_pruner(_spec(tmp_path, PRUNERS[kind], strata=False, epochs=epochs))
    stratified = make_pruner(_spec(tmp_path, PRUNERS[kind], strata=True, epochs=epochs))
    assert bool(plain.prune(study, trial)) is True  # judged against the fast cell
    assert bool(stratified.prune(study, trial)) is False  # against its own cell: its best


def test_the_samplers_model_each_stratum_from_its_own_trials(tmp_path):
    """The fast cell did best at lr 1e-2, the slow cell at 1e-5 (and worse than any good fast
    trial): TPE draws a slow-cell trial's lr near 1e-5 only when it models that cell alone."""
    study = optuna.create_study(study_name="tpe", direction="maximize",
                                storage=open_storage(str(tmp_path / "rnnlab.journal")))
    for i in range(8):
        for cell, good, bad, top in (("gru", 1e-2, 1e-5, 0.9), ("rnn", 1e-5, 1e-2, 0.5)):
            study.add_trial(_trial(cell, (top,), top + 0.001 * i, lr=good * (1 + 0.01 * i)))
            study.add_trial(_trial(cell, (0.1,), 0.1 + 0.001 * i, lr=bad * (1 + 0.01 * i)))
    drawn = {}
    for strata in (False, True):
        study.sampler = make_sampler(_spec(tmp_path, PRUNERS["median"], strata=strata))
        lrs = []
        for _ in range(5):
            study.enqueue_trial({"model.cell": "rnn"})
            trial = study.ask()
            lrs.append(trial.suggest_float("train.lr", 1e-5, 1e-1, log=True))
            study.tell(trial, state=TrialState.FAIL)  # out of the way of the next draw
        drawn[strata] = sorted(lrs)
    assert all(lr < 1e-4 for lr in drawn[True]), drawn
    assert sum(lr > 1e-3 for lr in drawn[False]) >= 3, drawn


def test_the_budget_is_shared_out_equally_and_the_furthest_behind_goes_first():
    assert shares(7, 3) == [3, 2, 2] and shares(6, 3) == [2, 2, 2]
    strata = [{"model.cell": c} for c in ("rnn", "lstm", "gru")]

    def trials(*cells_states):
        return [_with_state(_trial(c, (0.5,), 0.5), s) for c, s in cells_states]

    done, failed = TrialState.COMPLETE, TrialState.FAIL
    assert next_stratum(strata, 6, []) == {"model.cell": "rnn"}
    assert next_stratum(strata, 6, trials(("rnn", done))) == {"model.cell": "lstm"}
    # a failed trial holds no share (it is retried): rnn is still furthest behind
    assert next_stratum(strata, 6, trials(("lstm", done), ("gru", done), ("rnn", failed))) \
        == {"model.cell": "rnn"}
    full = trials(*[(c, done) for c in ("rnn", "lstm", "gru") for _ in range(2)])
    assert next_stratum(strata, 6, full) is None
    assert next_stratum(strata, 7, full) == {"model.cell": "rnn"}  # the budget was extended


def _with_state(trial: FrozenTrial, state: TrialState) -> FrozenTrial:
    trial.state = state
    if state != TrialState.COMPLETE:
        trial.value = None
    return trial


def test_a_sweep_with_strata_gives_every_cell_its_share_with_two_workers(tmp_path, mlflow_db):
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["study"].update(name="shared", n_trials=6, strata=["model.cell"],
                        sampler={"name": "tpe", "seed": 0, "n_startup_trials": 1},
                        pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0})
    raw["search"] = {"model.cell": {"choices": ["rnn", "lstm", "gru"]},
                     "train.lr": {"low": 1e-4, "high": 1e-2, "log": True}}
    path = tmp_path / "shared.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = load_study_spec(path)
    assert strata_levels(spec) == [{"model.cell": c} for c in ("rnn", "lstm", "gru")]
    final = sweep(spec, "rnnlab.journal", workers=2)
    assert final.finished == 6
    trials = optuna.load_study(study_name="shared",
                               storage=open_storage("rnnlab.journal")).get_trials()
    finished = [t.params["model.cell"] for t in trials if t.state.is_finished()
                and t.state != TrialState.FAIL]
    assert sorted(finished) == ["gru", "gru", "lstm", "lstm", "rnn", "rnn"]
    assert [(s.name, s.share, s.finished, s.running) for s in final.strata] == [
        (f"model.cell={c}", 2, 2, 0) for c in ("rnn", "lstm", "gru")]
    for s in final.strata:  # each stratum's first trial completes: nothing to prune it against
        mine = [t for t in trials if t.params.get("model.cell") == s.name.split("=")[1]
                and t.state == TrialState.COMPLETE]
        best = max(mine, key=lambda t: t.value)
        assert (s.best_trial, s.best_value) == (best.number, best.value)

    shown = CliRunner().invoke(app, ["status", "shared"])
    assert shown.exit_code == 0, shown.output
    rows = [line.split() for line in shown.stdout.splitlines() if "model.cell=" in line]
    assert [r[:2] for r in rows] == [[f"model.cell={c}", "2/2"] for c in ("rnn", "lstm", "gru")]
    table = CliRunner().invoke(app, ["trials", "shared"])
    header, *lines = table.stdout.strip().splitlines()
    assert header.split(",")[:4] == ["number", "value", "state", "stratum"]
    assert sorted(line.split(",")[3] for line in lines) == sorted(
        f"model.cell={t.params['model.cell']}" for t in trials)

    frames = study_frames("rnnlab.journal", "shared")
    said = [f"model.cell={s.name.split('=')[1]}: 2 finished, best {s.best_value:.4f} (trial "
            f"{s.best_trial})" for s in final.strata]
    assert f"By stratum: {'; '.join(said)}." in dashboard_html(frames)
    text, _ = report("rnnlab.journal", "shared", "md", confirm_seeds=1)
    section = text.split("## Trials per stratum (validation)")[1].split("##")[0]
    rows = [r.strip("| ").split(" | ") for r in section.splitlines()
            if r.startswith("| model.cell=")]
    assert [(r[0], r[1], r[3]) for r in rows] == [
        (s.name, "2", str(s.best_trial)) for s in final.strata]
