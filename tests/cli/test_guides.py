"""A CLI that guides: progress that moves within trials (redrawn on a terminal, periodic plain
lines in a log), tables that fit 80 columns without cutting a name or a metric, a sweep that
ends with the commands to run next, and a default placement that fills the CPUs."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import optuna
import pytest
import yaml
from rich.console import Console
from support import SPEC
from typer.testing import CliRunner

from rnnlab.cli.app import app
from rnnlab.cli.progress import StudyProgress, count_progress, study_lines
from rnnlab.cli.tables import status_view
from rnnlab.storage.adapter import open_storage
from rnnlab.study.status import StudyStatus

SHIPPED = ("quickstart", "tutorial_sweep", "normalisation_ablation", "tutorial_rnn",
           "tutorial_lstm", "full_mnist")
LONG_PARAMS = {"data.normalisation": "per_pixel_tutorial", "model.cell": "lstm",
               "train.lr": 0.0031234, "train.l2": 0.0, "data.std_floor": 0.05,
               "model.hidden": 128}


def _status(name: str = "quickstart", finished: int = 0, running: dict | None = None,
            mean_s: float | None = None) -> StudyStatus:
    return StudyStatus(
        name=name, budget=24, counts={"COMPLETE": finished, "RUNNING": len(running or {})},
        best_value=0.91234 if finished else None, best_params=LONG_PARAMS if finished else {},
        best_trial=3 if finished else None, metric="val_acc", direction="maximize", epochs=6,
        running_epochs=running or {}, mean_trial_s=mean_s)


def _render(renderable, width: int = 80) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=False)
    console.print(renderable)
    return console.file.getvalue()


def test_the_progress_names_each_running_trials_epoch_and_the_eta():
    first, second = study_lines(_status(finished=6, running={6: 2, 7: 5}, mean_s=40.0), 2)
    # ETA: 40 s per trial x 18 trials to finish / 2 workers = 6 min
    assert "6/24 finished" in first and "val_acc 0.9123 (#3)" in first and "ETA 6m00s" in first
    assert second == "running: #6 epoch 2/6, #7 epoch 5/6"
    assert "ETA -" in study_lines(_status(running={0: 1}), 1)[0]  # none finished: no estimate


def test_off_a_terminal_progress_is_a_plain_line_on_change_at_most_every_10_s():
    console = Console(file=io.StringIO(), width=80, force_terminal=False)
    now = [0.0]
    with StudyProgress(console, workers=2, every_s=10, clock=lambda: now[0]) as progress:
        for second in range(100):  # one poll a second; a running trial moves at every one
            now[0] = float(second)
            progress(_status(finished=second // 20, running={9: second % 6}, mean_s=30.0))
        for second in range(100, 200):  # then nothing changes for 100 s
            now[0] = float(second)
            progress(_status(finished=5, running={}, mean_s=30.0))
    lines = console.file.getvalue().splitlines()
    assert 10 <= len(lines) <= 12, lines  # 100 s of changes: one line per 10 s, no more
    assert all(re.match(r"\d\d:\d\d:\d\d quickstart: \d+/24 finished", line) for line in lines)
    assert "5/24 finished" in lines[-1] and "running: none" in lines[-1]  # the last status
    assert "\x1b" not in console.file.getvalue()  # no control codes in a log


def test_on_a_terminal_progress_is_redrawn_in_place():
    console = Console(file=io.StringIO(), width=80, force_terminal=True)
    with StudyProgress(console, workers=1) as progress:
        for epoch in range(6):
            progress(_status(finished=1, running={1: epoch}, mean_s=30.0))
    out = console.file.getvalue()
    assert "\x1b[2K" in out and "\x1b[1A" in out  # erases and moves up: drawn over itself
    assert "#1 epoch 5/6" in out


def test_a_long_count_says_where_it_is_every_10_s_and_a_short_one_nothing():
    # rnnlab delete of a 10,000-trial study: one MLflow call a run, for a minute or more
    now = [0.0]
    for total, per_run_s, expected in ((10_000, 0.005, 4), (50, 0.005, 0)):
        console = Console(file=io.StringIO(), width=80, force_terminal=False)
        now[0] = 0.0
        with count_progress(console, total, "MLflow runs deleted", clock=lambda: now[0]) as on:
            for done in range(1, total + 1):
                now[0] = done * per_run_s
                on(done)
        lines = console.file.getvalue().splitlines()
        assert len(lines) == expected, lines
        assert all(re.fullmatch(r"\d\d:\d\d:\d\d MLflow runs deleted: \d+/10000", line)
                   for line in lines)
    console = Console(file=io.StringIO(), width=80, force_terminal=True)
    with count_progress(console, 3, "MLflow runs deleted") as on:
        for done in (1, 2, 3):
            on(done)
    assert "3/3" in console.file.getvalue()  # a bar on a terminal, erased at the end


def test_a_count_with_no_total_says_how_far_it_got():
    # rnnlab delete reading a 10,000-trial study through an MLflow server: 1000 runs a page,
    # about 2.4 s each, and how many there are is known at the end only
    now = [0.0]
    console = Console(file=io.StringIO(), width=80, force_terminal=False)
    with count_progress(console, None, "MLflow runs read", clock=lambda: now[0]) as on:
        for page in range(1, 11):
            now[0] = page * 2.4
            on(page * 1000)
    lines = console.file.getvalue().splitlines()
    assert [line[9:] for line in lines] == ["MLflow runs read: 5000", "MLflow runs read: 10000"]
    console = Console(file=io.StringIO(), width=80, force_terminal=True)
    with count_progress(console, None, "MLflow runs read") as on:
        on(1000)
    out = console.file.getvalue()
    assert "MLflow runs read" in out and "1000" in out and "None" not in out


def test_tables_at_80_columns_cut_no_study_name_metric_or_param():
    statuses = [_status(name, finished=4) for name in SHIPPED]
    overview = _render(status_view(statuses, detail=False))
    detail = _render(status_view(statuses[:1], detail=True))
    for out in (overview, detail):
        assert "…" not in out and max(map(len, out.splitlines())) <= 80
    assert all(re.search(rf"^ ?{name} ", overview, re.M) for name in SHIPPED)
    assert overview.count("val_acc") == len(SHIPPED) and overview.count("0.9123 #3") == 6
    assert "rnnlab status STUDY" in overview  # where the params went
    for key, value in LONG_PARAMS.items():  # the detail view: one param a line, whole
        shown = f"{value:.4g}" if isinstance(value, float) else value
        assert re.search(rf"^ ?{re.escape(key)}\s+{re.escape(str(shown))}\s*$", detail, re.M)


@pytest.fixture
def spec_file(tmp_path):
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["study"].update(name="guided", n_trials=2)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_sweep_in_a_log_shows_progress_the_study_and_what_to_run_next(spec_file, mlflow_db):
    runner = CliRunner()
    env = {"COLUMNS": "80"}
    result = runner.invoke(app, ["sweep", str(spec_file), "--workers", "1"], env=env)
    assert result.exit_code == 0, result.output
    assert "1 local worker(s) x " in result.stderr  # the placement, said as it starts
    progress = [line for line in result.stderr.splitlines() if " finished (" in line]
    assert progress and "2/2 finished" in progress[-1]  # plain lines, the last one final
    assert "\x1b" not in result.stderr
    out = result.stdout
    assert "…" not in out and max(map(len, out.splitlines())) <= 80
    assert re.search(r"^ ?guided\s+2/2\s", out, re.M) and "guided: best trial #" in out
    assert out.rstrip().endswith("rnnlab ui --study guided          # its trials in the MLflow UI")
    for command in ("rnnlab status guided", "rnnlab dashboard guided",
                    "rnnlab report guided --format md"):
        assert f"\n  {command} " in out

    listed = runner.invoke(app, ["status"], env=env)
    assert listed.exit_code == 0 and "…" not in listed.stdout
    assert re.search(r"^ ?guided\s+2/2\s", listed.stdout, re.M)
    full = json.loads(runner.invoke(app, ["status", "guided", "--json"], env=env).stdout)
    assert set(full[0]["best_params"]) == set(SPEC["search"])  # --json is complete


def test_a_first_sweep_says_only_rnnlabs_lines_and_a_finished_one_says_so(spec_file, tmp_path):
    """Optuna's "A new study created" and MLflow's "Creating initial MLflow database tables"
    stay out of a first sweep's output (``-v`` lets them in); a sweep whose budget is used
    starts no worker, says it is done and how to run more (a smaller budget than has run
    too: the budget stays)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db", "COLUMNS": "200"}

    def sweep(*options: str, verbose: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rnnlab", *(["-v"] if verbose else []),
                               "sweep", str(spec_file), "--workers", "1", *options],
                              cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)

    first = sweep()
    assert first.returncode == 0, first.stderr
    said = first.stderr + first.stdout
    assert "A new study created" not in said and "INFO" not in said and "[I " not in said
    assert "done already" not in said
    again = sweep()
    assert again.returncode == 0, again.stderr
    assert ("guided: done already (2/2 trials finished), so nothing ran; the same command "
            "with --n-trials 4 runs 2 more") in again.stderr
    assert "rnnlab-worker" not in again.stderr and "epoch" not in again.stderr
    names = {t.user_attrs.get("worker") for t in optuna.load_study(
        study_name="guided", storage=open_storage(str(tmp_path / "rnnlab.journal"))).trials}
    assert len(names) == 1  # the second command ran no trial
    fewer = sweep("--n-trials", "1")  # below what has run: the budget stays, and says so
    assert fewer.returncode == 0, fewer.stderr
    assert ("guided: done already (2/2 trials finished, more than the 1 asked for: a budget "
            "never drops below what has run), so nothing ran; the same command with "
            "--n-trials 4 runs 2 more") in fewer.stderr
    assert re.search(r"^ ?guided\s+2/2\s", fewer.stdout, re.M)
    loud = sweep("--n-trials", "1", "--set", "study.name=loud", verbose=True)
    assert loud.returncode == 0, loud.stderr
    assert "A new study created in Journal with name: loud" in loud.stderr



def test_status_where_no_study_is_says_how_to_start_one_and_makes_nothing(tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.strip() == (
        "no study in rnnlab.journal yet: `rnnlab sweep studies/quickstart.yaml` starts one, "
        "or --storage names the storage a sweep used")
    assert list(tmp_path.iterdir()) == []
