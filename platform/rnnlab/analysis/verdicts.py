"""The sentences of the effect records (:mod:`rnnlab.analysis.effects`), all in one place:
each stratum's ``text``, each effect's ``verdict`` and ``missing``. Nothing is inferred here."""

from __future__ import annotations

from dataclasses import replace

from rnnlab.analysis.intervals import CONFIDENCE
from rnnlab.analysis.levels import SEED_KEY, Effect, Gap, Level, Stratum, label
from rnnlab.analysis.ranges import MIN_RANGE_TRIALS


def worded(effect: Effect) -> Effect:
    """``effect`` with its sentences filled in from its numbers."""
    if effect.kind == "categorical":
        strata = tuple(replace(s, text=_level_text(s)) for s in effect.strata)
        verdict = _categorical_verdict(effect)
    else:
        strata = tuple(replace(s, text=_range_text(s, effect.key)) for s in effect.strata)
        verdict = _range_verdict(effect, strata)
    return replace(effect, strata=strata, verdict=verdict,
                   missing=tuple(_missing(s, lv) for s, lv in effect.untried))


def _missing(s: Stratum, lv: Level) -> str:
    return (lv.level + (f" within {s.name}" if s.within else "")
            + (f" ({lv.unfinished} pruned or failed)" if lv.unfinished else " (never tried)"))


def _level_text(s: Stratum) -> str:
    if s.leader is None:
        return "no complete trial"
    lead = next(lv for lv in s.levels if lv.level == s.leader)
    head = f"{lead.level} has the best mean ({lead.mean:.4f}, n={lead.n})"
    if s.confounders:
        return head + f"; not comparable: {', '.join(s.confounders)} vary too"
    if not s.gaps:
        only = sum(lv.n > 0 for lv in s.levels) == 1
        return head + ("; the only level with a complete trial" if only else "")
    return head + "; " + "; ".join(_gap_text(g) for g in s.gaps)


def _gap_text(g: Gap) -> str:
    if g.low is None:
        return f"{g.other} {g.diff:.4f} behind (no interval: n={g.n})"
    return (f"{g.other} {g.diff:.4f} behind, {CONFIDENCE:.0%} CI [{g.low:+.4f}, {g.high:+.4f}] "
            f"{g.test} (n={g.n}): " + ("beyond seed noise" if g.separated else "within seed noise"))


def _categorical_verdict(e: Effect) -> str:
    tried = [s for s in e.strata if s.leader is not None]
    where = f" within each {', '.join(e.stratified_by)}" if e.stratified_by else ""
    leaders = "; ".join(f"{s.name}: {s.leader}" for s in tried)
    if e.reason == "no complete trial":
        return f"{e.key}: no complete trial yet."
    if e.reason == "confounded":
        grid = " x ".join([e.key, *e.stratified_by])
        return (f"{e.key}: the data cannot support a verdict: the trials{where} also differ in "
                f"{', '.join(e.confounders)} (the sampler drew them together), so a gap between "
                f"levels may be theirs. To get one, run a grid of {grid} with those keys fixed "
                f"and {SEED_KEY} choices [0, 1, 2] (as studies/normalisation_ablation.yaml "
                f"does). Best mean{where}, as a hint only: {leaders}.")
    if e.reason:
        fix = (f"finish the study: no level has two seeds done{where} yet"
               if e.reason == "unfinished" else f"no level has replicates{where}; add "
               f"{SEED_KEY}: {{choices: [0, 1, 2]}} to the search")
        return (f"{e.key}: the data cannot support a verdict: a gap cannot be told from "
                f"seed noise ({fix}). Best{where}: {leaders}.")
    head = (f"{e.key} (validation {e.metric}, {CONFIDENCE:.0%} intervals{where}; "
            f"{e.comparisons} comparisons, not corrected for multiplicity): ")
    said = {s.name: _say(s) for s in tried}
    if len(set(said.values())) == 1:
        body = ("in every stratum, " if len(said) > 1 else "") + next(iter(said.values()))
    else:
        body = "; ".join(f"{name}: {text}" for name, text in said.items())
    return head + body + "."


def _say(s: Stratum) -> str:
    """One stratum: the levels the best cannot be told from, those it beats, the rest."""
    top = [s.leader] + [g.other for g in s.gaps if g.low is not None and not g.separated]
    beaten = [g.other for g in s.gaps if g.separated]
    untested = [g.other for g in s.gaps if g.low is None]
    if len(top) == 1 and not untested:
        return f"{top[0]} is best, beyond seed noise against every other level"
    parts = [f"{', '.join(sorted(top))} cannot be told apart (within seed noise)" if len(top) > 1
             else f"{top[0]} leads"]
    if beaten:
        parts.append(f"{', '.join(sorted(beaten))} trail beyond seed noise")
    if untested:
        parts.append(f"too few seed pairs to judge {', '.join(sorted(untested))}")
    return "; ".join(parts)


def _range_text(s: Stratum, key: str) -> str:
    if s.top is None:
        return f"{s.complete} complete trial(s): too few to place {key}"
    return (f"best {s.best[0]:.4f} at {key}={label(s.best[1])}; the top {s.top_n} of "
            f"{s.complete} used {label(s.top[0])} to {label(s.top[1])}")


def _range_verdict(e: Effect, strata: tuple[Stratum, ...]) -> str:
    per = ("; ".join(f"{s.name}: {s.text}" for s in strata if s.top is not None)
           or "no stratum has 3 complete trials")
    where = f" per {', '.join(e.stratified_by)}" if e.stratified_by else ""
    caveat = ("the other factors vary too, so this is where good trials were found, not a "
              "controlled effect" if e.confounders else "the other factors were fixed")
    few = (f"; fewer than {MIN_RANGE_TRIALS} complete trials in some stratum, so treat it as a "
           "first look" if e.reason else "")
    return f"{e.key}: best range{where} (validation {e.metric}; {caveat}{few}): {per}."
