"""Shared bits of the sweep benchmarks: a scratch folder with its own stores, and specs."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

from rnnlab.core.study_spec import StudySpec, load_study_spec

REPO = Path(__file__).resolve().parents[1]


def mnist_dir(given: str | None = None) -> str | None:
    """The MNIST IDX folder: ``given``, else $RNNLAB_DATA_DIR, else ../shared/data/mnist."""
    if given:
        return given
    shared = REPO.parent / "shared" / "data" / "mnist"
    return os.environ.get("RNNLAB_DATA_DIR") or (str(shared) if shared.is_dir() else None)


@contextlib.contextmanager
def scratch(keep: str | None = None) -> Iterator[Path]:
    """Work in a fresh folder with its own Optuna journal and MLflow store."""
    old, old_uri = Path.cwd(), os.environ.get("MLFLOW_TRACKING_URI")
    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-", dir=keep) as tmp:
        os.chdir(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        try:
            yield Path(tmp)
        finally:
            os.chdir(old)
            if old_uri is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = old_uri


def spec_from(raw: dict, folder: Path, name: str) -> StudySpec:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_study_spec(path)


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking"]


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Chromium (Debian's, or $RNNLAB_CHROMIUM), driven by Playwright; None when
    there is none (the page timings are then skipped)."""
    path = os.environ.get("RNNLAB_CHROMIUM", "/usr/bin/chromium")
    if not Path(path).is_file():
        yield None
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
