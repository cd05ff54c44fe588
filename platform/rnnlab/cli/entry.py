"""The console script. Ctrl-C and SIGTERM are taken over before anything else is imported: one
that lands while the command line is still loading ends in the same one line and exit code as
at any later moment (nothing has been written by then), not in an import traceback."""

from __future__ import annotations

from rnnlab.cli.lines import interrupted
from rnnlab.interrupts import install_handlers


def main() -> None:
    """Console-script entry point."""
    install_handlers()
    try:
        from rnnlab.cli.app import app

        app(prog_name="rnnlab")  # a command's own interrupt ends inside it, with the same line
    except KeyboardInterrupt as exc:  # while loading, or before a command starts
        raise SystemExit(interrupted(exc)) from None
