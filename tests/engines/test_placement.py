"""Where local workers go: ``rnnlab sweep`` fills a CPU machine with one single-threaded worker
per CPU (fewer when the spec sets its own threads, never more than the budget of trials);
``rnnlab worker`` starts one; a count given is kept and the CPUs shared out between its
workers."""

from __future__ import annotations

import pytest
import yaml
from support import SPEC

from rnnlab.core.study_spec import load_study_spec
from rnnlab.engines.placement import Placement, place_workers


def _spec(tmp_path, n_trials: int = 24, **train):
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["study"]["n_trials"] = n_trials
    raw["train"].update({"device": "cpu", "threads": None, **train})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_study_spec(path)


@pytest.mark.parametrize(("workers", "n_trials", "threads", "fill", "placed"), [
    (None, 24, None, True, (8, 1)),  # sweep: every CPU a worker, one thread each
    (None, 24, 2, True, (4, 2)),  # the spec's threads: fewer workers
    (None, 3, None, True, (3, 2)),  # no more workers than trials; their CPUs shared out
    (None, 24, None, False, (1, 8)),  # worker: one, with every CPU
    (2, 24, None, True, (2, 4)),  # a count given is kept
    (3, 24, 2, False, (3, 2)),
])
def test_placement_on_an_8_cpu_machine(tmp_path, workers, n_trials, threads, fill, placed):
    spec = _spec(tmp_path, n_trials=n_trials, threads=threads)
    assert place_workers(spec, workers, fill_cpus=fill, cpus=8) == Placement(
        *placed, (None,) * placed[0])


def test_a_device_given_places_every_worker_there(tmp_path):
    spec = _spec(tmp_path)
    assert place_workers(spec, None, per_gpu=2, device="cuda:1", fill_cpus=False,
                         cpus=8) == Placement(2, 4, ("cuda:1", "cuda:1"))
