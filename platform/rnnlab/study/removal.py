"""``rnnlab delete``: a study out of its storage, with its MLflow runs.

The reports say "delete study X and ablate again" where a derived study no longer fits its
searched study (a selection moved a best since) or asked too little (an L2 ablation of almost
no penalty): a derived study is planned once, and its name is taken until it is deleted.

Its runs go first (MLflow's soft delete: ``mlflow gc`` purges them, ``mlflow runs restore``
brings one back), the study last: a store outage midway leaves the study whole with some of
its runs deleted, and the same command finishes the job. A study that others were derived from
is refused until they are deleted: their reports and resumes read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from rnnlab.core.selection import selection_name
from rnnlab.errors import RnnlabError
from rnnlab.storage.adapter import load_study, open_storage, stored_plan, study_names
from rnnlab.storage.keys import ATTR_PARENT
from rnnlab.tracking.store import RunReader


@dataclass(frozen=True)
class Deletion:
    """What deleting ``study`` removes: its ``trials`` (``running`` of them unfinished) and its
    MLflow ``runs``."""

    study: str
    trials: int
    running: int
    runs: tuple[str, ...]

    def __str__(self) -> str:
        running = f", {self.running} running (their workers will fail)" if self.running else ""
        return (f"study {self.study!r}: {self.trials} trial(s){running} and "
                f"{len(self.runs)} MLflow run(s)")


def derived_from(storage: str, name: str) -> tuple[str, ...]:
    """The studies of ``storage`` derived from ``name`` (its ablations, its selection): those
    named as a derived study of it is named whose stored plan says it is of ``name``."""
    named = [other for other in sorted(study_names(storage))
             if other.startswith(f"{name}-ablate-") or other == selection_name(name)]
    return tuple(other for other in named if any(
        (stored_plan(storage, other, kind) or {}).get("of") == name
        for kind in ("ablation", "selection")))


def plan_deletion(storage: str, name: str, reader: RunReader | None = None,
                  on_read: Callable[[int], None] = lambda read: None) -> Deletion:
    """What :func:`delete` would remove, read without writing anything (``on_read``: as
    :meth:`~rnnlab.tracking.store.RunReader.study_run_ids` reads the study's runs).

    Raises:
        RnnlabError: no such study in the storage, or studies were derived from it (delete
            those first: their reports and resumes read it).
    """
    study = load_study(storage, name)
    if derived := derived_from(storage, name):
        raise RnnlabError(f"study {name!r} has studies derived from it ({', '.join(derived)}): "
                          "delete those first (`rnnlab delete NAME` for each)")
    trials = study.get_trials(deepcopy=False)
    parent = study.user_attrs.get(ATTR_PARENT)
    runs = tuple((reader or RunReader()).study_run_ids(parent, on_read)) if parent else ()
    return Deletion(name, len(trials), sum(t.state == TrialState.RUNNING for t in trials), runs)


def delete(storage: str, plan: Deletion, reader: RunReader | None = None,
           on_run: Callable[[int], None] = lambda done: None) -> None:
    """Delete the study ``plan`` names and its runs (see the module's doc for the order);
    ``on_run`` is told how many runs are deleted after each (a 10,000-trial study's take a
    while: one call each, MLflow's own delete)."""
    client = (reader or RunReader()).client
    for done, run_id in enumerate(plan.runs, start=1):
        client.delete_run(run_id)
        on_run(done)
    optuna.delete_study(study_name=plan.study, storage=open_storage(storage))
