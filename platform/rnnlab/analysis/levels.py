"""The records of :mod:`rnnlab.analysis.effects`: the search space, levels, gaps, strata and
effects, and the helpers that group a study's trials into them."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from rnnlab.analysis.intervals import mean, std

SEED_KEY = "train.seed"  # replicates, never a factor: the pairing key of comparisons

# Why an effect's support falls short: "" where it does not (a verdict, or a continuous hint).
Reason = Literal["", "no complete trial", "confounded", "unfinished", "no replicates",
                 "too few trials"]


@dataclass(frozen=True)
class Space:
    """What a study's trials searched, read once per study."""

    searched: tuple[str, ...]  # the searched keys the trials have, in search order
    kinds: dict[str, str]  # per searched key: categorical, log or linear
    choices: dict[str, tuple[str, ...]]  # per categorical key: its levels, as labels
    metric: str
    sign: float  # 1.0 when the objective is maximised, -1.0 when minimised
    seeded: bool  # SEED_KEY is searched: gaps pair over it
    # An ablation study (rnnlab ablate): its one factor, judged within the declared strata
    # only, each stratum at the levels its plan gave it (the other keys are fixed per stratum).
    only: str | None = None
    within: tuple[str, ...] | None = None
    planned: dict[tuple, tuple[str, ...]] | None = None

    @property
    def factors(self) -> tuple[str, ...]:
        if self.only:
            return (self.only,)
        return tuple(k for k in self.searched if k != SEED_KEY)

    def categorical(self, but: str = "") -> tuple[str, ...]:
        return tuple(k for k in self.factors if k != but and self.kinds[k] == "categorical")

    @property
    def archs(self) -> tuple[str, ...]:
        """The categorical ``model.*`` factors: continuous ranges are given per their values."""
        return tuple(k for k in self.categorical() if k.startswith("model."))

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(k for k in self.searched if self.kinds[k] in ("log", "linear"))


@dataclass(frozen=True)
class Level:
    """The complete trials of one level (or one bin of a continuous factor) in a stratum."""

    level: str
    n: int
    mean: float | None
    std: float | None
    best: float | None
    numbers: tuple[int, ...]
    values: tuple[float, ...]  # the objective (validation) of each trial in ``numbers``
    unfinished: int  # trials at this level that were pruned or failed


@dataclass(frozen=True)
class Gap:
    """The best level against another: ``diff`` > 0 means the best is better."""

    best: str
    other: str
    diff: float
    n: int  # seed pairs (paired) or trials of the smaller level (Welch)
    test: str  # "paired over seeds", "Welch", or "" when no interval is possible
    low: float | None
    high: float | None

    @property
    def separated(self) -> bool:
        """The interval excludes zero: the gap is beyond seed noise."""
        return self.low is not None and self.low > 0


@dataclass(frozen=True, kw_only=True)
class Stratum:
    within: tuple[tuple[str, str], ...]  # the other factors' values held fixed
    levels: tuple[Level, ...]
    gaps: tuple[Gap, ...]
    confounders: tuple[str, ...]  # searched keys that vary among the stratum's trials
    top: tuple[float, float] | None  # continuous: the factor's range among the best trials
    text: str = ""  # the sentence, from rnnlab.analysis.verdicts
    leader: str | None  # categorical: the level with the best mean (None: no complete trial)
    best: tuple[float, float] | None  # continuous: the best trial's objective and factor value
    top_n: int  # continuous: how many of the best trials ``top`` spans
    complete: int  # the complete trials the numbers come from

    @property
    def name(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.within) or "all trials"


@dataclass(frozen=True, kw_only=True)
class Effect:
    key: str
    kind: str  # categorical or continuous
    strata: tuple[Stratum, ...]
    missing: tuple[str, ...] = ()  # sentences for ``untried``, from rnnlab.analysis.verdicts
    support: str  # verdict (intervals within matched trials), hint, or none
    verdict: str = ""  # the sentence, from rnnlab.analysis.verdicts
    metric: str
    stratified_by: tuple[str, ...]  # the factors each stratum holds fixed
    confounders: tuple[str, ...]  # searched keys that vary within the strata compared
    comparisons: int  # gaps with an interval
    reason: Reason

    @property
    def untried(self) -> tuple[tuple[Stratum, Level], ...]:
        """The categorical levels with no complete trial, with their stratum."""
        if self.kind != "categorical":
            return ()
        return tuple((s, lv) for s in self.strata for lv in s.levels if lv.n == 0)


def label(value: object) -> str:
    """A level as text: floats to 3 significant digits (1e-3, not 0.0010000)."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def strata(table: pd.DataFrame, others: tuple[str, ...], choices: dict):
    for combo in itertools.product(*(choices[k] for k in others)):
        mask = pd.Series(True, index=table.index)
        for k, v in zip(others, combo, strict=True):
            mask &= table[k].map(label) == v
        yield tuple(zip(others, combo, strict=True)), table[mask]


def level_of(name: str, rows: pd.DataFrame, sign: float) -> Level:
    done = rows[rows["state"] == "COMPLETE"].dropna(subset=["value"])
    values = tuple(float(v) for v in done["value"])
    return Level(name, len(values), mean(values), std(values),
                 max(values, key=lambda v: sign * v) if values else None,
                 tuple(int(n) for n in done["number"]), values,
                 int((rows["state"] != "COMPLETE").sum()))


def ranked(levels, sign: float) -> list[Level]:
    """The levels with a complete trial, best mean first."""
    return sorted((lv for lv in levels if lv.n), key=lambda lv: -sign * lv.mean)
