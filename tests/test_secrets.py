"""Secrets stay secret: one URL masker, built on where a URL's user info really ends, for every
store URL rnnlab prints, logs, tags or writes; and the passwords an engine's workers need travel
in their environment, never in a URL on a command line or in a file."""

from __future__ import annotations

import pytest

from rnnlab.engines.shared import without_secrets
from rnnlab.errors import mask_url, split_password, with_password
from rnnlab.storage.adapter import with_secret
from rnnlab.tracking.server import tracking_uri

PASSWORDS = ["s3cret", "p/ss", "p@ss", "p:ss", "p%40ss%2F", "pa ss", "pässwörd", "p@s/s:w%rd ✓",
             "?query", "a@b@c"]


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("template", [
    "postgresql://rnnlab:{}@db.example:5432/optuna",
    "postgresql+psycopg2://u:{}@h/db?sslmode=require",
    "mysql://root:{}@127.0.0.1:3306/test?charset=utf8mb4",
    "mysql+pymysql://u:{}@h/db",
    "http://admin:{}@127.0.0.1:5000",
    "https://admin:{}@mlflow.example/api",
])
def test_no_password_survives_the_masker(template, password):
    url = template.format(password)
    masked = mask_url(url)
    assert password not in masked
    assert masked == template.format("***")
    bare, found = split_password(url)
    assert found == password and password not in bare
    assert with_password(bare, found) == url  # what a worker puts back, exactly


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql://user@host/db", "postgresql://user@host/db"),  # no password: unchanged
    ("postgresql://host:5432/db", "postgresql://host:5432/db"),
    ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
    ("sqlite:////abs/optuna.db", "sqlite:////abs/optuna.db"),
    ("rnnlab.journal", "rnnlab.journal"),
    ("/shared/rnnlab.journal", "/shared/rnnlab.journal"),
    ("postgresql://u@h/db?password=secret&sslmode=require",
     "postgresql://u@h/db?password=***&sslmode=require"),
    ("postgresql://u:pw@h/db?sslpassword=x;token=y",
     "postgresql://u:***@h/db?sslpassword=***;token=***"),
    (None, ""),
])
def test_urls_without_a_password_are_shown_as_they_are(url, masked):
    assert mask_url(url) == masked


def test_a_worker_gets_its_passwords_from_the_environment(monkeypatch):
    storage, tracking, env = without_secrets("postgresql://rnnlab:p@s/s@db/optuna",
                                             "http://admin:w:rd@mlflow:5000")
    assert (storage, tracking) == ("postgresql://rnnlab@db/optuna", "http://mlflow:5000")
    assert env == {"RNNLAB_STORAGE_PASSWORD": "p@s/s", "MLFLOW_TRACKING_USERNAME": "admin",
                   "MLFLOW_TRACKING_PASSWORD": "w:rd"}
    _, db, env = without_secrets("rnnlab.journal", "postgresql://ml:pw@db/mlflow")
    assert db == "postgresql://ml@db/mlflow" and env == {"RNNLAB_TRACKING_PASSWORD": "pw"}

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RNNLAB_STORAGE_PASSWORD", "p@s/s")
    assert with_secret(storage) == "postgresql://rnnlab:p@s/s@db/optuna"
    assert with_secret("postgresql://other:own@db/x") == "postgresql://other:own@db/x"
    assert tracking_uri(db) == "postgresql://ml:pw@db/mlflow"
    assert tracking_uri("http://mlflow:5000") == "http://mlflow:5000"  # MLflow's own variables
