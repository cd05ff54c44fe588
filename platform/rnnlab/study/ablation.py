"""Ablations from the best: a derived study that trains each stratum's best config with one
factor set to each level, with paired seeds and no pruning, so that its report gives a paired
verdict within each stratum (at each stratum's own best config, not at a default).

The derived study's spec holds its whole plan (``study.ablation.trials``): every worker fills
the plan, enqueuing a planned trial that has no live one, and never samples. Each stratum's
best, unchanged, is always one of its arms (its level is added to levels given without it).

Its seeds are fresh: each stratum's best trained with seed ``s`` was chosen as the best of the
search, so re-training it with ``s`` would give its level the winner's value again (the same
config, the same random numbers) and lean the comparison its way. The arms train with seeds
``s + 1 ... s + N`` instead, every level alike. Where the study chose its bests on fresh seeds
first (:mod:`rnnlab.study.selection`, seeds ``s + 1 ... s + K``), the ablations start from
its choices and after its seeds: ``s + K + 1 ... s + K + N``.

Arms shared between ablations of one study (each stratum's best itself is an arm of every
ablation) are trained once: a planned trial whose very config a sibling ablation completed
replays that trial's run (:func:`twin`) instead.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import optuna
from optuna.trial import TrialState

from rnnlab.core.study_spec import (
    AblationConfig,
    Distribution,
    StudySpec,
    check_ablation,
    derived_spec,
    planned_trials,
    strata_levels,
    stratum_name,
)
from rnnlab.errors import RnnlabError
from rnnlab.storage.adapter import load_study, stored_plan, stratum_study, study_names
from rnnlab.storage.keys import (
    FINISHED,
    TRIAL_CONFIG,
    TRIAL_RUN_ID,
    enqueued_params,
    trained_params,
)
from rnnlab.study.selection import searched_spec, selected_bests
from rnnlab.study.spec_change import ALLOWED

SEED_KEY = "train.seed"
LIVE = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)  # a planned trial that needs no more


def derived_name(study: str, factor: str) -> str:
    """The derived study's name: where it comes from, and what it ablates."""
    return f"{study}-ablate-{factor}"


def ablation_spec(storage: str, name: str, ablation: AblationConfig,
                  where: str = "rnnlab ablate") -> StudySpec:
    """The derived study of ``ablation`` on study ``name``: its base config and settings are the
    study's, its trials each stratum's best with the factor at each level, for each seed.

    Raises:
        RnnlabError: the study does not exist or has no complete trial, or the ablation is one
            it cannot run (see :func:`~rnnlab.core.study_spec.check_ablation`).
    """
    study, spec, stored = searched_spec(storage, name, where)
    check_ablation(spec, ablation, where)
    selected = selected_bests(storage, study, spec, where)
    if selected is not None:  # each stratum's best chosen on fresh seeds
        bests, used = selected
    else:
        bests, used = [], 0
        for match in strata_levels(spec):
            best = _best(study, match)
            if best is None:
                raise RnnlabError(f"{where}: stratum {stratum_name(match) or 'of the study'} "
                                  f"of study {name!r} has no complete trial yet; finish the "
                                  "search first (rnnlab sweep)")
            bests.append(trained_params(best))
    derived = planned_spec(spec, stored, bests, ablation, where, after=used)
    _check_plan(storage, derived, where)
    return derived


def planned_spec(spec: StudySpec, stored: dict[str, Any], bests: list[dict[str, Any]],
                 ablation: AblationConfig, where: str = "rnnlab ablate",
                 after: int = 0) -> StudySpec:
    """The derived study of ``ablation`` from the params each stratum's best trained with
    (``bests``, in the order of :func:`~rnnlab.core.study_spec.strata_levels`); ``stored`` is
    the searched study's spec as JSON (its data, model and train sections are the base);
    ``after`` fresh seeds are taken already (by the selection that chose the bests).

    Raises:
        RnnlabError: the ablation is one the spec cannot run, or a level it cannot take.
    """
    check_ablation(spec, ablation, where)
    trials = []
    for match, best in zip(strata_levels(spec), bests, strict=True):
        params = {k: v for k, v in best.items() if k in spec.search}
        # fresh: see the module's doc
        first = int(params.get(SEED_KEY, spec.train.seed)) + 1 + after
        seeds = [first + i for i in range(ablation.seeds)]
        for level in _levels(ablation, spec.search[ablation.factor], params, where):
            trials += [{**params, **match, ablation.factor: level, SEED_KEY: s} for s in seeds]
    return _derived(spec, stored, ablation, trials)


def _check_plan(storage: str, derived: StudySpec, where: str) -> None:
    """Refuse to resume a derived study whose stored plan is not this one: its arms were
    planned from another best, or with other seeds (an rnnlab before fresh seeds)."""
    name = derived.study.name
    planned = (stored_plan(storage, name, "ablation") or {}).get("trials")
    if planned is not None and sorted(map(_key, planned)) != sorted(
            map(_key, derived.study.ablation.trials)):
        raise RnnlabError(
            f"{where}: ablation study {name!r} exists with another plan (planned from another "
            f"best of {derived.study.ablation.of!r}, or with the seeds of an earlier rnnlab); "
            f"its runs stay as they are: report it as it is, or delete it (rnnlab delete {name}) "
            "to plan it anew")


def _best(study: optuna.Study, match: dict[str, Any]) -> optuna.trial.FrozenTrial | None:
    view = stratum_study(study, match, study.sampler) if match else study
    try:
        return view.best_trial
    except ValueError:  # no complete trial
        return None


def _levels(ablation: AblationConfig, dist: Distribution, best: dict[str, Any],
            where: str) -> list[Any]:
    """The levels asked for, else the default (see :class:`AblationConfig`), around ``best``;
    the best's own level always among them: the control every other level is compared with."""
    if ablation.levels is not None:
        return list(dict.fromkeys([*ablation.levels, best[ablation.factor]]))
    if dist.type == "categorical":
        return list(dist.choices)
    value = float(best[ablation.factor])
    if dist.zero_below is not None:  # a best trained without the penalty: the range's middle
        return [0.0, value or float(math.sqrt(dist.zero_below * dist.high))]
    levels = [v for v in (value / 3, value, value * 3) if dist.low <= v <= dist.high]
    if len(levels) < 2:
        raise RnnlabError(f"{where}: the best {ablation.factor} {value:g} leaves no room x/÷3 "
                          f"inside {dist.low:g} to {dist.high:g}; give --levels")
    return levels


def _derived(spec: StudySpec, stored: dict[str, Any], ablation: AblationConfig,
             trials: list[dict[str, Any]]) -> StudySpec:
    return derived_spec(stored, derived_name(spec.study.name, ablation.factor), "ablation",
                        {"of": spec.study.name, "factor": ablation.factor, "trials": trials},
                        f"ablation of {spec.study.name!r}")


def fill_plan(study: optuna.Study, spec: StudySpec) -> int:
    """Enqueue every planned trial of a derived study (an ablation or a selection) that has
    no live trial (never made, or failed for good); returns how many. Call it under the
    study's lock."""
    live = Counter(_key(enqueued_params(t)) for t in study.get_trials(deepcopy=False)
                   if t.state in LIVE)
    added = 0
    for params in planned_trials(spec) or ():
        if live[_key(params)]:
            live[_key(params)] -= 1
        else:
            study.enqueue_trial(params)
            added += 1
    return added


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def twin(storage: str, spec: StudySpec, config: dict[str, Any]) -> tuple[str, int, str] | None:
    """A complete trial of a sibling ablation (another derived study of the same study) that
    trained ``config`` (flat), as ``(study, trial number, run id)``; None when there is none.
    Keys that never alter a result (where it ran: device, threads, data folder) may differ."""
    prefix = derived_name(spec.study.ablation.of, "")
    wanted = _essential(config)
    for name in study_names(storage):
        if not name.startswith(prefix) or name == spec.study.name:
            continue
        for t in load_study(storage, name).get_trials(deepcopy=False,
                                                      states=(TrialState.COMPLETE,)):
            if t.user_attrs.get(TRIAL_RUN_ID) and _essential(
                    t.user_attrs.get(TRIAL_CONFIG, {})) == wanted:
                return name, t.number, t.user_attrs[TRIAL_RUN_ID]
    return None


def _essential(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in ALLOWED}
