"""How a command's workers (local processes, or an engine's tasks) ended; light to import, so
that an engine can start its workers before the heavy modules load."""

from __future__ import annotations

from dataclasses import dataclass, field

from rnnlab.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, RnnlabError, Terminated


@dataclass
class Exits:
    """How a command's workers (processes, or an engine's tasks) ended."""

    codes: list[int | None]
    errors: list[str]  # what those that stopped on a user error said
    trials_run: int
    interrupted: KeyboardInterrupt | None  # the interrupt that stopped the wait, if any
    killed: list[int] = field(default_factory=list)  # pids killed before they had stopped

    def raise_for_exits(self) -> None:
        """Re-raise an interrupt, then a worker's user error, then any other failure.

        Raises:
            KeyboardInterrupt: a worker or this process was interrupted (Terminated: SIGTERM).
            RnnlabError: a worker stopped on a user error.
            RuntimeError: a worker crashed.
        """
        codes = self.codes
        if self.interrupted is not None or any(c in (EXIT_INTERRUPTED, EXIT_TERMINATED)
                                               for c in codes):
            raise self.interrupted or (Terminated() if EXIT_TERMINATED in codes
                                       else KeyboardInterrupt())
        if self.errors:
            raise RnnlabError(self.errors[0])
        if any(c != 0 for c in codes):
            raise RuntimeError(f"worker processes exited with codes {codes}")
