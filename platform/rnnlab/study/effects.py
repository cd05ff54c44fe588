"""What each searched factor did to the objective, within comparable trials (validation).

A level's mean pooled over the other factors mixes its effect with theirs, so each categorical
factor is compared within strata, one per combination of the other categorical factors
(normalisation within each cell, cell within each normalisation). A gap gets an interval only
where the trials differ in nothing else: paired over ``train.seed`` when the seed is searched,
Welch's otherwise. Where continuous factors vary too (a TPE study draws them together), the
record says that no verdict is possible and what to run for one. Continuous factors (lr, L2)
get the range of their best trials per architecture (each combination of searched ``model.*``
keys). Every level is listed; those without a complete trial as missing. These records drive
the report (md, html, json) and the dashboard's normalisation figure.
"""

from __future__ import annotations

import pandas as pd

from rnnlab.core.study_spec import StudySpec
from rnnlab.study.intervals import CONFIDENCE, mean, paired_interval, welch_interval
from rnnlab.study.levels import Effect, Gap, Stratum, label, level_of, ranked, strata
from rnnlab.study.ranges import continuous
from rnnlab.study.results import StudyFrames

SEED_KEY = "train.seed"  # replicates, never a factor: the pairing key of comparisons


def effects(frames: StudyFrames) -> tuple[Effect, ...]:
    """One :class:`Effect` per searched key but the seed, in search order."""
    table = frames.table(("COMPLETE", "PRUNED", "FAIL"))
    choices, kinds = _space(frames, table)
    sign = -1.0 if frames.direction == "minimize" else 1.0
    keys = [k for k in frames.search if k != SEED_KEY and k in table]
    out = []
    for key in keys:
        if kinds[key] == "categorical":
            others = [k for k in keys if k != key and kinds[k] == "categorical"]
            out.append(_categorical(frames, table, key, others, choices, kinds, sign))
        else:
            archs = [k for k in keys if kinds[k] == "categorical" and k.startswith("model.")]
            out.append(continuous(frames, table, key, archs, choices, keys, sign))
    return tuple(out)


def _space(frames: StudyFrames, table: pd.DataFrame) -> tuple[dict, dict]:
    search = StudySpec.model_validate(frames.spec).search if frames.spec else {}
    choices, kinds = {}, {}
    for key in frames.search:
        d = search.get(key)
        observed = [label(v) for v in table.get(key, pd.Series(dtype=object)).dropna()]
        if d is not None and d.choices is not None:
            kinds[key], choices[key] = "categorical", [label(v) for v in d.choices]
        elif d is None and any(isinstance(v, str | bool) for v in table.get(key, [])):
            kinds[key], choices[key] = "categorical", sorted(set(observed))
        else:
            kinds[key], choices[key] = ("log" if key in frames.log_keys else "linear"), []
    return choices, kinds


def _categorical(frames, table, key, others, choices, kinds, sign) -> Effect:
    numeric = [k for k in frames.search if k in table and kinds.get(k) in ("log", "linear")]
    found, missing = [], []
    for within, rows in strata(table, others, choices):
        levels = [level_of(c, rows[rows[key].map(label) == c], sign)
                  for c in choices[key]]
        done = rows[rows["state"] == "COMPLETE"]
        confounders = tuple(k for k in numeric if done[k].map(label).nunique() > 1)
        gaps = () if confounders else _gaps(rows, key, levels, sign, SEED_KEY in frames.search)
        where = ", ".join(f"{k}={v}" for k, v in within)
        missing += [f"{lv.level}" + (f" within {where}" if where else "")
                    + (f" ({lv.unfinished} pruned or failed)" if lv.unfinished else
                       " (never tried)") for lv in levels if lv.n == 0]
        found.append(Stratum(within, tuple(levels), gaps, confounders, None,
                              _categorical_text(levels, gaps, confounders, sign)))
    support, verdict = _categorical_verdict(key, others, found, frames.metric, sign,
                                            SEED_KEY in frames.search)
    return Effect(key, "categorical", tuple(found), tuple(missing), support, verdict)


def _gaps(rows, key, levels, sign, paired) -> tuple[Gap, ...]:
    tried = ranked(levels, sign)
    if len(tried) < 2:
        return ()
    best, out = tried[0], []
    done = rows[rows["state"] == "COMPLETE"].dropna(subset=["value"])
    for other in tried[1:]:
        diff = sign * (best.mean - other.mean)
        if paired:
            # one value per seed (a config run twice with one seed counts once, averaged)
            a = done[done[key].map(label) == best.level].groupby(SEED_KEY)["value"].mean()
            b = done[done[key].map(label) == other.level].groupby(SEED_KEY)["value"].mean()
            common = a.index.intersection(b.index)
            diffs = [sign * (float(a[s]) - float(b[s])) for s in common]
            low, high = paired_interval(diffs)
            out.append(Gap(best.level, other.level, mean(diffs) if diffs else diff,
                           len(diffs), "paired over seeds" if low is not None else "", low, high))
        else:
            low, high = welch_interval([sign * v for v in best.values],
                                       [sign * v for v in other.values])
            out.append(Gap(best.level, other.level, diff, min(best.n, other.n),
                           "Welch" if low is not None else "", low, high))
    return tuple(out)


def _categorical_text(levels, gaps, confounders, sign) -> str:
    tried = ranked(levels, sign)
    if not tried:
        return "no complete trial"
    head = f"{tried[0].level} has the best mean ({tried[0].mean:.4f}, n={tried[0].n})"
    if confounders:
        return head + f"; not comparable: {', '.join(confounders)} vary too"
    if not gaps:
        return head + ("; the only level with a complete trial" if len(tried) == 1 else "")
    parts = []
    for g in gaps:
        if g.low is None:
            parts.append(f"{g.other} {g.diff:.4f} behind (no interval: n={g.n})")
        else:
            parts.append(f"{g.other} {g.diff:.4f} behind, {CONFIDENCE:.0%} CI "
                         f"[{g.low:+.4f}, {g.high:+.4f}] {g.test} (n={g.n}): "
                         + ("beyond seed noise" if g.separated else "within seed noise"))
    return head + "; " + "; ".join(parts)


def _categorical_verdict(key, others, found, metric, sign, seeded) -> tuple[str, str]:
    tried = [s for s in found if any(lv.n for lv in s.levels)]
    if not tried:
        return "none", f"{key}: no complete trial yet."
    leader = {s.within: ranked(s.levels, sign)[0].level for s in tried}
    where = f" within each {', '.join(others)}" if others else ""
    confounded = sorted({c for s in tried for c in s.confounders})
    if confounded:
        grid = " x ".join([key, *others])
        return "none", (
            f"{key}: the data cannot support a verdict: the trials{where} also differ in "
            f"{', '.join(confounded)} (the sampler drew them together), so a gap between "
            f"levels may be theirs. To get one, run a grid of {grid} with those keys fixed and "
            f"{SEED_KEY} choices [0, 1, 2] (as studies/normalisation_ablation.yaml does). "
            f"Best mean{where}, as a hint only: {_per_stratum(tried, leader)}.")
    if not any(g.low is not None for s in tried for g in s.gaps):
        fix = (f"finish the study: no level has two seeds done{where} yet" if seeded else
               f"no level has replicates{where}; add {SEED_KEY}: {{choices: [0, 1, 2]}} to the "
               "search")
        return "none", (f"{key}: the data cannot support a verdict: a gap cannot be told from "
                        f"seed noise ({fix}). Best{where}: {_per_stratum(tried, leader)}.")
    groups = {}
    for s in tried:
        top = [leader[s.within]] + [g.other for g in s.gaps
                                    if g.low is not None and not g.separated]
        groups[s.name] = (top, [g.other for g in s.gaps if g.separated],
                          [g.other for g in s.gaps if g.low is None])
    tests = sum(g.low is not None for s in tried for g in s.gaps)
    head = (f"{key} (validation {metric}, {CONFIDENCE:.0%} intervals{where}; {tests} "
            "comparisons, not corrected for multiplicity): ")
    said = {name: _say(*g) for name, g in groups.items()}
    if len(set(said.values())) == 1:
        body = ("in every stratum, " if len(said) > 1 else "") + next(iter(said.values()))
    else:
        body = "; ".join(f"{name}: {text}" for name, text in said.items())
    return "verdict", head + body + "."


def _say(top: list[str], beaten: list[str], untested: list[str]) -> str:
    """One stratum: the levels the best cannot be told from, those it beats, the rest."""
    if len(top) == 1 and not untested:
        return f"{top[0]} is best, beyond seed noise against every other level"
    parts = [f"{', '.join(sorted(top))} cannot be told apart (within seed noise)" if len(top) > 1
             else f"{top[0]} leads"]
    if beaten:
        parts.append(f"{', '.join(sorted(beaten))} trail beyond seed noise")
    if untested:
        parts.append(f"too few seed pairs to judge {', '.join(sorted(untested))}")
    return "; ".join(parts)


def _per_stratum(found, leader) -> str:
    return "; ".join(f"{s.name}: {leader[s.within]}" for s in found)
