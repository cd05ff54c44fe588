"""Many workers at once: 4 local workers x 40 short trials, on the journal file and on
PostgreSQL. Every trial is accounted for and no worker hits a lock error."""

from __future__ import annotations

import pytest
import yaml
from mlflow.tracking import MlflowClient

from rnnlab.core.study_spec import load_study_spec
from rnnlab.study.storage import load_study
from rnnlab.study.sweep import sweep

N_TRIALS, WORKERS = 40, 4


def _spec(path, name):
    path.write_text(yaml.safe_dump({
        "data": {"source": "mnist-5k", "train_size": 100, "val_size": 50, "patch": 28},
        "model": {"hidden": 4},
        "train": {"epochs": 1},
        "study": {"name": name, "n_trials": N_TRIALS, "sampler": {"name": "random", "seed": 0},
                  "pruner": {"name": "none"}},
        "search": {"model.cell": {"choices": ["rnn", "gru", "lstm"]},
                   "train.lr": {"low": 1e-3, "high": 1e-2, "log": True}},
    }))
    return load_study_spec(path)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["journal", "postgresql"])
def test_four_workers_forty_trials_no_lock_errors(tmp_path, mlflow_db, databases, capfd,
                                                  backend):
    storage = "rnnlab.journal" if backend == "journal" else databases[0]
    final = sweep(_spec(tmp_path / "s.yaml", f"many-{backend}"), storage, workers=WORKERS)

    out = capfd.readouterr()
    logs = (out.out + out.err).lower()
    assert "locked" not in logs and "traceback" not in logs
    trials = load_study(storage, f"many-{backend}").get_trials()
    assert final.finished == N_TRIALS and len(trials) == N_TRIALS
    assert {t.state.name for t in trials} == {"COMPLETE"}
    assert sorted(t.number for t in trials) == list(range(N_TRIALS))
    client = MlflowClient()
    exp = client.get_experiment_by_name(f"many-{backend}")
    runs = [r for r in client.search_runs([exp.experiment_id], max_results=1000)
            if r.data.tags.get("rnnlab.kind") == "trial"]
    assert {r.info.run_id for r in runs} == {t.user_attrs["mlflow_run_id"] for t in trials}
    assert {r.info.status for r in runs} == {"FINISHED"}
