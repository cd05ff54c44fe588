"""What a study's selection found (``rnnlab select``): each stratum's top trials of the search
trained again on fresh seeds, their means, the one chosen (:mod:`rnnlab.core.selection`'s rule)
and how far it leads the runner-up, paired over the seeds (validation)."""

from __future__ import annotations

from dataclasses import dataclass

from rnnlab.analysis.intervals import paired_interval, std
from rnnlab.core.selection import (
    Candidate,
    candidates,
    chosen,
    direction_sign,
    plan_strata,
    ranking,
    selection_name,
    went_on,
)
from rnnlab.core.study_spec import stratum_name
from rnnlab.storage.adapter import load_study, planned_runs, stratum_results, study_names


@dataclass(frozen=True)
class SelectionRow:
    """One candidate: a trial of the search, trained again with each fresh seed."""

    stratum: str
    trial: int
    search_value: float  # its value in the search (one seed, the one it was picked for)
    seeds: tuple[int, ...]
    values: tuple[float, ...]  # the selection's runs, in seed order (validation)
    mean: float | None
    std: float | None
    chosen: bool


@dataclass(frozen=True)
class SelectionLead:
    """A stratum's choice ahead of its runner-up, paired over the seeds both trained with."""

    stratum: str
    chosen: int
    runner_up: int
    diff: float
    low: float | None
    high: float | None
    n: int


@dataclass(frozen=True)
class Selection:
    study: str  # the derived study
    top: int
    seeds: int
    done: bool  # every candidate has every seed, the plan not stale: the choice stands
    stale: str | None  # how the search went on since the plan (other top trials), or None
    rows: tuple[SelectionRow, ...]
    leads: tuple[SelectionLead, ...]


def selection(storage: str, name: str, direction: str) -> Selection | None:
    """The selection of study ``name``, None where it has none."""
    derived = selection_name(name)
    found = planned_runs(storage, derived, "selection")
    if found is None:
        return None
    plan, cands = found[0], candidates(*found)
    stale = _went_on(storage, name, plan, direction)
    # a stale plan's choice does not stand: none is marked chosen, no lead is shown
    picks = [] if stale else chosen(cands, int(plan["seeds"]), direction) or []
    picked = {c.trial for c in picks}
    rows = tuple(_row(c, c.trial in picked) for c in cands)
    sign = direction_sign(direction)
    leads = []
    for pick in picks:
        others = [c for c in cands if c.stratum == pick.stratum and c.trial != pick.trial]
        if not others:
            continue
        runner = max(others, key=ranking(direction))
        diffs = [sign * (pick.values[s] - runner.values[s])
                 for s in sorted(pick.values) if s in runner.values]
        low, high = paired_interval(diffs)
        leads.append(SelectionLead(stratum_name(pick.stratum), pick.trial, runner.trial,
                                   sum(diffs) / len(diffs), low, high, len(diffs)))
    return Selection(study=derived, top=int(plan["top"]), seeds=int(plan["seeds"]),
                     done=bool(picks), stale=stale, rows=rows, leads=tuple(leads))


def _went_on(storage: str, name: str, plan: dict, direction: str) -> str | None:
    """How the search went on since the plan (:func:`~rnnlab.core.selection.went_on`); None
    where its search is not in this storage (a selection planned from a report) to tell."""
    if name not in study_names(storage):
        return None
    return went_on(plan, stratum_results(load_study(storage, name), plan_strata(plan)),
                   direction)


def _row(c: Candidate, is_chosen: bool) -> SelectionRow:
    seeds = tuple(sorted(c.values))
    values = tuple(c.values[s] for s in seeds)
    return SelectionRow(stratum=stratum_name(c.stratum), trial=c.trial,
                        search_value=c.search_value, seeds=seeds, values=values, mean=c.mean,
                        std=std(values), chosen=is_chosen)
