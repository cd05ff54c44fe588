"""Ctrl-C and SIGTERM wait for a store write to end, and a second one does not (each case runs
in a fresh Python process, which signals itself)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import os, signal, sys
from rnnlab import interrupts
from rnnlab.interrupts import install_handlers, uninterrupted, whole
install_handlers(once={once})
steps = []

if {nested}:  # the second signal lands while the first one's handler is still running
    walk = interrupts._importing

    def second_lands(frame):
        interrupts._importing = walk
        os.kill(os.getpid(), signal.{sig})
        return walk(frame)

    interrupts._importing = second_lands

@whole
def write():
    os.kill(os.getpid(), signal.{sig})
    steps.append("after first")
    if {twice}:
        try:
            os.kill(os.getpid(), signal.{sig})
            steps.append("after second")
        except KeyboardInterrupt as exc:
            steps.append("second raised " + type(exc).__name__)
            raise
    steps.append("write done")

try:
    write()
except KeyboardInterrupt as exc:
    steps.append("raised " + type(exc).__name__)
print(",".join(steps))
"""


def run(sig: str = "SIGINT", *, once: bool = False, twice: bool = False,
        nested: bool = False) -> str:
    code = SCRIPT.format(sig=sig, once=once, twice=twice, nested=nested)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    return out.stdout.strip()


@pytest.mark.parametrize("sig, name", [("SIGINT", "KeyboardInterrupt"),
                                       ("SIGTERM", "Terminated")])
def test_an_interrupt_waits_for_the_write_then_raises(sig, name):
    assert run(sig) == f"after first,write done,raised {name}"


def test_a_second_ctrl_c_raises_at_once():
    assert run(twice=True) == ("after first,second raised KeyboardInterrupt,"
                               "raised KeyboardInterrupt")


def test_a_worker_process_takes_the_first_signal_and_ignores_the_next():
    assert run(once=True, twice=True) == "after first,after second,write done,raised " \
                                         "KeyboardInterrupt"


@pytest.mark.parametrize("sig, name", [("SIGINT", "KeyboardInterrupt"),
                                       ("SIGTERM", "Terminated")])
def test_a_worker_ignores_a_second_signal_that_lands_while_the_first_is_handled(sig, name):
    # A Ctrl-C reaches a worker from the terminal and, a moment later, from the command that
    # forwards it: landing inside the first one's handler, the second cut the worker's store
    # write, and left its SQLite transaction open, locking every other write for a minute
    assert run(sig, once=True, nested=True) == f"after first,write done,raised {name}"


IMPORTED = """
import os, signal, time
os.kill(os.getpid(), signal.{sig})  # as if a C++ extension's import were running here
deadline = time.monotonic() + 0.3
while time.monotonic() < deadline:
    pass
DONE = True
"""

IMPORTER = """
import sys, time
from rnnlab import interrupts
interrupts._HELD_IMPORTS = ("slow_import",)  # a stand-in for torch, whose import is held
interrupts.install_handlers()
try:
    import slow_import
    # the signal comes again from a thread (interrupt_main), which no sleep wakes from: short
    # sleeps let it be raised within 10 ms, and 10 s without it is still a failure
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.01)
    print("never raised")
except KeyboardInterrupt as exc:
    done = getattr(sys.modules.get("slow_import"), "DONE", False)
    print(type(exc).__name__, "after the import" if done else "inside the import")
"""


@pytest.mark.parametrize("sig, name", [("SIGINT", "KeyboardInterrupt"),
                                       ("SIGTERM", "Terminated")])
def test_a_signal_during_an_import_is_raised_once_the_import_is_done(tmp_path, sig, name):
    """Raised inside torch's import (Python called from C++), a KeyboardInterrupt aborted the
    process or made it kill itself with SIGINT on exit; it now waits for the import."""
    (tmp_path / "slow_import.py").write_text(IMPORTED.format(sig=sig))
    out = subprocess.run([sys.executable, "-c", IMPORTER], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path, check=True)
    assert out.stdout.strip() == f"{name} after the import", out.stderr
