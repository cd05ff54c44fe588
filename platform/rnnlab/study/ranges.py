"""Continuous factors (lr, L2): where the best trials were found, per architecture."""

from __future__ import annotations

import itertools
import math

import pandas as pd

from rnnlab.study.levels import Effect, Stratum, label, level_of, strata

MIN_RANGE_TRIALS = 6  # complete trials a stratum needs before a continuous range is given


def continuous(frames, table, key, archs, choices, keys, sign) -> Effect:
    found, enough = [], True
    for within, rows in strata(table, archs, choices):
        done = rows[rows["state"] == "COMPLETE"].dropna(subset=["value", key])
        bins = _bins(rows, key, key in frames.log_keys)
        levels = tuple(level_of(name, rows[mask], sign) for name, mask in bins)
        ranked = done.sort_values("value", ascending=sign < 0)
        k = max(3, math.ceil(len(ranked) / 4))
        top = ((float(ranked[key].head(k).min()), float(ranked[key].head(k).max()))
               if len(ranked) >= 3 else None)
        others = tuple(o for o in keys if o != key and o not in archs
                       and done[o].map(label).nunique() > 1)
        enough &= len(done) >= MIN_RANGE_TRIALS
        if top is None:
            text = f"{len(done)} complete trial(s): too few to place {key}"
        else:
            best = ranked.iloc[0]
            text = (f"best {float(best['value']):.4f} at {key}={label(float(best[key]))}; the "
                    f"top {min(k, len(ranked))} of {len(ranked)} used {label(top[0])} to "
                    f"{label(top[1])}")
        found.append(Stratum(within, levels, (), others, top, text))
    tried = [s for s in found if s.top is not None]
    per = "; ".join(f"{s.name}: {s.text}" for s in tried) or "no stratum has 3 complete trials"
    support = "hint" if tried and enough else "none"
    where = f" per {', '.join(archs)}" if archs else ""
    caveat = ("the other factors vary too, so this is where good trials were found, not a "
              "controlled effect" if any(s.confounders for s in found) else
              "the other factors were fixed")
    verdict = (f"{key}: best range{where} (validation {frames.metric}; {caveat}"
               + ("" if support == "hint" else f"; fewer than {MIN_RANGE_TRIALS} complete "
                  "trials in some stratum, so treat it as a first look")
               + f"): {per}.")
    return Effect(key, "continuous", tuple(found), (), support, verdict)


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
