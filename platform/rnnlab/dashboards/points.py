"""What the box and scatter figures draw: complete trials as points, ``x`` a factor's value,
``y`` a result (the objective or a last-epoch value, always validation)."""

from __future__ import annotations

from dataclasses import dataclass

from rnnlab.analysis.frames import StudyFrames
from rnnlab.dashboards.groups import Labelled, as_labelled, ordered, values_of


@dataclass(frozen=True)
class Point:
    study: str
    number: int
    group: str
    facet: str
    x: str | float
    y: float


@dataclass(frozen=True)
class FactorPoints:
    """Complete trials as points: ``x`` the factor's value, ``y`` the result."""

    factor: str
    y: str  # what y is, as a label
    group: str
    facet: str | None
    log: bool
    points: tuple[Point, ...]


def _result(frames: StudyFrames, y: str) -> tuple[str, str]:
    """The column of ``frames.table()`` that holds ``y``, and its axis label."""
    if y == "objective":
        return "value", f"{frames.metric} (validation, objective)"
    return y, f"{y} (validation, last epoch)"


def factor_points(frames: StudyFrames | Labelled, factor: str, y: str = "objective",
                  group: str = "model.cell", facet: str | None = None) -> FactorPoints:
    """Every complete trial that has both ``factor`` and ``y``, as a point."""
    studies = as_labelled(frames)
    points, label, log = [], "", False
    for study, f in studies:
        column, label = _result(f, y)
        log = log or factor in f.log_keys
        t = f.table(("COMPLETE",))
        if column not in t or factor not in t:
            continue
        t = t.assign(_group=values_of(study, t, group), _facet=values_of(study, t, facet))
        for value in t.dropna(subset=[column, factor]).to_dict("records"):
            x = value[factor]
            points.append(Point(study, int(value["number"]), value["_group"], value["_facet"],
                                x if isinstance(x, str | bool) else float(x),
                                float(value[column])))
    return FactorPoints(factor, label, group, facet, log, tuple(points))


def panels(factors: tuple[FactorPoints, ...]) -> list[str]:
    """The facets of all points, in order: one panel each ("" for a single panel)."""
    return ordered(p.facet for i in factors for p in i.points) or [""]
