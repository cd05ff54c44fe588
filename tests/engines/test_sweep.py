"""Sweeps on real stores: an Optuna journal file and MLflow's default SQLite store."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from typing import get_args

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from support import GOOD_LR, HOPELESS_LR, run_enqueued
from typer.testing import CliRunner

from rnnlab.cli.app import app
from rnnlab.core.data import load_data
from rnnlab.core.spec import RunConfig, apply_overrides, validate
from rnnlab.core.study_spec import PrunerConfig, load_study_spec
from rnnlab.engines.local import sweep
from rnnlab.errors import RnnlabError
from rnnlab.storage.adapter import open_storage
from rnnlab.storage.keys import ATTR_PARENT
from rnnlab.study.status import study_status
from rnnlab.study.worker import Worker, work
from rnnlab.train import fit

TINY = {
    "data": {"source": "mnist-5k", "train_size": 200, "val_size": 100, "patch": 28},
    "model": {"hidden": 8},
    "train": {"epochs": 3, "lr": 3e-3},
}


def write_spec(path: Path, name: str, n_trials: int, search=None, **study) -> Path:
    spec = dict(TINY)
    spec["study"] = {"name": name, "n_trials": n_trials,
                     "sampler": {"name": "random", "seed": 0}, "pruner": {"name": "none"},
                     **study}
    spec["search"] = search if search is not None else {
        "model.cell": {"choices": ["rnn", "gru"]},
        "train.lr": {"low": 1e-3, "high": 1e-2, "log": True},
        "train.l2": {"low": 1e-7, "high": 1e-3, "log": True, "zero_below": 1e-6},
    }
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def here(tmp_path, mlflow_db):
    """An empty folder (the cwd) with a ready MLflow store in it (see conftest)."""
    return tmp_path


def child_runs(study_name: str):
    client = MlflowClient()
    exp = client.get_experiment_by_name(study_name)
    return client, [r for r in client.search_runs([exp.experiment_id])
                    if r.data.tags.get("rnnlab.kind") == "trial"]


def test_two_workers_share_the_budget_and_nest_every_trial(here):
    spec = load_study_spec(write_spec(here / "s.yaml", "two", 5))
    final = sweep(spec, "rnnlab.journal", workers=2)
    assert final.finished == 5 and final.counts["RUNNING"] == 0
    assert final.trials_run == 5  # as the two worker processes counted them
    study = optuna.load_study(study_name="two", storage=open_storage("rnnlab.journal"))
    assert study.user_attrs["rnnlab:workers_started"] == 2
    trials = study.get_trials()
    assert len(trials) == 5  # the lock keeps two workers from overshooting
    # host:pid of the process that ran it: worker processes, never this one. Not "both ran
    # one": on a busy machine the first can take all five before the second has started.
    workers = {t.user_attrs["worker"] for t in trials}
    assert 1 <= len(workers) <= 2 and f"{socket.gethostname()}:{os.getpid()}" not in workers
    client, runs = child_runs("two")
    parent = study.user_attrs[ATTR_PARENT]
    assert client.get_run(parent).info.status == "FINISHED"
    by_id = {r.info.run_id: r for r in runs}
    for t in trials:
        run = by_id[t.user_attrs["mlflow_run_id"]]
        assert run.info.run_name == f"trial-{t.number}"
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.tags["rnnlab.trial_state"] == t.state.name
        assert run.data.tags["rnnlab.outcome"] == "complete"
        objective = client.get_metric_history(run.info.run_id, "best_val_acc")
        assert [m.step for m in objective] == [1, 2, 3]  # the objective, epoch by epoch
        assert objective[-1].value == t.value == max(m.value for m in objective)
        assert set(run.data.params["rnnlab.sampled_keys"].split(",")) == set(t.params)
        assert run.data.params["model.cell"] == t.params["model.cell"]
        assert run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert sorted(steps) == [1, 2, 3]
        # a draw below zero_below trains with exactly no penalty
        if t.params["train.l2"] < 1e-6:
            assert float(run.data.params["train.l2"]) == 0.0
    # a trial in a worker process trains as its config does alone (`rnnlab train`): the same
    # curve, epoch by epoch, for the config and seed it stored
    for t in trials[:2]:
        config = validate(RunConfig, apply_overrides({}, t.user_attrs["config"]), "trial")
        alone: list[float] = []
        fit(config, [lambda epoch, metrics, into=alone: into.append(metrics["val_acc"])],
            data=load_data(config.data))
        assert alone == [t.intermediate_values[e] for e in sorted(t.intermediate_values)]


def test_workers_use_the_folder_and_environment_of_their_sweep(tmp_path, _mlflow_template,
                                                               monkeypatch):
    # Worker processes are forked from a server started once per process (rnnlab.launch):
    # each sweep's workers must still use that sweep's folder and tracking store.
    for name in ("first", "second"):
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(_mlflow_template, folder / "mlflow.db")
        monkeypatch.chdir(folder)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder}/mlflow.db")
        spec = load_study_spec(write_spec(folder / "s.yaml", name, 2))
        assert sweep(spec, "rnnlab.journal", workers=2).finished == 2
        assert study_status(str(folder / "rnnlab.journal"))[0].name == name
        _, runs = child_runs(name)
        assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert not (tmp_path / "rnnlab.journal").exists()


def test_resume_adds_trials_to_the_same_study_and_parent_run(here):
    path = write_spec(here / "s.yaml", "resumed", 2)
    first = sweep(load_study_spec(path), "rnnlab.journal")
    again = sweep(load_study_spec(path), "rnnlab.journal")  # budget used: runs nothing
    assert again.finished == 2
    more = sweep(load_study_spec(path, n_trials=4), "rnnlab.journal")
    assert more.finished == 4 and more.parent_run_id == first.parent_run_id
    assert len(study_status("rnnlab.journal", "resumed")) == 1
    _, runs = child_runs("resumed")
    assert len(runs) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {first.parent_run_id}


# Every pruner the spec accepts, set to judge a hopeless trial (HOPELESS_LR) against a good one
# that finished before it, and the epoch it prunes that trial at (None: never). Hyperband with
# reduction_factor 4 over 3 epochs has one bracket: with more, the two trials could be hashed
# into different brackets, and a trial alone in its bracket is never pruned.
PRUNERS = {
    "none": ({"name": "none"}, optuna.pruners.NopPruner, None),
    "median": ({"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
               optuna.pruners.MedianPruner, 1),
    "percentile": ({"name": "percentile", "percentile": 90.0, "n_startup_trials": 1,
                    "n_warmup_steps": 0}, optuna.pruners.PercentilePruner, 1),
    "successive_halving": ({"name": "successive_halving", "min_resource": 1,
                            "reduction_factor": 2}, optuna.pruners.SuccessiveHalvingPruner, 1),
    "hyperband": ({"name": "hyperband", "min_resource": 1, "reduction_factor": 4},
                  optuna.pruners.HyperbandPruner, 1),
    # A signed-rank test of the epochs so far against the best trial's: two epochs all worse
    # give p = 0.25, so it prunes at epoch 2 under a threshold of 0.3.
    "wilcoxon": ({"name": "wilcoxon", "p_threshold": 0.3, "n_warmup_steps": 0},
                 optuna.pruners.WilcoxonPruner, 2),
}
LR_CHOICES = {"train.lr": {"choices": [GOOD_LR, HOPELESS_LR]}}


def test_the_pruners_tested_are_every_pruner_a_spec_accepts():
    assert set(PRUNERS) == set(get_args(PrunerConfig.model_fields["name"].annotation))


@pytest.mark.parametrize("kind", PRUNERS)
def test_each_pruner_prunes_a_hopeless_trial_before_its_last_epoch(here, kind):
    pruner, pruner_type, epoch = PRUNERS[kind]
    spec = load_study_spec(write_spec(here / "s.yaml", kind, 2, search=LR_CHOICES,
                                      pruner=pruner))
    assert run_enqueued(spec, "rnnlab.journal", [{"train.lr": GOOD_LR},
                                                 {"train.lr": HOPELESS_LR}]) == 2
    study = Worker(spec, "rnnlab.journal").study  # as work() built it to run the trials
    assert type(study.pruner) is pruner_type
    status = study_status("rnnlab.journal", kind)[0]
    assert status.finished == 2 and status.counts["FAIL"] == 0  # the budget, exactly
    good, hopeless = study.get_trials()
    assert good.state.name == "COMPLETE" and sorted(good.intermediate_values) == [1, 2, 3]
    if epoch is None:
        assert hopeless.state.name == "COMPLETE" and "reason" not in hopeless.user_attrs
        return
    assert hopeless.state.name == "PRUNED"
    assert hopeless.user_attrs["reason"].startswith(f"pruned at epoch {epoch} ")
    assert max(hopeless.intermediate_values) == epoch < 3  # never at the last of its 3 epochs
    client, runs = child_runs(kind)
    run = next(r for r in runs if r.info.run_id == hopeless.user_attrs["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["rnnlab.pruned"] == "true"
    assert run.data.tags["rnnlab.outcome"] == f"pruned at epoch {epoch}"
    # the objective over the epochs it trained: the trials view ranks it with the rest
    objective = client.get_metric_history(run.info.run_id, "best_val_acc")
    assert [m.step for m in objective] == list(range(1, epoch + 1))
    assert objective[-1].value == max(hopeless.intermediate_values.values())


@pytest.mark.parametrize("kind", [k for k, (_, _, epoch) in PRUNERS.items() if epoch == 1])
def test_a_trial_that_reached_its_last_epoch_completes_and_counts(here, kind):
    """A 1-epoch hopeless trial would be pruned at epoch 1 by each of these pruners (see the
    test above), but its training is paid for: it completes, with the value it reached."""
    spec = load_study_spec(write_spec(here / "s.yaml", "last", 3, search=LR_CHOICES,
                                      pruner=PRUNERS[kind][0]))
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 1})})
    run_enqueued(spec, "rnnlab.journal", [{"train.lr": lr}
                                          for lr in (GOOD_LR, GOOD_LR, HOPELESS_LR)])
    trials = optuna.load_study(study_name="last",
                               storage=open_storage("rnnlab.journal")).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert trials[2].value == trials[2].intermediate_values[1] < trials[0].value
    assert "reason" not in trials[2].user_attrs


def test_a_diverging_trial_is_pruned_with_its_reason_and_the_sweep_goes_on(here):
    spec = load_study_spec(write_spec(
        here / "s.yaml", "diverge", 2,
        search={"train.lr": {"choices": [1e38, 3e-3]}, "train.optimizer": {"choices": ["sgd"]}}))
    run_enqueued(spec, "rnnlab.journal", [{"train.lr": 1e38, "train.optimizer": "sgd"},
                                          {"train.lr": 3e-3, "train.optimizer": "sgd"}])
    first, second = optuna.load_study(study_name="diverge",
                                      storage=open_storage("rnnlab.journal")).get_trials()
    assert first.state.name == "PRUNED"
    assert "non-finite training loss at epoch 1" in first.user_attrs["reason"]
    assert second.state.name == "COMPLETE"
    _, runs = child_runs("diverge")
    outcome = {r.info.run_id: r.data.tags["rnnlab.outcome"] for r in runs}
    assert outcome[first.user_attrs["mlflow_run_id"]] == "diverged at epoch 1"
    assert outcome[second.user_attrs["mlflow_run_id"]] == "complete"


def test_status_and_trials_report_the_study(here):
    path = write_spec(here / "s.yaml", "reported", 3)
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", str(path)])
    assert result.exit_code == 0, result.output
    status = runner.invoke(app, ["status", "reported", "--json"])
    [entry] = json.loads(status.stdout)
    assert entry["counts"]["COMPLETE"] == 3 and entry["budget"] == 3
    assert set(entry["best_params"]) == {"model.cell", "train.lr", "train.l2"}
    csv = runner.invoke(app, ["trials", "reported", "--format", "csv"])
    header = csv.stdout.splitlines()[0].split(",")
    assert {"number", "value", "state", "params_model.cell", "mlflow_run_id"} <= set(header)
    assert len(csv.stdout.splitlines()) == 4
    out = here / "t.parquet"
    assert runner.invoke(app, ["trials", "reported", "--format", "parquet",
                               "--out", str(out)]).exit_code == 0
    import pandas as pd

    assert len(pd.read_parquet(out)) == 3


def test_unknown_study_is_one_line(here):
    write_spec(here / "s.yaml", "x", 1)
    with pytest.raises(RnnlabError, match="no study named 'ghost'"):
        study_status("rnnlab.journal", "ghost")


def test_a_user_error_in_a_trial_stops_the_sweep_with_its_one_line(here):
    # data.train_size is searched, so it is only checked as each trial builds its data
    spec = load_study_spec(write_spec(here / "s.yaml", "toobig", 4,
                                      search={"data.train_size": {"choices": [4500]}}))
    with pytest.raises(RnnlabError, match="exceeds the 4000 images"):
        sweep(spec, "rnnlab.journal", workers=2)
    status = study_status("rnnlab.journal", "toobig")[0]
    assert status.counts["FAIL"] in (1, 2) and status.counts["RUNNING"] == 0  # not retried
    failed = optuna.load_study(study_name="toobig",
                               storage=open_storage("rnnlab.journal")).get_trials()
    assert all("exceeds the 4000 images" in t.user_attrs["reason"] for t in failed)
    client = MlflowClient()
    assert client.get_run(status.parent_run_id).info.status == "KILLED"  # resumable
    assert {r.info.status for r in child_runs("toobig")[1]} == {"FAILED"}


def test_a_worker_stops_after_max_failures_in_a_row(here):
    # A real out-of-memory error on every trial: 2e6 hidden units want 16 TB of weights.
    path = write_spec(here / "s.yaml", "oom", 10, max_failures_in_a_row=3)
    raw = yaml.safe_load(path.read_text())
    raw["model"]["hidden"] = 2_000_000
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(RnnlabError, match="3 trials in a row failed, the last with "
                                          "RuntimeError: .*can't allocate memory"):
        work(load_study_spec(path), "rnnlab.journal")
    status = study_status("rnnlab.journal", "oom")[0]
    assert status.counts["FAIL"] == 3 and status.finished == 0
    assert MlflowClient().get_run(status.parent_run_id).info.status == "KILLED"
