"""Best-config reports: the gathered record, the YAML round trip through `rnnlab train`, the
confirmation runs on the test set (tracked, then reused), the offline HTML, and bad input."""

from __future__ import annotations

import dataclasses
import json
import re

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from support import TinyStudy, open_html
from typer.testing import CliRunner

from rnnlab.cli.app import app
from rnnlab.core.spec import RunConfig, apply_overrides, load_config
from rnnlab.reports.info import candidates, config_hash, get_report_info, trial_config
from rnnlab.storage.adapter import load_study, open_storage

TEST_SET = "1000 images held out of mnist-5k (fixed)"


@pytest.fixture
def env(study, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", study.uri)
    return study


def confirm_runs(study: TinyStudy) -> list:
    client = MlflowClient(study.uri)
    exp = client.get_experiment_by_name(study.name)
    return client.search_runs([exp.experiment_id], "tags.`rnnlab.kind` = 'confirm'")


def test_report_info_ranks_on_validation_and_picks_each_cells_best(frames, study):
    optuna_study = load_study(study.storage, study.name)
    info = get_report_info(frames)
    assert info.best.number == optuna_study.best_trial.number
    assert info.best.value == optuna_study.best_value
    values = [r.value for r in info.top]
    assert values == sorted(values, reverse=True)
    complete = [t for t in optuna_study.trials if t.state == TrialState.COMPLETE]
    for row in info.per_cell:
        same = [t for t in complete if t.user_attrs["config"]["model.cell"] == row.cell]
        assert row.value == max(t.value for t in same)
    effects = {e.key: e for e in info.effects}
    assert set(effects) == {"model.cell", "train.lr", "data.normalisation", "train.l2"}
    norm = effects["data.normalisation"]  # within each cell, never pooled over cells
    assert [dict(s.within) for s in norm.strata] == [{"model.cell": "rnn"}, {"model.cell": "gru"}]
    assert sum(lv.n for s in norm.strata for lv in s.levels) == len(complete)
    assert norm.support == "none"  # a random search varies lr with it: no verdict possible
    roles = dict((n, r) for r, n, _ in candidates(info))
    assert roles[info.best.number][0] == "best overall"
    assert len(roles) == len({r.cell for r in info.per_cell})


def test_yaml_report_is_the_best_config_and_trains_unchanged(env, frames, tmp_path):
    before = len(confirm_runs(env))
    result = CliRunner().invoke(app, ["report", env.name, "--storage", env.storage,
                                      "--format", "yaml", "--out", "best.yaml"])
    assert result.exit_code == 0, result.output
    best = load_study(env.storage, env.name).best_trial
    nested = apply_overrides({}, best.user_attrs["config"])
    assert load_config(tmp_path / "best.yaml") == RunConfig.model_validate(nested)
    assert len(confirm_runs(env)) == before  # the yaml format alone never trains
    result = CliRunner().invoke(app, ["train", "best.yaml", "--no-track", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["epochs"] == best.user_attrs["config"]["train.epochs"]


def test_an_exported_config_carries_no_machine_path(frames, tmp_path, mnist_dir, monkeypatch):
    """A study that named its data folder exports a config without it: the file runs on any
    machine, given --data-dir or $RNNLAB_DATA_DIR."""
    import dataclasses

    import yaml

    info = get_report_info(frames)
    here = {**info.best_config, "data": {**info.best_config["data"], "source": "mnist",
                                         "dir": str(mnist_dir)}}
    text = dataclasses.replace(info, best_config=here).best_yaml
    assert str(mnist_dir) not in text and text.startswith("# data.dir left out")
    assert yaml.safe_load(text)["data"]["dir"] is None
    (tmp_path / "best.yaml").write_text(text)
    monkeypatch.setenv("RNNLAB_DATA_DIR", str(mnist_dir))
    assert load_config(tmp_path / "best.yaml", ["train.epochs=1"]).data.dir is None
    assert info.best_yaml == dataclasses.replace(info, best_config=info.best_config).best_yaml
    assert not info.best_yaml.startswith("#")  # nothing left out: no note


def test_yaml_of_each_cells_best_config(env, frames, tmp_path):
    info = get_report_info(frames)
    runner = CliRunner()
    for row in info.per_cell:
        result = runner.invoke(app, ["report", env.name, "--storage", env.storage, "--format",
                                     "yaml", "--cell", row.cell, "--out", f"{row.cell}.yaml"])
        assert result.exit_code == 0, result.output
        assert load_config(tmp_path / f"{row.cell}.yaml") == trial_config(frames, row.number)
    missing = runner.invoke(app, ["report", env.name, "--storage", env.storage, "--format",
                                  "yaml", "--cell", "lstm"])
    assert missing.exit_code == 2 and "--cell lstm: no complete trial of that cell" in (
        missing.output)
    assert not (tmp_path / "lstm.yaml").exists()


def _tag(run, key: str) -> int:
    return int(run.data.tags[f"rnnlab.confirm_{key}"])


def test_confirmation_is_tracked_on_the_test_set_and_reused(env, frames, tmp_path):
    runner = CliRunner()
    first = runner.invoke(app, ["report", env.name, "--storage", env.storage, "--format", "md",
                                "--confirm-seeds", "2", "--confirm-splits", "2", "--workers", "2"])
    assert first.exit_code == 0, first.output
    assert "run(s) on 2 local worker(s) x " in first.stderr  # trained in parallel
    total = re.search(r"confirmation: (\d+) run\(s\) on 2 local", first.stderr).group(1)
    last = first.stderr.strip().splitlines()[-1]  # the whole count, whatever a poll last saw
    assert re.fullmatch(rf"confirmation: {total}/{total} run\(s\) trained in [0-9hms]+", last), last
    info = get_report_info(frames)
    own = trial_config(frames, info.best.number).data.split_seed
    wanted = {(n, own + j, trial_config(frames, n).train.seed + i) for _, n, _ in candidates(info)
              for j in range(3) for i in range(2)}
    runs = confirm_runs(env)
    seen = {(_tag(r, "trial"), _tag(r, "split"), _tag(r, "seed")) for r in runs}
    assert wanted <= seen
    parent = load_study(env.storage, env.name).user_attrs["mlflow_parent_run_id"]
    for r in runs:
        assert r.data.tags["mlflow.parentRunId"] == parent
        assert r.data.tags["data.test_set"] == TEST_SET
        assert 0 <= r.data.metrics["test_acc"] <= 1
        config = trial_config(frames, _tag(r, "trial"))
        config = config.model_copy(update={
            "data": config.data.model_copy(update={"split_seed": _tag(r, "split")}),
            "train": config.train.model_copy(update={"seed": _tag(r, "seed")})})
        assert r.data.tags["rnnlab.config_hash"] == config_hash(config)
        # the tiny study's objective is the best epoch: its weights are the ones scored
        assert r.data.tags["rnnlab.confirm_weights"] == "best validation val_acc epoch"
        assert 1 <= r.data.metrics["weights_epoch"] <= config.train.epochs
    md = first.stdout
    assert f"Test set: {TEST_SET}" in md and "(validation" in md
    assert "test accuracy, the study's subset (mean ± std of 2 seeds" in md and "```yaml" in md
    # A second report trains nothing: every confirmation run is found by its config hash.
    second = runner.invoke(app, ["report", env.name, "--storage", env.storage, "--format",
                                 "json", "--confirm-seeds", "2", "--confirm-splits", "2",
                                 "--out", "r.json"])
    assert second.exit_code == 0, second.output
    assert len(confirm_runs(env)) == len(runs)
    data = json.loads((tmp_path / "r.json").read_text())
    assert [c["reused"] for c in data["confirmations"]] == [6] * len(candidates(info))
    assert all(c["test_set"] == TEST_SET for c in data["confirmations"])
    assert data["best"]["number"] == info.best.number
    # md and json draw the same effect records; two cells were confirmed on the test set
    assert [e["verdict"] for e in data["effects"]] == [e.verdict for e in info.effects]
    assert all(html_free(e.verdict) in md.replace("\\|", "|") for e in info.effects)
    gaps = data["cell_gaps_test"]
    assert len(gaps) == 1 and gaps[0]["n"] == 2 and gaps[0]["low"] <= gaps[0]["diff"]
    assert "Cells on the test set" in md


def html_free(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_html_report_embeds_its_figures_and_opens_offline(env, browser, tmp_path):  # noqa: F811
    result = CliRunner().invoke(app, ["report", env.name, "--storage", env.storage,
                                      "--format", "html", "--confirm-seeds", "1",
                                      "--confirm-splits", "1"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "reports" / f"{env.name}.html"
    check = open_html(browser, path)
    assert check.errors == []
    assert [u for u in check.requests if not u.startswith(("file:", "data:", "blob:"))] == []
    assert len(check.traces) == 3 and all(n > 0 for n in check.traces)
    assert "Confirmation on the test set" in check.text and TEST_SET in check.text
    assert "Effects of the searched factors" in check.text and "No verdict" in check.text


def test_bad_input_is_one_line_exit_2_before_any_training(env, tmp_path):
    empty = tmp_path / "empty.journal"
    s = optuna.create_study(study_name="empty", storage=open_storage(str(empty)))
    s.add_trial(create_trial(params={"model.cell": "rnn"}, state=TrialState.FAIL,
                             distributions={"model.cell": CategoricalDistribution(["rnn"])}))
    before = len(confirm_runs(env))
    for args, message in (
        (["report", "nope", "--storage", env.storage], "no study named 'nope'"),
        (["report", "empty", "--storage", str(empty)], "has no complete trial"),
        (["report", env.name, "--storage", env.storage, "--out",
          str(tmp_path / "missing" / "r.md")], "does not exist"),
        (["report", env.name, "--storage", env.storage, "--format", "pdf"],
         "unknown report format 'pdf'"),
        (["report", "nope", "--storage", env.storage, "--format", "html"], "no study named"),
        (["report", env.name, "--storage", env.storage, "--confirm-splits", "0"],
         "--confirm-splits 0: confirm on at least 1 other training subset"),
        (["report", env.name, "--storage", env.storage, "--confirm-seeds", "0"],
         "--confirm-seeds 0: confirm with at least 1 seed"),
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr
        assert "Traceback" not in result.output and result.stdout == ""
    assert not (tmp_path / "missing").exists() and not (tmp_path / "reports").exists()
    assert len(confirm_runs(env)) == before


def test_a_best_at_chance_is_said_to_be_no_config(frames, tmp_path, monkeypatch):
    """Three binomial standard deviations above the commonest digit's share, on the
    validation images the study had: below, no trial learned and the report says so."""
    from support import HOPELESS_LR, SPEC, build_study

    from rnnlab.reports import render

    info = get_report_info(frames)

    def said(value: float, **data) -> list[str]:
        best = dataclasses.replace(info.best, value=value)
        config = {**info.best_config, "data": {**info.best_config["data"], **data}}
        return render._at_chance(dataclasses.replace(info, best=best, best_config=config))

    assert said(0.9, val_size=1000) == [] and said(0.15, val_size=1000) == []  # up to 0.144
    assert "0.1300 is within noise of it on 1000 validation images (up to 0.144)" in \
        said(0.13, val_size=1000)[0]
    assert said(0.15, val_size=100) and said(0.15, split="tutorial", val_size=10) == []

    raw = {**SPEC, "study": {**SPEC["study"], "name": "hopeless", "n_trials": 2},
           "search": {"train.lr": {"choices": [HOPELESS_LR, HOPELESS_LR * 2]}}}
    hopeless = build_study(tmp_path, raw)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", hopeless.uri)
    md = CliRunner().invoke(app, ["report", "hopeless", "--storage", hopeless.storage,
                                  "--no-confirm", "--format", "md"])
    assert md.exit_code == 0, md.output
    assert "- at chance: answering the commonest digit scores about 0.11" in md.stdout
    assert "no trial of this study learned, so this is no config to adopt" in md.stdout
