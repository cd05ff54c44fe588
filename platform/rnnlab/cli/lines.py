"""Lines the command line says whatever the command was (shared by the entry point and the app).

Imported by the entry point before its signal handlers are in place: nothing heavy here.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from typing import Any

from rnnlab.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USER_ERROR, Terminated
from rnnlab.interrupts import ignore_interrupts


def interrupted(exc: KeyboardInterrupt) -> int:
    """Say in one line that the command was interrupted, and how to go on; returns its exit
    code (130 for Ctrl-C, 143 for SIGTERM). Later signals are ignored: what was running is
    closed already."""
    ignore_interrupts()
    what, code = (("SIGTERM", EXIT_TERMINATED) if isinstance(exc, Terminated)
                  else ("Ctrl-C", EXIT_INTERRUPTED))
    again = shlex.join(["rnnlab", *sys.argv[1:]])
    print(f"rnnlab: interrupted ({what}); what was running is closed as interrupted and "
          f"nothing finished is lost; `{again}` goes on from there", file=sys.stderr,
          flush=True)
    return code


def quiet_libraries(quiet: bool = True) -> None:
    """Keep the libraries' own info lines (Optuna's "A new study created ...", MLflow's
    "Creating initial MLflow database tables ..." and "View run ... at: URL") out of a
    command's output, unless asked (``--verbose``). rnnlab says what it has to say in its own
    lines, and warns through logging: warnings still show.

    Done by level, not by logger: Optuna and MLflow set their loggers' levels and handlers
    themselves when imported, which the commands do later and lazily."""
    logging.disable(logging.INFO if quiet else logging.NOTSET)
    if quiet:  # MLflow prints run URLs to stdout, not through logging; workers inherit this
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


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
