"""Riding out a store's outage: retried with backoff, said once, ended in one line past the
limit, and never holding Ctrl-C back (the stores themselves: tests/study/test_outages.py)."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time

import pytest

from rnnlab.retrying import (
    DEFAULT_LIMIT_S,
    MAX_WAIT_S,
    Store,
    StoreDown,
    configure,
    impatient,
    reason,
)


@pytest.fixture(autouse=True)
def _quick():
    configure(limit_s=30, max_wait_s=0.05)
    yield
    configure(DEFAULT_LIMIT_S, MAX_WAIT_S)


class Down:
    """A store call that is refused while ``down`` is set, counting its tries per thread."""

    def __init__(self, down: bool = True):
        self.down, self.tries = threading.Event(), 0
        self.by_thread: dict[int, int] = {}
        self._lock = threading.Lock()
        if down:
            self.down.set()

    def __call__(self) -> str:
        with self._lock:
            self.tries += 1
            me = threading.get_ident()
            self.by_thread[me] = self.by_thread.get(me, 0) + 1
        if self.down.is_set():
            raise ConnectionRefusedError(111, "Connection refused")
        return "answer"

    def tried_at_least(self, threads: int, times: int) -> bool:
        with self._lock:
            return sum(n >= times for n in self.by_thread.values()) >= threads


def store() -> Store:
    return Store("the store at x://host", lambda e: isinstance(e, ConnectionError))


def said(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "rnnlab.retrying"]


def test_an_outage_is_said_once_and_its_end_once_however_many_threads_wait(caplog):
    caplog.set_level(logging.WARNING)
    s, call = store(), Down()
    answers: list[str] = []
    threads = [threading.Thread(target=lambda: answers.append(s.call(call))) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while not call.tried_at_least(3, 2) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert call.tried_at_least(3, 2)  # each thread was refused, waited and tried again
    call.down.clear()
    for t in threads:
        t.join(10)
    assert answers == ["answer"] * 3
    lines = said(caplog)
    assert len(lines) == 2
    assert lines[0] == ("rnnlab: the store at x://host unreachable (Connection refused); "
                        "retrying for up to 30 s")
    assert lines[1].startswith("rnnlab: the store at x://host is back after ")
    assert s.back_at > 0 and s.down_since is None and s.outages == 1


def test_a_store_down_past_the_limit_ends_in_one_line(caplog):
    configure(limit_s=0.3, max_wait_s=0.05)
    s, call = store(), Down()
    with pytest.raises(StoreDown) as raised:
        s.call(call)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("the store at x://host unreachable for")
    assert "(Connection refused)" in message and "resumable" in message
    with pytest.raises(StoreDown):  # the same outage: no second wait, no second line
        s.call(call)
    assert len(said(caplog)) == 1


def test_an_error_that_is_not_an_outage_is_raised_at_once(caplog):
    s, calls = store(), []

    def wrong():
        calls.append(1)
        raise ValueError("bad statement")

    with pytest.raises(ValueError):
        s.call(wrong)
    assert calls == [1] and said(caplog) == []


def test_an_impatient_call_fails_at_once_and_says_nothing(caplog):
    s, call = store(), Down()
    with impatient(), pytest.raises(StoreDown):
        s.call(call)
    assert call.tries == 1 and said(caplog) == [] and s.down_since is None


def test_reason_is_the_few_words_that_matter():
    try:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except OSError as inner:
            raise RuntimeError(f"('Connection aborted.', {inner!r})") from None
    except RuntimeError as exc:
        assert reason(exc) == "Connection reset by peer"
    assert reason(RuntimeError("connection failed: server at x failed: Connection refused")) \
        == "Connection refused"


SCRIPT = """
import os, signal, threading, time
from rnnlab.interrupts import install_handlers, whole
from rnnlab.retrying import Store, configure
install_handlers(once=True)  # as in a worker process
configure(limit_s=60)
s = Store("the store", lambda e: isinstance(e, ConnectionError))

def refused():
    raise ConnectionRefusedError(111, "Connection refused")

@whole
def write():  # Ctrl-C waits for a write, but not for a store that is down
    return s.call(refused)

threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
started = time.monotonic()
try:
    write()
except KeyboardInterrupt:
    print(f"interrupted after {time.monotonic() - started:.1f} s")
"""


def test_ctrl_c_is_not_held_back_while_a_store_is_down():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.startswith("interrupted after ") and float(out.split()[2]) < 5, out
