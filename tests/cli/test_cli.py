"""`rnnlab train` and `rnnlab keys` through Typer's CliRunner: exit codes and output (bad input:
test_bad_input.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from rnnlab.cli.app import app
from rnnlab.core.spec import config_keys, to_yaml
from rnnlab.tracking.runs import DEFAULT_EXPERIMENT

runner = CliRunner()


@pytest.fixture
def config_file(tiny, tmp_path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(to_yaml(tiny({"train.epochs": 2})))
    return path


def test_train_json_prints_one_result_object(config_file, tmp_path):
    result = runner.invoke(app, ["train", str(config_file), "--json", "--no-track"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # stdout holds the JSON object and nothing else
    assert summary["status"] == "completed" and summary["epochs"] == 2
    assert len(summary["history"]) == 2 and summary["mlflow_run_id"] is None
    assert summary["final_val_acc"] == summary["history"][-1]["val_acc"]
    assert summary["best_val_acc"] == max(h["val_acc"] for h in summary["history"])
    assert "epoch 2/2" in result.stderr  # progress goes to stderr, one line per epoch here
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_train_set_and_data_dir_override_the_file(tiny, mnist_dir, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(to_yaml(tiny({"data.dir": str(tmp_path / "elsewhere")})))
    result = runner.invoke(app, ["train", str(path), "--json", "--no-track",
                                 "--data-dir", str(mnist_dir), "--set", "model.cell=gru"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "completed"


def test_tracked_train_creates_one_mlflow_run(config_file, mlflow_db):
    result = runner.invoke(app, ["train", str(config_file), "--json"])
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["mlflow_run_id"]
    client = MlflowClient(mlflow_db)
    runs = client.search_runs([client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id])
    assert [r.info.run_id for r in runs] == [run_id] and runs[0].info.status == "FINISHED"


def test_train_prints_a_summary_table(config_file):
    result = runner.invoke(app, ["train", str(config_file), "--no-track"])
    assert result.exit_code == 0, result.output
    assert "final_val_acc" in result.stdout and "best_val_acc" in result.stdout


def test_a_diverged_run_exits_1(tiny, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(to_yaml(tiny({"train.optimizer": "sgd", "train.lr": 1e36})))
    result = runner.invoke(app, ["train", str(path), "--json", "--no-track"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    summary = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert summary["status"] == "diverged" and summary["diverged_epoch"] == 1
    assert summary["history"][0]["train_loss"] is None  # inf/nan: not valid JSON, so null


def test_keys_lists_every_key_with_its_type_allowed_values_and_default():
    result = runner.invoke(app, ["keys"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    rows = {line.split()[0]: " ".join(line.split()[1:]) for line in result.stdout.splitlines()
            if re.match(r"^\s+(data|model|train)\.", line)}
    assert list(rows) == config_keys()
    assert rows["train.lr"] == "float > 0 0.0002"
    assert rows["train.momentum"] == "float >= 0 and < 1; sgd only 0.9"
    assert rows["model.cell"] == "choice rnn, lstm, gru rnn"
    assert rows["train.grad_clip"] == "float or none > 0 -"
    assert rows["train.device"] == "text auto, cpu, cuda or cuda:N auto"
    assert rows["train.seed"] == "int any 0"
    # what the table says a key accepts is what a config accepts
    from rnnlab.core.spec import RunConfig

    with pytest.raises(ValueError):
        RunConfig(train={"momentum": 1.0})
    RunConfig(train={"momentum": 0.0, "grad_clip": None})
