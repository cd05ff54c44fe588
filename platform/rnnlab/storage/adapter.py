"""The Optuna adapter: storages by URL (a journal path or an RDB URL), refused in one line when
damaged or another tool's, and every call into Optuna's internals (docs/decisions.md,
"Storages")."""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import functools
import logging
import math
import os
import shlex
import threading
import time
from collections.abc import Container
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend

# Private in Optuna, but the documented extension point for journal file locks.
from optuna.storages.journal._file import BaseJournalFileLock

# Private too: Optuna's tell without Study.tell's read-back of the trial (tell_running).
from optuna.study import _tell
from optuna.trial import FrozenTrial, TrialState

from rnnlab.errors import RnnlabError, mask_url, with_password
from rnnlab.interrupts import uninterrupted, whole
from rnnlab.storage import journal
from rnnlab.storage.cache import TrialCache
from rnnlab.storage.forwarding import (
    ForwardingStorage,
    StratumStorage,
    WindowStorage,
    indexed,
    trial_levels,
)
from rnnlab.storage.keys import (
    ATTR_SPEC,
    FIXED_PARAMS,
    HEARTBEAT,
    TRIAL_REASON,
    enqueued_params,
    trained_params,
)
from rnnlab.storage.rdb import FIX, has_schema, open_rdb
from rnnlab.storage.riding import RidingStorage, back_at

DEFAULT_STORAGE = "rnnlab.journal"
# The storage's password, for a URL that names its user only: how an engine's workers get it
# without the password on a command line or in a file (README, "Secrets").
PASSWORD_ENV = "RNNLAB_STORAGE_PASSWORD"

log = logging.getLogger(__name__)


class FlockLock(BaseJournalFileLock):
    """A journal lock the kernel releases when its holder dies.

    Optuna's own file locks are lock *files*: a worker SIGKILLed while holding one leaves it
    behind, and every other worker stalls for the lock's grace period. ``flock`` cannot leak.
    Each acquire opens its own file description, so threads of one process exclude each other
    too; closing it releases the lock. No in-process lock is held: a Ctrl-C that lands between
    acquire and release must not leave a lock that the interrupted trial's cleanup then waits
    on forever.
    """

    def __init__(self, path: str):
        self.path = f"{path}.lock"
        self._local = threading.local()

    def acquire(self) -> bool:
        stale = getattr(self._local, "fh", None)
        if stale is not None:  # an interrupt struck between this thread's acquire and release
            stale.close()
        self._local.fh = open(self.path, "a")  # noqa: SIM115 - closed by release()
        fcntl.flock(self._local.fh, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        fh, self._local.fh = getattr(self._local, "fh", None), None
        if fh is not None:
            fh.close()  # closing the file description releases the flock


def is_rdb(url: str) -> bool:
    return "://" in url


def open_storage(url: str = DEFAULT_STORAGE) -> BaseStorage:
    """Open (creating if needed) the storage a URL or path names; cached per process. Each of
    its writes runs whole: an interrupt waits for it to end (:mod:`rnnlab.interrupts`).

    Raises:
        RnnlabError: the database cannot be reached or the path cannot be written.
    """
    return _WholeStorage(_inner(_key(url)))


def open_database(url: str) -> RidingStorage:
    """The storage on the database server ``url`` names (the one :func:`open_storage` wraps):
    its connections and outage record, for what must hold a connection (the study's lock).

    Raises:
        RnnlabError: the database cannot be reached.
        ValueError: ``url`` names a file, not a database server.
    """
    storage = _inner(_key(url))
    if not isinstance(storage, RidingStorage):
        raise ValueError(f"{mask_url(url)} names a file, not a database server")
    return storage


def _key(url: str) -> str:
    # A journal keeps its replayed state in memory: key the cache on the absolute path, so a
    # relative name opened from another folder is another storage.
    return with_secret(url) if is_rdb(url) else str(Path(url).expanduser().absolute())


def with_secret(url: str) -> str:
    """A database URL with the password :data:`PASSWORD_ENV` holds put back, where the URL
    names a user and no password (as engines hand URLs to their workers)."""
    return with_password(url, os.environ.get(PASSWORD_ENV))


@functools.lru_cache(maxsize=8)
def _inner(url: str) -> BaseStorage:
    if not is_rdb(url):
        return _journal_storage(Path(url).expanduser())
    if url.startswith("sqlite"):  # a file: no server to lose
        return TrialCache(open_rdb(url))  # Optuna's cache, indexed, before the file
    return RidingStorage(open_rdb(url), url)  # a server: its outages are ridden out


class _WholeStorage(ForwardingStorage):
    """A storage whose writes an interrupt never cuts in half."""

    _WRITES = frozenset({
        "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
        "create_new_trial", "set_trial_param", "set_trial_state_values",
        "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr"})

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name not in self._WRITES:
            return super().call(name, *args, **kwargs)
        with uninterrupted():
            return super().call(name, *args, **kwargs)


def _journal_storage(path: Path) -> JournalStorage:
    """The journal at ``path`` (created when missing), replayed; refused in one line when it is
    another tool's file or holds a record Optuna cannot replay."""
    if not path.parent.is_dir():
        raise RnnlabError(f"storage {str(path)!r}: folder {str(path.parent)!r} does not exist")
    if path.is_file() and (why := journal.foreign(path)):
        raise RnnlabError(f"storage {str(path)!r} {why}")
    try:
        backend = JournalFileBackend(str(path), lock_obj=FlockLock(str(path)))
    except OSError as exc:
        raise RnnlabError(f"storage {str(path)!r}: cannot open ({exc.strerror})") from None
    try:
        return JournalStorage(backend)  # replays the whole journal
    except (ValueError, KeyError, TypeError):  # a record that is not JSON, or not Optuna's
        found = journal.bad_record(path)
        if found is None:
            raise
        raise RnnlabError(
            f"journal {str(path)!r} is damaged: record {found[0]} (at byte {found[1]}) is not "
            f"an Optuna operation, so the study cannot be replayed; {FIX}") from None


def study_names(url: str) -> list[str]:
    """The studies a storage holds. A journal file that does not exist, or a database without
    Optuna's tables, holds none (and reading it creates nothing). A journal whose last record
    is incomplete is read up to it, with a note saying so (once).

    Raises:
        RnnlabError: the storage cannot be opened, or is damaged or another tool's.
    """
    if not is_rdb(url) and not Path(url).expanduser().exists():
        return []
    if is_rdb(url) and not has_schema(with_secret(url)):
        return []
    storage = open_storage(url)
    if not is_rdb(url):
        _note_incomplete(_key(url))
    return [s.study_name for s in storage.get_all_studies()]


_NOTED: set[str] = set()  # journals whose end has been looked at in this process


def _note_incomplete(path: str) -> None:
    if path in _NOTED:
        return
    _NOTED.add(path)
    with _append_lock(Path(path)):
        cut = journal.incomplete_tail(Path(path))
    if cut is not None:  # Optuna skipped it; how many it read is its replay's count
        read = getattr(getattr(_inner(path), "_replay_result", None), "log_number_read", None)
        log.warning("rnnlab: note: journal %r ends in an incomplete record (a crash "
                    "mid-write?), which is skipped; the %srecords before it are read", path,
                    "" if read is None else f"{read} ")


def check_appendable(url: str) -> None:
    """Before writing to a journal: refuse one whose last record is incomplete, since the next
    record appended would be glued to it and the journal would no longer load.

    Raises:
        RnnlabError: the journal ends in an incomplete record (or cannot be opened).
    """
    if is_rdb(url) or not (path := Path(url).expanduser().absolute()).is_file():
        return
    open_storage(url)  # damaged or another tool's: refused here, as one line
    with _append_lock(path):
        cut = journal.incomplete_tail(path)
    if cut is not None:
        raise RnnlabError(
            f"journal {str(path)!r} ends in an incomplete record (a crash mid-write?), and "
            "writing after it would make the journal unreadable; keep a copy, cut it to its "
            f"complete records (truncate -s {cut} {shlex.quote(str(path))}) and run again")


@contextlib.contextmanager
def _append_lock(path: Path):
    """Hold the journal's append lock while its end is read, so a record being appended by a
    running worker is not taken for a cut one; only when a lock file exists (nothing is
    created)."""
    if not Path(f"{path}.lock").exists():
        yield
        return
    lock = FlockLock(str(path))
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def load_study(url: str, name: str) -> optuna.Study:
    """Load an existing study, or fail with a line that lists the studies there are."""
    names = study_names(url)
    if name not in names:
        listing = ", ".join(sorted(names)) or "none"
        close = difflib.get_close_matches(name, names, n=1)
        raise RnnlabError(f"no study named {name!r} in storage {mask_url(url)} "
                          + (f"(did you mean {close[0]!r}? " if close else "(")
                          + f"studies there: {listing}); check the name or pass --storage")
    return optuna.load_study(study_name=name, storage=open_storage(url))


def stored_plan(url: str, name: str, section: str) -> dict[str, Any] | None:
    """A derived study's plan, ``study.<section>`` of its stored spec (as JSON); None where the
    study or its plan is not there."""
    if name not in study_names(url):
        return None
    return ((load_study(url, name).user_attrs.get(ATTR_SPEC) or {}).get("study") or {}).get(
        section) or None


def planned_runs(url: str, name: str,
                 section: str) -> tuple[dict[str, Any], list[tuple[dict[str, Any], float]]] | None:
    """A derived study's plan (:func:`stored_plan`) and its complete trials as ``(params
    enqueued, value)``; None where the study or plan is not there."""
    plan = stored_plan(url, name, section)
    if plan is None:
        return None
    return plan, [(enqueued_params(t), t.value) for t in load_study(url, name).get_trials(
        deepcopy=False, states=(TrialState.COMPLETE,))]


# --- trial internals ------------------------------------------------------------------------
# Optuna's public API writes to a trial only through the Trial object of the worker that asked
# for it, and has no trial state but through tell. Heartbeats come from a thread of their own,
# and a trial whose worker died is failed by another worker: both write through the storage by
# trial id, as Optuna's own heartbeat code does (there is no public equivalent to test against).

def stamp_heartbeat(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> None:
    """Stamp a running trial as alive now.

    Raises:
        optuna.exceptions.UpdateFinishedTrialError: the trial has finished meanwhile.
    """
    study._storage.set_trial_system_attr(trial._trial_id, HEARTBEAT, time.time())


def start_trial(study: optuna.Study, fixed: dict[str, Any] | None,
                user_attrs: dict[str, Any]) -> optuna.Trial:
    """A new trial of ``study``, RUNNING and stamped alive, enqueued with the params ``fixed``
    (a stratum's levels: sampled as they are; None: none) and holding ``user_attrs``, made in
    one write: what ``enqueue_trial``, ``ask``, a heartbeat and each attribute did in as many
    writes and two reads of the study's trials."""
    now = datetime.now()
    system_attrs: dict[str, Any] = {HEARTBEAT: now.timestamp()}
    if fixed:
        system_attrs[FIXED_PARAMS] = fixed
    template = FrozenTrial(number=-1, state=TrialState.RUNNING, value=None, values=None,
                           datetime_start=now, datetime_complete=None, params={},
                           distributions={}, user_attrs=user_attrs, system_attrs=system_attrs,
                           intermediate_values={}, trial_id=-1)
    return optuna.Trial(study, study._storage.create_new_trial(study._study_id, template))


def last_heartbeat(trial: FrozenTrial) -> float:
    """When a running trial was last stamped (its start, before the first stamp), or when this
    process's database came back from an outage, if later: no one could stamp meanwhile."""
    return max(trial.system_attrs.get(HEARTBEAT) or trial.datetime_start.timestamp(),
               back_at())


def stratum_study(study: optuna.Study, match: dict[str, Any],
                  sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """The study as one of its strata sees it: only the trials whose params match ``match``
    (what a stratified pruner and sampler judge a trial against). Writes reach the study.

    Args:
        study: the whole study.
        match: the stratum's levels, ``{key: value}``.
        sampler: the sampler the view names as its own (the stratum's).
    """
    return optuna.Study(study_name=study.study_name,
                        storage=StratumStorage(study._storage, match,
                                               (study.study_name, study._study_id)),
                        sampler=sampler,
                        pruner=optuna.pruners.NopPruner())


def stratum_results(study: optuna.Study, matches: list[dict[str, Any]]
                    ) -> list[list[tuple[int, float, dict[str, Any]]]]:
    """Each stratum's (``matches``: ``{key: level}``; ``{}`` the whole study) complete trials
    as ``(number, value, params trained with)``."""
    views = [stratum_study(study, m, study.sampler) if m else study for m in matches]
    return [[(t.number, t.value, trained_params(t))
             for t in view.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
            for view in views]


def levels_of(study: optuna.Study, trials: list[FrozenTrial],
              keys: tuple[str, ...]) -> list[tuple | None]:
    """Each of the study's ``trials``' values of ``keys``, kept with the study's storage
    (:func:`~rnnlab.storage.forwarding.trial_levels`)."""
    return trial_levels(study._storage, study._study_id, trials, keys)


class StudyRead:
    """A study's trials read once (what a claim decides on, under the study's lock), and
    selections of them by state and stratum: taken from the storage's index where it keeps one
    (:class:`~rnnlab.storage.cache.TrialCache`: no query, no pass over 10,000 trials), else
    filtered from the one read."""

    def __init__(self, study: optuna.Study):
        self.study, self.indexed = study, indexed(study._storage)
        # the read itself (an empty selection, where the index answers the rest)
        self.trials = study.get_trials(deepcopy=False, states=() if self.indexed else None)

    def select(self, states: Container[TrialState],
               where: tuple[tuple[str, ...], tuple[Any, ...]] | None = None) -> list[FrozenTrial]:
        """The trials in ``states`` whose values of ``where``'s keys are its values (any:
        None), by number, as read."""
        study = self.study
        if self.indexed:
            return study._storage.get_trials_where(study._study_id, False, states, where,
                                                   math.inf)
        found = [t for t in self.trials if t.state in states]
        if where is None:
            return found
        levels = levels_of(study, found, where[0])
        return [t for t, got in zip(found, levels, strict=True) if got == where[1]]


def window_study(study: optuna.Study, window: int, keep_best: int,
                 sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """The study as a windowed sampler sees it (:class:`WindowStorage`): its ``window`` most
    recent finished trials and the ``keep_best`` best of the others. Writes reach the study."""
    view = WindowStorage(study._storage, window, keep_best,
                         study.direction == optuna.study.StudyDirection.MAXIMIZE,
                         (study.study_name, study._study_id))
    return optuna.Study(study_name=study.study_name, storage=view, sampler=sampler,
                        pruner=optuna.pruners.NopPruner())


def tell_running(study: optuna.Study, trial: optuna.Trial, value: float | None,
                 state: TrialState) -> bool:
    """Tell the study a running trial's outcome. Returns False when another worker had
    finished the trial first (failed it: its heartbeat looked lost), and nothing was told;
    Optuna says so with UpdateFinishedTrialError, or, when it reads the trial finished before
    writing, with a ValueError like any wrong call, told apart here by the trial's state.

    Optuna's tell less its last step: ``Study.tell`` reads the told trial back to return a
    copy of it, a read of the study's database no worker uses (one a trial)."""
    try:
        _tell._tell_with_warning(study=study, trial=trial, value_or_values=value, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    except ValueError:
        if study._storage.get_trial(trial._trial_id).state.is_finished():
            return False
        raise
    return True


@whole
def fail_running(study: optuna.Study, trial: optuna.Trial | FrozenTrial,
                 reason: str) -> FrozenTrial | None:
    """Mark a running trial FAIL with ``reason``.

    Returns:
        The failed trial, or None when another worker had already finished it.
    """
    storage, trial_id = study._storage, trial._trial_id
    try:
        storage.set_trial_user_attr(trial_id, TRIAL_REASON, reason)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
        return None  # another worker got there first
    return storage.get_trial(trial_id)
