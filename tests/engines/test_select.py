"""Each stratum's best chosen on fresh seeds, on real stores: the derived study trains each
stratum's top trials again with fresh paired seeds, the best mean is chosen (not the luckiest
single run), the ablations start from the choice and after its seeds, the report names and
exports it, it resumes after a Ctrl-C with its plan whole, and every bad input is one line."""

from __future__ import annotations

import collections
import importlib.util
import json
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from support import SPEC, build_study, cut_then_resumed, run_enqueued
from typer.testing import CliRunner

from rnnlab.cli.app import app
from rnnlab.core.selection import Candidate, chosen
from rnnlab.core.study_spec import AblationConfig, SelectConfig, StudySpec, load_study_spec
from rnnlab.engines.ablate import ablate
from rnnlab.engines.select import select
from rnnlab.errors import RnnlabError
from rnnlab.storage.adapter import load_study, open_storage, stratum_study
from rnnlab.storage.keys import trained_params
from rnnlab.study.ablation import ablation_spec, planned_spec
from rnnlab.study.selection import planned_selection
from rnnlab.study.status import study_status

NAME = "searched"
CELLS = ("rnn", "gru")


def _raw(name: str = NAME, n_trials: int = 6) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["train"]["checkpoint_every"] = 1
    raw["study"].update(name=name, n_trials=n_trials, strata=["model.cell"],
                        pruner={"name": "none"})
    return raw


@pytest.fixture
def searched(tmp_path, monkeypatch, mlflow_db):
    """A finished stratified search (2 cells x 3 trials) in this test's folder."""
    study = build_study(tmp_path, _raw())
    monkeypatch.chdir(tmp_path)
    return study


def _top(storage: str, cell: str, k: int) -> list[optuna.trial.FrozenTrial]:
    study = load_study(storage, NAME)
    done = stratum_study(study, {"model.cell": cell}, study.sampler).get_trials(
        states=(optuna.trial.TrialState.COMPLETE,))
    return sorted(done, key=lambda t: (-t.value, t.number))[:k]


def _means(storage: str, derived: str) -> dict[tuple, list[float]]:
    """The selection's complete runs: (cell, lr, normalisation, l2) -> values, seed order."""
    runs = collections.defaultdict(dict)
    for t in load_study(storage, derived).get_trials(states=(
            optuna.trial.TrialState.COMPLETE,)):
        p = t.params
        runs[p["model.cell"], p["train.lr"], p["data.normalisation"], p["train.l2"]][
            p["train.seed"]] = t.value
    return {k: [v[s] for s in sorted(v)] for k, v in runs.items()}


def _script(name: str):
    """A script of docs/results, imported (its folder on the path, as when it runs)."""
    folder = Path(__file__).resolve().parents[2] / "docs/results"
    sys.path.insert(0, str(folder))
    try:
        module = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        script = importlib.util.module_from_spec(module)
        module.loader.exec_module(script)
        return script
    finally:
        sys.path.remove(str(folder))


def load_study_spec_of(storage: str, name: str):
    """The plan a derived study was stored with."""
    return StudySpec.model_validate(load_study(storage, name).user_attrs["spec"]).study.selection


def _key(params: dict) -> tuple:
    return (params["model.cell"], params["train.lr"], params["data.normalisation"],
            params["train.l2"])


def test_the_rule_takes_the_best_mean_over_fresh_seeds_not_the_luckiest_search_run():
    def cand(trial, stratum, search, values):
        return Candidate(trial, {"model.cell": stratum}, search, {}, dict(enumerate(values, 1)))

    lucky = cand(0, "gru", 0.97, [0.90, 0.91])  # the search's best: one lucky run
    steady = cand(1, "gru", 0.95, [0.94, 0.95])
    rnn = cand(2, "rnn", 0.80, [0.81, 0.79])
    assert chosen([lucky, steady, rnn], 2, "maximize") == [steady, rnn]
    assert chosen([lucky, steady, rnn], 2, "minimize") == [lucky, rnn]
    # not done until every candidate has every seed
    assert chosen([lucky, cand(1, "gru", 0.95, [0.99])], 2, "maximize") is None
    # a tie goes to the better search value
    assert chosen([cand(0, "gru", 0.9, [0.9, 0.9]), cand(1, "gru", 0.95, [0.9, 0.9])], 2,
                  "maximize")[0].trial == 1


def test_each_stratums_top_trials_train_again_on_fresh_seeds_and_ablations_start_from_the_choice(
        searched):
    final = select(searched.storage, NAME, SelectConfig(top=2, seeds=2), workers=1)
    assert final.name == f"{NAME}-select" and final.finished == 2 * 2 * 2
    derived = load_study(searched.storage, final.name).get_trials()
    assert {t.state.name for t in derived} == {"COMPLETE"}  # no pruning
    runs = _means(searched.storage, final.name)
    picks = {}
    for cell in CELLS:
        top = [trained_params(t) for t in _top(searched.storage, cell, 2)]
        # the stratum's two best trials of the search, each with fresh seeds 1 and 2 (the
        # search trained them with 0)
        assert sorted(k for k in runs if k[0] == cell) == sorted(_key(p) for p in top)
        assert {t.params["train.seed"] for t in derived if t.params["model.cell"] == cell} \
            == {1, 2}
        picks[cell] = max(top, key=lambda p: sum(runs[_key(p)]))  # the best mean
    # on these seeds the GRU's runner-up of the search has the better mean: the choice is
    # not the search's best, so what follows tells the two apart
    assert picks["gru"] != trained_params(_top(searched.storage, "gru", 1)[0])

    # the ablation trains the choices, with seeds after the selection's: 3, 4
    spec = ablation_spec(searched.storage, NAME, AblationConfig(factor="data.normalisation",
                                                                seeds=2))
    for cell in CELLS:
        arms = [t for t in spec.study.ablation.trials if t["model.cell"] == cell]
        assert {(t["train.lr"], t["train.l2"]) for t in arms} == {
            (picks[cell]["train.lr"], picks[cell]["train.l2"])}
        assert {t["train.seed"] for t in arms} == {3, 4}

    # the report names the choices each cell's best, shows the selection, and exports it
    out = searched.folder / "report.json"
    result = CliRunner().invoke(app, ["report", NAME, "--format", "json", "--no-confirm",
                                      "--storage", searched.storage, "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert {r["cell"]: _key(r["params"]) for r in report["per_cell"]} == {
        c: _key(p) for c, p in picks.items()}
    sel = report["selection"]
    assert sel["done"] and sel["seeds"] == 2 and sel["top"] == 2 and len(sel["rows"]) == 4
    assert [lead["n"] for lead in sel["leads"]] == [2, 2]
    means = {c: sum(runs[_key(p)]) / 2 for c, p in picks.items()}
    assert report["best"]["cell"] == max(means, key=means.get)
    # docs/results/{ablate,select}_from_report.py plan from the JSON report what the store
    # plans (the report lists all six trials)
    searched_spec = load_study_spec(searched.folder / "spec.yaml")
    ablate_script, select_script = _script("ablate_from_report"), _script("select_from_report")
    planned = planned_spec(searched_spec, searched_spec.model_dump(mode="json"),
                           ablate_script.bests(report, searched_spec),
                           AblationConfig(factor="data.normalisation", seeds=2),
                           after=ablate_script.selection(report)["seeds"])
    assert planned.study.ablation.trials == spec.study.ablation.trials
    selection = planned_selection(searched_spec, searched_spec.model_dump(mode="json"),
                                  select_script.listed(report, searched_spec),
                                  SelectConfig(top=2, seeds=2))
    assert selection.study.selection == load_study_spec_of(searched.storage, final.name)
    md = CliRunner().invoke(app, ["report", NAME, "--no-confirm", "--storage",
                                  searched.storage])
    assert "## Each stratum's best, chosen on fresh seeds (validation)" in md.stdout
    assert "paired over 2 seed(s)" in md.stdout
    # the selection's own report shows the choice too, and says its trials are single runs
    own = CliRunner().invoke(app, ["report", final.name, "--no-confirm", "--storage",
                                   searched.storage])
    assert own.exit_code == 0, own.output
    assert "This study is the selection itself" in own.stdout
    assert own.stdout.count("| yes |") == 2  # one choice a stratum


def test_an_ablation_a_later_selection_moved_a_best_from_is_reported_stale_there(searched):
    made = ablate(searched.storage, NAME, AblationConfig(factor="data.normalisation", seeds=2),
                  workers=1)

    def ablations() -> list[dict]:
        out = searched.folder / "report.json"
        result = CliRunner().invoke(app, ["report", NAME, "--format", "json", "--no-confirm",
                                          "--out", str(out)])
        assert result.exit_code == 0, result.output
        return json.loads(out.read_text())["ablations"]

    [record] = ablations()
    assert (record["study"], record["factor"], record["finished"], record["planned"]) == (
        made.name, "data.normalisation", 8, 8)
    assert sorted(record["cells"]) == sorted(CELLS) and record["stale"] == []
    searched_best = {c: trained_params(_top(searched.storage, c, 1)[0]) for c in CELLS}
    select(searched.storage, NAME, SelectConfig(top=2, seeds=2), workers=1)
    runs = _means(searched.storage, f"{NAME}-select")
    moved = [c for c in CELLS if max(
        (trained_params(t) for t in _top(searched.storage, c, 2)),
        key=lambda p: sum(runs[_key(p)])) != searched_best[c]]
    assert "gru" in moved  # the fixture's GRU choice is the search's runner-up
    [record] = ablations()  # the arms of a moved best are not that cell's best's any more
    assert sorted(record["stale"]) == sorted(moved) and record["gains"] == []
    md = CliRunner().invoke(app, ["report", NAME, "--no-confirm"])
    assert (f"its arms of {', '.join(c for c in record['cells'] if c in moved)} are not of "
            f"that cell's best any more") in md.stdout
    assert f"delete it (`rnnlab delete {made.name}`) and ablate again" in md.stdout


@pytest.mark.slow
def test_an_interrupted_selection_resumes_and_runs_its_plan_exactly(searched):
    argv = [sys.executable, "-m", "rnnlab", "select", NAME, "--top", "2", "--seeds", "1",
            "--workers", "2"]
    derived = f"{NAME}-select"
    trials = cut_then_resumed(argv, searched.folder, searched.storage, derived)
    done = collections.Counter((_key(t.params), t.params["train.seed"])
                               for t in trials if t.state.name == "COMPLETE")
    assert done == {(_key(trained_params(t)), 1): 1 for c in CELLS
                    for t in _top(searched.storage, c, 2)}
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    once_more = select(searched.storage, NAME, SelectConfig(top=2, seeds=1), workers=1)
    assert once_more.finished == 4
    assert len(optuna.load_study(study_name=derived, storage=open_storage(
        searched.storage)).get_trials()) == len(trials)  # nothing trained again


@pytest.mark.parametrize("args, words", [
    (["ghost"], "no study named 'ghost'"),
    ([NAME, "--top", "1"], "--top 1: top: Input should be greater than or equal to 2"),
    ([NAME, "--seeds", "0"], "--seeds 0: seeds: Input should be greater than or equal to 1"),
])
def test_bad_selections_are_one_line_and_create_nothing(searched, args, words):
    names = {s.study_name for s in optuna.get_all_study_summaries(
        open_storage(searched.storage))}
    result = CliRunner().invoke(app, ["select", *args, "--storage", searched.storage])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnlab: error: ") and words in lines[0], \
        lines
    assert {s.study_name for s in optuna.get_all_study_summaries(
        open_storage(searched.storage))} == names


def test_a_selection_planned_otherwise_or_of_a_derived_study_is_refused(searched):
    made = select(searched.storage, NAME, SelectConfig(top=2, seeds=1), workers=1)
    before = len(load_study(searched.storage, made.name).get_trials())
    for args, words in ((["--top", "3"], f"selection study {made.name!r} exists with another "
                                         "plan"),
                        (["--seeds", "2"], f"(rnnlab delete {made.name})")):
        result = CliRunner().invoke(app, ["select", NAME, *args, "--storage",
                                          searched.storage])
        assert result.exit_code == 2, result.output
        [line] = result.stderr.strip().splitlines()
        assert words in line, line
    assert len(load_study(searched.storage, made.name).get_trials()) == before
    result = CliRunner().invoke(app, ["select", made.name, "--storage", searched.storage])
    assert result.exit_code == 2, result.output
    assert f"study {made.name!r} is derived from study {NAME!r}; give that one" in \
        result.stderr


def test_a_selection_the_search_went_on_past_is_stale_refused_and_not_reported_best(
        searched, monkeypatch):
    # top 4 of 3 complete trials a stratum: every trial the search adds is a new candidate
    made = select(searched.storage, NAME, SelectConfig(top=4, seeds=1), workers=1)
    assert made.finished == 2 * 3 and made.stale is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", searched.uri)
    run_enqueued(load_study_spec(searched.folder / "spec.yaml", n_trials=8), searched.storage)
    # status says so, for the selection only, in the overview and the study's own view
    stale = {s.name: s.stale for s in study_status(searched.storage)}
    assert "now trial(s) 0, " in stale.pop(f"{NAME}-select") and set(stale.values()) == {None}
    for args in ([], [f"{NAME}-select"]):
        shown = CliRunner().invoke(app, ["status", *args, "--storage", searched.storage])
        assert shown.exit_code == 0, shown.output
        assert " ".join(shown.stdout.split()).count(
            f"note: the selection of study '{NAME}' ({NAME}-select) was planned before its "
            f"search went on (model.cell=rnn's top 4 are now trial(s) 0, ") == 1, shown.stdout
    assert len(load_study(searched.storage, NAME).get_trials()) == 8  # one more a stratum
    names = {s.study_name for s in optuna.get_all_study_summaries(
        open_storage(searched.storage))}
    result = CliRunner().invoke(app, ["ablate", NAME, "--factor", "train.l2", "--storage",
                                      searched.storage])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("rnnlab: error: ") and "planned before its search went on (" \
        "model.cell=rnn's top 4 are now trial(s) 0, " in line and "delete it" in line, line
    assert {s.study_name for s in optuna.get_all_study_summaries(
        open_storage(searched.storage))} == names  # no ablation made from a stale choice
    # the report keeps the search's bests, shows the selection marked stale, chooses none
    out = searched.folder / "stale.json"
    result = CliRunner().invoke(app, ["report", NAME, "--format", "json", "--no-confirm",
                                      "--storage", searched.storage, "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    sel = report["selection"]
    assert not sel["done"] and "now trial(s)" in sel["stale"] and sel["leads"] == []
    assert not any(r["chosen"] for r in sel["rows"])
    assert {r["cell"]: r["number"] for r in report["per_cell"]} == {
        c: _top(searched.storage, c, 1)[0].number for c in CELLS}
    md = CliRunner().invoke(app, ["report", NAME, "--no-confirm", "--storage",
                                  searched.storage])
    assert "its choices are stale and not used" in md.stdout and "| yes |" not in md.stdout


def test_a_specs_select_section_runs_before_its_ablations(tmp_path, mlflow_db, monkeypatch):
    raw = _raw("with-selection", 4)
    raw["select"] = {"top": 2, "seeds": 1}
    raw["ablate"] = [{"factor": "data.normalisation", "seeds": 2}]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["sweep", "s.yaml", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert result.stderr.index("choosing each stratum's best of its top 2 on 1 fresh seeds") \
        < result.stderr.index("ablation of data.normalisation")
    selected = load_study("rnnlab.journal", "with-selection-select").get_trials()
    assert len(selected) == 2 * 2 * 1 and {t.state.name for t in selected} == {"COMPLETE"}
    arms = load_study("rnnlab.journal",
                      "with-selection-ablate-data.normalisation").get_trials()
    assert {t.params["train.seed"] for t in arms} == {2, 3}  # after the selection's seed 1
    for derived in ("with-selection-select", "with-selection-ablate-data.normalisation"):
        assert f"rnnlab report {derived} --format md" in result.stdout  # next to run


def test_an_ablation_of_a_study_whose_selection_has_not_run_is_one_line(tmp_path, mlflow_db,
                                                                        monkeypatch):
    raw = _raw("unselected", 2)
    raw["select"] = {"top": 2, "seeds": 1}
    study = build_study(tmp_path, raw)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RnnlabError, match="its spec's select:.*has not run"):
        ablation_spec(study.storage, "unselected", AblationConfig(factor="train.l2"))


@pytest.mark.parametrize("select, words", [
    ({"top": 1}, "select.top: Input should be greater than or equal to 2"),
    ({"seeds": 0}, "select.seeds: Input should be greater than or equal to 1"),
    ({"best": 2}, "select.best: unknown key"),
])
def test_a_bad_select_section_is_one_line(tmp_path, select, words):
    raw = _raw()
    raw["select"] = select
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(RnnlabError, match=words):
        load_study_spec(tmp_path / "s.yaml")
