"""The Optuna adapter: storages by URL, the keys rnnlab keeps on studies and trials, and every
call into Optuna's internals.

Nothing else in rnnlab touches a private Optuna name (``study._storage``, ``trial._trial_id``,
the journal lock base class) or writes a trial's state directly: they are here, each in one
function that says why. Everything else uses this module's names for attribute keys and states.

A storage is named by one string:

- a file path (default ``rnnlab.journal`` in the working directory): Optuna's journal file
  storage, which many local worker processes share safely (no "database is locked");
- any Optuna RDB URL: ``postgresql://user:pass@host/db``, ``sqlite:///study.db``, ``mysql://...``.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import threading
import time
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

# Private in Optuna, but the documented extension point for journal file locks.
from optuna.storages.journal._file import BaseJournalFileLock
from optuna.trial import FrozenTrial, TrialState

from rnnlab.errors import RnnlabError, mask_url
from rnnlab.interrupts import whole

DEFAULT_STORAGE = "rnnlab.journal"

# Study user attributes.
ATTR_PARENT = "mlflow_parent_run_id"  # the study's own MLflow run, parent of every trial's
ATTR_EXPERIMENT = "mlflow_experiment"
ATTR_BUDGET = "n_trials"  # finished trials wanted (complete + pruned)
ATTR_SPEC = "spec"  # the spec the study was last run with, as JSON
ATTR_WORKERS = "rnnlab:workers_started"  # numbers every worker, on every machine
# Trial user attributes.
TRIAL_RUN_ID = "mlflow_run_id"
TRIAL_CONFIG = "config"  # the flat config trained with (a draw below zero_below is 0)
TRIAL_REASON = "reason"  # why a trial was pruned or failed
TRIAL_WORKER = "worker"  # host:pid
TRIAL_RETRIES = "retries"
TRIAL_RETRY_OF = "retry_of"
TRIAL_RESUME_RUN = "resume_run_id"  # the run whose checkpoint a retry resumes from
TRIAL_RESUMED_FROM = "resumed_from_epoch"
# Trial system attribute: when a running trial's worker last showed it was alive.
HEARTBEAT = "rnnlab:heartbeat"

# A study's budget counts finished trials: complete or pruned (failed ones are retried).
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
FINISHED_NAMES = tuple(s.name for s in FINISHED)


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
    """Open (creating if needed) the storage a URL or path names; cached per process.

    Raises:
        RnnlabError: the database cannot be reached or the path cannot be written.
    """
    # A journal keeps its replayed state in memory: key the cache on the absolute path, so a
    # relative name opened from another folder is another storage.
    return _open(url if is_rdb(url) else str(Path(url).expanduser().absolute()))


@functools.lru_cache(maxsize=8)
def _open(url: str) -> BaseStorage:
    if not is_rdb(url):
        path = Path(url).expanduser()
        if not path.parent.is_dir():
            raise RnnlabError(f"storage {url!r}: folder {str(path.parent)!r} does not exist")
        try:
            backend = JournalFileBackend(str(path), lock_obj=FlockLock(str(path)))
        except OSError as exc:
            raise RnnlabError(f"storage {url!r}: cannot open ({exc.strerror})") from None
        return JournalStorage(backend)
    try:
        return _rdb_storage(url)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy/driver errors of every kind
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise RnnlabError(
            f"cannot open storage {mask_url(url)}: {reason}; check the URL and that the "
            "database server is running"
        ) from None


def _rdb_storage(url: str) -> RDBStorage:
    """Optuna's RDB storage; on PostgreSQL its schema is created under an advisory lock.

    Workers that start together on an empty database (``docker-compose up --scale worker=N``)
    otherwise race in CREATE TABLE, and all but one fail on a duplicate ``pg_type`` row.
    """
    kwargs = {"engine_kwargs": {"pool_pre_ping": True}}
    if not url.startswith("postgresql"):
        return RDBStorage(url, **kwargs)
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _SCHEMA_LOCK_KEY})
            try:
                return RDBStorage(url, **kwargs)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _SCHEMA_LOCK_KEY})
    finally:
        engine.dispose()


_SCHEMA_LOCK_KEY = int.from_bytes(hashlib.sha1(b"rnnlab:optuna-schema").digest()[:8], "big",
                                  signed=True)


def study_names(url: str) -> list[str]:
    """The studies a storage holds; a journal file that does not exist holds none (and reading
    it does not create it)."""
    if not is_rdb(url) and not Path(url).expanduser().exists():
        return []
    return [s.study_name for s in open_storage(url).get_all_studies()]


def load_study(url: str, name: str) -> optuna.Study:
    """Load an existing study, or fail with a line that lists the studies there are."""
    names = study_names(url)
    if name not in names:
        listing = ", ".join(sorted(names)) or "none"
        raise RnnlabError(f"no study named {name!r} in storage {mask_url(url)} "
                          f"(studies there: {listing}); check the name or pass --storage")
    return optuna.load_study(study_name=name, storage=open_storage(url))


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


def last_heartbeat(trial: FrozenTrial) -> float:
    """When a running trial was last stamped (its start, before the first stamp)."""
    return trial.system_attrs.get(HEARTBEAT) or trial.datetime_start.timestamp()


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
