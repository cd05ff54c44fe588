"""Outages of the stores that workers share, ridden out with backoff or ended in one line (exit
code 2, the study resumable); each store's adapter says which errors are outages
(docs/decisions.md, "Outages")."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from rnnlab.errors import RnnlabError
from rnnlab.interrupts import take_pending

DEFAULT_LIMIT_S = 120.0
MAX_WAIT_S = 10.0
_SLICE_S = 0.1  # how often a wait looks for a held-back Ctrl-C
T = TypeVar("T")
log = logging.getLogger(__name__)


class StoreDown(RnnlabError):
    """A store stayed unreachable for longer than the limit (see :func:`configure`)."""


class _Limits:
    limit_s = DEFAULT_LIMIT_S
    max_wait_s = MAX_WAIT_S
    impatient = threading.local()  # .on: this thread's calls do not wait (see impatient())


def configure(limit_s: float = DEFAULT_LIMIT_S, max_wait_s: float = MAX_WAIT_S) -> None:
    """Ride out each outage for up to ``limit_s`` seconds in this process, trying again at
    least every ``max_wait_s`` seconds (a study sets them from its spec)."""
    _Limits.limit_s, _Limits.max_wait_s = limit_s, max_wait_s


@contextlib.contextmanager
def impatient(on: bool = True) -> Iterator[None]:
    """While ``on``, calls of this thread to a store that is down fail at once, with
    :class:`StoreDown` and no line of their own: for writes that are worth a try but not a wait
    (settling a study after its workers stopped, one of them on a store that is down)."""
    before = getattr(_Limits.impatient, "on", False)
    _Limits.impatient.on = before or on
    try:
        yield
    finally:
        _Limits.impatient.on = before


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, as a traceback shows
    them (wrappers hide the cause: Optuna raises its error from SQLAlchemy's, MLflow its own
    while handling the requests library's; ``raise ... from None`` ends the chain)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def reason(exc: BaseException) -> str:
    """What went wrong, in a few words: ``Connection refused``."""
    text = " ".join(str(e) for e in chain(exc))
    found = (re.search(r"\[Errno -?\d+\] ([^\"')(]+)", text)  # [Errno 111] Connection refused
             or re.search(r"Error\(-?\d+, '([^']+)'\)", text)  # ConnectionResetError(104, '...')
             or re.search(r"ResponseError\('([^']+)'", text))  # too many 503 error responses
    if found:
        return found.group(1).strip()
    last = [e for e in chain(exc) if re.search("[A-Za-z]", str(e))][-1:]  # the innermost
    line = str(last[0]).strip().splitlines()[0] if last else type(exc).__name__
    return line.rsplit(": ", 1)[-1][:160]


class Store:
    """One store of this process: its name in messages, which errors mean it is down, and its
    outage, shared by every thread that calls it."""

    def __init__(self, name: str, is_outage: Callable[[BaseException], bool],
                 impatient_s: float = 0.0):
        self.name, self.is_outage = name, is_outage
        # how long even an impatient call rides it out: a store whose "outage" is another
        # writer's lock (held for a write's milliseconds) is worth a short wait, one that is
        # down is not
        self.impatient_s = impatient_s
        self._lock = threading.Lock()
        self.down_since: float | None = None  # monotonic; None while it answers
        self.back_at = 0.0  # wall-clock time it last came back (0: never down)
        self._back_mono = 0.0
        self.outages = 0

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, tried again while the store is down.

        Raises:
            StoreDown: the store stayed down for longer than the limit.
            KeyboardInterrupt: Ctrl-C, also one held back while the store was down.
        """
        tries, first = 0, time.monotonic()
        while True:
            started = time.monotonic()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if isinstance(exc, StoreDown) or not self.is_outage(exc):
                    raise  # a nested call that gave up already, or no outage
                self._wait(exc, tries, started, first)
                tries += 1
                continue
            if self.down_since is not None and started > self.down_since:
                self._back()  # only a call begun after it went down shows that it is back
            return result

    def _wait(self, exc: BaseException, tries: int, started: float, first: float) -> None:
        now, why = time.monotonic(), reason(exc)
        if getattr(_Limits.impatient, "on", False):
            left = self.impatient_s - (now - first)
            if left <= 0:
                raise StoreDown(f"{self.name} unreachable ({why})") from None
            _sleep(min(0.05 * 2.0 ** tries, left))  # quietly: not an outage worth a line
            return
        with self._lock:
            if self.down_since is None and started < self._back_mono:
                return  # sent before the store came back: try again at once
            if self.down_since is None:
                self.down_since, self.outages = now, self.outages + 1
                log.warning("rnnlab: %s unreachable (%s); retrying for up to %g s", self.name,
                            why, _Limits.limit_s)
            down_for = now - self.down_since
        left = _Limits.limit_s - down_for
        if left <= 0:
            raise StoreDown(
                f"{self.name} unreachable for {down_for:.0f} s ({why}); stopped waiting for it "
                "(study.store_outage_limit): the study is resumable, run the same command "
                "again once the store is back") from None
        _sleep(min(2.0 ** tries, _Limits.max_wait_s, left))

    def _back(self) -> None:
        with self._lock:
            if self.down_since is None:
                return
            down_for = time.monotonic() - self.down_since
            self.down_since, self.back_at, self._back_mono = None, time.time(), time.monotonic()
        log.warning("rnnlab: %s is back after %.0f s; carrying on", self.name, down_for)


def _sleep(seconds: float) -> None:
    """Sleep, but raise a Ctrl-C held back by an :func:`~rnnlab.interrupts.uninterrupted` block
    at once: the store is down, so no write can be cut in half."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if (held := take_pending()) is not None:
            raise held
        time.sleep(min(left, _SLICE_S))


_STORES: dict[str, Store] = {}
_STORES_LOCK = threading.Lock()


def store(name: str, is_outage: Callable[[BaseException], bool],
          impatient_s: float = 0.0) -> Store:
    """This process's one :class:`Store` named ``name`` (made on first use)."""
    with _STORES_LOCK:
        if name not in _STORES:
            _STORES[name] = Store(name, is_outage, impatient_s)
        return _STORES[name]
