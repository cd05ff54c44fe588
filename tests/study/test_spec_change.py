"""A study's base config is fixed once it exists: resuming it with a spec that could alter its
results is refused before anything is written; changes that cannot alter them only with
--allow-spec-change; --n-trials extends a study as ever. On real stores (journal + MLflow)."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from rnnlab.cli.app import app
from rnnlab.core.study_spec import StudySpec, load_study_spec
from rnnlab.errors import RnnlabError
from rnnlab.storage.adapter import open_storage
from rnnlab.storage.keys import ATTR_BUDGET, ATTR_SPEC
from rnnlab.study.spec_change import check_resume

NAME = "fixed"
SPEC = {
    "data": {"source": "mnist-5k", "train_size": 200, "val_size": 100, "patch": 28},
    "model": {"hidden": 8},
    "train": {"epochs": 1, "lr": 3e-3},
    "study": {"name": NAME, "n_trials": 1, "sampler": {"name": "random", "seed": 0},
              "pruner": {"name": "none"}},
    "search": {"model.cell": {"choices": ["rnn", "gru"]},
               "train.l2": {"low": 1e-7, "high": 1e-3, "log": True}},
}


def write_spec(path: Path, changes: dict | None = None) -> Path:
    """The tiny spec with ``{"dotted.key": value}`` changes; ``search.<key>`` takes a whole
    distribution, or None to drop the key."""
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    for dotted, value in (changes or {}).items():
        if dotted.startswith("search."):
            raw["search"][dotted.removeprefix("search.")] = value
            continue
        *parents, key = dotted.split(".")
        target = raw
        for part in parents:
            target = target[part]
        target[key] = value
    raw["search"] = {k: v for k, v in raw["search"].items() if v is not None}
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory, _mlflow_template) -> Path:
    """A folder holding the tiny study, run once through the CLI (journal + MLflow store)."""
    folder = tmp_path_factory.mktemp("made")
    shutil.copy(_mlflow_template, folder / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder}/mlflow.db")
        mp.setenv("RNNLAB_CACHE_DIR", str(folder / ".rnnlab-cache"))
        mp.delenv("RNNLAB_DATA_DIR", raising=False)
        result = CliRunner().invoke(app, ["sweep", str(write_spec(folder / "s.yaml"))])
        assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def here(made, tmp_path) -> Path:
    """This test's own copy of the study (the cwd), in its own stores."""
    for name in ("rnnlab.journal", "mlflow.db"):
        shutil.copy(made / name, tmp_path / name)
    return tmp_path


def stored() -> optuna.Study:
    return optuna.load_study(study_name=NAME, storage=open_storage("rnnlab.journal"))


def mlflow_runs() -> int:
    client = MlflowClient()
    return len(client.search_runs([client.get_experiment_by_name(NAME).experiment_id]))


def refused(args: list[str], *needles: str) -> str:
    """Run the command; assert it ends in one line naming ``needles``, with nothing written."""
    journal = Path("rnnlab.journal").read_bytes()
    spec, runs = stored().user_attrs[ATTR_SPEC], mlflow_runs()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnlab: error: study 'fixed' exists with "
                                                   "another spec"), result.stderr
    for needle in needles:
        assert needle in lines[0]
    assert Path("rnnlab.journal").read_bytes() == journal  # no trial, no attribute, nothing
    study = stored()
    assert len(study.trials) == 1 and study.user_attrs[ATTR_SPEC] == spec
    assert mlflow_runs() == runs
    return lines[0]


@pytest.mark.parametrize("changes, needle", [
    ({"data.normalisation": "global"}, "data.normalisation: per_pixel -> global"),
    ({"model.hidden": 16}, "model.hidden: 8 -> 16"),
    ({"train.epochs": 2, "train.lr": 1e-3}, "train.lr: 0.003 -> 0.001; train.epochs: 1 -> 2"),
    ({"search.train.lr": {"low": 1e-3, "high": 1e-2}},
     "search.train.lr: (none) -> {type: float, low: 0.001, high: 0.01, log: false}"),
    ({"search.train.l2": None}, "search.train.l2: {type: float, low: 1e-07"),
    ({"search.train.l2": {"low": 1e-7, "high": 1e-2, "log": True}},
     "search.train.l2.high: 0.001 -> 0.01"),
    ({"study.metric": "val_loss"}, "study.metric: val_acc -> val_loss"),
    ({"study.objective": "last"}, "study.objective: best -> last"),
    ({"study.direction": "minimize"}, "study.direction: maximize -> minimize"),
    ({"study.sampler.name": "tpe"}, "study.sampler.name: random -> tpe"),
    ({"study.sampler.seed": 1}, "study.sampler.seed: 0 -> 1"),
    ({"study.pruner.name": "median"}, "study.pruner.name: none -> median"),
], ids=lambda v: next(iter(v)) if isinstance(v, dict) else None)
def test_a_change_that_could_alter_results_is_refused_before_anything_is_written(
        here, changes, needle):
    line = refused(["sweep", str(write_spec(here / "s.yaml", changes))], needle,
                   "would alter its results", "new study.name")
    assert "--allow-spec-change" in line


def test_set_overrides_are_held_to_the_stored_spec_and_the_flag_never_accepts_them(here):
    path = write_spec(here / "s.yaml")
    refused(["sweep", str(path), "--set", "model.layers=2"], "model.layers: 1 -> 2")
    line = refused(["worker", str(path), "--set", "model.layers=2", "--set",
                    "study.max_retries=5", "--allow-spec-change"], "model.layers: 1 -> 2")
    assert "besides study.max_retries: 2 -> 5, which --allow-spec-change would accept" in line


def test_n_trials_extends_a_study_without_the_flag(here):
    result = CliRunner().invoke(app, ["sweep", str(write_spec(here / "s.yaml")),
                                      "--n-trials", "2"])
    assert result.exit_code == 0, result.output
    study = stored()
    assert len(study.trials) == 2 and study.user_attrs[ATTR_BUDGET] == 2
    assert study.user_attrs[ATTR_SPEC]["study"]["n_trials"] == 2
    assert mlflow_runs() == 3  # the study's run and its two trials


def test_a_change_that_cannot_alter_results_needs_the_flag(here):
    path = write_spec(here / "s.yaml", {"study.max_retries": 5, "study.timeout": 600})
    line = refused(["sweep", str(path)], "study.timeout: null -> 600",
                   "study.max_retries: 2 -> 5", "cannot alter its results",
                   "--allow-spec-change accepts them")
    assert "would alter" not in line
    runs = mlflow_runs()
    result = CliRunner().invoke(app, ["sweep", str(path), "--allow-spec-change"])
    assert result.exit_code == 0, result.output
    study = stored()
    assert study.user_attrs[ATTR_SPEC] == load_study_spec(path).model_dump(mode="json")
    assert len(study.trials) == 1 and mlflow_runs() == runs  # budget used: nothing to run
    # the accepted spec is the study's now: the same command resumes it without the flag
    assert CliRunner().invoke(app, ["sweep", str(path)]).exit_code == 0


def test_a_worker_on_another_machine_may_be_placed_elsewhere_with_the_flag(here):
    path = write_spec(here / "s.yaml", {"train.device": "cpu", "train.threads": 1})
    refused(["worker", str(path)], "train.device: auto -> cpu", "train.threads: null -> 1")
    result = CliRunner().invoke(app, ["worker", str(path), "--allow-spec-change"])
    assert result.exit_code == 0, result.output
    assert stored().user_attrs[ATTR_SPEC]["train"]["device"] == "cpu"


def test_a_study_made_outside_rnnlab_is_not_refused(tmp_path, mlflow_db):
    optuna.create_study(study_name=NAME, storage=open_storage("rnnlab.journal"),
                        direction="maximize")
    result = CliRunner().invoke(app, ["sweep", str(write_spec(tmp_path / "s.yaml"))])
    assert result.exit_code == 0, result.output
    assert stored().user_attrs[ATTR_SPEC]["model"]["hidden"] == 8  # held to it from now on


def test_worker_processes_keep_the_spec_their_sweep_stored(tmp_path, mlflow_db):
    """Several workers get CPU threads of their own: that placement is not the study's, so
    the same command resumes the study."""
    path = write_spec(tmp_path / "s.yaml", {"study.n_trials": 2})
    assert CliRunner().invoke(app, ["sweep", str(path), "--workers", "2"]).exit_code == 0
    assert stored().user_attrs[ATTR_SPEC]["train"]["threads"] is None
    result = CliRunner().invoke(app, ["sweep", str(path)])
    assert result.exit_code == 0, result.output


# --- the comparison itself ---------------------------------------------------------------------

def load(folder: Path, changes: dict | None = None) -> StudySpec:
    return load_study_spec(write_spec(folder / "c.yaml", changes))


def test_a_spec_stored_by_an_older_rnnlab_gets_todays_defaults(tmp_path):
    old = load(tmp_path).model_dump(mode="json")
    del old["study"]["max_failures_in_a_row"], old["study"]["pruner"]["p_threshold"]
    del old["data"]["std_floor"]
    check_resume(NAME, old, load(tmp_path))  # nothing differs once defaults fill in
    with pytest.raises(RnnlabError, match=r"data\.std_floor: 0\.1 -> 0\.2"):
        check_resume(NAME, old, load(tmp_path, {"data.std_floor": 0.2}))
    check_resume(NAME, None, load(tmp_path, {"model.hidden": 99}))  # made outside rnnlab


def test_a_stored_spec_this_rnnlab_cannot_read_is_refused_in_one_line(tmp_path):
    old = load(tmp_path).model_dump(mode="json")
    old["model"]["gone"] = 1
    with pytest.raises(RnnlabError, match=r"cannot compare \(its stored spec: model\.gone: "
                                          r"unknown key.*new study\.name") as info:
        check_resume(NAME, old, load(tmp_path))
    assert "\n" not in str(info.value)


def test_the_flag_accepts_allowed_keys_and_nothing_else(tmp_path):
    old = load(tmp_path).model_dump(mode="json")
    allowed = {"study.heartbeat_interval": 5.0, "study.grace_period": 30.0,
               "study.max_failures_in_a_row": 3, "data.dir": "/elsewhere"}
    check_resume(NAME, old, load(tmp_path, allowed), allow_spec_change=True)
    check_resume(NAME, old, load(tmp_path, {"study.n_trials": 50}))  # the budget: no change
    for key, value in {"train.checkpoint_every": 1, "train.seed": 1,
                       "data.split_seed": 1}.items():
        with pytest.raises(RnnlabError, match="would alter its results"):
            check_resume(NAME, old, load(tmp_path, {key: value}), allow_spec_change=True)
