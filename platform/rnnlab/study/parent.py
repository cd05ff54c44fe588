"""A study and its own MLflow run: opened (or resumed) from a spec, numbered workers, settled.

Every command that runs trials, on any machine, opens the study here: the first creates the
Optuna study and its parent MLflow run; later ones resume both. Whoever stops last settles the
parent run to what the study is.
"""

from __future__ import annotations

import logging
import warnings

import optuna
from mlflow.exceptions import MlflowException
from optuna.trial import TrialState

from rnnlab.core.spec import flatten
from rnnlab.core.study_spec import StudySpec
from rnnlab.errors import RnnlabError, mask_url
from rnnlab.interrupts import whole
from rnnlab.retrying import MAX_WAIT_S, configure
from rnnlab.storage.adapter import check_appendable, open_storage
from rnnlab.storage.keys import (
    ATTR_BUDGET,
    ATTR_EXPERIMENT,
    ATTR_PARENT,
    ATTR_SPEC,
    ATTR_WORKERS,
    FINISHED,
)
from rnnlab.storage.locks import study_lock
from rnnlab.study.spec_change import check_resume
from rnnlab.study.ui import runs_of
from rnnlab.tracking.tracker import Tracker
from rnnlab.tracking.ui import save_view

log = logging.getLogger(__name__)


def open_study(spec: StudySpec, storage: str, tracker: Tracker, *,
               sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None,
               allow_spec_change: bool = False) -> optuna.Study:
    """Create the study, or load it when the name exists (resume); keep its parent MLflow run.

    A study resumes only with the spec it was made with (:mod:`rnnlab.study.spec_change`):
    a change that could alter results is refused before anything is written, and so is any
    other change unless ``allow_spec_change``; the stored spec then becomes this one. The
    budget stored on the study becomes this spec's ``n_trials``, so a larger ``--n-trials``
    extends a study and rerunning the same command finishes it; a smaller one than the trials
    finished leaves it at those.

    Raises:
        RnnlabError: the study exists with another spec (or, made outside rnnlab, with the
            other direction), or a store cannot be used (a journal that ends in an incomplete
            record is not written to, an MLflow experiment of the study's name that is deleted
            takes no run).
    """
    s = spec.study
    # Outages mid-study are ridden out for the spec's limit, and retried at least once a
    # heartbeat interval: live trials stamp again as soon as the database is back.
    configure(s.store_outage_limit, min(MAX_WAIT_S, s.heartbeat_interval))
    check_appendable(storage)  # before the study's lock file or anything else is written
    tracker.check_experiment(s.name)  # deleted (in the MLflow UI, say): no run goes there
    with study_lock(storage, s.name):
        try:  # loaded first: resuming writes nothing until the spec is accepted
            study = optuna.load_study(study_name=s.name, storage=open_storage(storage),
                                      sampler=sampler, pruner=pruner)
        except KeyError:
            study = optuna.create_study(
                study_name=s.name, storage=open_storage(storage), direction=s.direction,
                load_if_exists=True, sampler=sampler, pruner=pruner)
        else:
            check_resume(s.name, study.user_attrs.get(ATTR_SPEC), spec,
                         allow_spec_change=allow_spec_change)
        if study.direction.name.lower() != s.direction:
            raise RnnlabError(f"study {s.name!r} exists with direction "
                              f"{study.direction.name.lower()}; the spec says {s.direction}")
        budget = max(s.n_trials, finished_count(study))  # never below what has run
        if study.user_attrs.get(ATTR_BUDGET) != budget:
            study.set_user_attr(ATTR_BUDGET, budget)
        if study.user_attrs.get(ATTR_SPEC) != (as_json := spec.model_dump(mode="json")):
            study.set_user_attr(ATTR_SPEC, as_json)
        if study.metric_names != [s.metric]:  # not "Objective 0" in optuna-dashboard
            _name_metric(study, s.metric)
        if ATTR_PARENT not in study.user_attrs:
            _start_parent(study, spec, storage, tracker)
    return study


def _name_metric(study: optuna.Study, metric: str) -> None:
    """Name the objective on the study, so that every Optuna tool (optuna-dashboard, plots,
    ``trials_dataframe``) labels it with the spec's metric; experimental in Optuna since 3.2."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([metric])


@whole
def _start_parent(study: optuna.Study, spec: StudySpec, storage: str, tracker: Tracker) -> None:
    """Create the study's MLflow run and keep its id on the study, as one step: a run created
    is a run the study knows of."""
    s = spec.study
    run_id = tracker.start_run(s.name, s.name, tags={
        "rnnlab.kind": "study", "rnnlab.study": s.name, "rnnlab.storage": mask_url(storage)},
        extra_params={f"study.{k}": v for k, v in flatten(s).items()} | {
            f"search.{k}": v.model_dump(exclude_none=True) for k, v in spec.search.items()})
    tracker.flush(run_id)  # its params are in the store before any worker reads them
    study.set_user_attr(ATTR_PARENT, run_id)
    study.set_user_attr(ATTR_EXPERIMENT, s.name)
    # The trials table as a saved view of the experiment: any MLflow UI lists it under "Views".
    # A convenience: a store that refuses it (a server's permissions, say) stops no sweep.
    try:
        save_view(tracker.client, tracker.experiment_id(s.name), runs_of(study))
    except MlflowException as exc:
        log.warning("rnnlab: the trials view of study %r was not saved in its MLflow "
                    "experiment (%s); `rnnlab ui` saves it again", s.name,
                    str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__)


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def budget_used(study: optuna.Study) -> bool:
    return finished_count(study) >= study.user_attrs.get(ATTR_BUDGET, 0)


def reopen_parent(study: optuna.Study, tracker: Tracker) -> None:
    """Mark the study's run RUNNING again while trials are to run (a resumed study)."""
    if not budget_used(study):
        tracker.mark_running(study.user_attrs[ATTR_PARENT])


def settle_parent(study: optuna.Study, tracker: Tracker, *, interrupted: bool = False) -> str:
    """Set the study's parent run to what the study is: FINISHED once the budget is used,
    RUNNING while trials run elsewhere, else KILLED (stopped early; a rerun resumes it)."""
    running = bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    if budget_used(study):
        status = "FINISHED"
    elif running and not interrupted:
        status = "RUNNING"
    else:
        status = "KILLED"
    run_id = study.user_attrs[ATTR_PARENT]
    if status == "RUNNING":
        tracker.mark_running(run_id)
    else:
        tracker.end_run(run_id, status)
        tracker.refresh_statistics()
    return status


def reserve_indices(storage: str, study: optuna.Study, n: int) -> int:
    """Number ``n`` new workers of the study, counting every command on every machine; returns
    the first number.

    A worker's number offsets its sampler's seed: two machines that both numbered their workers
    from 0 would draw the same points, and so would a resumed sweep.
    """
    with study_lock(storage, study.study_name):
        first = study.user_attrs.get(ATTR_WORKERS, 0)  # read from the storage, under the lock
        study.set_user_attr(ATTR_WORKERS, first + n)
    return first
