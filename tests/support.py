"""Helpers the tests import: one tiny real study, studies whose first trials are set in advance,
pages opened in a real browser, and servers on loopback ports that nothing else can take.

The study is built once per test session (see :func:`tiny_study`, wrapped by the ``study``
fixture in conftest.py) with the library itself: an Optuna journal file and an MLflow SQLite
store in a temporary folder, six trials of a 2-epoch, 8-unit network on 200 mnist-5k images
(offline), searched over cell, learning rate, normalisation and L2, with a median pruner that
may prune from the first epoch (it prunes none of these six: a study that surely prunes is
built with :func:`run_enqueued`, a hopeless trial after a good one).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

NAME = "tiny"
SPEC = {
    "data": {"source": "mnist-5k", "train_size": 200, "val_size": 100, "patch": 28},
    "model": {"hidden": 8},
    "train": {"epochs": 2, "lr": 3e-3, "threads": 1, "device": "cpu"},
    "study": {"name": NAME, "n_trials": 6, "sampler": {"name": "random", "seed": 4},
              "pruner": {"name": "median", "n_startup_trials": 4, "n_warmup_steps": 0}},
    "search": {
        "model.cell": {"choices": ["rnn", "gru"]},
        "train.lr": {"low": 3e-3, "high": 3e-2, "log": True},
        "data.normalisation": {"choices": ["none", "per_pixel"]},
        "train.l2": {"low": 1e-7, "high": 1e-3, "log": True, "zero_below": 1e-6},
    },
}
FIRE = Path(__file__).resolve().parent / "fire"  # sitecustomize.py: a signal at one point
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@dataclass(frozen=True)
class TinyStudy:
    folder: Path
    storage: str  # the journal file
    uri: str  # the MLflow store
    name: str = NAME

    def env(self) -> dict[str, str]:
        return {**os.environ, "MLFLOW_TRACKING_URI": self.uri}


_BUILT: dict[str, TinyStudy] = {}


def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> TinyStudy:
    """Build the shared study on first use; later calls return the same one."""
    if "study" not in _BUILT:
        _BUILT["study"] = build_study(tmp_path_factory.mktemp("tiny-study"), SPEC)
    return _BUILT["study"]


def build_study(folder: Path, raw: dict, first: list[dict] | tuple = ()) -> TinyStudy:
    """Run a whole study in this process (no worker processes): the fastest real sweep.
    ``first``: the params of its first trials (see :func:`run_enqueued`)."""
    from rnnlab.core.study_spec import load_study_spec

    (folder / "spec.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    study = TinyStudy(folder, str(folder / "rnnlab.journal"), f"sqlite:///{folder}/mlflow.db",
                      raw["study"]["name"])
    with pytest.MonkeyPatch.context() as mp:  # only while building: tests set their own
        mp.chdir(folder)
        mp.setenv("MLFLOW_TRACKING_URI", study.uri)
        run_enqueued(load_study_spec(folder / "spec.yaml"), study.storage, first)
    return study


# A learning rate that never moves the weights: such a trial's curve stays where it starts
# (chance), far below a trial with GOOD_LR from the first epoch on. Measured on the tiny sizes
# used here (mnist-5k, 100-200 images, 4-8 units): 0.04-0.09 against 0.14-0.30.
GOOD_LR, HOPELESS_LR = 1e-2, 1e-9


def run_enqueued(spec, storage: str, first: list[dict] | tuple = ()) -> int:
    """Create the study, enqueue trials with the params ``first`` (in this order: they run
    before any the sampler draws), and run it in this process until its budget is used.

    Returns:
        The number of trials run.
    """
    from rnnlab.study.parent import open_study
    from rnnlab.study.worker import work
    from rnnlab.tracking.tracker import Tracker

    if first:
        study = open_study(spec, storage, Tracker())
        for params in first:
            study.enqueue_trial(params)
    return work(spec, storage)


def fire_env(fire: str, marker: Path) -> dict[str, str]:
    """This process's environment, in which an rnnlab process sends itself a signal at one exact
    point (tests/fire/sitecustomize.py): ``fire`` is ``point:how``; ``marker`` the path prefix of
    the file it leaves there (``marker-point``)."""
    return {**os.environ, "RNNLAB_TEST_FIRE": fire, "RNNLAB_TEST_MARKER": str(marker),
            "PYTHONPATH": os.pathsep.join([str(FIRE), os.environ.get("PYTHONPATH", "")])}


def cut_then_resumed(argv: list[str], folder: Path, storage: str, derived: str) -> list:
    """Run ``argv`` cut by Ctrl-C while a trial reports an epoch (exit code 130, a trial of
    study ``derived`` failed), then again to the end; returns that study's trials."""
    import optuna

    from rnnlab.storage.adapter import open_storage

    cut = subprocess.run(argv, env=fire_env("report:group", folder / "fired"),
                         capture_output=True, text=True, timeout=300, start_new_session=True)
    assert cut.returncode == 130, cut.stderr
    study = optuna.load_study(study_name=derived, storage=open_storage(storage))
    assert "FAIL" in {t.state.name for t in study.get_trials()}  # a trial was cut
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    return optuna.load_study(study_name=derived, storage=open_storage(storage)).get_trials()


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections while this lasts: bound, never listening, so no
    other process can start serving on it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def serve_on_a_free_port(start: Callable[[int], subprocess.Popen],
                         ready: Callable[[subprocess.Popen, int], Any],
                         attempts: int = 3) -> tuple[subprocess.Popen, int, Any]:
    """Start a server process on a port free when chosen, and again on another if the process
    exits before it is up: it binds the port itself, and another process may take it first.

    Args:
        start: starts the server on a port.
        ready: waits until the server is up and returns what it found (truthy), or returns
            None once the process has exited; fails the test itself if it waits too long.

    Returns:
        The server process, its port, and what ``ready`` found.
    """
    for _ in range(attempts):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        proc = start(port)
        if found := ready(proc, port):
            return proc, port, found
        assert proc.poll() is not None, "ready() gave up on a server that is still running"
    pytest.fail(f"the server exited {attempts} times before it was up (last exit code "
                f"{proc.returncode})")


def chromium_path() -> str:
    path = os.environ.get("RNNLAB_CHROMIUM", "/usr/bin/chromium")
    if not Path(path).is_file():
        pytest.fail(f"no Chromium at {path}: apt-get install chromium (or set RNNLAB_CHROMIUM)")
    return path


@dataclass
class PageCheck:
    errors: list[str]
    requests: list[str]
    traces: list[int]  # per .js-plotly-plot div, its number of traces
    text: str
    dialogs: list[str]  # alert(), confirm() or prompt() that the page opened
    pwned: bool  # a script of a hostile value ran (it sets window.__pwned)


def open_html(browser, path: Path) -> PageCheck:
    """Load a local HTML file; collect JS errors, every request, and each plot's trace count."""
    page = browser.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(path.resolve().as_uri(), wait_until="load", timeout=120_000)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length > 0",
                           timeout=60_000)
    traces = page.evaluate("Array.from(document.querySelectorAll('.js-plotly-plot'))"
                           ".map(d => (d.data || []).length)")
    check = PageCheck(errors, requests, traces, page.inner_text("body"), dialogs,
                      page.evaluate("window.__pwned === true"))
    page.close()
    return check


def synthetic_frames(rows: list[dict], search: dict, direction: str = "maximize"):
    """StudyFrames of made-up trials (a row: dotted config keys, ``value``, optional ``state``),
    for checking what is concluded from known data; no curves."""
    import pandas as pd

    from rnnlab.analysis.frames import StudyFrames

    spec = {"study": {"name": "synthetic", "n_trials": len(rows), "metric": "val_acc",
                      "direction": direction}, "search": search}
    trials = pd.DataFrame([{"number": i, "state": r.get("state", "COMPLETE"),
                            "value": r.get("value"), "duration_s": 1.0}
                           for i, r in enumerate(rows)])
    configs = pd.DataFrame([{"number": i, **{k: v for k, v in r.items() if "." in k}}
                            for i, r in enumerate(rows)])
    return StudyFrames(
        name="synthetic", metric="val_acc", direction=direction, budget=len(rows),
        search=tuple(search), log_keys=tuple(k for k, d in search.items() if d.get("log")),
        parent_run_id=None, experiment=None, spec=spec, trials=trials, configs=configs,
        curves=pd.DataFrame(columns=["number", "epoch", "metric", "value"]),
        finals=pd.DataFrame({"number": pd.Series(dtype=int)}),
        importances=pd.DataFrame(columns=["param", "importance"]))


def strings(node: Any) -> Iterator[str]:
    """Every string in a YAML tree, mapping keys included (a manifest, a compose file)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)
    elif isinstance(node, str):
        yield node
