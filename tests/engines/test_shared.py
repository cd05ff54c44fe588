"""The stores every node of a cluster reaches (the Ray and Slurm engines' one rule): servers and
absolute paths on a shared filesystem, never a relative path or a SQLite file."""

from __future__ import annotations

import pytest

from rnnlab.engines.shared import check_shared
from rnnlab.errors import RnnlabError


@pytest.mark.parametrize(("storage", "uri", "refused"), [
    ("postgresql://u@h/db", "http://mlflow:5000", None),
    ("/shared/rnnlab.journal", "file:///shared/mlruns", None),
    ("/shared/rnnlab.journal", "/shared/mlruns", None),
    ("postgresql://u@h/db", "postgresql://u@h/mlflow", None),
    ("rnnlab.journal", "http://mlflow:5000", "Optuna storage 'rnnlab.journal' is the default"),
    ("runs/s.journal", "http://mlflow:5000", "Optuna storage 'runs/s.journal' is a relative"),
    ("sqlite:////shared/optuna.db", "http://mlflow:5000", "Optuna storage .* SQLite file"),
    ("postgresql://u@h/db", None, "MLFLOW_TRACKING_URI is not set"),
    ("postgresql://u@h/db", "sqlite:////shared/mlflow.db", "MLflow tracking store .* SQLite"),
    ("postgresql://u@h/db", "mlruns", "MLflow tracking store 'mlruns' is a relative path"),
    ("postgresql://u@h/db", "file:mlruns", "MLflow tracking store 'file:mlruns' is a relative"),
])
def test_only_stores_every_node_reaches_pass(storage, uri, refused):
    if refused is None:
        check_shared(storage, uri, "the nodes")
        return
    with pytest.raises(RnnlabError, match=refused) as raised:
        check_shared(storage, uri, "the nodes", "; or stay here")
    line = str(raised.value)
    assert "\n" not in line and "which the nodes cannot reach" in line
    assert line.endswith("; or stay here")


def test_a_password_in_a_refused_url_is_masked():
    with pytest.raises(RnnlabError) as raised:
        check_shared("postgresql://u:s3cret@h/db", "sqlite:////x/mlflow.db", "the nodes")
    assert "s3cret" not in str(raised.value)
