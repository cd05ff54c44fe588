"""Intervals for gaps between trials' results: paired over seeds, or Welch's."""

from __future__ import annotations

import math

from scipy import stats

CONFIDENCE = 0.95


def paired_interval(diffs: list[float]) -> tuple[float | None, float | None]:
    """The ``CONFIDENCE`` t interval of the mean of paired differences (None below 2 pairs)."""
    if len(diffs) < 2:
        return None, None
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(diffs) - 1) * std(diffs) / math.sqrt(len(diffs))
    return float(mean(diffs) - half), float(mean(diffs) + half)


def welch_interval(a: list[float], b: list[float]) -> tuple[float | None, float | None]:
    """Welch's ``CONFIDENCE`` interval of ``mean(a) - mean(b)`` (None below 2 values each)."""
    if len(a) < 2 or len(b) < 2:
        return None, None
    va, vb = std(a) ** 2 / len(a), std(b) ** 2 / len(b)
    diff = mean(a) - mean(b)
    if va + vb == 0:
        return diff, diff
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, df) * math.sqrt(va + vb)
    return float(diff - half), float(diff + half)


def mean(values) -> float | None:
    """The mean (None for no values)."""
    values = list(values)
    return sum(values) / len(values) if values else None


def std(values) -> float | None:
    """Sample standard deviation (None below two values)."""
    values = list(values)
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
