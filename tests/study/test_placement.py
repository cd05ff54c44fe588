"""The default placement of ``rnnlab sweep``: on a CPU one worker per usable CPU with one thread
each (the quickstart ran 2.19x faster so on 2 cores), fewer when the spec sets its own threads,
and never more workers than the budget of trials."""

from __future__ import annotations

import os

import yaml
from support import SPEC

from rnnlab.core.study_spec import load_study_spec
from rnnlab.study.placement import Placement, default_placement, place_workers, usable_cpus


def _spec(tmp_path, n_trials: int = 24, **train):
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["study"]["n_trials"] = n_trials
    raw["train"].update({"device": "cpu", "threads": None, **train})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_study_spec(path)


def test_on_a_cpu_every_usable_cpu_gets_a_worker_with_one_thread(tmp_path):
    placed = default_placement(_spec(tmp_path))
    assert placed.workers == min(usable_cpus(), 24)
    assert placed.threads == max(1, (os.cpu_count() or 1) // placed.workers)  # 1 where all usable


def test_a_spec_that_sets_threads_gets_fewer_workers(tmp_path):
    cpus = usable_cpus()
    placed = default_placement(_spec(tmp_path, threads=2))
    assert placed == Placement(max(1, cpus // 2), 2)


def test_never_more_workers_than_trials_and_an_explicit_count_wins(tmp_path):
    assert default_placement(_spec(tmp_path, n_trials=1)).workers == 1
    assert place_workers(_spec(tmp_path), workers=1).workers == 1
