"""Best-config reports: what won on validation, and how it scores on the test set.

The record is gathered from the study's frames (:mod:`rnnlab.reports.info`), confirmed on the
test set by re-training the best config and each cell's best with K seeds
(:mod:`rnnlab.reports.confirm`), then drawn (:mod:`rnnlab.reports.render`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rnnlab.analysis.frames import study_frames
from rnnlab.analysis.gains import ablation_gains, ablation_weak_penalties
from rnnlab.analysis.selection import selection
from rnnlab.dashboards.select import CURVES
from rnnlab.errors import RnnlabError
from rnnlab.files import REPORT_FORMATS, atomic_write, check_format, check_writable
from rnnlab.reports.info import get_report_info, trial_config, with_best_of, with_selection
from rnnlab.reports.render import render

if TYPE_CHECKING:
    from rnnlab.reports.confirm import Trainer

DEFAULT_SPLITS = 3  # other training subsets a config is confirmed on


def report(storage: str, name: str, fmt: str = "md", out: str | Path | None = None, *,
           confirm: bool | None = None, confirm_seeds: int = 3, confirm_splits: int | None = None,
           tracking_uri: str | None = None, cell: str | None = None,
           on_progress: Callable[[str], None] | None = None,
           train: Trainer | None = None) -> tuple[str | None, Path | None]:
    """Build a study's report, confirm it on the test set, and write or return it.

    The ``yaml`` format is the best config alone, so it trains nothing. Without ``out``,
    ``html`` goes to ``reports/<study>.html`` and the other formats are returned as text.

    Args:
        storage: the Optuna storage URL or journal path.
        name: the study.
        fmt: ``md``, ``html``, ``json`` or ``yaml``.
        out: the file to write.
        confirm: re-train the chosen configs and score them on the test set; False: the
            validation ranking alone, which trains nothing and writes nothing but ``out``;
            None (the default): True, except for a study derived from a search (an ablation
            or a selection), whose trials are one-seed arms or candidates of the search's
            bests: the searched study's report confirms those bests, with what the derived
            study found.
        confirm_seeds: K, the seeds each confirmed config is re-trained with on each
            training subset (K >= 1).
        confirm_splits: other training subsets (split seeds) to confirm on besides the
            study's own (>= 1); None: 3, or none where every split seed trains on the same
            images (the report then says that only seeds vary).
        tracking_uri: the MLflow store (default ``MLFLOW_TRACKING_URI`` or MLflow's default).
        cell: with ``yaml``, the best config of this cell (validation) instead of the best.
        on_progress: receives the confirmation's progress, a line at a time.
        train: how the confirmation runs not found yet are trained (default: one after
            another in this process; :func:`rnnlab.engines.confirm.parallel` on local workers).

    Returns:
        ``(text, None)`` when returned as text, ``(None, path)`` when written.

    Raises:
        RnnlabError: unknown format or study, no complete trial, ``confirm_seeds`` or
            ``confirm_splits`` < 1, other subsets asked of a study that trains on every image,
            a ``cell`` with no complete trial (or without ``yaml``), or an unwritable ``out``
            (checked before anything trains).
    """
    check_format(fmt, REPORT_FORMATS, "report format")
    if confirm_seeds < 1:
        raise RnnlabError(f"--confirm-seeds {confirm_seeds}: confirm with at least 1 seed")
    if confirm_splits is not None and confirm_splits < 1:
        raise RnnlabError(f"--confirm-splits {confirm_splits}: confirm on at least 1 other "
                          "training subset (or leave the flag out)")
    if cell is not None and fmt != "yaml":
        raise RnnlabError(f"--cell {cell} picks the config --format yaml exports; drop it "
                          f"for --format {fmt}")
    # the final values of the curves the dashboards draw; every epoch only for html's figures
    frames = study_frames(storage, name, tracking_uri=tracking_uri, metrics=CURVES,
                          curves=fmt == "html")
    info = get_report_info(frames)
    of = ((frames.spec.get("study") or {}).get("selection") or {}).get("of")
    if of is None:  # each cell's best chosen on fresh seeds, where the study has a selection
        info = with_selection(info, frames, selection(storage, name, frames.direction))
    else:  # a selection's own report: its trials are single runs; it shows the choice
        info = dataclasses.replace(info, selection=selection(storage, of, frames.direction))
    if fmt != "yaml":  # better levels the study's ablations found: confirmed as cells' bests
        gains, ablations = ablation_gains(storage, frames,
                                          {r.cell: r.number for r in info.per_cell},
                                          tracking_uri)
        info = dataclasses.replace(info, gains=gains, ablations=ablations,
                                   weak=ablation_weak_penalties(storage, frames))
    if cell is not None:
        info = with_best_of(info, frames, cell)
    if out is None and fmt == "html":
        Path("reports").mkdir(exist_ok=True)
        out = Path("reports") / f"{name}.html"
    if out is not None:
        check_writable(out)  # before minutes of confirmation training, not after
    if confirm is None:
        confirm = info.derived_from is None
    if fmt != "yaml" and confirm:
        # imported here: training's imports (torch) cost seconds a ranking alone never needs
        from rnnlab.core.data import fixed_subset
        from rnnlab.reports.confirm import confirm as confirm_runs

        fixed = fixed_subset(trial_config(frames, info.best.number).data)
        if fixed and confirm_splits:
            raise RnnlabError(f"--confirm-splits {confirm_splits}: {fixed}, so no other "
                              "training subset can be drawn; leave the flag out (only seeds "
                              "vary)")
        splits = 0 if fixed else confirm_splits or DEFAULT_SPLITS
        info = dataclasses.replace(
            info, confirm_seeds=confirm_seeds, confirm_splits=splits,
            subsets_note=f"only seeds vary: {fixed}" if fixed else "",
            confirmations=confirm_runs(info, frames, confirm_seeds, splits,
                                       tracking_uri=tracking_uri, on_progress=on_progress,
                                       train=train))
    text = render(info, fmt, frames)
    if out is None:
        return text, None
    return None, atomic_write(out, lambda p: Path(p).write_text(text, encoding="utf-8"))
