"""Intervals for gaps between trials' results: paired over seeds, or Welch's."""

from __future__ import annotations

import contextlib
import math
import warnings

from scipy import stats

CONFIDENCE = 0.95


def paired_interval(diffs: list[float]) -> tuple[float | None, float | None]:
    """The ``CONFIDENCE`` t interval of the mean of paired differences (None below 2 pairs)."""
    return mean_interval(diffs)


def mean_interval(values: list[float]) -> tuple[float | None, float | None]:
    """The ``CONFIDENCE`` t interval of the mean of ``values`` (None below 2 values)."""
    if len(values) < 2:
        return None, None
    with _equal_values_allowed():
        ci = stats.ttest_1samp(values, 0.0).confidence_interval(CONFIDENCE)
    return float(ci.low), float(ci.high)


def welch_interval(a: list[float], b: list[float]) -> tuple[float | None, float | None]:
    """Welch's ``CONFIDENCE`` interval of ``mean(a) - mean(b)`` (None below 2 values each)."""
    if len(a) < 2 or len(b) < 2:
        return None, None
    with _equal_values_allowed():
        ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(CONFIDENCE)
    return float(ci.low), float(ci.high)


@contextlib.contextmanager
def _equal_values_allowed():
    # Values without spread give the point interval (diff, diff), which is what we want; scipy
    # still warns of precision loss for them.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        yield


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
