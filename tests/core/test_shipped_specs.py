"""Every spec shipped in studies/ loads and validates as it is, down to what a worker builds
from it."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from rnnlab.core.spec import load_config
from rnnlab.core.study_spec import load_study_spec
from rnnlab.study.parts import make_pruner, make_sampler, sample_config

STUDIES = sorted((Path(__file__).resolve().parents[2] / "studies").glob("*.yaml"))
RESULTS = STUDIES[0].parents[1] / "docs" / "results"
# the specs behind docs/results.md's later measurements, and the configs they found (run
# configs; the one command's best configs, best_*.yaml, aside)
MEASURED = sorted(p for p in RESULTS.glob("*.yaml") if not p.stem.startswith("best_"))


def test_there_are_shipped_specs():
    assert {p.stem for p in STUDIES} >= {"quickstart", "tutorial", "tutorial_sweep",
                                          "normalisation_ablation", "full_mnist"}
    assert {p.stem for p in MEASURED} == {
        "lstm_lr_curves", "tutorial_sweep_patience", "tutorial_sweep_patience-best_lstm",
        "tutorial_sweep_patience-best_gru"}


@pytest.mark.parametrize("path", STUDIES + MEASURED, ids=[p.stem for p in STUDIES + MEASURED])
def test_a_shipped_spec_loads(path):
    if "study" in yaml.safe_load(path.read_text()):
        spec = load_study_spec(path)
        assert spec.study.name == path.stem.replace("_", "-") or spec.study.name == path.stem
        assert spec.search or spec.study.n_trials == 1
        # What a worker builds from it: its sampler and pruner, and trial configs drawn from
        # its search space, each validated as a run config (sample_config raises if not).
        study = optuna.create_study(direction=spec.study.direction, sampler=make_sampler(spec),
                                    pruner=make_pruner(spec))
        for _ in range(min(3, spec.study.n_trials)):
            trial = study.ask()
            config, keys = sample_config(trial, spec)
            assert keys == list(spec.search) and set(trial.params) == set(spec.search)
            assert config.train.epochs >= 1
            study.tell(trial, 0.5)
    else:
        assert load_config(path).train.epochs >= 1


BEST = sorted(RESULTS.glob("best_*.yaml"))


@pytest.mark.parametrize("path", BEST, ids=[p.stem for p in BEST])
def test_the_published_best_configs_load_as_run_configs(path):
    config = load_config(path)  # what `rnnlab train` reads, unchanged
    assert config.model.cell == path.stem.removeprefix("best_")
    assert (config.data.patch, config.model.hidden, config.data.train_size) == (7, 128, 5000)
