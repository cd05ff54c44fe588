"""Confirmation across training subsets: a config re-trained on the study's own subset and on
others it never saw (other split seeds), each with several seeds; the report keeps the two
sources of spread apart, and says so where only seeds can vary."""

from __future__ import annotations

import json

import pytest
import yaml
from mlflow.tracking import MlflowClient
from support import SPEC, build_study
from typer.testing import CliRunner

from rnnlab.analysis.frames import study_frames
from rnnlab.cli.app import app
from rnnlab.core.data import load_data
from rnnlab.reports.info import get_report_info, trial_config


@pytest.fixture
def env(study, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", study.uri)
    return study


def _images(x) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


def test_a_config_is_confirmed_on_other_subsets_that_share_no_test_image(env, tmp_path):
    result = CliRunner().invoke(app, [
        "report", env.name, "--storage", env.storage, "--format", "json", "--out", "r.json",
        "--confirm-splits", "1", "--confirm-seeds", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "r.json").read_text())
    frames = study_frames(env.storage, env.name, tracking_uri=env.uri)
    best = trial_config(frames, get_report_info(frames).best.number)
    own = best.data.split_seed
    [overall] = [c for c in data["confirmations"] if "best overall" in c["roles"]]
    assert list(zip(overall["splits"], overall["seeds"], strict=True)) == [
        (own, best.train.seed), (own, best.train.seed + 1),
        (own + 1, best.train.seed), (own + 1, best.train.seed + 1)]

    # two different training subsets, neither of them touching a test image (compared raw:
    # normalised pixels depend on the training subset's statistics)
    subsets = [load_data(best.data.model_copy(update={"split_seed": s, "normalisation": "none"}))
               for s in (own, own + 1)]
    trained = [_images(d.train_x) for d in subsets]
    assert trained[0] != trained[1]
    assert all(not (t & _images(subsets[0].test_x)) for t in trained)
    assert _images(subsets[0].test_x) == _images(subsets[1].test_x)  # one test set

    # both spreads, apart: the seeds on the study's subset, and the subsets' means
    acc = overall["test_acc"]
    assert overall["mean_test_acc"] == pytest.approx((acc[0] + acc[1]) / 2)
    assert overall["other_subset_means"] == [pytest.approx((acc[2] + acc[3]) / 2)]
    assert overall["optimism"] == pytest.approx(overall["mean_test_acc"]
                                                - overall["other_subset_means"][0])
    assert data["confirm_splits"] == 1 and data["subsets_note"] == ""
    client = MlflowClient(env.uri)
    splits = {r.data.tags["rnnlab.confirm_split"] for r in client.search_runs(
        [client.get_experiment_by_name(env.name).experiment_id],
        "tags.`rnnlab.kind` = 'confirm'")}
    assert {str(own), str(own + 1)} <= splits

    md = CliRunner().invoke(app, ["report", env.name, "--storage", env.storage,
                                  "--confirm-splits", "1", "--confirm-seeds", "2"]).stdout
    assert "test accuracy, 1 other subsets (mean ± std of their means" in md
    assert "optimism: the study's subset minus the others" in md


def test_a_study_on_every_image_is_confirmed_over_seeds_only_and_says_so(tmp_path, mlflow_db,
                                                                          monkeypatch):
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["data"].update(train_size=3500, val_size=500)  # all 4000 mnist-5k has for them
    raw["train"]["epochs"] = 1
    raw["study"].update(name="whole", n_trials=1)
    study = build_study(tmp_path, raw)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", study.uri)
    refused = CliRunner().invoke(app, ["report", "whole", "--storage", study.storage,
                                       "--confirm-splits", "2"])
    assert refused.exit_code == 2
    [line] = refused.stderr.strip().splitlines()
    assert line == ("rnnlab: error: --confirm-splits 2: the study trains and validates on all "
                    "4000 images mnist-5k has for them, so no other training subset can be "
                    "drawn; leave the flag out (only seeds vary)")
    result = CliRunner().invoke(app, ["report", "whole", "--storage", study.storage,
                                      "--confirm-seeds", "2"])
    assert result.exit_code == 0, result.output
    assert ("on the study's own training subset (only seeds vary: the study trains and "
            "validates on all 4000 images") in result.stdout
