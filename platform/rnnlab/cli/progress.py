"""Progress while commands run: a bar per epoch for ``train``, a study line for ``sweep``.

On a terminal both are redrawn in place. Off one (a pipe, a log file, CI, ``nohup``) they print
plain lines instead: one per epoch for ``train``, and for ``sweep`` one when something changed,
at most every ``every_s`` seconds, so that a log follows the study without being flooded.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

_RUNNING_SHOWN = 4  # running trials named one by one; more are counted


@contextlib.contextmanager
def epoch_progress(console: Console, epochs: int) -> Iterator[Any]:
    """A bar that advances once per epoch and shows the latest metrics; yields a fit callback.

    Off a terminal (a pipe, a log file, CI) it prints one plain line per epoch instead. An
    error before the first epoch ends (bad data, say) leaves no bar behind, only its own line.
    """

    def describe(m: dict[str, float]) -> str:
        return (f"loss {m['train_loss']:.4f} val_acc {m['val_acc']:.4f} "
                f"{m['samples_per_s']:.0f} samples/s")

    if not console.is_interactive:
        yield lambda epoch, m: console.print(f"epoch {epoch}/{epochs} {describe(m)}",
                                             highlight=False, soft_wrap=True)
        return
    columns = (TextColumn("epoch"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("", total=epochs)

        def on_epoch(epoch: int, m: dict[str, float]) -> None:
            progress.update(task, completed=epoch, description=describe(m))

        try:
            yield on_epoch
        except BaseException:
            if not progress.tasks[0].completed:
                progress.live.transient = True  # erased on exit: the error line stands alone
            raise


def study_lines(s: Any, workers: int) -> tuple[str, str]:
    """What a sweep's progress says: the trials and the best so far with the ETA, then where
    each running trial is (epochs it has reported)."""
    from rnnlab.study.status import duration  # imports Optuna: not before a command needs it

    c = s.counts
    best = "-" if s.best_value is None else f"{s.best_value:.4f} (#{s.best_trial})"
    eta = s.eta_s(workers)
    first = (f"{s.name}: {s.finished}/{s.budget} finished ({c.get('COMPLETE', 0)} complete, "
             f"{c.get('PRUNED', 0)} pruned, {c.get('FAIL', 0)} failed) | best "
             f"{s.metric or 'value'} {best} | ETA {'-' if eta is None else duration(eta)}")
    running = sorted(s.running_epochs.items())
    total = f"/{s.epochs}" if s.epochs else ""
    shown = [f"#{n} epoch {e}{total}" for n, e in running[:_RUNNING_SHOWN]]
    more = [f"+{len(running) - _RUNNING_SHOWN} more"] if len(running) > _RUNNING_SHOWN else []
    return first, "running: " + (", ".join(shown + more) if running else "none")


def placement_line(place: Any, default: bool) -> str:
    """Where a sweep's trials run, said as it starts (and how to change it, when defaulted):
    ``8 local worker(s) x 2 thread(s), on cuda:0 (8)`` names each GPU and its workers."""
    gpus = collections.Counter(d for d in place.devices if d and d.startswith("cuda"))
    where = ", on " + ", ".join(f"{d} ({n})" for d, n in sorted(gpus.items())) if gpus else ""
    change = "--workers N or --trials-per-gpu N" if gpus else "--workers N"
    return (f"{place.workers} local worker(s) x {place.threads} thread(s){where}"
            + (f" (the default: {change} to change)" if default else ""))


@contextlib.contextmanager
def count_progress(console: Console, total: int | None, what: str, every_s: float = 10.0,
                   clock: Callable[[], float] = time.monotonic) -> Iterator[Callable[[int], None]]:
    """A long loop's count (``done`` of ``total`` ``what``; a ``total`` of None: not known
    ahead), yielded as a callback: a bar on a terminal, erased at the end; off one, a plain
    line at most every ``every_s`` seconds (none for a loop that ends sooner)."""
    if console.is_terminal:
        count = MofNCompleteColumn() if total is not None else TextColumn("{task.completed}")
        with Progress(TextColumn(what), BarColumn(), count, TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("", total=total)
            yield lambda done: progress.update(task, completed=done)
        return
    last = clock()

    def on_count(done: int) -> None:
        nonlocal last
        if clock() - last >= every_s and (total is None or done < total):
            last = clock()
            of = "" if total is None else f"/{total}"
            console.print(f"{time.strftime('%H:%M:%S')} {what}: {done}{of}",
                          highlight=False, soft_wrap=True)

    yield on_count


class StudyProgress:
    """Called with the study's status at every poll of a sweep: redraws two lines in place on
    a terminal, or prints one plain line when they changed, at most every ``every_s`` seconds
    (and the last status on exit, whatever the wait)."""

    def __init__(self, console: Console, workers: int = 1, every_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, header: str | None = None):
        self.console, self.workers, self.every_s, self.clock = console, workers, every_s, clock
        self.header = header  # said once the study runs: a spec refused says its one line only
        self.live = None
        self.printed: tuple[str, str] | None = None  # plain mode: what the last line said
        self.pending: tuple[str, str] | None = None
        self.last_at = float("-inf")

    def __enter__(self) -> StudyProgress:
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(console=self.console, refresh_per_second=2, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
        elif self.pending is not None and self.pending != self.printed:
            self._print(self.pending)

    def __call__(self, status: Any) -> None:
        if self.header:
            self.console.print(self.header, highlight=False, soft_wrap=True)
            self.header = None
        lines = study_lines(status, self.workers)
        if self.live is not None:
            from rich.text import Text

            self.live.update(Text("\n".join(lines)), refresh=True)
            return
        self.pending = lines
        if lines != self.printed and self.clock() - self.last_at >= self.every_s:
            self._print(lines)

    def _print(self, lines: tuple[str, str]) -> None:
        self.printed, self.last_at = lines, self.clock()
        self.console.print(f"{time.strftime('%H:%M:%S')} {lines[0]} | {lines[1]}",
                           highlight=False, soft_wrap=True)
