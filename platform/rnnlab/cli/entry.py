"""The console script. Ctrl-C and SIGTERM are taken over before anything else is imported: one
that lands while the command line is still loading ends in the same one line and exit code as
at any later moment (nothing has been written by then), not in an import traceback."""

from __future__ import annotations

import sys

from rnnlab.errors import Terminated
from rnnlab.interrupts import ignore_interrupts, install_handlers


def interrupted(exc: KeyboardInterrupt) -> int:
    """Say in one line that the command was interrupted; returns its exit code (130 for Ctrl-C,
    143 for SIGTERM). Later signals are ignored: what was running is closed already."""
    ignore_interrupts()
    what, code = ("SIGTERM", 143) if isinstance(exc, Terminated) else ("Ctrl-C", 130)
    print(f"rnnlab: interrupted ({what}); what was running is closed as interrupted and "
          "nothing finished is lost", file=sys.stderr, flush=True)
    return code


def main() -> None:
    """Console-script entry point."""
    install_handlers()
    try:
        from rnnlab.cli.app import app
    except KeyboardInterrupt as exc:
        raise SystemExit(interrupted(exc)) from None
    app(prog_name="rnnlab")
