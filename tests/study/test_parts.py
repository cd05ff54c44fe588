"""Spec pieces turned into Optuna objects, checked the way several workers use them."""

from __future__ import annotations

import logging

import optuna
import yaml

from rnnlab.core.study_spec import load_study_spec
from rnnlab.study.parts import make_sampler
from rnnlab.study.storage import open_storage
from rnnlab.study.worker import work


def spec_of(tmp_path, sampler, pruner=None, epochs=1):
    raw = {"data": {"source": "mnist-5k", "train_size": 200, "val_size": 100, "patch": 28},
           "train": {"epochs": epochs},
           "study": {"name": "parts", "n_trials": 12, "sampler": sampler,
                     "pruner": pruner or {"name": "none"}},
           "search": {"model.cell": {"choices": ["rnn", "lstm", "gru"]},
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


def test_a_grid_study_runs_to_its_last_point_without_a_failure(tmp_path, mlflow_db, caplog,
                                                               monkeypatch):
    """Optuna's grid sampler stops the study after its last point, which raises when trials
    are asked and told (as workers do): the last trial was logged as failed."""
    monkeypatch.chdir(tmp_path)
    spec = spec_of(tmp_path, {"name": "grid", "seed": 0})
    spec = spec.model_copy(update={"search": {"model.cell": spec.search["model.cell"]}})
    spec = spec.model_copy(update={"study": spec.study.model_copy(update={"n_trials": 3})})
    with caplog.at_level(logging.WARNING):
        assert work(spec, "rnnlab.journal") == 3
    study = optuna.load_study(study_name="parts", storage=open_storage("rnnlab.journal"))
    assert sorted(t.params["model.cell"] for t in study.trials) == ["gru", "lstm", "rnn"]
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert not [r for r in caplog.records if "failed" in r.getMessage()]
