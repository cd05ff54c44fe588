"""The indexed cache of a database's trials (rnnlab.storage.cache): it answers every read as
Optuna's own cache does, while other workers add, run and finish trials, and a stratum's view
reads the database at most once a moment unless this process changed a trial."""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.storages import RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import TrialState

from rnnlab.storage import cache
from rnnlab.storage.adapter import StudyRead, open_storage, stratum_study
from rnnlab.storage.cache import VIEW_FRESH_S, TrialCache
from rnnlab.storage.keys import levels_of_keys

CELLS = ["rnn", "lstm", "gru"]
KEYS = ("model.cell",)
SELECTIONS = [None, (TrialState.COMPLETE,), (TrialState.COMPLETE, TrialState.PRUNED),
              (TrialState.RUNNING,), (TrialState.WAITING,),
              (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING, TrialState.FAIL)]


def seen(trials):
    return [(t.number, t.state, t.params, t.value, t.intermediate_values) for t in trials]


def step(study: optuna.Study, rng: random.Random, running: list) -> None:
    """One thing a worker does: queue a stratum's trial, start one, report, or finish one."""
    roll = rng.random()
    if roll < 0.2:
        study.enqueue_trial({"model.cell": rng.choice(CELLS)})
    elif roll < 0.5 or not running:
        trial = study.ask()
        trial.suggest_categorical("model.cell", CELLS)
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        running.append(trial)
    elif roll < 0.6:
        rng.choice(running).report(rng.random(), step=1)
    else:
        trial = running.pop(rng.randrange(len(running)))
        state = rng.choice([TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED,
                            TrialState.FAIL])
        study.tell(trial, rng.random() if state == TrialState.COMPLETE else None, state=state)


def test_the_index_answers_every_read_as_optunas_cache_does(databases):
    url = databases[0]
    worker = optuna.create_study(study_name="c", storage=TrialCache(RDBStorage(url)))
    indexed, plain = TrialCache(RDBStorage(url)), _CachedStorage(RDBStorage(url))
    study_id = indexed.get_study_id_from_name("c")
    rng, running = random.Random(0), []
    for round_ in range(12):
        for _ in range(rng.randint(1, 25)):
            step(worker, rng, running)
        for states in rng.sample(SELECTIONS, 4) if round_ % 3 else SELECTIONS:
            expected = plain.get_all_trials(study_id, deepcopy=False, states=states)
            assert seen(indexed.get_all_trials(study_id, states=states)) == seen(expected)
            for cell in CELLS:
                where = (KEYS, (cell,))
                found = indexed.get_trials_where(study_id, False, states, where)
                assert seen(found) == seen(
                    [t for t in expected if levels_of_keys(t, KEYS) == {"model.cell": cell}])
    states = {t.state for t in plain.get_all_trials(study_id)}
    assert {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
            TrialState.WAITING} <= states  # every kind of trial was read


def test_a_strata_view_is_read_again_after_a_moment_or_a_change_of_this_process(
        databases, monkeypatch):
    url = databases[0]
    other = optuna.create_study(study_name="v", storage=TrialCache(RDBStorage(url)))
    mine = optuna.load_study(study_name="v", storage=TrialCache(RDBStorage(url)))
    now = [1000.0]
    monkeypatch.setattr(cache.time, "monotonic", lambda: now[0])

    def told(study: optuna.Study) -> None:
        study.enqueue_trial({"model.cell": "gru"})
        trial = study.ask()
        trial.suggest_categorical("model.cell", CELLS)
        study.tell(trial, 0.5)

    def in_view() -> int:
        view = stratum_study(mine, {"model.cell": "gru"}, mine.sampler)
        return len(view.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    told(other)
    assert in_view() == 1
    told(other)
    assert in_view() == 1  # read a moment ago: the view is that read
    assert len(mine.get_trials(states=(TrialState.COMPLETE,))) == 2  # a plain read asks
    told(other)
    now[0] += VIEW_FRESH_S / 2
    assert in_view() == 2
    now[0] += VIEW_FRESH_S
    assert in_view() == 3  # the moment passed
    told(other)
    told(mine)  # this process changed a trial: its views read again
    assert in_view() == 5


def test_a_claims_read_selects_from_the_index_and_from_a_journal_alike(databases, tmp_path):
    """What a claim decides on (StudyRead) is the same on a database and on a journal."""
    reads = []
    for url in (databases[0], str(tmp_path / "rnnlab.journal")):
        study = optuna.create_study(study_name="r", storage=open_storage(url),
                                    sampler=optuna.samplers.RandomSampler(seed=1))
        rng, running = random.Random(3), []
        for _ in range(60):
            step(study, rng, running)
        read = StudyRead(study)
        reads.append([seen(read.select(states, where))
                      for states in SELECTIONS[1:]
                      for where in (None, *((KEYS, (c,)) for c in CELLS))])
    assert reads[0] == reads[1]
    assert any(reads[0]) and all(isinstance(r, list) for r in reads[0])


@pytest.mark.parametrize("n", [0, 1])
def test_an_empty_or_new_study_reads_as_empty(databases, n):
    storage = TrialCache(RDBStorage(databases[0]))
    study = optuna.create_study(study_name=f"e{n}", storage=storage)
    for _ in range(n):
        study.add_trial(optuna.trial.create_trial(
            params={"lr": 0.01}, distributions={"lr": FloatDistribution(1e-4, 1e-1)},
            value=0.5))
    assert len(storage.get_all_trials(study._study_id, states=(TrialState.COMPLETE,))) == n
    assert storage.get_trials_where(study._study_id, False, None,
                                    (KEYS, ("gru",))) == []


def test_a_running_trial_made_here_is_read_back_once_as_made(databases, monkeypatch):
    """optuna.Trial reads a trial back as soon as it is made: the first read of a running
    trial this process made is its creation's answer (the database's own, field for field);
    a second read, a read after a write, and a queued trial's read go to the database."""
    storage = TrialCache(RDBStorage(databases[0]))
    study = optuna.create_study(study_name="made", storage=storage)
    real, reads = storage._backend.get_trial, []
    monkeypatch.setattr(storage._backend, "get_trial",
                        lambda trial_id: (reads.append(trial_id), real(trial_id))[1])
    trial = study.ask()
    assert reads == [] and trial.number == 0
    again = storage.get_trial(trial._trial_id)
    assert reads == [trial._trial_id]
    made = storage.create_new_trial(study._study_id)
    assert seen([storage.get_trial(made)]) == seen([real(made)])
    assert storage.get_trial(made).state == TrialState.RUNNING and reads[-1] == made
    written = storage.create_new_trial(study._study_id)
    storage.set_trial_user_attr(written, "worker", "w:1")
    assert storage.get_trial(written).user_attrs == {"worker": "w:1"} and reads[-1] == written
    study.enqueue_trial({"x": 1.0})
    popped = study.ask()
    assert reads[-1] == popped._trial_id  # made WAITING, popped: read
    assert again.number == 0
