"""A report's records, gathered from a study's frames: what won on validation.

Selection uses validation numbers only (trial values, final validation accuracy); the test set
is touched only by the confirmation runs (:mod:`rnnlab.reports.confirm`). As in
:mod:`rnnlab.dashboards`, :func:`get_report_info` gathers a frozen record that
:mod:`rnnlab.reports.render` draws; tests compare the record.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from rnnlab.core.spec import RunConfig, apply_overrides, to_yaml, validate
from rnnlab.errors import RnnlabError
from rnnlab.study.results import StudyFrames

TOP_K = 10
# Where a trial ran is not part of its config: a worker's GPU or thread count is reset to the
# study's own setting, so the exported YAML runs anywhere the study could.
_PLACEMENT = ("train.device", "train.threads")


@dataclass(frozen=True)
class TrialRow:
    """One trial, validation numbers only."""

    number: int
    value: float  # the study's objective (validation)
    cell: str
    normalisation: str
    lr: float
    l2: float
    final_val_acc: float | None
    final_val_loss: float | None
    epochs: int | None
    params: dict[str, Any]  # the searched keys, values trained with


@dataclass(frozen=True)
class SpreadRow:
    """Final validation accuracy of the complete trials of one normalisation (and cell)."""

    normalisation: str
    cell: str  # "all" for every cell together
    n: int
    mean: float
    std: float | None  # None for a single trial
    max: float


@dataclass(frozen=True)
class Confirmation:
    """One config re-trained with several seeds and scored on the test set."""

    roles: tuple[str, ...]
    trial: int
    config_hash: str
    seeds: tuple[int, ...]
    test_acc: tuple[float, ...]
    test_loss: tuple[float, ...]
    run_ids: tuple[str, ...]
    reused: int
    test_set: str

    @property
    def mean_acc(self) -> float:
        return sum(self.test_acc) / len(self.test_acc)

    @property
    def std_acc(self) -> float | None:
        return _std(self.test_acc)


@dataclass(frozen=True)
class ReportInfo:
    study: str
    metric: str
    direction: str
    objective: str
    budget: int | None
    counts: dict[str, int]
    best: TrialRow
    best_config: dict[str, Any]
    top: tuple[TrialRow, ...]
    per_cell: tuple[TrialRow, ...]
    importances: tuple[tuple[str, float], ...]
    importance_note: str
    spread: tuple[SpreadRow, ...]
    verdict: str
    experiment: str | None
    parent_run_id: str | None
    tracking_uri: str
    confirm_seeds: int = 0
    confirmations: tuple[Confirmation, ...] = ()

    @property
    def best_yaml(self) -> str:
        return to_yaml(validate(RunConfig, self.best_config, "best config"))

    @property
    def test_set(self) -> str:
        return self.confirmations[0].test_set if self.confirmations else ""


def get_report_info(frames: StudyFrames, top_k: int = TOP_K) -> ReportInfo:
    """The report's record of a study: ranking, per-cell bests, spread and verdict (validation).

    Raises:
        RnnlabError: the study has no complete trial.
    """
    table = frames.table(("COMPLETE",))
    if table.empty:
        counts = ", ".join(f"{n} {s.lower()}" for s, n in frames.counts().items()) or "none"
        raise RnnlabError(f"study {frames.name!r} has no complete trial yet (trials: {counts}); "
                          "run more trials with `rnnlab sweep` first")
    ascending = frames.direction == "minimize"
    ranked = table.sort_values(["value", "number"], ascending=[ascending, True])
    rows = [_row(r, frames.search) for r in ranked.to_dict("records")]
    per_cell = {}
    for row in rows:  # ranked best first: the first row of each cell is its best
        per_cell.setdefault(row.cell, row)
    spread = _spread(table)
    spec = frames.spec
    return ReportInfo(
        study=frames.name, metric=frames.metric, direction=frames.direction,
        objective=spec.get("study", {}).get("objective", "best"), budget=frames.budget,
        counts=frames.counts(), best=rows[0],
        best_config=trial_config(frames, rows[0].number).model_dump(mode="json"),
        top=tuple(rows[:top_k]), per_cell=tuple(per_cell.values()),
        importances=tuple((str(p), float(v)) for p, v in zip(
            frames.importances["param"], frames.importances["importance"], strict=True)),
        importance_note=frames.importance_note, spread=spread,
        verdict=_verdict(spread, frames), experiment=frames.experiment,
        parent_run_id=frames.parent_run_id, tracking_uri=frames.tracking_uri)


def trial_config(frames: StudyFrames, number: int) -> RunConfig:
    """The config a trial trained with, placement reset to the study's (see ``_PLACEMENT``)."""
    flat = frames.configs.set_index("number").loc[number].to_dict()
    base = frames.spec.get("train", {})
    for key in _PLACEMENT:
        flat[key] = base.get(key.split(".", 1)[1], flat.get(key))
    nested = apply_overrides({}, {k: native(v) for k, v in flat.items()})
    return validate(RunConfig, nested, f"study {frames.name!r} trial {number}")


def config_hash(config: RunConfig) -> str:
    """A short hash of a whole config, seed included: the key confirmation runs are found by."""
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def candidates(info: ReportInfo) -> list[tuple[tuple[str, ...], int]]:
    """The configs to confirm: the best trial and each cell's best, each once, with roles."""
    roles: dict[int, list[str]] = {info.best.number: ["best overall"]}
    for row in info.per_cell:
        roles.setdefault(row.number, []).append(f"best {row.cell}")
    return [(tuple(r), n) for n, r in roles.items()]


def _row(r: dict[str, Any], search: tuple[str, ...]) -> TrialRow:
    def num(key: str) -> float | None:
        v = r.get(key)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    epochs = num("epochs")
    return TrialRow(
        number=int(r["number"]), value=float(r["value"]), cell=str(r.get("model.cell")),
        normalisation=str(r.get("data.normalisation")), lr=float(r.get("train.lr", math.nan)),
        l2=float(r.get("train.l2", math.nan)), final_val_acc=num("final_val_acc"),
        final_val_loss=num("final_val_loss"), epochs=None if epochs is None else int(epochs),
        params={k: native(r.get(k)) for k in search})


def _spread(table: pd.DataFrame) -> tuple[SpreadRow, ...]:
    if "final_val_acc" not in table:
        return ()
    t = table.dropna(subset=["final_val_acc"])
    rows = []
    for keys, cell in ((["data.normalisation"], "all"),
                       (["data.normalisation", "model.cell"], None)):
        for group, g in t.groupby(keys, sort=True):
            group = group if isinstance(group, tuple) else (group,)
            acc = [float(v) for v in g["final_val_acc"]]
            rows.append(SpreadRow(str(group[0]), cell or str(group[1]), len(acc),
                                  sum(acc) / len(acc), _std(acc), max(acc)))
    return tuple(rows)


def _verdict(spread: tuple[SpreadRow, ...], frames: StudyFrames) -> str:
    overall = sorted((r for r in spread if r.cell == "all"), key=lambda r: -r.mean)
    if "data.normalisation" not in frames.search:
        used = overall[0].normalisation if overall else "the base config's"
        return f"Normalisation was not searched: every trial used {used}."
    if len(overall) < 2:
        return ("Not enough evidence: complete trials cover "
                f"{len(overall)} normalisation(s); run more trials to compare.")
    best, worst = overall[0], overall[-1]
    imp = dict(zip(frames.importances["param"], frames.importances["importance"], strict=True))
    order = sorted(imp, key=imp.get, reverse=True)
    rank = (f" The fANOVA importance of data.normalisation is {imp['data.normalisation']:.2f} "
            f"(rank {order.index('data.normalisation') + 1} of {len(imp)})."
            if "data.normalisation" in imp else "")
    thin = min(r.n for r in overall) < 3
    return (f"On validation, {best.normalisation} has the highest mean final accuracy "
            f"({best.mean:.4f} over {best.n} trial(s), best {best.max:.4f}) and "
            f"{worst.normalisation} the lowest ({worst.mean:.4f} over {worst.n}); the gap "
            f"between means is {best.mean - worst.mean:.4f}.{rank}"
            + (" Some normalisations have fewer than 3 complete trials, so treat this as a "
               "hint, not a verdict." if thin else ""))


def _std(values) -> float | None:
    values = list(values)
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def native(value: Any) -> Any:
    """numpy and pandas scalars as plain Python; NaN from a missing column as None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
