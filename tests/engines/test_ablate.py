"""Ablations from the best, on real stores: the derived study trains each stratum's best config
with the factor at each level and paired seeds, its report judges the factor within each
stratum, it resumes after a Ctrl-C with its plan whole, and every bad input is one line."""

from __future__ import annotations

import collections
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from support import GOOD_LR, HOPELESS_LR, SPEC, build_study, cut_then_resumed
from typer.testing import CliRunner

from rnnlab.analysis.effects import effects
from rnnlab.analysis.frames import study_frames
from rnnlab.analysis.gains import weak_penalties
from rnnlab.analysis.pruning import replay_pruning
from rnnlab.cli.app import app
from rnnlab.core.study_spec import AblationConfig, StudySpec
from rnnlab.engines.ablate import ablate
from rnnlab.storage.adapter import load_study, open_storage, stratum_study, study_names
from rnnlab.storage.keys import ATTR_SPEC, trained_params
from rnnlab.storage.keys import TRIAL_REPLAYS as REPLAYS
from rnnlab.storage.keys import TRIAL_RESUMED_FROM as RESUMED
from rnnlab.study.ablation import ablation_spec
from rnnlab.study.status import study_status

NAME = "searched"


def _searched_spec() -> dict:
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["train"]["checkpoint_every"] = 1
    # a median pruner that never prunes (two trials a stratum): the ablation's report replays it
    raw["study"].update(name=NAME, n_trials=4, strata=["model.cell"],
                        pruner={"name": "median", "n_startup_trials": 5, "n_warmup_steps": 1})
    return raw


@pytest.fixture
def searched(tmp_path, monkeypatch, mlflow_db):
    """A finished stratified search (2 cells x 2 trials) in this test's folder, for a test that
    adds to its stores (an ablation is a study in the same journal and experiment)."""
    study = build_study(tmp_path, _searched_spec())
    monkeypatch.chdir(tmp_path)
    return study


@pytest.fixture(scope="module")
def searched_once(tmp_path_factory, _mlflow_template):
    """The same finished search, built once for the module's tests that only read it (they
    refuse an ablation, or plan one without running it); each checks it is still unchanged."""
    folder = tmp_path_factory.mktemp("searched")
    shutil.copy(_mlflow_template, folder / "mlflow.db")
    return build_study(folder, _searched_spec())


@pytest.fixture
def searched_read_only(searched_once):
    """``searched_once``; the test fails if its stores were written to."""
    stores = [Path(searched_once.storage), searched_once.folder / "mlflow.db"]
    before = [p.read_bytes() for p in stores]
    yield searched_once
    assert [p.read_bytes() for p in stores] == before, "a test that only reads wrote a store"


def load_study_spec_pruner(storage: str) -> dict:
    """The searched study's pruner as stored, every default filled in."""
    stored = load_study(storage, NAME).user_attrs[ATTR_SPEC]
    return StudySpec.model_validate(stored).study.pruner.model_dump(mode="json")


def _bests(storage: str) -> dict[str, dict]:
    study = load_study(storage, NAME)
    return {cell: trained_params(stratum_study(study, {"model.cell": cell},
                                               study.sampler).best_trial)
            for cell in ("rnn", "gru")}


def test_each_strata_best_is_trained_at_each_level_with_paired_seeds(searched):
    final = ablate(searched.storage, NAME, AblationConfig(factor="data.normalisation",
                                                          seeds=2), workers=1)
    assert final.name == f"{NAME}-ablate-data.normalisation" and final.finished == 8
    bests = _bests(searched.storage)
    trials = load_study(searched.storage, final.name).get_trials()
    assert {t.state.name for t in trials} == {"COMPLETE"}  # no pruning
    seen = collections.Counter()
    for t in trials:
        cell = t.params["model.cell"]
        for key in ("train.lr", "train.l2"):  # the stratum's best, as trained
            assert t.params[key] == bests[cell][key]
        seen[cell, t.params["data.normalisation"], t.params["train.seed"]] += 1
    # fresh seeds: the search trained each best with seed 0, which would give its level the
    # winner's value again
    assert seen == {(c, n, s): 1 for c in ("rnn", "gru") for n in ("none", "per_pixel")
                    for s in (1, 2)}

    frames = study_frames(searched.storage, final.name)
    # its own pruner is none: the report replays the searched study's on the arms' curves
    assert frames.judged_by == (NAME, load_study_spec_pruner(searched.storage))
    replayed = replay_pruning(frames)
    assert [(s.name, s.complete) for s in replayed.strata] == [
        ("model.cell=rnn", 4), ("model.cell=gru", 4)]
    assert frames.importances.empty  # lr, L2 and cell move together: no fANOVA ranking
    assert frames.importance_note.startswith("not computed for an ablation")
    [effect] = effects(frames)
    assert effect.key == "data.normalisation" and effect.stratified_by == ("model.cell",)
    for stratum in effect.strata:
        assert [lv.level for lv in stratum.levels] == ["none", "per_pixel"]
        assert all(lv.n == 2 for lv in stratum.levels)
        assert [g.test for g in stratum.gaps] == ["paired over seeds"]
        assert [g.n for g in stratum.gaps] == [2]


def test_a_continuous_factor_defaults_to_zero_and_each_strata_best(searched):
    final = ablate(searched.storage, NAME, AblationConfig(factor="train.l2"), workers=1)
    bests = _bests(searched.storage)
    trials = load_study(searched.storage, final.name).get_trials()
    for cell in ("rnn", "gru"):
        levels = sorted({t.params["train.l2"] for t in trials if t.params["model.cell"] == cell})
        # a best trained without the penalty is compared with the range's middle (log scale)
        best = bests[cell]["train.l2"] or (1e-6 * 1e-3) ** 0.5
        assert levels == [0.0, pytest.approx(best)]
    assert final.finished == 2 * 2 * 3  # two cells, two levels, three seeds


def test_given_levels_always_get_each_strata_best_as_the_control(searched_read_only):
    searched = searched_read_only
    spec = ablation_spec(searched.storage, NAME, AblationConfig(
        factor="train.lr", levels=[4e-3, 2e-2], seeds=2))
    bests = _bests(searched.storage)
    for cell in ("rnn", "gru"):
        arms = [t for t in spec.study.ablation.trials if t["model.cell"] == cell]
        assert sorted({t["train.lr"] for t in arms}) == sorted({4e-3, 2e-2,
                                                                bests[cell]["train.lr"]})
        assert len(arms) == 3 * 2  # three levels, two seeds


def test_an_interrupted_ablation_resumes_and_runs_its_plan_exactly(searched):
    argv = [sys.executable, "-m", "rnnlab", "ablate", NAME, "--factor", "data.normalisation",
            "--seeds", "2", "--workers", "2"]
    derived = f"{NAME}-ablate-data.normalisation"
    trials = cut_then_resumed(argv, searched.folder, searched.storage, derived)
    done = collections.Counter(
        (t.params["model.cell"], t.params["data.normalisation"], t.params["train.seed"])
        for t in trials if t.state.name == "COMPLETE")
    assert done == {(c, n, s): 1 for c in ("rnn", "gru") for n in ("none", "per_pixel")
                    for s in (1, 2)}
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    once_more = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert once_more.returncode == 0, once_more.stderr
    assert len(optuna.load_study(study_name=derived, storage=open_storage(
        searched.storage)).get_trials()) == len(trials)  # nothing trained again
    # what to run next: its own report compares the arms, the searched study's confirms
    assert f"rnnlab report {derived} --format md  # what it found (validation)" \
        in once_more.stdout
    assert f"rnnlab report {NAME} --format md" in once_more.stdout


def test_an_arm_another_ablation_trained_is_replayed_not_trained_again(searched):
    first = ablate(searched.storage, NAME, AblationConfig(factor="data.normalisation",
                                                          seeds=2), workers=1)
    second = ablate(searched.storage, NAME, AblationConfig(factor="train.l2", seeds=2),
                    workers=1)
    assert second.finished == 2 * 2 * 2
    trained = {_config(t): t for t in load_study(searched.storage, first.name).get_trials()}
    client = MlflowClient(searched.uri)
    replayed = 0
    for t in load_study(searched.storage, second.name).get_trials():
        twin = trained.get(_config(t))
        if twin is None:  # an arm no other ablation has: trained
            assert REPLAYS not in t.user_attrs and RESUMED not in t.user_attrs
            continue
        replayed += 1  # each stratum's best at its own L2: the first ablation trained it
        assert t.params["train.l2"] == trained_params(twin)["train.l2"]
        assert t.user_attrs[REPLAYS] == f"{first.name}#{twin.number}"
        assert t.user_attrs[RESUMED] == 2  # every epoch replayed, none trained
        assert t.value == twin.value and t.intermediate_values == twin.intermediate_values
        mine, its = ([(m.step, m.value) for m in client.get_metric_history(
            x.user_attrs["mlflow_run_id"], "val_acc")] for x in (t, twin))
        assert mine == its  # the same curve in MLflow
    assert replayed == 2 * 2  # two cells' bests, two seeds each
    report = CliRunner().invoke(app, ["report", second.name, "--no-confirm",
                                      "--storage", searched.storage])
    assert report.exit_code == 0, report.output
    assert ("8 complete (budget 8); 4 of them replay an arm another ablation of the study "
            "trained") in report.stdout


def test_an_ablation_planned_otherwise_is_refused_not_resumed(searched):
    made = ablate(searched.storage, NAME, AblationConfig(factor="data.normalisation",
                                                         seeds=2), workers=1)
    study = optuna.load_study(study_name=made.name, storage=open_storage(searched.storage))
    spec = study.user_attrs["spec"]  # as an rnnlab before fresh seeds planned it: 0, 1
    for planned in spec["study"]["ablation"]["trials"]:
        planned["train.seed"] -= 1
    study.set_user_attr("spec", spec)
    before = len(study.get_trials())
    result = CliRunner().invoke(app, ["ablate", NAME, "--factor", "data.normalisation",
                                      "--seeds", "2", "--storage", searched.storage])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert f"ablation study {made.name!r} exists with another plan" in line, line
    assert f"delete it (rnnlab delete {made.name}) to plan it anew" in line
    assert len(optuna.load_study(study_name=made.name, storage=open_storage(
        searched.storage)).get_trials()) == before


def test_a_better_level_an_ablation_found_is_confirmed_as_the_cells_best(tmp_path,
                                                                         monkeypatch, mlflow_db):
    # a search whose every trial learns nothing (lr 1e-9), then an lr ablation that tries a
    # learning rate that does: beyond seed noise in both cells
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["train"]["checkpoint_every"] = 1
    raw["study"].update(name="stuck", n_trials=2, strata=["model.cell"], pruner={"name": "none"})
    raw["search"]["train.lr"] = {"low": HOPELESS_LR, "high": GOOD_LR, "log": True}
    build_study(tmp_path, raw, [{"model.cell": c, "train.lr": HOPELESS_LR} for c in
                                ("rnn", "gru")])
    monkeypatch.chdir(tmp_path)
    ablate("rnnlab.journal", "stuck", AblationConfig(factor="train.lr", levels=[GOOD_LR], seeds=5),
           workers=1)
    out = tmp_path / "stuck.json"
    result = CliRunner().invoke(app, ["report", "stuck", "--format", "json", "--out", str(out),
                                      "--confirm-seeds", "1", "--confirm-splits", "1",
                                      "--workers", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert {g["cell"] for g in report["gains"]} == {"rnn", "gru"}
    for g in report["gains"]:
        assert (g["factor"], g["level"], g["own"]) == ("train.lr", GOOD_LR, "1e-09")
        assert g["low"] > 0 and g["n"] == 5 and g["study"] == "stuck-ablate-train.lr"
    roles = {tuple(c["roles"]): c for c in report["confirmations"]}
    for cell in ("rnn", "gru"):
        [found] = [c for r, c in roles.items() if f"best {cell}" in r]
        [search] = [c for r, c in roles.items() if f"search's best {cell}" in r]
        assert found["changes"] == [["train.lr", GOOD_LR]] and search["changes"] == []
        assert found["trial"] == search["trial"]  # the same trial, its lr set
    assert {g["best"] for g in report["cell_gaps_test"]} <= {"rnn", "gru"}
    runs = MlflowClient(mlflow_db).search_runs(
        [MlflowClient(mlflow_db).get_experiment_by_name("stuck").experiment_id],
        "tags.`rnnlab.kind` = 'confirm'")
    changed = [r for r in runs if r.data.tags.get("rnnlab.confirm_changes")]
    assert len(changed) == 2 * 2  # two cells, two subsets, one seed
    assert {float(r.data.params["train.lr"]) for r in changed} == {GOOD_LR}
    md = CliRunner().invoke(app, ["report", "stuck", "--confirm-seeds", "1",
                                  "--confirm-splits", "1"])
    assert md.exit_code == 0 and "trained nothing" not in md.stderr
    assert "## Better levels the ablations found (validation)" in md.stdout
    assert "confirmation: " not in md.stderr  # every run found: nothing trained twice
    # the ablation's own report compares its one-seed arms on validation and sends to the
    # searched study's report for the test set, training nothing unless asked to
    own = CliRunner().invoke(app, ["report", "stuck-ablate-train.lr"])
    assert own.exit_code == 0, own.output
    assert "confirmation: " not in own.stderr and "## Confirmation on" not in own.stdout
    assert ("`rnnlab report stuck` confirms each stratum's best there, with any level this "
            "ablation found better") in own.stdout
    # it leads with its verdict; its best run is one arm's, one seed's, not a config to adopt
    verdict, best = (own.stdout.index("## What the ablation found (validation)"),
                     own.stdout.index("## Best single run: trial "))
    assert verdict < best and "## Best config" not in own.stdout
    assert "One seed's run, the best of this study's runs but not its finding (its verdict, " \
        "above, which `rnnlab report stuck` applies)" in own.stdout
    assert "## Best config: trial " in md.stdout and "## Effects of the searched" in md.stdout
    confirmed = CliRunner().invoke(app, ["report", "stuck-ablate-train.lr", "--confirm",
                                         "--confirm-seeds", "1", "--confirm-splits", "1",
                                         "--workers", "1"])
    assert confirmed.exit_code == 0, confirmed.output
    assert "## Confirmation on the test set" in confirmed.stdout
    assert "confirmation: " in confirmed.stderr  # its own runs, trained


def _config(trial: optuna.trial.FrozenTrial) -> tuple:
    config = dict(trial.user_attrs["config"])
    config.pop("train.threads", None)
    return tuple(sorted(config.items()))


@pytest.mark.parametrize(("args", "words"), [
    (["ghost", "--factor", "data.normalisation"], "no study named 'ghost'"),
    # the keys it offers are those an ablation takes: not the stratum (model.cell)
    ([NAME, "--factor", "model.hidden"], "factor model.hidden was not searched in study "
     "'searched'; ablate one of data.normalisation, train.l2, train.lr"),
    ([NAME, "--factor", "model.cell"], "factor model.cell is a stratum"),
    ([NAME, "--factor", "train.lr", "--levels", "5e-3,0.5"],
     "level 0.5 of train.lr is outside what the study searched"),
    ([NAME, "--factor", "data.normalisation", "--levels", "none,zscore"],
     "level 'zscore' of data.normalisation is outside"),
    ([NAME, "--factor", "data.normalisation", "--seeds", "1"], "--seeds 1: seeds"),
])
def test_bad_ablations_are_one_line_and_create_nothing(searched_read_only, args, words):
    searched = searched_read_only
    before = load_study(searched.storage, NAME).study_name
    names = {s.study_name for s in optuna.get_all_study_summaries(
        open_storage(searched.storage))}
    result = CliRunner().invoke(app, ["ablate", *args, "--storage", searched.storage])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnlab: error: ") and words in lines[0], \
        lines
    assert before == NAME and {s.study_name for s in optuna.get_all_study_summaries(
        open_storage(searched.storage))} == names


def test_a_specs_ablate_section_runs_once_the_search_is_done(tmp_path, mlflow_db):
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["study"].update(name="with-ablation", n_trials=2, strata=["model.cell"],
                        pruner={"name": "none"})
    raw["ablate"] = [{"factor": "data.normalisation", "seeds": 2}]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["sweep", "s.yaml", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "ablation of data.normalisation" in result.stderr
    derived = load_study("rnnlab.journal", "with-ablation-ablate-data.normalisation")
    assert len(derived.get_trials()) == 2 * 2 * 2  # cells x levels x seeds
    assert {t.state.name for t in derived.get_trials()} == {"COMPLETE"}


def test_a_sweeps_ablations_run_on_as_many_workers_a_gpu_as_its_search(tmp_path, mlflow_db,
                                                                       monkeypatch):
    """--trials-per-gpu places the ablations a spec asks for as it places the search: they ran
    on one worker per GPU whatever the sweep was given (measured on an H200: 21 runs in 3 min
    23 s on one worker where the search's 27 took 69 s on eight). This machine has no GPU, so
    the placement is told of one while the spec trains on the CPU (an explicit device)."""
    monkeypatch.setattr("rnnlab.train.auto_gpus", lambda device: 1)
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["study"].update(name="on-gpus", n_trials=2, strata=["model.cell"],
                        pruner={"name": "none"})
    raw["ablate"] = [{"factor": "train.l2", "levels": [0.0], "seeds": 2}]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["sweep", "s.yaml", "--trials-per-gpu", "2"])
    assert result.exit_code == 0, result.output
    assert "ablation of train.l2: 2 local worker(s) x " in result.stderr
    assert "on cuda:0 (2) (the default: --workers N or --trials-per-gpu N" in result.stderr
    for name in ("on-gpus", "on-gpus-ablate-train.l2"):
        assert load_study("rnnlab.journal", name).user_attrs["rnnlab:workers_started"] == 2


def test_an_ablation_planned_from_the_exported_report_is_the_one_the_store_plans(searched):
    # docs/results/ablate_from_report.py: the search's store gone, its JSON report and spec
    # plan the same derived study, and rnnlab's sweep runs it into another store
    out = searched.folder / "report.json"
    result = CliRunner().invoke(app, ["report", NAME, "--format", "json", "--no-confirm",
                                      "--out", str(out), "--storage", searched.storage])
    assert result.exit_code == 0, result.output
    config = AblationConfig(factor="train.l2", levels=[1e-4], seeds=2)
    from_store = ablation_spec(searched.storage, NAME, config)
    script = Path(__file__).resolve().parents[2] / "docs/results/ablate_from_report.py"
    done = subprocess.run(
        [sys.executable, str(script), str(searched.folder / "spec.yaml"), str(out),
         "--factor", "train.l2", "--levels", "1e-4", "--seeds", "2",
         "--storage", str(searched.folder / "elsewhere.journal"), "--workers", "1"],
        capture_output=True, text=True, timeout=300, env=searched.env(),
        cwd=searched.folder)
    assert done.returncode == 0, done.stderr[-3000:]
    derived = load_study(str(searched.folder / "elsewhere.journal"), from_store.study.name)
    assert derived.user_attrs["spec"]["study"]["ablation"] == from_store.model_dump(
        mode="json")["study"]["ablation"]
    trials = derived.get_trials()
    assert len(trials) == 2 * 2 * 2 and {t.state.name for t in trials} == {"COMPLETE"}
    assert sorted(map(_planned, trials)) == sorted(
        tuple(sorted(p.items())) for p in from_store.study.ablation.trials)


def _planned(trial: optuna.trial.FrozenTrial) -> tuple:
    return tuple(sorted(trial.params.items()))


@pytest.mark.parametrize(("report", "words"), [
    ({"study": "another"}, "is not a JSON report"),
    (None, "is not a JSON report (FileNotFoundError"),
    ({"study": "another", "best": {}, "top": [], "per_cell": [], "per_stratum": []},
     "reports study 'another', not the spec's"),
    ({"study": NAME, "best": {"number": 0}, "top": [], "per_cell": [],
      "per_stratum": [{"name": "model.cell=rnn", "best_trial": 7}]},
     "lists no params for the best trial of ['model.cell=rnn']"),
])
def test_a_report_that_cannot_plan_the_ablation_is_one_line(searched_read_only, tmp_path,
                                                            report, words):
    searched = searched_read_only
    path = tmp_path / "report.json"
    if report is not None:
        path.write_text(json.dumps(report))
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parents[2] /
                             "docs/results/ablate_from_report.py"),
         str(searched.folder / "spec.yaml"), str(path), "--factor", "train.l2",
         "--storage", str(tmp_path / "elsewhere.journal")],
        capture_output=True, text=True, timeout=120, env=searched.env(), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("ablate_from_report: error: ") and words in line, line
    assert not (tmp_path / "elsewhere.journal").exists()


def test_an_ablations_strata_show_what_its_plan_gives_each(tmp_path, monkeypatch, mlflow_db):
    # the rnn's best already has the level asked for, so its stratum gets one level's arms and
    # the gru's two: 2 and 4 of 6, where a search's strata would share 3 and 3
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["study"].update(name="uneven", n_trials=2, strata=["model.cell"], pruner={"name": "none"})
    build_study(tmp_path, raw, [{"model.cell": "rnn", "data.normalisation": "none"},
                                {"model.cell": "gru", "data.normalisation": "per_pixel"}])
    monkeypatch.chdir(tmp_path)
    final = ablate("rnnlab.journal", "uneven", AblationConfig(
        factor="data.normalisation", levels=["none"], seeds=2), workers=1)
    assert final.finished == 6
    [status] = study_status("rnnlab.journal", final.name)
    assert [(s.name, s.share, s.finished) for s in status.strata] == [
        ("model.cell=rnn", 2, 2), ("model.cell=gru", 4, 4)]
    report = CliRunner().invoke(app, ["report", final.name, "--no-confirm"])
    assert report.exit_code == 0, report.output
    assert "ablation's arms of that stratum's best config" in report.stdout
    assert "shared out equally" not in report.stdout  # what a search's strata do


def test_the_searched_report_lists_its_ablations(tmp_path, monkeypatch, mlflow_db):
    # a study that does not search the cell: its ablation has no cell's best to apply a level
    # to, and the searched study's report sends to the ablation's own for the verdict
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    del raw["search"]["model.cell"]
    raw["study"].update(name="gru-only", n_trials=2, pruner={"name": "none"})
    build_study(tmp_path, raw)
    monkeypatch.chdir(tmp_path)
    made = ablate("rnnlab.journal", "gru-only", AblationConfig(factor="data.normalisation",
                                                               seeds=2), workers=1)
    md = CliRunner().invoke(app, ["report", "gru-only", "--no-confirm"])
    assert md.exit_code == 0, md.output
    assert (f"- {made.name} (data.normalisation, 4 of 4 arms): its verdict is in its own "
            f"report (`rnnlab report {made.name}`)") in md.stdout


def test_an_l2_ablation_of_a_best_with_almost_no_penalty_says_what_is_left_open(
        tmp_path, monkeypatch, mlflow_db):
    """Levels 0 and a best's 2e-6 compare the same penalty twice: the reports say the question
    is open and how to ask it (a level at the middle of the searched range, as for a best
    trained without the penalty), for that cell only."""
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["train"]["checkpoint_every"] = 1
    raw["study"].update(name="weak", n_trials=2, strata=["model.cell"], pruner={"name": "none"})
    build_study(tmp_path, raw, [{"model.cell": "rnn", "train.l2": 2e-6},
                                {"model.cell": "gru", "train.l2": 5e-4}])
    monkeypatch.chdir(tmp_path)
    final = ablate("rnnlab.journal", "weak", AblationConfig(factor="train.l2", seeds=2),
                   workers=1)
    own = CliRunner().invoke(app, ["report", final.name, "--format", "json"])
    assert own.exit_code == 0, own.output
    middle = (1e-6 * 1e-3) ** 0.5
    assert [(w["cell"], w["level"]) for w in json.loads(own.stdout)["weak"]] == [
        ("rnn", pytest.approx(2e-6))]
    text = (f"its levels for rnn (at most 2e-06) all lie below the middle of the searched "
            f"range ({middle:.3g}, the level an ablation takes when the best trained without "
            "the penalty)")
    md = CliRunner().invoke(app, ["report", final.name]).stdout
    assert f"Not settled: {text}" in md and "gru (at most" not in md
    assert f"ablate again with --levels 0,{middle:.3g}" in md
    searched = CliRunner().invoke(app, ["report", "weak", "--no-confirm"]).stdout
    assert text in searched.replace("\n", " ")
    # the level it suggests is not weak: an ablation at it would settle the question
    plan = {"factor": "train.l2", "trials": [{"model.cell": "rnn", "train.l2": v}
                                             for v in (0.0, 2e-6, middle)]}
    assert weak_penalties(plan, raw["search"]) == ()
    assert weak_penalties({**plan, "factor": "train.lr"}, raw["search"]) == ()  # no zero_below


def test_delete_takes_a_derived_study_and_its_runs_so_it_can_be_planned_again(searched):
    """The reports' advice, followed: an ablation that asked too little is deleted (its study
    and its MLflow runs) and planned again with other levels; the searched study, which it was
    derived from, is refused while it exists, and asking first deletes nothing."""
    made = ablate(searched.storage, NAME, AblationConfig(factor="train.l2", seeds=2), workers=1)
    client = MlflowClient()
    ours = {t.user_attrs["mlflow_run_id"] for t in load_study(searched.storage, made.name)
            .get_trials()}
    theirs = {t.user_attrs["mlflow_run_id"] for t in load_study(searched.storage, NAME)
              .get_trials()}
    cli = ["--storage", searched.storage]
    refused = CliRunner().invoke(app, ["delete", NAME, "--yes", *cli])
    assert refused.exit_code == 2
    assert refused.stderr.strip() == (
        f"rnnlab: error: study {NAME!r} has studies derived from it ({made.name}): delete "
        "those first (`rnnlab delete NAME` for each)")
    asked = CliRunner().invoke(app, ["delete", made.name, *cli], input="n\n")
    assert asked.exit_code == 1 and made.name in study_names(searched.storage)
    assert f"Delete study {made.name!r}: {made.finished} trial(s) and {made.finished + 1} " \
        "MLflow run(s)?" in asked.stderr

    done = CliRunner().invoke(app, ["delete", made.name, "--yes", *cli])
    assert done.exit_code == 0, done.output
    assert set(study_names(searched.storage)) == {NAME}
    assert {client.get_run(r).info.lifecycle_stage for r in ours} == {"deleted"}
    assert {client.get_run(r).info.lifecycle_stage for r in theirs} == {"active"}
    again = CliRunner().invoke(app, ["ablate", NAME, "--factor", "train.l2", "--levels",
                                     "0,1e-4", "--seeds", "2", "--workers", "1", *cli])
    assert again.exit_code == 0, again.output
    levels = {t.params["train.l2"] for t in load_study(searched.storage, made.name).get_trials()}
    assert {0.0, 1e-4} <= levels


def test_delete_on_postgresql_with_mlflow_there_too(tmp_path, databases, monkeypatch):
    optuna_url, mlflow_url = databases
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_url)
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["study"].update(name="on-pg", n_trials=2, pruner={"name": "none"})
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    swept = CliRunner().invoke(app, ["sweep", "s.yaml", "--workers", "1",
                                     "--storage", optuna_url])
    assert swept.exit_code == 0, swept.output
    runs = [t.user_attrs["mlflow_run_id"] for t in load_study(optuna_url, "on-pg").get_trials()]
    done = CliRunner().invoke(app, ["delete", "on-pg", "--yes", "--storage", optuna_url])
    assert done.exit_code == 0, done.output
    assert "deleted study 'on-pg': 2 trial(s) and 3 MLflow run(s)" in done.stderr
    assert study_names(optuna_url) == []
    assert {MlflowClient().get_run(r).info.lifecycle_stage for r in runs} == {"deleted"}


def test_pruner_settings_replayed_on_a_study_by_the_docs_script(searched_read_only, capsys):
    """docs/results/replay_pruner.py: any settings replayed on a study's complete trials, a
    row per stratum; bad settings or an unknown study are one line, exit code 2."""
    searched = searched_read_only
    path = Path(__file__).resolve().parents[2] / "docs/results/replay_pruner.py"
    spec = importlib.util.spec_from_file_location("replay_pruner", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    run = ["--storage", searched.storage, "--tracking-uri", searched.uri]
    assert script.main([*run, NAME, '{"name": "median", "n_startup_trials": 1, '
                        '"n_warmup_steps": 0}', '{"name": "hyperband"}']) == 0
    out = capsys.readouterr().out
    rows = [r for r in out.splitlines() if r.startswith("| median")]
    assert [r.split(" | ")[1] for r in rows] == ["model.cell=rnn", "model.cell=gru"]
    assert all(r.split(" | ")[2] == "2" for r in rows)  # each stratum's complete trials
    assert "| hyperband | - | - | not replayed" in out
    for args, words in (([NAME, '{"name": "median", "patience": 0}'], "patience"),
                        ([NAME, "{not json"], "Expecting property name"),
                        (["nope", "{}"], "no study named 'nope'")):
        assert script.main([*run, *args]) == 2
        bad = capsys.readouterr()
        [line] = bad.err.splitlines()
        assert bad.out == "" and line.startswith("replay_pruner: error: ") and words in line
