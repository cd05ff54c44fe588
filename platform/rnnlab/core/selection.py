"""Choosing each stratum's best from a selection's runs (``rnnlab select``): plain params and
values in, the candidates' results and each stratum's choice out, so that the study that plans
ablations from the choice and the report that shows it read one rule.

The rule: within a stratum, the candidate with the best mean over the selection's fresh seeds.
The search's own run of each candidate is left out of the mean: the candidates were picked for
it, so it leans the comparison towards the luckiest single run (the winner's curse the selection
is there to undo). Ties go to the better search value, then the lower trial number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rnnlab.core.study_spec import stratum_name

SEED_KEY = "train.seed"


def selection_name(study: str) -> str:
    """The derived selection study of ``study``: where it comes from, and what it does."""
    return f"{study}-select"


def stale_advice(name: str, stale: str) -> str:
    """What to do about the selection of study ``name`` planned before its search went on
    (``stale``: how, from :func:`went_on`)."""
    derived = selection_name(name)
    return (f"the selection of study {name!r} ({derived}) was planned before its search went "
            f"on ({stale}), so its choices are stale; delete it (rnnlab delete {derived}) and "
            f"choose again (rnnlab select {name})")


def direction_sign(direction: str) -> float:
    """+1 where larger is better (``maximize``), -1 where smaller is."""
    return -1.0 if direction == "minimize" else 1.0


def ranking(direction: str):
    """The key that orders candidates best last (for :func:`max`): the mean over the fresh
    seeds, then the search value, then the lower trial number."""
    sign = direction_sign(direction)
    return lambda c: (sign * c.mean, sign * c.search_value, -c.trial)


def search_order(direction: str):
    """The key that orders a stratum's complete trials of the search, ``(number, value, ...)``,
    best first (ties: the lower number): its first ``top`` are the selection's candidates."""
    sign = direction_sign(direction)
    return lambda t: (-sign * t[1], t[0])


def plan_strata(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The strata a selection's plan (``study.selection``, as JSON) has candidates in, in its
    order (every stratum of the search has one)."""
    seen: dict[tuple, dict[str, Any]] = {}
    for c in plan["candidates"]:
        seen.setdefault(_key(c["stratum"]), dict(c["stratum"]))
    return list(seen.values())


def went_on(plan: dict[str, Any], done: list[list[tuple[int, float]]],
            direction: str) -> str | None:
    """How the search went on since the selection was planned: the first stratum (of
    :func:`plan_strata`, whose complete trials ``(number, value)`` ``done`` holds in that
    order) whose ``top`` best trials are no longer the plan's candidates; None while every
    stratum's are. A stale choice would name a best the search has overtaken."""
    top = int(plan["top"])
    for match, mine in zip(plan_strata(plan), done, strict=True):
        was = sorted(int(c["trial"]) for c in plan["candidates"]
                     if _key(c["stratum"]) == _key(match))
        now = sorted(t[0] for t in sorted(mine, key=search_order(direction))[:top])
        if now != was:
            return (f"{stratum_name(match) or 'the study'}'s top {top} are now trial(s) "
                    f"{', '.join(map(str, now))}, not {', '.join(map(str, was))}")
    return None


@dataclass(frozen=True)
class Candidate:
    """One candidate of a selection: a trial of the searched study and its selection runs."""

    trial: int  # its number in the searched study
    stratum: dict[str, Any]  # ``{key: level}`` of the study's strata ({} without strata)
    search_value: float  # its objective value in the search (one seed)
    params: dict[str, Any]  # the searched values it trained with
    values: dict[int, float]  # seed -> the selection run's objective value (complete ones)

    @property
    def mean(self) -> float | None:
        return sum(self.values.values()) / len(self.values) if self.values else None


def candidates(plan: dict[str, Any],
               runs: Iterable[tuple[dict[str, Any], float]]) -> list[Candidate]:
    """The plan's candidates (``study.selection`` of a selection study, as JSON), each with the
    values of the complete ``runs`` (``(params enqueued, value)``) that trained it."""
    found: dict[tuple, dict[int, float]] = {}
    for params, value in runs:
        found.setdefault(_key(_planned(params)), {})[int(params[SEED_KEY])] = float(value)
    return [Candidate(trial=int(c["trial"]), stratum=dict(c["stratum"]),
                      search_value=float(c["value"]), params=dict(c["params"]),
                      values=found.get(_key(_planned(c["params"])), {}))
            for c in plan["candidates"]]


def chosen(cands: list[Candidate], seeds: int, direction: str) -> list[Candidate] | None:
    """Each stratum's choice, in the plan's order of strata; None until every candidate has
    all ``seeds`` runs."""
    if any(len(c.values) < seeds for c in cands):
        return None
    by_stratum: dict[tuple, list[Candidate]] = {}
    for c in cands:
        by_stratum.setdefault(_key(c.stratum), []).append(c)
    return [max(group, key=ranking(direction)) for group in by_stratum.values()]


def _planned(params: dict[str, Any]) -> dict[str, Any]:
    """Params without the seed: what a candidate and each of its runs share."""
    return {k: v for k, v in params.items() if k != SEED_KEY}


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))
