"""A report's confirmation runs on local worker processes, as many as a sweep starts: each
worker trains a share of the runs the report still needs (:func:`rnnlab.reports.confirm.
train_share`), forked from the fork server; a line says how far they got, with an ETA."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator

from rnnlab.engines.launch import run_workers
from rnnlab.engines.placement import usable_cpus
from rnnlab.reports.confirm import Job, Target, Trainer, finished, train_here, train_share
from rnnlab.retrying import StoreDown
from rnnlab.study.status import duration

POLL_S = 5.0  # how often the store is read for finished runs


def parallel(workers: int | None = None, poll_s: float = POLL_S) -> Trainer:
    """A trainer of confirmation runs on ``workers`` local processes (default: one per CPU,
    at most one per run); one worker trains in this process, one run after another."""

    def train(jobs: list[Job], target: Target, tracking_uri: str | None,
              say: Callable[[str], None]) -> None:
        n = min(workers or usable_cpus(), len(jobs))
        if n <= 1:
            train_here(jobs, target, tracking_uri, say)
            return
        threads = max(1, usable_cpus() // n)
        shares = [[dataclasses.asdict(j) for j in jobs[i::n]] for i in range(n)]
        say(f"confirmation: {len(jobs)} run(s) on {n} local worker(s) x {threads} thread(s)")
        with _progress(jobs, target, tracking_uri, say, poll_s):
            exits = run_workers(train_share, [
                (dataclasses.asdict(target), share, tracking_uri, threads) for share in shares],
                [f"rnnlab-confirm-{i}" for i in range(n)])
        exits.raise_for_exits("the confirmation runs that finished are reused")

    return train


@contextlib.contextmanager
def _progress(jobs: list[Job], target: Target, tracking_uri: str | None,
              say: Callable[[str], None], poll_s: float) -> Iterator[None]:
    """Say how many of ``jobs`` have finished, and when all will have, each time it changes;
    once the workers are done, the last count (a poll may not have seen it)."""
    keys, stop, started = {j.key for j in jobs}, threading.Event(), time.monotonic()
    said = [0]

    def count(last: bool = False) -> None:
        with contextlib.suppress(StoreDown):  # the workers say it, in one line each
            done = len(keys & set(finished(target, tracking_uri)))
            if done != said[0] and done:
                said[0] = done
                spent = time.monotonic() - started
                when = (f"in {duration(spent)}" if last else
                        f"| ETA {duration(spent / done * (len(keys) - done))}")
                say(f"confirmation: {done}/{len(keys)} run(s) trained {when}")

    def poll() -> None:
        while not stop.wait(poll_s):
            count()

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=poll_s)
    count(last=True)
