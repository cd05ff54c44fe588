"""Every Optuna tool names the objective as the spec does: optuna-dashboard, read over its own
HTTP API from the study's real storage, names it ``val_acc``, not "Objective 0"."""

from __future__ import annotations

import io
import json
from wsgiref.util import setup_testing_defaults

import optuna
import pytest

from rnnlab.storage.adapter import open_storage

# The dashboard extra (make test installs it); without it there is nothing to read with.
wsgi = pytest.importorskip("optuna_dashboard").wsgi


def _get(app, path: str) -> dict:
    environ: dict = {}
    setup_testing_defaults(environ)
    environ.update(PATH_INFO=path, REQUEST_METHOD="GET", **{"wsgi.input": io.BytesIO()})
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc=None: status.append(s)))
    assert status[0].startswith("200"), (status, body[:200])
    return json.loads(body)


def test_the_study_names_its_metric_for_every_optuna_tool(study):
    storage = open_storage(study.storage)
    loaded = optuna.load_study(study_name=study.name, storage=storage)
    assert loaded.metric_names == ["val_acc"]
    assert "value_val_acc" in loaded.trials_dataframe().columns

    app = wsgi(storage)
    listed = _get(app, "/api/studies")["study_summaries"]
    study_id = next(s["study_id"] for s in listed if s["study_name"] == study.name)
    assert _get(app, f"/api/studies/{study_id}")["objective_names"] == ["val_acc"]
