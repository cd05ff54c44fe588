"""`rnnlab train` and `rnnlab keys` through Typer's CliRunner: exit codes, output, bad input."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from rnnlab.cli.app import app
from rnnlab.core.mnist import MNIST_MD5
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


def test_keys_lists_every_key_with_its_default():
    result = runner.invoke(app, ["keys"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [line.split(" = ")[0] for line in lines] == config_keys()
    assert "train.lr = 0.0002" in lines and "data.patch = 7" in lines


# --- bad input: one line on stderr, exit code 2, no traceback, nothing written ----------------

def _data_dir_with(mnist_dir: Path, tmp_path: Path, name: str, data: bytes) -> Path:
    """A data folder of linked originals where the labels file is replaced by ``data``."""
    folder = tmp_path / "data"
    folder.mkdir()
    for stem in MNIST_MD5:
        if stem != "train-labels-idx1-ubyte":
            (folder / f"{stem}.gz").symlink_to(mnist_dir / f"{stem}.gz")
    (folder / name).write_bytes(data)
    return folder


def _labels(mnist_dir: Path) -> bytes:
    return gzip.decompress((mnist_dir / "train-labels-idx1-ubyte.gz").read_bytes())


def _flipped_gz(mnist_dir: Path) -> bytes:
    data = bytearray((mnist_dir / "train-labels-idx1-ubyte.gz").read_bytes())
    data[len(data) // 2] ^= 0x01
    return bytes(data)


# (name, config YAML or None for no file, extra args, data folder maker, words in the error)
BAD_INPUT = [
    ("missing config", None, [], None, "not found"),
    ("yaml syntax", "train:\n  lr: [1, 2\n", [], None, "YAML syntax error at line"),
    ("unknown key", "model:\n  cells: gru\n", [], None, "model.cells: unknown key"),
    ("wrong type", "train:\n  epochs: many\n", [], None, "train.epochs"),
    ("bad patch", "", ["--set", "data.patch=5"], None, "data.patch: patch 5 does not divide 784"),
    ("lr zero", "train:\n  lr: 0\n", [], None, "train.lr"),
    ("lr negative", "", ["--set", "train.lr=-1e-3"], None, "train.lr"),
    ("bad --set", "", ["--set", "train.lr"], None, "expected section.key=value"),
    ("missing data dir", "", ["--data-dir", "nowhere"], None, "data directory 'nowhere' does"),
    ("truncated idx", "", [], lambda m, t: _data_dir_with(
        m, t, "train-labels-idx1-ubyte", _labels(m)[:5000]), "truncated IDX file"),
    ("wrong magic", "", [], lambda m, t: _data_dir_with(
        m, t, "train-labels-idx1-ubyte", b"\0\0\x08\x02" + _labels(m)[4:]),
     "wrong magic number 2050"),
    ("md5 mismatch", "", [], lambda m, t: _data_dir_with(
        m, t, "train-labels-idx1-ubyte.gz", _flipped_gz(m)), "does not match the original"),
]


@pytest.mark.parametrize(("text", "args", "make_data", "needle"),
                         [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
        mnist_dir, tmp_path, text, args, make_data, needle):
    config = tmp_path / "run.yaml"
    if text is not None:
        config.write_text(text + "data:\n  train_size: 200\n  val_size: 100\n"
                          if text == "" else text)
    if make_data is not None:
        args = [*args, "--data-dir", str(make_data(mnist_dir, tmp_path))]
    elif "--data-dir" not in args:
        args = [*args, "--data-dir", str(mnist_dir)]
    before = sorted(os.listdir(tmp_path))

    result = runner.invoke(app, ["train", str(config), *args])  # tracked: nothing may be made

    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnlab: error: "), result.stderr
    assert needle in lines[0]
    assert result.stdout == "" and "Traceback" not in result.output
    assert sorted(os.listdir(tmp_path)) == before  # no mlflow.db, no mlruns, no cache
