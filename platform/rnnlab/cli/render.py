"""Rendering helpers for the CLI: result summaries (progress: progress.py; studies: tables.py)."""

from __future__ import annotations

import math
from typing import Any


def train_summary(outcome: Any) -> dict[str, Any]:
    """The final result of a ``rnnlab train`` run as a JSON-ready dict.

    Non-finite values (the losses of a diverged run) become ``None``, so that the JSON stays
    valid for strict parsers (``NaN`` and ``Infinity`` are not JSON).
    """
    r = outcome.result
    return {
        "status": r.status,
        "epochs": r.epochs_run,
        "final_val_acc": _finite(r.final("val_acc")),
        "best_val_acc": r.best("val_acc"),
        "best_epoch": r.best_epoch("val_acc"),
        "final_train_loss": _finite(r.final("train_loss")),
        "stop_reason": r.stop_reason,
        "diverged_epoch": r.diverged_epoch,
        "device": r.device,
        "mlflow_run_id": outcome.run_id,
        "history": [{k: _finite(v) for k, v in h.items()} for h in r.history],
    }


def summary_table(summary: dict) -> Any:
    """``rnnlab train``'s result as a two-column table (the history left out)."""
    from rich.table import Table

    table = Table(title="rnnlab train", show_header=False)
    for key, value in summary.items():
        if key != "history":
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else
                          "-" if value is None else str(value))
    return table


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def dashboard_line(path: Any, selection: Any) -> str:
    """One line per dashboard rewrite in ``rnnlab dashboard --watch``."""
    import time

    said = []
    for label, frames in selection.studies:
        counts = frames.counts()
        done = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no trials yet"
        said.append(f"{label} {done} (budget {frames.budget})" if len(selection.studies) > 1
                    else f"{done} (budget {frames.budget})")
    return f"{time.strftime('%H:%M:%S')} wrote {path}: {'; '.join(said)}"
