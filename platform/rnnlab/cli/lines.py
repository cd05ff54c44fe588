"""Lines the command line says whatever the command was (shared by the entry point and the app).

Imported by the entry point before its signal handlers are in place: nothing heavy here.
"""

from __future__ import annotations

import sys
from typing import Any

from rnnlab.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USER_ERROR, Terminated
from rnnlab.interrupts import ignore_interrupts


def interrupted(exc: KeyboardInterrupt) -> int:
    """Say in one line that the command was interrupted; returns its exit code (130 for Ctrl-C,
    143 for SIGTERM). Later signals are ignored: what was running is closed already."""
    ignore_interrupts()
    what, code = (("SIGTERM", EXIT_TERMINATED) if isinstance(exc, Terminated)
                  else ("Ctrl-C", EXIT_INTERRUPTED))
    print(f"rnnlab: interrupted ({what}); what was running is closed as interrupted and "
          "nothing finished is lost", file=sys.stderr, flush=True)
    return code


def error_line(message: str) -> str:
    """The one line a user error ends in: control characters a value carried (an escape that
    would retitle or recolour the terminal, a newline) shown as escapes, not sent."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message))
    return f"rnnlab: error: {shown}"


def usage_error(exc: Any) -> int:
    """Say in one line what is wrong with the command line and where its help is; returns the
    exit code (2). ``rnnlab`` alone still shows the help."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        raise exc
    where = " ".join(["rnnlab", *(exc.ctx.command_path.split()[1:] if exc.ctx else [])])
    print(error_line(f"{exc.format_message()} (see '{where} --help')"), file=sys.stderr,
          flush=True)
    return EXIT_USER_ERROR
