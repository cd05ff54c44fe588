"""Each stratum's best chosen on fresh seeds: a derived study that trains the ``top`` trials of
each stratum again with ``seeds`` fresh paired seeds, no pruning, so that the config the
ablations start from and the report names best is the one with the best mean over seeds, not
the luckiest single run of the search (:mod:`rnnlab.core.selection` holds the rule).

Like an ablation (:mod:`rnnlab.study.ablation`), the derived study's spec holds its whole plan
(``study.selection.trials``): workers fill it and never sample, so it is resumable and
budget-exact like any study. Its seeds are the search's seed + 1 ... + N, every candidate
alike; the ablations planned from its choice then start after them (seed + N + 1 ...), so that
no arm re-uses a run its config was chosen for.
"""

from __future__ import annotations

from typing import Any

import optuna

from rnnlab.core.selection import (
    SEED_KEY,
    Candidate,
    candidates,
    chosen,
    plan_strata,
    search_order,
    selection_name,
    stale_advice,
    went_on,
)
from rnnlab.core.study_spec import (
    SelectConfig,
    StudySpec,
    derived_spec,
    strata_levels,
    stratum_name,
)
from rnnlab.errors import RnnlabError
from rnnlab.storage.adapter import load_study, planned_runs, stored_plan, stratum_results
from rnnlab.storage.keys import ATTR_SPEC


def searched_spec(storage: str, name: str, where: str) -> tuple[optuna.Study, StudySpec,
                                                                  dict[str, Any]]:
    """The searched study ``name``, its spec, and the spec as stored (JSON).

    Raises:
        RnnlabError: no such study, or one ``rnnlab sweep`` did not make.
    """
    study = load_study(storage, name)
    stored = study.user_attrs.get(ATTR_SPEC)
    if not stored:
        raise RnnlabError(f"{where}: study {name!r} was not made by `rnnlab sweep`: it has "
                          "no spec to plan from")
    spec = StudySpec.model_validate(stored)
    if spec.study.ablation or spec.study.selection:
        raise RnnlabError(f"{where}: study {name!r} is derived from study "
                          f"{(spec.study.ablation or spec.study.selection).of!r}; give that "
                          "one")
    return study, spec, stored


def selection_spec(storage: str, name: str, config: SelectConfig,
                   where: str = "rnnlab select") -> StudySpec:
    """The derived study that chooses each stratum's best of study ``name`` on fresh seeds:
    its ``config.top`` complete trials (fewer where it has fewer), ``config.seeds`` each.

    Raises:
        RnnlabError: the study does not exist, was not made by ``rnnlab sweep``, a stratum has
            no complete trial, or a selection of it exists with another plan.
    """
    study, spec, stored = searched_spec(storage, name, where)
    tops = stratum_results(study, strata_levels(spec))
    for match, done in zip(strata_levels(spec), tops, strict=True):
        if not done:
            raise RnnlabError(f"{where}: stratum {stratum_name(match) or 'of the study'} of "
                              f"study {name!r} has no complete trial yet; finish the search "
                              "first (rnnlab sweep)")
    derived = planned_selection(spec, stored, tops, config)
    _check_plan(storage, derived, where)
    return derived


def planned_selection(spec: StudySpec, stored: dict[str, Any],
                      done: list[list[tuple[int, float, dict[str, Any]]]],
                      config: SelectConfig) -> StudySpec:
    """The derived selection study from each stratum's complete trials (``done``, in the
    order of :func:`~rnnlab.core.study_spec.strata_levels`: ``(number, value, params trained
    with)``, any order); ``stored`` is the searched study's spec as JSON (its data, model and
    train sections are the base). Each stratum's ``config.top`` best (fewer where it has
    fewer) are the candidates, each trained with ``config.seeds`` fresh seeds."""
    cands, trials = [], []
    for match, mine in zip(strata_levels(spec), done, strict=True):
        for number, value, trained in sorted(mine, key=search_order(spec.study.direction))[
                :config.top]:
            params = {k: v for k, v in trained.items() if k in spec.search}
            cands.append({"trial": number, "value": value, "stratum": match, "params": params})
            first = int(params.get(SEED_KEY, spec.train.seed)) + 1
            trials += [{**params, SEED_KEY: first + i} for i in range(config.seeds)]
    name = spec.study.name
    return derived_spec(stored, selection_name(name), "selection",
                        {"of": name, "top": config.top, "seeds": config.seeds,
                         "candidates": cands, "trials": trials}, f"selection of {name!r}")


def _check_plan(storage: str, derived: StudySpec, where: str) -> None:
    """Refuse to resume a selection whose stored plan is not this one: the search went on
    since (other top trials), or it was asked for with another top or seeds."""
    name = derived.study.name
    planned = (stored_plan(storage, name, "selection") or {}).get("trials")
    if planned is not None and planned != derived.study.selection.trials:
        raise RnnlabError(
            f"{where}: selection study {name!r} exists with another plan (the search of "
            f"{derived.study.selection.of!r} went on since, or another --top or --seeds); its "
            f"runs stay as they are: report it as it is, or delete it (rnnlab delete {name}) to "
            "plan it anew")


def selection_of(storage: str, name: str) -> tuple[dict[str, Any], list[Candidate]] | None:
    """The selection of study ``name`` as stored (its ``study.selection`` plan, as JSON) and
    its candidates with their complete runs; None when there is none."""
    found = planned_runs(storage, selection_name(name), "selection")
    return None if found is None else (found[0], candidates(*found))


def selected_bests(storage: str, study: optuna.Study, spec: StudySpec,
                   where: str) -> tuple[list[dict[str, Any]], int] | None:
    """Each stratum's chosen params (in the order of :func:`strata_levels`) and the seeds the
    selection used, where ``study`` (its spec ``spec``) has a selection; None where it has
    none.

    Raises:
        RnnlabError: a selection that is not finished, one planned before the search went on
            (other top trials now), or one the spec asks for that has not run.
    """
    name = spec.study.name
    found = selection_of(storage, name)
    if found is None:
        if spec.select is not None:
            raise RnnlabError(f"{where}: study {name!r} chooses its bests on fresh seeds "
                              "first (its spec's select:), which has not run: run `rnnlab "
                              f"sweep` on its spec again, or `rnnlab select {name}`")
        return None
    plan, cands = found
    stale = went_on(plan, stratum_results(study, plan_strata(plan)),
                    spec.study.direction)
    if stale is not None:
        raise RnnlabError(f"{where}: {stale_advice(name, stale)}")
    picks = chosen(cands, int(plan["seeds"]), spec.study.direction)
    if picks is None:
        raise RnnlabError(f"{where}: the selection of study {name!r} "
                          f"({selection_name(name)}) is not finished; run it to the end "
                          f"(rnnlab select {name}, or rnnlab sweep on its spec) first")
    by_name = {stratum_name(p.stratum): p.params for p in picks}
    return [by_name[stratum_name(m)] for m in strata_levels(spec)], int(plan["seeds"])
