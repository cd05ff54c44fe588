"""How long the MLflow UI's trials view of a study of N trials takes to show its first page.

Synthesises the study as benchmarks/dashboard_scale.py does (an Optuna journal and an MLflow
SQLite store with one run per trial, its params, seven metrics and its objective per epoch,
and its outcome), starts ``rnnlab ui`` on it (an MLflow server over the store, the study's
saved trials view), and opens the view in a headless Chromium: the time from asking for the
page until its runs table shows its first rows, best trial first. Cold is the browser's first
visit, warm a reload.

    python benchmarks/mlflow_ui_scale.py [--trials 10000] [--keep DIR]

Target (issue 24): the first page in under 10 s at 10,000 runs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from _common import chromium
from dashboard_scale import arguments, study_in

from rnnlab.storage.adapter import load_study

START_S = 180  # the MLflow server's start on a busy machine
TARGET_S = 10.0
FIRST_ROW = ".ag-center-cols-container .ag-row[row-index='0']"
NAME_CELL = ".ag-row[row-index='0'] .ag-cell[col-id='attributes.`Run Name`']"


def serve(folder: Path, name: str) -> tuple[subprocess.Popen, str]:
    """``rnnlab ui`` on the study; the process and the URL of its trials view."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnlab", "ui", "--port", str(port), "--storage",
         str(folder / "rnnlab.journal"), "--study", name], cwd=folder, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + START_S
    for line in proc.stdout:
        if found := re.search(rf"study {name} trials: (http://\S+)", line):
            return proc, found.group(1)
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit(f"rnnlab ui did not serve the study within {START_S} s")


def first_page(browser, url: str) -> tuple[float, float, str]:
    """Seconds to the first rows of the view, cold and warm, and the top row's run name."""
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    try:
        times = []
        for load in (page.goto, lambda _: page.reload()):
            started = time.perf_counter()
            load(url)
            page.locator(FIRST_ROW).first.wait_for(timeout=120_000)
            times.append(time.perf_counter() - started)
        top = page.locator(NAME_CELL).first.inner_text().split()[-1]
    finally:
        page.close()
    return times[0], times[1], top


def main() -> None:
    args, folder = arguments(__doc__, 10_000)
    try:
        storage, _, name = study_in(folder, args.trials, args.epochs)
        study = load_study(storage, name)
        runs = len(study.get_trials(deepcopy=False))
        started = time.perf_counter()
        proc, url = serve(folder, "scale")
        print(f"rnnlab ui served the view in {time.perf_counter() - started:.1f} s: {url}")
        try:
            with chromium() as browser:
                if browser is None:
                    raise SystemExit("no Chromium (apt-get install chromium)")
                cold, warm, top = first_page(browser, url)
        finally:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the UI stops its server
            proc.wait(timeout=60)
        # the view ranks every run by its objective so far (pruned ones too): its top row is
        # a trial whose best epoch is the best of all (several may tie)
        best = {t.number: max(t.intermediate_values.values(), default=-1.0)
                for t in study.get_trials(deepcopy=False)}
        tops = {f"trial-{n}" for n, v in best.items() if v == max(best.values())}
        ok = "OK" if max(cold, warm) < TARGET_S else "MISS"
        print(f"first page of {runs} runs in Chromium: {cold:.2f} s cold, {warm:.2f} s warm "
              f"(target: < {TARGET_S:.0f} s) -> {ok}; top row {top}, "
              + ("the best objective of all, as it should" if top in tops
                 else f"not one of the best ({', '.join(sorted(tops)[:3])})"))
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
