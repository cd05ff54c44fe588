"""Lines the command line says whatever the command was (shared by the entry point and the app)."""

from __future__ import annotations

import sys

import typer

from rnnlab.errors import EXIT_USER_ERROR, Terminated
from rnnlab.interrupts import ignore_interrupts


def interrupted(exc: KeyboardInterrupt) -> int:
    """Say in one line that the command was interrupted; returns its exit code (130 for Ctrl-C,
    143 for SIGTERM). Later signals are ignored: what was running is closed already."""
    ignore_interrupts()
    what, code = ("SIGTERM", 143) if isinstance(exc, Terminated) else ("Ctrl-C", 130)
    print(f"rnnlab: interrupted ({what}); what was running is closed as interrupted and "
          "nothing finished is lost", file=sys.stderr, flush=True)
    return code


# The command-line errors of the click that typer runs on (newer typers carry their own copy
# of click, so the installed click's classes are not the ones raised).
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def usage_error(exc: UsageError) -> int:
    """Say in one line what is wrong with the command line and where its help is; returns the
    exit code (2). ``rnnlab`` alone still shows the help."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        raise exc
    where = " ".join(["rnnlab", *(exc.ctx.command_path.split()[1:] if exc.ctx else [])])
    print(f"rnnlab: error: {exc.format_message()} (see '{where} --help')", file=sys.stderr,
          flush=True)
    return EXIT_USER_ERROR
