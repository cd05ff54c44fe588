"""Whether a study may resume with a changed spec: its base config is fixed once it exists.

Trials are ranked, pruned and reported against each other, so they must all be drawn, trained
and judged alike. Once a study exists, its base config (``data``, ``model``, ``train``), search
space, metric, objective, direction, sampler and pruner never change: a spec that changes them
belongs in a new study. A few keys say where, how long or how robustly trials run, never what
they compute (:data:`ALLOWED`); ``--allow-spec-change`` accepts changes to those, and only
those. The budget, ``study.n_trials``, is no change at all: every command sets it (a larger
``--n-trials`` extends a study; never below the trials finished).
"""

from __future__ import annotations

import json
from typing import Any

from rnnlab.core.spec import flatten, validate
from rnnlab.core.study_spec import StudySpec
from rnnlab.errors import RnnlabError

# Keys whose change cannot alter any trial's result: --allow-spec-change accepts them.
ALLOWED = frozenset({
    "study.timeout",  # when a command stops starting trials
    "study.heartbeat_interval", "study.grace_period",  # how soon a dead worker's trial is seen
    "study.max_retries",  # how often a lost trial is retried, with the same parameters
    "study.max_failures_in_a_row",  # when a worker whose trials keep failing gives up
    "study.store_outage_limit",  # how long a worker waits for a store that went down
    # Where a worker runs: workers of one study may run on different machines (the last bits
    # of a float may differ between them, as between any two machines).
    "train.device", "train.threads",
    "data.dir",  # where this machine finds the same files (their checksums are verified)
})
# The study's budget, the name that found the study, and the selection and ablations run once
# it is done (derived studies of their own): never a change.
IGNORED = frozenset({"study.n_trials", "study.name", "select", "ablate"})
_ABSENT = object()


def check_resume(name: str, stored: dict[str, Any] | None, spec: StudySpec, *,
                 allow_spec_change: bool = False) -> None:
    """Refuse to resume study ``name``, stored with spec ``stored``, with ``spec`` where they
    differ in a way that could alter results, or differ at all without ``allow_spec_change``.

    Args:
        name: the study.
        stored: the spec the study was last run with (``model_dump(mode="json")``); None for a
            study made outside rnnlab, which nothing holds to.
        spec: the spec to resume it with.
        allow_spec_change: accept changes to the :data:`ALLOWED` keys.

    Raises:
        RnnlabError: one line naming each changed key as ``key: old -> new`` and the ways out.
    """
    if stored is None:
        return
    try:  # validated, so keys an older rnnlab did not store get today's defaults
        old = validate(StudySpec, stored, "its stored spec")
    except RnnlabError as exc:
        raise RnnlabError(f"study {name!r} was run by an rnnlab whose spec this one cannot "
                          f"compare ({exc}); set a new study.name to start a new study") from None
    changes = spec_changes(old, spec)
    altering = {k: v for k, v in changes.items() if k not in ALLOWED}
    allowed = {k: v for k, v in changes.items() if k in ALLOWED}
    if altering:
        besides = (f" (besides {_listing(allowed)}, which --allow-spec-change would accept)"
                   if allowed else "")
        raise RnnlabError(
            f"study {name!r} exists with another spec, and these changes would alter its "
            f"results: {_listing(altering)}{besides}; undo them, or set a new study.name to "
            "run them as a new study (--allow-spec-change accepts changes to "
            f"{', '.join(sorted(ALLOWED))} only)")
    if allowed and not allow_spec_change:
        raise RnnlabError(
            f"study {name!r} exists with another spec: {_listing(allowed)}; these changes "
            "cannot alter its results, and --allow-spec-change accepts them (or set a new "
            "study.name to start a new study)")


def spec_changes(old: StudySpec, new: StudySpec) -> dict[str, tuple[Any, Any]]:
    """Every dotted key whose value differs, as ``{key: (old, new)}`` (budget and name aside).

    A search key on one side only is one change, its whole distribution against absent; one on
    both sides differs field by field (``search.train.lr.high``).
    """
    a, b = _dotted(old), _dotted(new)
    keys = [*a, *(k for k in b if k not in a)]
    pairs = {k: (a.get(k, _ABSENT), b.get(k, _ABSENT)) for k in keys if k not in IGNORED}
    return {k: pair for k, pair in pairs.items() if pair[0] != pair[1]}


def _dotted(spec: StudySpec) -> dict[str, Any]:
    """Every key of the spec dotted, but each search key's distribution whole."""
    out = flatten(spec, mode="json", exclude={"search"})
    for key, dist in spec.search.items():
        out[f"search.{key}"] = dist.model_dump(mode="json")
    return out


def _listing(changes: dict[str, tuple[Any, Any]]) -> str:
    parts = []
    for key, (old, new) in changes.items():
        if key.startswith("search.") and old is not _ABSENT and new is not _ABSENT:
            parts += [f"{key}.{f}: {_show(old[f])} -> {_show(new[f])}"
                      for f in old if old[f] != new[f]]
        else:
            parts.append(f"{key}: {_show(old)} -> {_show(new)}")
    return "; ".join(parts)


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "(none)"
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # a whole distribution: its fields that are set
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()
                               if v is not None) + "}"
    return json.dumps(value)
