"""How a command's workers (local processes, or an engine's tasks) ended; light to import, so
that an engine can start its workers before the heavy modules load."""

from __future__ import annotations

import collections
import signal
from dataclasses import dataclass, field

from rnnlab.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, RnnlabError, Terminated, WorkersLost

RESUMES_TRIALS = ("a trial they held is failed and retried once its heartbeat has been silent "
                  "for study.grace_period")


@dataclass
class Exits:
    """How a command's workers (processes, or an engine's tasks) ended."""

    codes: list[int | None]
    errors: list[str]  # what those that stopped on a user error said
    trials_run: int
    interrupted: KeyboardInterrupt | None  # the interrupt that stopped the wait, if any
    killed: list[int] = field(default_factory=list)  # pids killed before they had stopped

    def raise_for_exits(self, resumes: str = RESUMES_TRIALS) -> None:
        """Re-raise an interrupt, then a worker's user error, then any other failure
        (``resumes``: what running the command again does with the dead workers' share).

        Raises:
            KeyboardInterrupt: a worker or this process was interrupted (Terminated: SIGTERM).
            RnnlabError: a worker stopped on a user error.
            WorkersLost: a worker died (killed by a signal, or crashed).
        """
        codes = self.codes
        if self.interrupted is not None or any(c in (EXIT_INTERRUPTED, EXIT_TERMINATED)
                                               for c in codes):
            raise self.interrupted or (Terminated() if EXIT_TERMINATED in codes
                                       else KeyboardInterrupt())
        if self.errors:
            raise RnnlabError(self.errors[0])
        died = [c for c in codes if c != 0]
        if died:
            raise WorkersLost(lost_line(died, len(codes), resumes))


def lost_line(died: list[int | None], workers: int, resumes: str = RESUMES_TRIALS) -> str:
    """What a command says of its workers that died, with their exit codes (negative: the
    signal that killed them), and how to go on."""
    how = collections.Counter(_how(code) for code in died)
    said = ", ".join(f"{n} {what}" for what, n in how.items())
    oom = (" (SIGKILL is what the kernel's out-of-memory killer sends: `dmesg` says; fewer "
           "workers need less memory)" if -signal.SIGKILL in died else "")
    return (f"{len(died)} of {workers} workers died: {said}{oom}; the study is kept: run the "
            f"same command again to resume it ({resumes})")


def _how(code: int | None) -> str:
    if code is None:
        return "with no exit code"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"with exit code {code}"
