"""A windowed sampler (study.sampler.window) models the most recent trials and the best of the
others, on a real journal; and the strata's levels kept per trial agree with the trials'."""

from __future__ import annotations

import random

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial
from support import SPEC
from typer.testing import CliRunner

from rnnlab.cli.app import app
from rnnlab.core.study_spec import KEEP_BEST, load_study_spec
from rnnlab.storage.adapter import levels_of, open_storage, window_study
from rnnlab.storage.forwarding import trial_levels
from rnnlab.study.parts import make_sampler
from rnnlab.study.strata import StratifiedSampler
from rnnlab.study.views import WindowedSampler

DISTS = {"model.cell": CategoricalDistribution(["gru", "rnn"]),
         "train.lr": FloatDistribution(1e-5, 1e-1, log=True)}


def _study(tmp_path, direction: str, n: int = 300) -> optuna.Study:
    """``n`` complete trials whose values are a shuffle of 0..n-1, a pruned and a failed one
    among the oldest, and a running trial."""
    study = optuna.create_study(study_name=direction, direction=direction,
                                storage=open_storage(str(tmp_path / f"{direction}.journal")))
    values = list(range(n))
    random.Random(0).shuffle(values)
    trials = [create_trial(params={"model.cell": ("gru", "rnn")[i % 2], "train.lr": 1e-3},
                           distributions=DISTS, value=float(v)) for i, v in enumerate(values)]
    trials.insert(3, create_trial(params={"model.cell": "gru", "train.lr": 1e-3},
                                  distributions=DISTS, state=TrialState.PRUNED,
                                  intermediate_values={1: 0.5}))
    trials.insert(5, create_trial(params={"model.cell": "gru", "train.lr": 1e-3},
                                  distributions=DISTS, state=TrialState.FAIL))
    study.add_trials(trials)
    study.enqueue_trial({"model.cell": "rnn"})
    study.ask()  # running
    return study


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_a_window_keeps_the_most_recent_finished_trials_and_the_best_of_the_rest(
        tmp_path, direction):
    study = _study(tmp_path, direction)
    every = study.get_trials(deepcopy=False)
    seen = window_study(study, 100, KEEP_BEST, optuna.samplers.RandomSampler()).get_trials(
        deepcopy=False)
    finished = [t for t in every if t.state.is_finished()]
    recent, older = finished[-100:], finished[:-100]
    complete = sorted((t for t in older if t.state == TrialState.COMPLETE),
                      key=lambda t: t.value, reverse=direction == "maximize")
    kept = {t.number for t in recent} | {t.number for t in complete[:KEEP_BEST]}
    assert [t.number for t in seen if t.state.is_finished()] == sorted(kept)
    assert len(kept) == 100 + KEEP_BEST
    # the study's best is among them, and nothing unfinished is dropped
    assert study.best_trial.number in kept
    assert {t.number for t in every if not t.state.is_finished()} <= {t.number for t in seen}
    # a window wider than the study shows all of it
    wide = window_study(study, 1000, KEEP_BEST, optuna.samplers.RandomSampler())
    assert [t.number for t in wide.get_trials(deepcopy=False)] == [t.number for t in every]


class _Spy(optuna.samplers.TPESampler):
    """TPE, counting the finished trials it models at each draw."""

    seen: list[int]

    def sample_relative(self, study, trial, search_space):
        self.seen.append(len(study.get_trials(deepcopy=False,
                                              states=(TrialState.COMPLETE, TrialState.PRUNED))))
        return super().sample_relative(study, trial, search_space)


def test_tpe_behind_a_window_models_no_more_than_the_window_and_the_best(tmp_path):
    study = _study(tmp_path, "maximize")
    spy = _Spy(seed=0, n_startup_trials=5)
    spy.seen = []
    study.sampler = WindowedSampler(spy, 100, KEEP_BEST)
    for _ in range(3):
        trial = study.ask()
        lr = trial.suggest_float("train.lr", 1e-5, 1e-1, log=True)
        assert 1e-5 <= lr <= 1e-1
        study.tell(trial, 1.0)
    assert spy.seen and all(n == 100 + KEEP_BEST for n in spy.seen), spy.seen


def _spec_file(tmp_path, sampler: dict, strata: bool = True):
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["study"]["sampler"] = sampler
    raw["search"] = {"model.cell": {"choices": ["gru", "rnn"]},
                     "train.lr": {"low": 1e-5, "high": 1e-1, "log": True}}
    if strata:
        raw["study"]["strata"] = ["model.cell"]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_window_is_taken_within_each_stratum(tmp_path):
    sampler = make_sampler(load_study_spec(_spec_file(tmp_path, {"name": "tpe",
                                                                  "window": 500})))
    assert isinstance(sampler, StratifiedSampler)
    assert isinstance(sampler.inner, WindowedSampler) and sampler.inner.window == 500
    assert isinstance(sampler.inner.inner, optuna.samplers.TPESampler)
    plain = make_sampler(load_study_spec(_spec_file(tmp_path, {"name": "gp", "window": 200},
                                                    strata=False)))
    assert isinstance(plain, WindowedSampler)
    assert isinstance(plain.inner, optuna.samplers.GPSampler)


@pytest.mark.parametrize("sampler, said", [
    ({"name": "random", "window": 500},
     "study.sampler.window: the random sampler has no model of past trials to window"),
    ({"name": "tpe", "window": 50}, "study.sampler.window: Input should be greater than or "
                                    "equal to 100"),
])
def test_a_window_a_sampler_cannot_use_is_one_line(tmp_path, sampler, said):
    path = _spec_file(tmp_path, sampler)
    result = CliRunner().invoke(app, ["sweep", str(path)])
    assert result.exit_code == 2, result.output
    assert said in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "rnnlab.journal").exists()


def test_the_levels_kept_per_trial_are_the_trials_own(tmp_path):
    study = _study(tmp_path, "maximize", n=20)
    study.enqueue_trial({"model.cell": "gru"})  # waiting: its level is the enqueued one
    trials = study.get_trials(deepcopy=False)
    keys = ("model.cell",)
    fresh = trial_levels(None, 0, trials, keys)
    assert fresh == [(t.params.get("model.cell") or t.system_attrs["fixed_params"]
                      ["model.cell"],) for t in trials]
    assert levels_of(study, trials, keys) == fresh
    assert levels_of(study, study.get_trials(deepcopy=False), keys) == fresh  # kept
    # a trial without the key has no levels, and none are kept for it
    assert levels_of(study, trials, ("train.seed",)) == [None] * len(trials)
    # another study in the same storage numbers its trials from 0 too: its own levels
    other = optuna.create_study(study_name="other", direction="maximize",
                                storage=study._storage)
    other.add_trial(create_trial(params={"model.cell": "rnn", "train.lr": 1e-3},
                                 distributions=DISTS, value=1.0))
    assert levels_of(other, other.get_trials(deepcopy=False), keys) == [("rnn",)]
    assert levels_of(study, trials[:1], keys) == [("gru",)]


def test_a_draw_sees_one_view_of_its_stratum(tmp_path, monkeypatch):
    """TPE reads a study's trials up to three times a draw, from Optuna's cache of the study it
    is given where it can: the draw's calls share one view, so that cache serves them (on a
    database, each read is a query of every unfinished trial)."""
    from rnnlab.storage.forwarding import StratumStorage

    study = _study(tmp_path, "maximize", n=60)
    views, reads = [], []
    made, read = StratumStorage.__init__, StratumStorage.get_all_trials

    def counted_view(self, *args, **kwargs):
        views.append(1)
        made(self, *args, **kwargs)

    def counted_read(self, *args, **kwargs):
        reads.append(1)
        return read(self, *args, **kwargs)

    monkeypatch.setattr(StratumStorage, "__init__", counted_view)
    monkeypatch.setattr(StratumStorage, "get_all_trials", counted_read)
    study.sampler = StratifiedSampler(optuna.samplers.TPESampler(seed=0, n_startup_trials=5),
                                      ["model.cell"])
    for cell in ("gru", "rnn", "gru"):
        study.enqueue_trial({"model.cell": cell})
        trial = study.ask()
        views.clear()
        reads.clear()
        assert trial.suggest_categorical("model.cell", ["gru", "rnn"]) == cell
        lr = trial.suggest_float("train.lr", 1e-5, 1e-1, log=True)
        assert 1e-5 <= lr <= 1e-1 and lr != 1e-3  # drawn by TPE, from the stratum's trials
        # one view; its reads: the search space's (cached), and the draw's own (TPE's
        # constant liar reads the running trials afresh); a view per call read three times
        assert len(views) == 1 and len(reads) == 2, (views, reads)
        study.tell(trial, 1.0)
