"""What figures across studies share: studies with their labels, the group and facet of each
trial, and one colour per group."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
from plotly.colors import qualitative

from rnnlab.analysis.frames import StudyFrames
from rnnlab.dashboards.style import CELL_COLOURS

Labelled = tuple[tuple[str, StudyFrames], ...]  # (label, frames) per study


def as_labelled(frames: StudyFrames | Sequence[tuple[str, StudyFrames]]) -> Labelled:
    """One study's frames, or several with their labels, as (label, frames) pairs."""
    if isinstance(frames, StudyFrames):
        return ((frames.name, frames),)
    return tuple(frames)


def values_of(label: str, table: pd.DataFrame, key: str | None) -> list[str]:
    """The group (or facet) of every row of a study's ``table``: the config value of ``key``
    as text, the study's label for ``"study"``, "" for no key; "n/a" where a trial lacks it."""
    if key is None:
        return [""] * len(table)
    if key == "study":
        return [label] * len(table)
    if key not in table:
        return ["n/a"] * len(table)
    return [level_text(v) for v in table[key]]


def level_text(value) -> str:
    """A config value as a group, facet or axis level: numbers to 4 significant digits."""
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def ordered(values: Iterable[str]) -> list[str]:
    """Distinct values in a stable order: numbers by size, text alphabetically."""
    distinct = set(values)
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return sorted(distinct)


def group_colours(values: Iterable[str]) -> dict[str, str]:
    """A colour per group: a cell keeps its colour on every page; other values take the
    palette in order, skipping colours the cells use."""
    pool = sorted(qualitative.D3, key=lambda c: c in CELL_COLOURS.values())  # cells' last
    out: dict[str, str] = {}
    for v in ordered(values):
        out[v] = CELL_COLOURS.get(v) or pool[sum(k not in CELL_COLOURS for k in out) % len(pool)]
    return out
