"""The trials a dashboard draws: each study's frames, read back and filtered by its spec.

A filter keeps a study's :class:`~rnnlab.analysis.frames.StudyFrames` whole but for the rows of
trials it drops, so every figure draws from frames as it always does. Importances are the one
exception: they are computed over the whole study, and their note says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from rnnlab.analysis.frames import StudyFrames, has_study, study_frames
from rnnlab.dashboards.spec import DashboardSpec, Filter
from rnnlab.errors import RnnlabError

CURVES = ("val_acc", "val_loss")  # the only curves drawn: reading fewer is faster
Reader = Callable[[str, str, str | None], StudyFrames]  # (storage, name, tracking_uri)


@dataclass(frozen=True)
class Selection:
    """The studies a dashboard draws, each with its label, and the ones not run yet."""

    studies: tuple[tuple[str, StudyFrames], ...]  # (label, filtered frames)
    missing: tuple[str, ...] = ()  # labels of optional studies that do not exist yet
    kept: int = 0  # trials kept by the filter, over every study
    total: int = 0  # trials before it

    def done(self) -> bool:
        """Every study drawn is done (see :meth:`StudyFrames.done`)."""
        return all(f.done() for _, f in self.studies)


def _read(storage: str, name: str, tracking_uri: str | None) -> StudyFrames:
    return study_frames(storage, name, tracking_uri=tracking_uri, metrics=CURVES)


def select(spec: DashboardSpec, storage: str, *, tracking_uri: str | None = None,
           origin: str = "dashboard", read: Reader = _read) -> Selection:
    """Read every study of ``spec`` and apply its filter.

    Args:
        spec: the dashboard spec.
        storage: the storage of studies that name none.
        tracking_uri: the MLflow store of studies that name none.
        origin: what error lines name (the spec's path).
        read: how a study's frames are read (the default reads the stores).

    Raises:
        RnnlabError: a required study does not exist, a store cannot be read, or the filter
            keeps no trial at all, or the studies optimise different objectives.
    """
    studies, missing, kept, total = [], [], 0, 0
    for ref in spec.studies:
        url = ref.storage or storage
        if not ref.required and not has_study(url, ref.name):
            missing.append(ref.shown)
            continue
        frames = read(url, ref.name, ref.tracking_uri or tracking_uri)
        total += len(frames.trials)
        frames = filtered(frames, spec.filter)
        kept += len(frames.trials)
        studies.append((ref.shown, frames))
    if not studies:
        raise RnnlabError(f"{origin}: none of its studies has been run yet "
                          f"({', '.join(missing)}); run one with `rnnlab sweep`")
    if spec.draws_objective() and len({_objective(f) for _, f in studies}) > 1:
        said = ", ".join(f"{label}: {_objective(f)}" for label, f in studies)
        raise RnnlabError(f"{origin}: its figures compare objectives, and its studies optimise "
                          f"different ones ({said}); plot y: final_val_acc instead, or compare "
                          "them in separate dashboards")
    if kept == 0:
        raise RnnlabError(f"{origin}: filter keeps none of the {total} trials of "
                          f"{', '.join(label for label, _ in studies)} ({_said(spec.filter)}); "
                          "loosen it")
    return Selection(tuple(studies), tuple(missing), kept, total)


def _objective(frames: StudyFrames) -> str:
    study = frames.spec.get("study", {})
    return (f"{study.get('objective', 'best')} {frames.metric} "
            f"({frames.direction})")


def _said(flt: Filter) -> str:
    parts = [f"states {', '.join(flt.states)}"]
    parts += [f"{k} {v}" for k, v in flt.params.items()]
    if flt.top_k:
        parts.append(f"top_k {flt.top_k}")
    return "; ".join(parts)


def filtered(frames: StudyFrames, flt: Filter) -> StudyFrames:
    """``frames`` with only the trials ``flt`` keeps (every frame cut to their numbers)."""
    t = frames.table(flt.states)
    keep = pd.Series(True, index=t.index)
    for key, cond in flt.params.items():
        keep &= _holds(t[key] if key in t else pd.Series(None, index=t.index), cond)
    t = t[keep]
    if flt.top_k:
        t = t[t["state"] == "COMPLETE"].dropna(subset=["value"])
        t = t.sort_values("value", ascending=frames.direction == "minimize").head(flt.top_k)
    numbers = set(t["number"])

    def cut(df: pd.DataFrame) -> pd.DataFrame:
        return df[df["number"].isin(numbers)].reset_index(drop=True) if len(df) else df

    note = frames.importance_note
    if len(numbers) < len(frames.trials):
        note = (f"{note}; " if note else "") + ("importances are over all the study's complete "
                                                 "trials: the dashboard's filter does not apply")
    return dataclasses.replace(frames, trials=cut(frames.trials), configs=cut(frames.configs),
                               curves=cut(frames.curves), finals=cut(frames.finals),
                               importance_note=note)


def _holds(values: pd.Series, cond) -> pd.Series:
    if isinstance(cond, dict):
        numeric = pd.to_numeric(values, errors="coerce")
        ok = pd.Series(True, index=values.index)
        if "low" in cond:
            ok &= numeric >= float(cond["low"])
        if "high" in cond:
            ok &= numeric <= float(cond["high"])
        return ok
    wanted = cond if isinstance(cond, list) else [cond]
    return values.map(lambda v: any(_same(v, w) for w in wanted))


def _same(value, wanted) -> bool:
    if isinstance(wanted, bool) or isinstance(value, bool):
        return value is wanted or value == wanted
    if isinstance(wanted, int | float) and not isinstance(value, str):
        try:
            return abs(float(value) - float(wanted)) <= 1e-12 * max(1.0, abs(float(wanted)))
        except (TypeError, ValueError):
            return False
    return str(value) == str(wanted)
