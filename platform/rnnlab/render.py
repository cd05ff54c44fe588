"""Terminal rendering helpers for the CLI: progress bars and result summaries."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextlib.contextmanager
def epoch_progress(console: Console, epochs: int) -> Iterator[Any]:
    """A bar that advances once per epoch and shows the latest metrics; yields a fit callback."""
    columns = (TextColumn("epoch"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("", total=epochs)

        def on_epoch(epoch: int, m: dict[str, float]) -> None:
            progress.update(task, completed=epoch, description=(
                f"loss {m['train_loss']:.4f} val_acc {m['val_acc']:.4f} "
                f"{m['samples_per_s']:.0f} samples/s"))

        yield on_epoch


def train_summary(outcome: Any) -> dict[str, Any]:
    """The final result of a ``rnnlab train`` run as a JSON-ready dict."""
    r = outcome.result
    accs = [h["val_acc"] for h in r.history]
    best_epoch = max(range(len(accs)), key=accs.__getitem__) + 1 if accs else None
    return {
        "status": r.status,
        "epochs": r.epochs_run,
        "final_val_acc": r.final("val_acc"),
        "best_val_acc": r.best("val_acc"),
        "best_epoch": best_epoch,
        "final_train_loss": r.final("train_loss"),
        "stop_reason": r.stop_reason,
        "diverged_epoch": r.diverged_epoch,
        "device": r.device,
        "mlflow_run_id": outcome.run_id,
        "history": r.history,
    }
