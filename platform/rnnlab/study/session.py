"""One command's part in a study: what every engine does around running its workers.

Check the data, open (or resume) the study and its MLflow run, number this command's workers,
report progress while they run, and settle the study's run however they end. The local engine
(:mod:`rnnlab.engines.local`) and the Ray engine (:mod:`rnnlab.engines.ray_engine`) both run
their workers inside a :class:`Session`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from rnnlab.core import data
from rnnlab.core.study_spec import StudySpec
from rnnlab.retrying import StoreDown, impatient
from rnnlab.storage.adapter import load_study, study_names
from rnnlab.storage.keys import ATTR_PARENT
from rnnlab.study.claims import close_killed
from rnnlab.study.exits import Exits
from rnnlab.study.parent import (
    budget_used,
    open_study,
    reopen_parent,
    reserve_indices,
    settle_parent,
)
from rnnlab.study.status import StudyStatus, study_status
from rnnlab.tracking.tracker import Tracker

_DATA_PLACE = {"data.source", "data.dir", "data.split", "data.train_size", "data.val_size"}


@dataclass
class SweepResult(StudyStatus):
    """The study's status when this command's workers stopped, and how many trials they ran."""

    trials_run: int = 0


def check_data(spec: StudySpec) -> None:
    """Find (downloading once, if need be) and verify the study's data, and check its split,
    before any worker starts (when the search varies where data comes from, each trial checks
    its own).

    Raises:
        RnnlabError: the data is missing or corrupt, or the split does not fit.
    """
    if not _DATA_PLACE & set(spec.search):
        data.check(spec.data)


class Session:
    """A study as one command that runs workers sees it, from its data check to its settling."""

    def __init__(self, spec: StudySpec, storage: str, *, allow_spec_change: bool = False):
        """Check the data and the tracking store, before the study exists.

        Raises:
            RnnlabError: the data or the tracking store cannot be used.
        """
        check_data(spec)
        self.spec, self.storage, self.allow_spec_change = spec, storage, allow_spec_change
        self.tracker = Tracker()  # fails fast on an unreachable tracking server
        self._study: optuna.Study | None = None

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            raise RuntimeError("the session's study is opened by Session.running()")
        return self._study

    @contextlib.contextmanager
    def running(self) -> Iterator[optuna.Study]:
        """Open (or resume) the study and its run; an interrupt at any moment inside settles
        the study's run (never left RUNNING) and is raised again.

        Raises:
            RnnlabError: the study exists with another spec, or a store cannot be used.
        """
        try:
            self._study = open_study(self.spec, self.storage, self.tracker,
                                     allow_spec_change=self.allow_spec_change)
            yield self._study
        except KeyboardInterrupt:
            self._settle_interrupted()
            raise

    def _settle_interrupted(self) -> None:
        name = self.spec.study.name  # the study may exist by now, though open_study was cut
        if name in study_names(self.storage):
            study = load_study(self.storage, name)
            if ATTR_PARENT in study.user_attrs:
                settle_parent(study, self.tracker, interrupted=True)

    def done(self) -> bool:
        """Whether the study's budget is used with no trial waiting or running: a worker
        started now would find nothing to do."""
        return budget_used(self.study) and not self.study.get_trials(
            deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))

    def reserve(self, n: int) -> int:
        """Number ``n`` workers of this command; the first number
        (:func:`~rnnlab.study.parent.reserve_indices`)."""
        return reserve_indices(self.storage, self.study, n)

    def reopen(self) -> None:
        """Mark the study's run RUNNING while this command's workers run elsewhere."""
        reopen_parent(self.study, self.tracker)

    @contextlib.contextmanager
    def progress(self, on_progress: Callable[[StudyStatus], None] | None,
                 poll_s: float) -> Iterator[None]:
        """Call ``on_progress`` with the study's status every ``poll_s`` seconds meanwhile."""
        stop = threading.Event()
        name = self.spec.study.name

        def poll() -> None:
            while not stop.wait(poll_s):
                with contextlib.suppress(StoreDown):  # the workers say it, in one line each
                    on_progress(study_status(self.storage, name)[0])

        if on_progress:
            threading.Thread(target=poll, daemon=True).start()
        try:
            yield
        finally:
            stop.set()

    def settle(self, exits: Exits | None, killed: Callable[[str], bool] | None = None) -> None:
        """After the workers stopped (``exits`` None: they never ran): close the trials of the
        workers that ``killed`` names (given a trial's worker name) as interrupted, then settle
        the study's run. After a worker stopped on an error, a store that is down is not
        waited for again: the worker's line says what stopped."""
        try:
            if killed is not None:
                close_killed(self.study, self.tracker, killed,
                             (exits and exits.interrupted) or KeyboardInterrupt(),
                             self.spec.study.max_retries)
        finally:
            errors = exits is not None and bool(exits.errors)
            try:
                with impatient(errors):
                    settle_parent(self.study, self.tracker, interrupted=exits is None or errors
                                  or exits.interrupted is not None)
            except StoreDown:
                if not errors:
                    raise

    def result(self, trials_run: int,
               on_progress: Callable[[StudyStatus], None] | None = None) -> SweepResult:
        """The study's status now, with the trials this command's workers ran (also given to
        ``on_progress``)."""
        final = SweepResult(**vars(study_status(self.storage, self.spec.study.name)[0]),
                            trials_run=trials_run)
        if on_progress:
            on_progress(final)
        return final
