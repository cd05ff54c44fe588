"""Terminal rendering helpers for the CLI: progress bars and result summaries."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


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


def train_summary(outcome: Any) -> dict[str, Any]:
    """The final result of a ``rnnlab train`` run as a JSON-ready dict.

    Non-finite values (the losses of a diverged run) become ``None``, so that the JSON stays
    valid for strict parsers (``NaN`` and ``Infinity`` are not JSON).
    """
    r = outcome.result
    best = r.best("val_acc")
    best_epoch = next((i + 1 for i, h in enumerate(r.history) if h["val_acc"] == best), None)
    return {
        "status": r.status,
        "epochs": r.epochs_run,
        "final_val_acc": _finite(r.final("val_acc")),
        "best_val_acc": best,
        "best_epoch": best_epoch,
        "final_train_loss": _finite(r.final("train_loss")),
        "stop_reason": r.stop_reason,
        "diverged_epoch": r.diverged_epoch,
        "device": r.device,
        "mlflow_run_id": outcome.run_id,
        "history": [{k: _finite(v) for k, v in h.items()} for h in r.history],
    }


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def status_table(statuses: list[Any]) -> Any:
    """A table of studies: counts per state, best value, best params."""
    from rich.table import Table

    table = Table(title="rnnlab studies")
    for col in ("study", "budget", "complete", "pruned", "failed", "running", "best", "params"):
        table.add_column(col)
    for s in statuses:
        c = s.counts
        best = "-" if s.best_value is None else f"{s.metric or 'value'}={s.best_value:.4f}"
        params = ", ".join(f"{k}={_short(v)}" for k, v in s.best_params.items())
        table.add_row(s.name, str(s.budget), str(c.get("COMPLETE", 0)), str(c.get("PRUNED", 0)),
                      str(c.get("FAIL", 0)), str(c.get("RUNNING", 0)), best, params)
    return table


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


class StudyProgress:
    """A live line of trial counts and the best value so far; called with a StudyStatus."""

    def __init__(self, console: Console):
        self.console = console
        self.live = None

    def __enter__(self) -> StudyProgress:
        from rich.live import Live

        self.live = Live(console=self.console, refresh_per_second=2, transient=False)
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)
        if not self.console.is_terminal:
            self.console.line()  # rich leaves the last render unterminated off a terminal

    def __call__(self, s: Any) -> None:
        c = s.counts
        best = "-" if s.best_value is None else f"{s.best_value:.4f}"
        params = ", ".join(f"{k}={_short(v)}" for k, v in s.best_params.items())
        self.live.update(
            f"[bold]{s.name}[/] {s.finished}/{s.budget} finished | complete "
            f"{c.get('COMPLETE', 0)} pruned {c.get('PRUNED', 0)} failed {c.get('FAIL', 0)} "
            f"running {c.get('RUNNING', 0)} | best {s.metric or 'value'} {best} {params}")


def dashboard_line(path: Any, frames: Any) -> str:
    """One line per dashboard rewrite in ``rnnlab dashboard --watch``."""
    import time

    counts = frames.counts()
    done = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no trials yet"
    return f"{time.strftime('%H:%M:%S')} wrote {path}: {done} (budget {frames.budget})"
