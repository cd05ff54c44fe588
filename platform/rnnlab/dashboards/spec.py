"""Dashboard specs: how to compare, as YAML files in ``dashboards/``.

A spec names the studies to compare (each in its own storage and tracking store if need be),
filters their trials, says what to colour and facet by, and lists the figures::

    title: Cells compared across the shipped studies
    studies:
      - quickstart                               # the default storage
      - {name: tutorial_sweep, storage: tutorial.journal, required: false}
    filter: {states: [COMPLETE], params: {model.cell: [gru, lstm]}, top_k: 10}
    group: model.cell                            # colour by: a config key, or "study"
    facet: data.normalisation                    # one panel per value (optional)
    figures: [learning_curves, history, {kind: box, factors: [data.normalisation]}]

``rnnlab dashboard STUDY`` renders :func:`study_board`, a spec built here the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rnnlab.core.spec import config_keys, read_yaml, validate

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
# Figures drawn once per study (they describe one study's search: its params, their
# importances, the report's verdict); the others are drawn once across every study.
PER_STUDY = ("parallel", "importances", "normalisation", "lr_l2")
FigureKind = Literal["learning_curves", "history", "box", "scatter", "parallel", "importances",
                     "normalisation", "lr_l2"]
# What a figure's y can be besides the objective: a trial's last-epoch value of a curve.
Y_KEYS = ("objective", "final_val_acc", "final_val_loss")


def _known_key(key: str, *, study_too: bool = True) -> str:
    keys = config_keys()
    if key in keys or (study_too and key == "study"):
        return key
    import difflib

    close = difflib.get_close_matches(key, keys, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"{key!r} is not a config key ({hint}see `rnnlab keys`"
                     + (", or use 'study'" if study_too else "") + ")")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StudyRef(Strict):
    """One study to draw: its name, where it is kept, and how the page labels it."""

    name: str = Field(min_length=1)
    storage: str | None = None  # default: --storage, else the default journal
    tracking_uri: str | None = None  # default: MLFLOW_TRACKING_URI, else MLflow's default
    label: str | None = None  # default: the name
    required: bool = True  # false: a study not run yet is listed on the page, not an error

    @property
    def shown(self) -> str:
        return self.label or self.name


class Filter(Strict):
    """Which trials to draw: all must hold. ``params`` maps a config key to one value, a list
    of values, or a ``{low, high}`` range (both ends kept); ``top_k`` keeps each study's k best
    complete trials by its objective."""

    states: list[Literal[STATES]] = Field(default=["COMPLETE", "PRUNED", "FAIL", "RUNNING"],
                                           min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    top_k: int | None = Field(default=None, ge=1)

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, cond in v.items():
            _known_key(key, study_too=False)
            if isinstance(cond, list) and not cond:
                raise ValueError(f"{key}: an empty list keeps nothing; list the values to keep")
            if isinstance(cond, dict) and (set(cond) - {"low", "high"} or not cond):
                raise ValueError(f"{key}: a range is {{low: A, high: B}} (got {cond!r})")
        return v


class Figure(Strict):
    """One figure: its kind and its options."""

    kind: FigureKind
    metrics: list[Literal["val_acc", "val_loss"]] = Field(  # learning_curves
        default=["val_acc", "val_loss"], min_length=1)
    # learning_curves: trials drawn whole, each one, up to this many; past it each group's
    # best whole and the rest as bands (dashboards/learning_curves.py)
    whole_up_to: int = Field(default=300, ge=1)
    factors: list[str] | None = None  # box: the config keys on x (default: the searched ones)
    x: str | None = None  # scatter: the config key on x
    y: Literal[Y_KEYS] = "objective"  # box, scatter
    title: str | None = None

    @model_validator(mode="after")
    def _options(self) -> Figure:
        if self.kind == "scatter" and self.x is None:
            raise ValueError("a scatter needs x: the config key to plot against (e.g. train.lr)")
        for key in [*(self.factors or []), *([self.x] if self.x else [])]:
            _known_key(key, study_too=False)
        return self


class DashboardSpec(Strict):
    """A comparison dashboard: studies, filter, grouping, facets and figures."""

    title: str | None = None
    description: str | None = None
    studies: list[StudyRef] = Field(min_length=1)
    filter: Filter = Field(default_factory=Filter)
    group: str = "model.cell"
    facet: str | None = None
    figures: list[Figure] = Field(min_length=1)

    @field_validator("studies", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:  # "quickstart" is short for {name: quickstart}
        return [{"name": s} if isinstance(s, str) else s for s in v] if isinstance(v, list) else v

    @field_validator("figures", mode="before")
    @classmethod
    def _kinds(cls, v: Any) -> Any:  # "history" is short for {kind: history}
        return [{"kind": f} if isinstance(f, str) else f for f in v] if isinstance(v, list) else v

    @field_validator("group", "facet")
    @classmethod
    def _grouping(cls, v: str | None) -> str | None:
        return v if v is None else _known_key(v)

    def draws_objective(self) -> bool:
        """Whether a figure puts several studies' objectives on one axis."""
        return any(f.kind == "history" or (f.kind in ("box", "scatter") and f.y == "objective")
                   for f in self.figures)

    @model_validator(mode="after")
    def _distinct(self) -> DashboardSpec:
        shown = [s.shown for s in self.studies]
        twice = sorted({s for s in shown if shown.count(s) > 1})
        if twice:
            raise ValueError(f"study {twice[0]!r} is listed twice; give each a distinct label")
        return self


def load_dashboard_spec(path: str | Path) -> DashboardSpec:
    """Read and validate a dashboard spec.

    Raises:
        RnnlabError: the file is missing or malformed, a key is unknown, a value is wrong.
    """
    return validate(DashboardSpec, read_yaml(path), str(path))


def study_board(name: str) -> DashboardSpec:
    """The default view of one study (``rnnlab dashboard STUDY``): every trial, coloured by
    cell, and every figure of the study."""
    return DashboardSpec(title=f"Study {name}", studies=[StudyRef(name=name)], figures=[
        Figure(kind=k) for k in ("learning_curves", "history", "parallel", "importances",
                                 "normalisation", "lr_l2")])


def is_spec_path(target: str) -> bool:
    """Whether ``rnnlab dashboard TARGET`` names a spec file rather than a study."""
    return target.endswith((".yaml", ".yml")) or Path(target).is_file()


@dataclass(frozen=True)
class Board:
    """A dashboard to write: its spec, where it came from, and the page's default path."""

    spec: DashboardSpec
    origin: str | None  # the spec file, or None for a study's default view
    path: Path


def board_for(target: str) -> Board:
    """The dashboard ``rnnlab dashboard TARGET`` means: a spec file (``*.yaml``), or the
    default view of the study named ``target``.

    Raises:
        RnnlabError: the spec file is missing or invalid.
    """
    if is_spec_path(target):
        spec = load_dashboard_spec(target)
        return Board(spec, target, Path(target).with_suffix(".html"))
    return Board(study_board(target), None, Path("dashboards") / f"{target}.html")
