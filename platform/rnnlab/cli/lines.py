"""Lines the command line says whatever the command was (shared by the entry point and the app)."""

from __future__ import annotations

import sys

from rnnlab.errors import Terminated
from rnnlab.interrupts import ignore_interrupts


def interrupted(exc: KeyboardInterrupt) -> int:
    """Say in one line that the command was interrupted; returns its exit code (130 for Ctrl-C,
    143 for SIGTERM). Later signals are ignored: what was running is closed already."""
    ignore_interrupts()
    what, code = ("SIGTERM", 143) if isinstance(exc, Terminated) else ("Ctrl-C", 130)
    print(f"rnnlab: interrupted ({what}); what was running is closed as interrupted and "
          "nothing finished is lost", file=sys.stderr, flush=True)
    return code
