"""Shared fixtures: the real MNIST files, an isolated working folder per test, tiny configs,
fresh PostgreSQL databases, the tiny real study and its frames, and a headless Chromium.

Every test runs in its own temporary folder (the cwd) with its own MLflow store and download
cache, and with no data folder in the environment: a test that needs data says where it is.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from support import CHROMIUM_ARGS, TinyStudy, chromium_path, tiny_study

from rnnlab.core.spec import RunConfig, apply_overrides

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/mnist"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}

# Small enough that an epoch takes a fraction of a second: 200 training and 100 validation
# images, each read as 28 steps of 28 pixels, by a 16-unit network, on one thread (at this size
# more threads only add synchronisation, which costs seconds on a busy machine).
TINY = {
    "data": {"train_size": 200, "val_size": 100, "patch": 28},
    "model": {"hidden": 16},
    "train": {"epochs": 1, "threads": 1, "device": "cpu"},
}


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The four original MNIST files (``$RNNLAB_TEST_DATA`` or ``../shared/data/mnist``)."""
    path = Path(os.environ.get("RNNLAB_TEST_DATA") or _DEFAULT_DATA).resolve()
    missing = [name for name in MNIST_FILES if not (path / name).is_file()]
    if missing:
        pytest.fail(f"MNIST files {missing} not found in {path}; set RNNLAB_TEST_DATA")
    return path


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Own cwd, MLflow store and cache for every test; no data folder from the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("RNNLAB_CACHE_DIR", str(tmp_path / ".rnnlab-cache"))
    monkeypatch.delenv("RNNLAB_DATA_DIR", raising=False)
    monkeypatch.delenv("RNNLAB_MNIST_MIRRORS", raising=False)


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store with its schema in place (migrating one takes seconds)."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow-template")
    here = Path.cwd()
    os.chdir(folder)  # MLflow puts the default experiment's artifact folder under the cwd
    try:
        MlflowClient(f"sqlite:///{folder}/mlflow.db").search_experiments()
    finally:
        os.chdir(here)
    return folder / "mlflow.db"


@pytest.fixture
def mlflow_db(_mlflow_template: Path, tmp_path: Path) -> str:
    """A ready, empty MLflow store at ``$MLFLOW_TRACKING_URI``; returns the URI."""
    shutil.copy(_mlflow_template, tmp_path / "mlflow.db")
    return os.environ["MLFLOW_TRACKING_URI"]


@pytest.fixture
def tiny(mnist_dir: Path):
    """``tiny({"train.epochs": 2})``: a validated tiny run config on the real MNIST files."""

    def make(overrides: dict[str, Any] | None = None) -> RunConfig:
        raw = apply_overrides(TINY, {"data.dir": str(mnist_dir), **(overrides or {})})
        return RunConfig.model_validate(raw)

    return make


def _admin():
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        conn = psycopg2.connect(dbname="postgres", connect_timeout=5, **PG)
    except psycopg2.OperationalError as exc:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is not running ({exc}); .ci/run starts it")
    conn.autocommit = True
    return conn


@pytest.fixture
def mysql_database():
    """A fresh database on the MariaDB at 127.0.0.1:3306 (root, no password), dropped
    afterwards; yields its URL, the pymysql driver named."""
    pymysql = pytest.importorskip("pymysql")
    try:
        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", connect_timeout=5,
                               autocommit=True)
    except pymysql.err.OperationalError as exc:
        pytest.fail(f"MariaDB at 127.0.0.1:3306 is not running ({exc}); .ci/run starts it")
    name = f"rnnlab_test_{uuid.uuid4().hex[:10]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    try:
        yield f"mysql+pymysql://root@127.0.0.1:3306/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@pytest.fixture
def databases():
    """Two fresh databases (Optuna, MLflow), dropped afterwards; yields their URLs."""
    yield from _fresh_databases()


@pytest.fixture(scope="module")
def module_databases():
    """Like ``databases``, shared by a module's tests (servers that start slowly use them)."""
    yield from _fresh_databases()


def _fresh_databases():
    names = [f"rnnlab_test_{uuid.uuid4().hex[:10]}_{kind}" for kind in ("optuna", "mlflow")]
    conn = _admin()
    with conn.cursor() as cur:
        for name in names:
            cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield [f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{n}" for n in names]
    finally:
        with conn.cursor() as cur:
            for name in names:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@pytest.fixture(scope="session")
def study(tmp_path_factory) -> TinyStudy:
    """The tiny real study (see :mod:`support`), built once per session."""
    return tiny_study(tmp_path_factory)


@pytest.fixture(scope="module")
def frames(study: TinyStudy):
    """The tiny study's frames, as dashboards and reports read them."""
    from rnnlab.analysis.frames import study_frames

    return study_frames(study.storage, study.name, tracking_uri=study.uri)


@pytest.fixture(scope="module")
def trials(study: TinyStudy):
    """The tiny study's Optuna trials by number."""
    from rnnlab.storage.adapter import load_study

    return {t.number: t for t in load_study(study.storage, study.name).trials}


@pytest.fixture(scope="module")
def browser():
    """A real headless Chromium (Debian's), driven by Playwright; never downloads a browser."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()
