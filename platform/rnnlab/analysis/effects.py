"""What each searched factor did to the objective, within comparable trials (validation): records
only, worded by :mod:`rnnlab.analysis.verdicts` (docs/decisions.md, "Effects")."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from rnnlab.analysis.frames import StudyFrames
from rnnlab.analysis.intervals import mean, paired_interval, welch_interval
from rnnlab.analysis.levels import (
    SEED_KEY,
    Effect,
    Gap,
    Level,
    Space,
    Stratum,
    label,
    level_of,
    ranked,
    strata,
)
from rnnlab.analysis.ranges import continuous
from rnnlab.analysis.verdicts import worded
from rnnlab.core.study_spec import StudySpec


def effects(frames: StudyFrames) -> tuple[Effect, ...]:
    """One :class:`Effect` per searched key but the seed, in search order."""
    table = frames.table(("COMPLETE", "PRUNED", "FAIL"))
    space = _space(frames, table)
    found = [_categorical(space, table, key) if space.kinds[key] == "categorical"
             else continuous(space, table, key) for key in space.factors]
    return tuple(worded(e) for e in found)


def _space(frames: StudyFrames, table: pd.DataFrame) -> Space:
    search = StudySpec.model_validate(frames.spec).search if frames.spec else {}
    choices, kinds = {}, {}
    for key in frames.search:
        d = search.get(key)
        observed = [label(v) for v in table.get(key, pd.Series(dtype=object)).dropna()]
        if d is not None and d.choices is not None:
            kinds[key], choices[key] = "categorical", tuple(label(v) for v in d.choices)
        elif d is None and any(isinstance(v, str | bool) for v in table.get(key, [])):
            kinds[key], choices[key] = "categorical", tuple(sorted(set(observed)))
        else:
            kinds[key] = "log" if key in frames.log_keys else "linear"
    space = Space(tuple(k for k in frames.search if k in table), kinds, choices, frames.metric,
                  -1.0 if frames.direction == "minimize" else 1.0, SEED_KEY in frames.search)
    ablation = (frames.spec.get("study") or {}).get("ablation")
    if not ablation:
        return space
    keys = tuple(frames.spec["study"].get("strata") or ())
    planned: dict[tuple, tuple[str, ...]] = {}
    for t in ablation["trials"]:
        within = tuple((k, label(t[k])) for k in keys)
        levels = planned.setdefault(within, ())
        if label(t[ablation["factor"]]) not in levels:
            planned[within] = (*levels, label(t[ablation["factor"]]))
    return replace(space, only=ablation["factor"], within=keys, planned=planned)


def _categorical(space: Space, table: pd.DataFrame, key: str) -> Effect:
    others = space.categorical(but=key) if space.within is None else space.within
    found = tuple(_stratum(space, rows, key, within)
                  for within, rows in strata(table, others, space.choices))
    tried = [s for s in found if s.leader is not None]
    confounders = tuple(sorted({c for s in tried for c in s.confounders}))
    comparisons = sum(g.low is not None for s in tried for g in s.gaps)
    reason = ("no complete trial" if not tried else "confounded" if confounders else
              "" if comparisons else "unfinished" if space.seeded else "no replicates")
    return Effect(key=key, kind="categorical", strata=found,
                  support="none" if reason else "verdict", metric=space.metric,
                  stratified_by=others, confounders=confounders, comparisons=comparisons,
                  reason=reason)


def _stratum(space: Space, rows: pd.DataFrame, key: str, within) -> Stratum:
    chosen = space.choices[key] if space.planned is None else space.planned.get(within, ())
    levels = tuple(level_of(c, rows[rows[key].map(label) == c], space.sign) for c in chosen)
    done = rows[rows["state"] == "COMPLETE"]
    confounders = tuple(k for k in space.numeric if done[k].map(label).nunique() > 1)
    tried = ranked(levels, space.sign)
    gaps = () if confounders or len(tried) < 2 else tuple(
        _gap(space, rows, key, tried[0], other) for other in tried[1:])
    return Stratum(within=within, levels=levels, gaps=gaps, confounders=confounders, top=None,
                   leader=tried[0].level if tried else None, best=None, top_n=0,
                   complete=sum(lv.n for lv in levels))


def _gap(space: Space, rows: pd.DataFrame, key: str, best: Level, other: Level) -> Gap:
    sign = space.sign
    diff = sign * (best.mean - other.mean)
    if not space.seeded:
        low, high = welch_interval([sign * v for v in best.values],
                                   [sign * v for v in other.values])
        return Gap(best.level, other.level, diff, min(best.n, other.n),
                   "Welch" if low is not None else "", low, high)
    # one value per seed (a config run twice with one seed counts once, averaged)
    done = rows[rows["state"] == "COMPLETE"].dropna(subset=["value"])
    a = done[done[key].map(label) == best.level].groupby(SEED_KEY)["value"].mean()
    b = done[done[key].map(label) == other.level].groupby(SEED_KEY)["value"].mean()
    diffs = [sign * (float(a[s]) - float(b[s])) for s in a.index.intersection(b.index)]
    low, high = paired_interval(diffs)
    return Gap(best.level, other.level, mean(diffs) if diffs else diff, len(diffs),
               "paired over seeds" if low is not None else "", low, high)
