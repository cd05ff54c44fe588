"""Reading a study and its MLflow runs back into frames (rnnlab.analysis.frames), on a real tiny
study."""

from __future__ import annotations

import math

import pytest
from mlflow.tracking import MlflowClient

from rnnlab import files
from rnnlab.analysis import frames as results
from rnnlab.core.study_spec import PrunerConfig
from rnnlab.errors import RnnlabError
from rnnlab.storage.adapter import load_study


def test_trials_frame_has_every_trial_with_its_run(study):
    df = results.trials_frame(study.storage, study.name)
    trials = load_study(study.storage, study.name).trials
    assert list(df["number"]) == [t.number for t in trials]
    assert list(df["state"]) == [t.state.name for t in trials]
    assert df["mlflow_run_id"].notna().all()
    assert {"params_model.cell", "params_train.lr", "params_train.l2"} <= set(df.columns)


SCHEMA = ["number", "value", "state", "datetime_start", "datetime_complete", "duration_s",
          "params_model.cell", "params_train.lr", "params_data.normalisation", "params_train.l2",
          "mlflow_run_id", "reason", "worker", "retries", "retry_of", "resume_run_id",
          "resumed_from_epoch", "replays", "placement"]


def test_the_trials_table_has_one_schema_whatever_the_trials_went_through(study, tmp_path):
    """No retry, no placement, even no trial at all: the same columns, in the same order."""
    assert list(results.trials_frame(study.storage, study.name).columns) == SCHEMA
    import optuna

    from rnnlab.storage.adapter import open_storage
    from rnnlab.storage.keys import ATTR_SPEC

    journal = str(tmp_path / "empty.journal")  # not the shared study's: others read it
    empty = optuna.create_study(study_name="empty", storage=open_storage(journal))
    empty.set_user_attr(ATTR_SPEC, load_study(study.storage, study.name).user_attrs[ATTR_SPEC])
    assert list(results.trials_frame(journal, "empty").columns) == SCHEMA


def test_curves_frame_equals_each_runs_metric_history(study):
    curves = results.curves_frame(study.storage, study.name, tracking_uri=study.uri)
    assert list(curves.columns) == ["number", "epoch", "metric", "value"]
    client = MlflowClient(study.uri)
    for t in load_study(study.storage, study.name).trials:
        for metric in ("val_acc", "val_loss"):
            history = sorted((m.step, m.value) for m in client.get_metric_history(
                t.user_attrs["mlflow_run_id"], metric))
            mine = curves[(curves.number == t.number) & (curves.metric == metric)]
            assert list(zip(mine.epoch, mine.value, strict=True)) == history


def test_val_acc_curves_match_what_optuna_was_told(frames, study):
    """The two stores agree: each epoch's val_acc in MLflow is the trial's reported value."""
    for t in load_study(study.storage, study.name).trials:
        c = frames.curves[(frames.curves.number == t.number) & (frames.curves.metric == "val_acc")]
        assert dict(zip(c.epoch, c.value, strict=True)) == pytest.approx(t.intermediate_values)
        # what the pruner saw, which its replay judges by
        s = frames.steps[frames.steps.number == t.number]
        assert dict(zip(s.step, s.value, strict=True)) == t.intermediate_values
    # a search's trials are judged by its own pruner (the spec's, defaults filled in)
    assert frames.judged_by == (study.name, {
        **PrunerConfig().model_dump(mode="json"), "n_startup_trials": 4, "n_warmup_steps": 0})


def test_study_frames_meta_finals_and_importances(frames, study):
    assert (frames.name, frames.metric, frames.direction, frames.budget) == (
        study.name, "val_acc", "maximize", 6)
    assert frames.search == ("model.cell", "train.lr", "data.normalisation", "train.l2")
    assert frames.log_keys == ("train.lr", "train.l2")
    assert frames.counts()["COMPLETE"] >= 2
    finals = frames.finals.set_index("number")
    for number, c in frames.curves[frames.curves.metric == "val_acc"].groupby("number"):
        assert finals.loc[number, "epochs"] == c.epoch.max()
        assert finals.loc[number, "final_val_acc"] == c.sort_values("epoch").value.iloc[-1]
    assert set(frames.importances["param"]) <= set(frames.search)
    assert math.isclose(frames.importances["importance"].sum(), 1.0, abs_tol=1e-6)
    assert (frames.importances["low"] <= frames.importances["importance"] + 1e-9).all()
    assert frames.importance_note.startswith("fANOVA over ")
    table = frames.table(("COMPLETE",))
    assert (table["state"] == "COMPLETE").all() and {"model.cell", "final_val_acc"} <= set(table)


def test_frames_without_curves_have_the_same_finals(frames, study):
    """What draws no curve (a report's tables) reads each trial's last epoch only."""
    lean = results.study_frames(study.storage, study.name, tracking_uri=study.uri,
                                metrics=("val_acc", "val_loss"), curves=False)
    assert lean.curves.empty and list(lean.curves.columns) == list(frames.curves.columns)
    full = frames.finals[list(lean.finals.columns)]
    assert lean.finals.equals(full)


def test_unknown_study_and_missing_runs_are_one_line_errors(study, tmp_path):
    with pytest.raises(RnnlabError, match="no study named 'nope'"):
        results.study_frames(study.storage, "nope", tracking_uri=study.uri)
    other = f"sqlite:///{tmp_path}/other.db"  # no store there: reading makes none
    with pytest.raises(RnnlabError, match="does not exist: nothing was tracked here"):
        results.study_frames(study.storage, study.name, tracking_uri=other)
    assert not (tmp_path / "other.db").exists()
    MlflowClient(other).search_experiments()  # a store where the sweep never ran
    with pytest.raises(RnnlabError, match="is not in tracking store") as err:
        results.study_frames(study.storage, study.name, tracking_uri=other)
    assert "\n" not in str(err.value)


def test_atomic_write_leaves_nothing_behind(tmp_path):
    with pytest.raises(RnnlabError, match="does not exist"):
        files.atomic_write(tmp_path / "missing" / "x.html", lambda p: None)

    def boom(path):
        open(path, "w").write("partial")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        files.atomic_write(tmp_path / "x.html", boom)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RnnlabError, match="is a folder"):
        files.atomic_write(tmp_path, lambda p: None)
