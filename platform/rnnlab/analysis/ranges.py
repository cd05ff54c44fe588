"""Continuous factors (lr, L2): where the best trials were found, per architecture."""

from __future__ import annotations

import itertools
import math

import pandas as pd

from rnnlab.analysis.levels import Effect, Space, Stratum, label, level_of, strata

MIN_RANGE_TRIALS = 6  # complete trials a stratum needs before a continuous range is given


def continuous(space: Space, table: pd.DataFrame, key: str) -> Effect:
    found = tuple(_stratum(space, rows, key, within)
                  for within, rows in strata(table, space.archs, space.choices))
    hint = (any(s.top is not None for s in found)
            and all(s.complete >= MIN_RANGE_TRIALS for s in found))
    return Effect(key=key, kind="continuous", strata=found, support="hint" if hint else "none",
                  metric=space.metric, stratified_by=space.archs,
                  confounders=tuple(sorted({c for s in found for c in s.confounders})),
                  comparisons=0, reason="" if hint else "too few trials")


def _stratum(space: Space, rows: pd.DataFrame, key: str, within) -> Stratum:
    """The factor's bins, and the range of the best quarter (at least 3) of the trials."""
    done = rows[rows["state"] == "COMPLETE"].dropna(subset=["value", key])
    bins = _bins(rows, key, space.kinds[key] == "log")
    levels = tuple(level_of(name, rows[mask], space.sign) for name, mask in bins)
    ranked = done.sort_values("value", ascending=space.sign < 0)
    k = max(3, math.ceil(len(ranked) / 4))
    top = best = None
    if len(ranked) >= 3:
        top = (float(ranked[key].head(k).min()), float(ranked[key].head(k).max()))
        best = (float(ranked["value"].iloc[0]), float(ranked[key].iloc[0]))
    others = tuple(o for o in space.factors if o != key and o not in space.archs
                   and done[o].map(label).nunique() > 1)
    return Stratum(within=within, levels=levels, gaps=(), confounders=others, top=top,
                   leader=None, best=best, top_n=min(k, len(ranked)) if top else 0,
                   complete=len(done))


def _bins(rows: pd.DataFrame, key: str, log: bool) -> list[tuple[str, pd.Series]]:
    """Decades for log keys (zero, an L2 switched off, in a bin of its own); quarters of the
    observed range otherwise. Only bins with trials are kept."""
    values = pd.to_numeric(rows[key], errors="coerce")
    out = []
    if log:
        out.append(("0 (off)", values == 0))
        positive = values[values > 0]
        for k in sorted({math.floor(math.log10(v)) for v in positive}):
            out.append((f"1e{k} to 1e{k + 1}", (values >= 10.0 ** k) & (values < 10.0 ** (k + 1))))
    elif values.notna().any():
        lo, hi = float(values.min()), float(values.max())
        edges = [lo + (hi - lo) * i / 4 for i in range(5)] if hi > lo else [lo, hi]
        for a, b in itertools.pairwise(edges):
            out.append((f"{label(a)} to {label(b)}",
                        (values >= a) & ((values <= b) if b == edges[-1] else (values < b))))
    return [(name, mask) for name, mask in out if mask.any()]
