"""Spec pieces turned into Optuna objects, checked the way several workers use them."""

from __future__ import annotations

import logging
from typing import get_args

import optuna
import pytest
import yaml

from rnnlab.core.study_spec import SamplerConfig, load_study_spec
from rnnlab.study.parts import make_sampler
from rnnlab.study.worker import Worker, work


def spec_of(tmp_path, sampler, pruner=None, epochs=1, n_trials=12, search=None):
    raw = {"data": {"source": "mnist-5k", "train_size": 100, "val_size": 50, "patch": 28},
           "model": {"hidden": 4},
           "train": {"epochs": epochs, "threads": 1},
           "study": {"name": "parts", "n_trials": n_trials, "sampler": sampler,
                     "pruner": pruner or {"name": "none"}},
           "search": search or {"model.cell": {"choices": ["rnn", "lstm", "gru"]},
                                "train.seed": {"choices": [0, 1, 2, 3]}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    return load_study_spec(tmp_path / "s.yaml")


def test_grid_workers_with_their_own_seed_offsets_cover_every_point_once(tmp_path):
    """Each worker builds its sampler with its own seed offset; a grid's point ids must still
    name the same points in all of them, or workers repeat some points and skip others."""
    spec = spec_of(tmp_path, {"name": "grid", "seed": 0})
    storage = optuna.storages.InMemoryStorage()
    workers = [optuna.create_study(study_name="g", storage=storage, load_if_exists=True,
                                   sampler=make_sampler(spec, seed_offset=i)) for i in range(3)]
    seen = []

    def objective(trial: optuna.Trial) -> float:
        seen.append((trial.suggest_categorical("model.cell", ["rnn", "lstm", "gru"]),
                     trial.suggest_categorical("train.seed", [0, 1, 2, 3])))
        return 0.5

    for n in range(12):  # the workers take turns, as they would in parallel
        workers[n % 3].optimize(objective, n_trials=1)
    assert sorted(seen) == sorted((c, s) for c in ("rnn", "lstm", "gru") for s in range(4))


# Every sampler the spec accepts, with the Optuna class it must be, what it searches (CMA-ES
# models two or more continuous keys; a grid needs choices or steps) and the trials it runs. The
# model-based ones model from the second trial on (n_startup_trials 1), so their models fit.
CONTINUOUS = {"model.cell": {"choices": ["rnn", "gru"]},
              "train.lr": {"low": 1e-3, "high": 3e-2, "log": True},
              "train.l2": {"low": 1e-6, "high": 1e-3, "log": True}}
GRID = {"model.cell": {"choices": ["rnn", "gru"]},
        "train.lr": {"low": 0.005, "high": 0.01, "step": 0.005}}
SAMPLERS = {
    "tpe": ({"name": "tpe", "n_startup_trials": 1}, optuna.samplers.TPESampler, CONTINUOUS, 3),
    "random": ({"name": "random"}, optuna.samplers.RandomSampler, CONTINUOUS, 3),
    "gp": ({"name": "gp", "n_startup_trials": 1}, optuna.samplers.GPSampler, CONTINUOUS, 3),
    "cmaes": ({"name": "cmaes"}, optuna.samplers.CmaEsSampler, CONTINUOUS, 3),
    # Every point once. Optuna's own grid sampler stops the study after its last point, which
    # raises when trials are asked and told (as workers do): the last trial was logged failed.
    "grid": ({"name": "grid"}, optuna.samplers.GridSampler, GRID, 4),
}


def test_the_samplers_tested_are_every_sampler_a_spec_accepts():
    assert set(SAMPLERS) == set(get_args(SamplerConfig.model_fields["name"].annotation))


@pytest.mark.parametrize("kind", SAMPLERS)
def test_each_sampler_runs_a_study_to_its_budget(tmp_path, mlflow_db, caplog, kind):
    sampler, sampler_type, search, n = SAMPLERS[kind]
    spec = spec_of(tmp_path, {**sampler, "seed": 3}, epochs=2, n_trials=n, search=search)
    with caplog.at_level(logging.WARNING):
        assert work(spec, "rnnlab.journal") == n
    assert not [r for r in caplog.records if "failed" in r.getMessage()]
    study = Worker(spec, "rnnlab.journal").study  # as work() built it to run the trials
    assert isinstance(study.sampler, sampler_type)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * n  # the budget, none failed
    for t in trials:
        assert set(t.params) == set(search)
        assert all(t.distributions[k]._contains(t.distributions[k].to_internal_repr(v))
                   for k, v in t.params.items())
    if kind == "grid":
        assert sorted((t.params["model.cell"], t.params["train.lr"]) for t in trials) == [
            (c, lr) for c in ("gru", "rnn") for lr in (0.005, 0.01)]
    if kind == "cmaes":  # its search state, stored with the trials it drew from its model
        assert any(k.startswith("cma:") for t in trials[1:] for k in t.system_attrs)
