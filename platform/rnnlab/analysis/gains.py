"""What a study's ablations found: where, at a stratum's best config, another level of the
ablated factor beat the best's own level beyond seed noise (validation, paired over seeds).

Such a level is a better config than any the search trained, found by a controlled
comparison, so the study's report confirms it on the test set as the cell's best (beside the
search's own best, which keeps its place as ``search's best <cell>``). Only one change per cell
is taken, the largest gain: two changes that each helped alone were never tried together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rnnlab.analysis.effects import effects
from rnnlab.analysis.frames import StudyFrames, has_study, native, study_frames
from rnnlab.analysis.levels import SEED_KEY, label
from rnnlab.storage.adapter import load_study, study_names
from rnnlab.storage.keys import ATTR_SPEC

CELL_KEY = "model.cell"


@dataclass(frozen=True)
class AblationGain:
    """One cell's best config with ``factor`` at ``level`` instead of ``own``: ahead of it by
    ``diff`` [``low``, ``high``] (validation, paired over ``n`` seeds) in ablation ``study``."""

    cell: str
    trial: int  # the search's best trial of the cell: the config the ablation started from
    factor: str
    level: Any  # the better level's value, as the config takes it
    own: str  # the search's best's own level, as a label
    study: str
    mean: float  # the better level's mean (validation)
    diff: float
    low: float
    high: float
    n: int

    @property
    def change(self) -> str:
        return f"{self.factor}={label(self.level)}"


@dataclass(frozen=True)
class WeakPenalty:
    """A cell whose ablation of a penalty (a range with ``zero_below``: L2) compared off with
    ``level`` only, a level below ``middle``, the middle of the range where the penalty is on
    (on its log scale: the level an ablation takes when the best trained without it). Two such
    levels are almost the same penalty: the ablation cannot say whether a real one helps."""

    cell: str
    level: float  # the largest level its arms tried
    middle: float


def weak_penalties(plan: dict[str, Any], search: dict[str, Any]) -> tuple[WeakPenalty, ...]:
    """The cells of ablation ``plan`` (its stored ``study.ablation``) whose levels of the
    factor all lie below the middle of the searched range ``search`` gives it, where that
    range has a ``zero_below``."""
    dist = search.get(plan.get("factor")) or {}
    if dist.get("zero_below") is None or dist.get("high") is None:
        return ()
    middle = math.sqrt(float(dist["zero_below"]) * float(dist["high"]))
    tried: dict[str, float] = {}
    for arm in plan.get("trials", []):
        cell = arm.get(CELL_KEY, "the best")  # a study that does not search the cell: one best
        tried[cell] = max(tried.get(cell, 0.0), float(arm[plan["factor"]]))
    return tuple(WeakPenalty(c, v, middle) for c, v in tried.items() if v < middle)


def ablation_weak_penalties(storage: str, frames: StudyFrames) -> tuple[WeakPenalty, ...]:
    """:func:`weak_penalties` of an ablation study (none for another study, or where the
    searched study is not in this store)."""
    plan = (frames.spec.get("study") or {}).get("ablation") or {}
    if not plan or not has_study(storage, plan["of"]):
        return ()
    searched = load_study(storage, plan["of"]).user_attrs.get(ATTR_SPEC) or {}
    return weak_penalties(plan, searched.get("search") or {})


@dataclass(frozen=True)
class AblationRecord:
    """One ablation of the study and whether the report can use it: ``finished`` of its
    ``planned`` arms; ``cells``, those it has arms of; ``gains``, the cells it found a better
    level for; ``stale``, the cells whose arms are not of the cell's best any more (planned
    before a selection chose another, or before the search went on): not used for those;
    ``weak``, the cells whose penalty levels were all weak (:class:`WeakPenalty`)."""

    study: str
    factor: str
    finished: int
    planned: int
    cells: tuple[str, ...]
    gains: tuple[str, ...]
    stale: tuple[str, ...]
    weak: tuple[WeakPenalty, ...] = ()


def ablation_gains(storage: str, frames: StudyFrames, best_of: dict[str, int],
                   tracking_uri: str | None = None
                   ) -> tuple[tuple[AblationGain, ...], tuple[AblationRecord, ...]]:
    """The gains the finished ablations of study ``frames.name`` found, one per cell at most,
    and a record of each of its ablations, finished or not.

    Args:
        best_of: each cell's best trial in the study (an ablation planned from another trial,
            before the search went on, say, is passed over, and its record says so).
    """
    found: dict[str, AblationGain] = {}
    records = []
    prefix = f"{frames.name}-ablate-"
    configs = frames.configs.set_index("number")
    for name in sorted(study_names(storage)):
        if not name.startswith(prefix):
            continue
        derived = study_frames(storage, name, tracking_uri=tracking_uri, metrics=(),
                               curves=False)
        plan = (derived.spec.get("study") or {}).get("ablation") or {}
        if plan.get("of") != frames.name:
            continue
        cells = tuple(c for c in best_of if any(t.get(CELL_KEY) == c for t in plan["trials"]))
        stale = tuple(c for c in cells
                      if not _planned_from(plan, configs.loc[best_of[c]], plan["factor"], c))
        usable = {c: best_of[c] for c in cells if c not in stale}
        gains = _gains(derived, plan, configs, usable) if derived.done() else []
        records.append(AblationRecord(
            study=name, factor=plan["factor"], finished=derived.finished(),
            planned=len(plan["trials"]), cells=cells, gains=tuple(g.cell for g in gains),
            stale=stale, weak=weak_penalties(plan, frames.spec.get("search") or {})))
        for gain in gains:
            if gain.cell not in found or gain.diff > found[gain.cell].diff:
                found[gain.cell] = gain
    return tuple(found[c] for c in sorted(found)), tuple(records)


def _gains(derived: StudyFrames, plan: dict, configs: Any,
           best_of: dict[str, int]) -> list[AblationGain]:
    """The better levels ablation ``derived`` found at the cells' bests ``best_of`` (trial
    numbers in ``configs``, the searched study's trials by number), each one its arms are of."""
    factor = plan["factor"]
    values = derived.configs.set_index("number")[factor]
    out = []
    for effect in effects(derived):
        if effect.key != factor or effect.support != "verdict":
            continue
        for s in effect.strata:
            cell = dict(s.within).get(CELL_KEY)
            if cell not in best_of or s.leader is None:
                continue
            base = configs.loc[best_of[cell]]
            own = label(native(base[factor]))
            gap = next((g for g in s.gaps if g.other == own), None)
            if s.leader == own or gap is None or not gap.separated:
                continue
            lead = next(lv for lv in s.levels if lv.level == s.leader)
            out.append(AblationGain(
                cell=cell, trial=best_of[cell], factor=factor,
                level=native(values.loc[lead.numbers[0]]), own=own, study=derived.name,
                mean=float(lead.mean), diff=gap.diff, low=float(gap.low),
                high=float(gap.high), n=gap.n))
    return out


def _planned_from(plan: dict, base: Any, factor: str, cell: str) -> bool:
    """Whether the ablation's arms of ``cell`` are the trial ``base`` with only the factor and
    the seed changed."""
    arms = [t for t in plan.get("trials", []) if t.get(CELL_KEY) == cell]
    return bool(arms) and all(
        native(base[k]) == v for t in arms for k, v in t.items()
        if k not in (factor, SEED_KEY) and k in base.index)
