"""Workers whose model is replaced by an instant objective, timed phase by phase
(benchmarks/study_machinery.py).

Everything a worker does around training stays real: claiming under the study's lock (reaping,
strata, the sampler's model), heartbeats, sampling the config, the trial's MLflow run and its
per-epoch metrics, Optuna reports and the pruner, closing the run and telling the study. Only
``fit`` returns at once, with a made-up curve, and no data is loaded. Each worker process writes
what each of its trials spent where to ``$RNNLAB_BENCH_TIMINGS/<pid>.json``, and the CPU time
the process spent on it (its heartbeat thread's included).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TIMINGS_ENV = "RNNLAB_BENCH_TIMINGS"
PHASES = ("claim", "wait", "held", "sampler", "sample", "report", "tracking", "tell", "cpu")

_records: list[dict[str, float]] = []
_started: list[float] = []  # when this process's worker began: its first trial says how
# long joining the study took (opening it, reading its trials)
_current: dict[str, float] = {}
_depth = threading.local()
_patched: list[bool] = []


def _timed(phase: str, fn):
    """``fn``, its time added to ``phase`` of the current trial (the outermost timed call of
    this thread only: a timed call inside another is not counted twice)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(_depth, "n", 0) or threading.current_thread() is not threading.main_thread():
            return fn(*args, **kwargs)
        _depth.n = 1
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _current[phase] = _current.get(phase, 0.0) + time.perf_counter() - started
            _depth.n = 0

    return wrapper


def _sampler_timed(fn):
    """The sampler's own time (inside a claim or a config's sampling): kept apart, not
    subtracted from the phase it runs in."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _current["sampler"] = _current.get("sampler", 0.0) + time.perf_counter() - started

    return wrapper


def instant_fit(config, callbacks=(), *, data=None, resume=None, on_checkpoint=None):
    """``rnnlab.train.fit`` without a model: each epoch's metrics made up, every callback
    called as fit calls them, stopping where one asks to."""
    from rnnlab.train import EPOCH_METRICS, FitResult

    rng = random.Random()
    ceiling, history, reason = rng.uniform(0.3, 0.98), [], None
    for epoch in range(1, config.train.epochs + 1):
        acc = ceiling * (1 - 0.5 ** epoch) + rng.uniform(-0.01, 0.01)
        metrics = dict.fromkeys(EPOCH_METRICS, 0.5) | {"val_acc": acc, "train_acc": acc}
        history.append(metrics)
        for callback in callbacks:
            said = callback(epoch, metrics)
            if said:
                reason = said if isinstance(said, str) else "stopped by a callback"
        if reason:
            break
    return FitResult(status="stopped" if reason else "completed", history=history, model=None,
                     data_info={}, device="cpu", stop_reason=reason)


def patch() -> None:
    """Replace the model by :func:`instant_fit` and time each phase of a trial (this
    process)."""
    if _patched:
        return
    _patched.append(True)
    import optuna

    from rnnlab.study import claims, worker
    from rnnlab.tracking.tracker import Tracker

    worker.fit = instant_fit
    worker.SplitsCache = _NoData
    worker.claim_anew = _claim_timed(worker.claim_anew)
    claims.study_lock = _lock_timed(claims.study_lock)
    worker.sample_config = _timed("sample", worker.sample_config)
    worker._Reporter.__call__ = _timed("report", worker._Reporter.__call__)
    worker.tell_running = _timed("tell", worker.tell_running)
    for name in ("start_run", "log_metrics", "log_result", "end_run", "set_tags"):
        setattr(Tracker, name, _timed("tracking", getattr(Tracker, name)))
    logger = Tracker.epoch_logger
    Tracker.epoch_logger = lambda self, run_id: _timed("tracking", logger(self, run_id))
    for cls in (optuna.samplers.TPESampler, optuna.samplers.RandomSampler,
                optuna.samplers.GPSampler):
        for name in ("infer_relative_search_space", "sample_relative", "sample_independent"):
            if name in vars(cls):
                setattr(cls, name, _sampler_timed(getattr(cls, name)))
    run_trial = worker.Worker.run_trial

    def timed_run_trial(self, trial):
        started = time.perf_counter()
        try:
            return run_trial(self, trial)
        finally:
            _current["total"] = _current.get("total", 0.0) + time.perf_counter() - started
            _current["cpu"] = time.process_time() - _current.get("cpu", 0.0)
            _current["end"] = time.time()
            _current["number"] = trial.number
            _records.append(dict(_current))
            _current.clear()

    worker.Worker.run_trial = timed_run_trial


def _claim_timed(claim):
    """The claim, timed; one that found no room (the worker waits) is not a trial's."""

    def timed(*args: Any, **kwargs: Any):
        _current.clear()
        began, started, cpu = time.time(), time.perf_counter(), time.process_time()
        trial = claim(*args, **kwargs)
        if trial is not None:
            _current["claim"] = time.perf_counter() - started
            _current["total"] = _current["claim"]
            _current["start"], _current["cpu"] = began, cpu
            if not _records and _started:  # this worker's first trial
                _current["join"] = began - _started[-1]
        else:
            _current.clear()
        return trial

    return timed


def _lock_timed(lock):
    """The study's lock, timed: how long a claim waited for it, and held it (what every other
    worker's claim waits for meanwhile)."""

    @contextlib.contextmanager
    def timed(*args: Any, **kwargs: Any) -> Iterator[None]:
        asked = time.perf_counter()
        with lock(*args, **kwargs):
            got = time.perf_counter()
            _current["wait"] = got - asked
            try:
                yield
            finally:
                _current["held"] = time.perf_counter() - got

    return timed


class _NoData:
    def get(self, *args: Any) -> None:
        return None


def dump() -> None:
    folder = os.environ.get(TIMINGS_ENV)
    if folder:
        Path(folder, f"{os.getpid()}.json").write_text(json.dumps(_records))


def work_instant(*args: Any, **kwargs: Any) -> int:
    """``rnnlab.study.worker.work_process`` with the instant objective, timed."""
    _started.append(time.time())
    patch()
    from rnnlab.study.worker import work_process

    try:
        return work_process(*args, **kwargs)
    finally:
        dump()


def work_here(*args: Any, **kwargs: Any) -> int:
    """``rnnlab.study.worker.work`` in this process (one worker), with the instant objective."""
    _started.append(time.time())
    patch()
    from rnnlab.study import worker

    _records.clear()
    try:
        return worker.work(*args, **kwargs)
    finally:
        dump()
