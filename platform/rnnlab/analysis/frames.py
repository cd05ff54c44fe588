"""A study and its MLflow runs, read back into tidy pandas DataFrames.

Dashboards and reports draw only from what this module returns; they never open a store. The
trials come from the Optuna storage (through :mod:`rnnlab.storage.adapter`), their curves from the
tracking store (through :mod:`rnnlab.tracking.store`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd

from rnnlab.analysis.importances import COLUMNS as IMPORTANCE_COLUMNS
from rnnlab.analysis.importances import importances_meanwhile
from rnnlab.core.study_spec import OBJECTIVE_METRICS, StudySpec, strata_levels, stratum_name
from rnnlab.errors import RnnlabError
from rnnlab.storage.adapter import load_study, study_names
from rnnlab.storage.keys import (
    ATTR_BUDGET,
    ATTR_EXPERIMENT,
    ATTR_PARENT,
    ATTR_SPEC,
    FINISHED_NAMES,
    TRIAL_ATTRS,
    TRIAL_CONFIG,
    TRIAL_REASON,
    TRIAL_REPLAYS,
    TRIAL_RUN_ID,
    enqueued_params,
    trained_params,
)
from rnnlab.tracking.store import RunReader

CURVE_METRICS = OBJECTIVE_METRICS  # the curves a study's frames hold unless asked otherwise


@dataclass(frozen=True)
class StratumSummary:
    """One stratum of a stratified study, validation only: its finished trials and its best."""

    name: str  # model.cell=gru
    finished: int  # complete or pruned
    best_value: float | None
    best_trial: int | None


@dataclass(frozen=True, eq=False)
class StudyFrames:
    """Everything dashboards and reports draw from: a study's meta data and its frames.

    ``trials`` is :func:`trials_frame`; ``configs`` has one row per trial that got a config
    (``number`` and every dotted config key, the values trained with); ``curves`` is
    :func:`curves_frame`; ``finals`` has one row per trial with curves (``number``, ``epochs``
    and ``final_<metric>``, the last epoch's value); ``importances`` is
    :func:`rnnlab.analysis.importances.importances` (``param``, mean ``importance``, ``std``,
    ``low``, ``high``; empty with fewer than two complete trials, see ``importance_note``).
    ``steps`` holds what each trial reported to the pruner (``number``, ``step``, ``value``);
    ``judged_by`` names the study whose pruner judges these trials and that pruner's settings
    (an ablation's own pruner is none: its searched study's, where the store holds it).
    """

    name: str
    metric: str
    direction: str
    budget: int | None
    search: tuple[str, ...]
    log_keys: tuple[str, ...]
    parent_run_id: str | None
    experiment: str | None
    spec: dict[str, Any]
    trials: pd.DataFrame
    configs: pd.DataFrame
    curves: pd.DataFrame
    finals: pd.DataFrame
    importances: pd.DataFrame
    importance_note: str = ""
    tracking_uri: str = ""
    steps: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        {"number": pd.Series(dtype=int), "step": pd.Series(dtype=int),
         "value": pd.Series(dtype=float)}))
    judged_by: tuple[str, dict[str, Any]] | None = None

    def counts(self) -> dict[str, int]:
        """Trials per state name (``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``, ...)."""
        return self.trials["state"].value_counts().to_dict() if len(self.trials) else {}

    def finished(self) -> int:
        """Trials that ran to an end: complete, pruned or failed."""
        counts = self.counts()
        return sum(counts.get(s, 0) for s in FINISHED_NAMES)

    def done(self) -> bool:
        """Nothing runs or waits and the finished trials have reached the budget."""
        counts = self.counts()
        active = counts.get("RUNNING", 0) + counts.get("WAITING", 0)
        return active == 0 and self.budget is not None and self.finished() >= self.budget

    def replayed(self) -> int:
        """Complete trials of an ablation that replay an arm a sibling ablation trained."""
        t = self.trials
        if TRIAL_REPLAYS not in t:
            return 0
        return int((t[TRIAL_REPLAYS].notna() & (t["state"] == "COMPLETE")).sum())

    def by_stratum(self) -> tuple[StratumSummary, ...]:
        """Each stratum's finished trials and best complete trial (none without strata)."""
        if "stratum" not in self.trials or not len(self.trials):
            return ()
        levels = strata_levels(StudySpec.model_validate(self.spec)) if self.spec else []
        out = []
        for name in [stratum_name(m) for m in levels]:
            mine = self.trials[self.trials["stratum"] == name]
            done = mine[mine["state"] == "COMPLETE"].dropna(subset=["value"])
            best = (done.sort_values(["value", "number"], ascending=[
                self.direction == "minimize", True]).iloc[0] if len(done) else None)
            out.append(StratumSummary(
                name, int(mine["state"].isin(FINISHED_NAMES).sum()),
                None if best is None else float(best["value"]),
                None if best is None else int(best["number"])))
        return tuple(out)

    def table(self, states: Sequence[str] = ("COMPLETE",)) -> pd.DataFrame:
        """One row per trial in ``states``: number, state, value, duration_s, mlflow_run_id,
        every dotted config key and the ``finals`` columns; ordered by number."""
        base = ["number", "state", "value", "duration_s", TRIAL_RUN_ID, TRIAL_REASON]
        t = self.trials.reindex(columns=base)
        t = t[t["state"].isin(list(states))]
        out = t.merge(self.configs, on="number", how="left")
        out = out.merge(self.finals, on="number", how="left")
        return out.sort_values("number").reset_index(drop=True)


def has_study(storage: str, name: str) -> bool:
    """Whether ``storage`` holds a study ``name``; a storage that cannot be opened (not made
    yet) holds none."""
    try:
        return name in study_names(storage)
    except RnnlabError:
        return False


def trials_frame(storage: str, name: str) -> pd.DataFrame:
    """One row per trial: number, state, value, timings, every param (``params_<key>``), the
    trial's MLflow run id and reason (for pruned or failed trials), and its ``stratum`` in a
    stratified study.

    Raises:
        RnnlabError: the study does not exist.
    """
    study = load_study(storage, name)
    return _trials_frame(study, study.get_trials(deepcopy=False))


def _trials_frame(study: optuna.Study,
                  trials: list[optuna.trial.FrozenTrial]) -> pd.DataFrame:
    df = study.trials_dataframe(attrs=("number", "value", "state", "datetime_start",
                                       "datetime_complete", "duration", "params", "user_attrs"))
    spec = study.user_attrs.get(ATTR_SPEC) or {}
    if df.empty:
        return pd.DataFrame(columns=_columns(spec, []))
    # a study that names its metric gets "value_val_acc" from Optuna: "value" here, as always
    df = df.rename(columns={f"value_{m}": "value" for m in study.metric_names or []})
    df["duration_s"] = df.pop("duration").dt.total_seconds()
    df = df.rename(columns=lambda c: c.replace("user_attrs_", ""))
    if TRIAL_CONFIG in df:  # the values trained with (a draw below zero_below trained as 0)
        trained = {t.number: trained_params(t) for t in trials}
        for col in [c for c in df.columns if c.startswith("params_")]:
            key = col.removeprefix("params_")
            df[col] = [trained[n].get(key, raw) for n, raw in zip(df["number"], df[col],
                                                                  strict=True)]
        df = df.drop(columns=TRIAL_CONFIG)
    keys = spec.get("study", {}).get("strata")
    if keys:
        levels = {t.number: enqueued_params(t) for t in trials}
        df["stratum"] = [stratum_name({k: levels[n][k] for k in keys})
                         if all(k in levels[n] for k in keys) else None for n in df["number"]]
    return df.reindex(columns=_columns(spec, list(df.columns)))


def _columns(spec: dict[str, Any], found: list[str]) -> list[str]:
    """The trials table's columns, the same whatever the trials went through: what every
    study has, its stratum (a stratified study), every searched key, every attribute rnnlab
    keeps (a retry's too), then any other a study made outside rnnlab has."""
    fixed = ["number", "value", "state",
             *(["stratum"] if spec.get("study", {}).get("strata") else []),
             "datetime_start", "datetime_complete", "duration_s",
             *(f"params_{k}" for k in spec.get("search") or {}), *TRIAL_ATTRS]
    return [*fixed, *(c for c in found if c not in fixed)]


def curves_frame(storage: str, name: str, *, tracking_uri: str | None = None,
                 metrics: Sequence[str] = CURVE_METRICS) -> pd.DataFrame:
    """One row per trial, epoch and metric: ``number``, ``epoch``, ``metric``, ``value``.

    Read from the trials' MLflow runs (per-epoch metrics logged at ``step=epoch``).

    Raises:
        RnnlabError: the study does not exist or the tracking store cannot be read.
    """
    study = load_study(storage, name)
    return RunReader(tracking_uri).curves(_run_numbers(study.get_trials(deepcopy=False)),
                                          metrics)


def study_frames(storage: str, name: str, *, tracking_uri: str | None = None,
                 metrics: Sequence[str] = CURVE_METRICS, curves: bool = True) -> StudyFrames:
    """Read a study and its trials' MLflow runs into :class:`StudyFrames`.

    ``curves=False`` reads each trial's last epoch of ``metrics`` only (the ``finals``), for
    what draws no curve: ``curves`` is then empty.

    Raises:
        RnnlabError: the study does not exist, or its runs are not in the tracking store.
    """
    study = load_study(storage, name)
    trials = study.get_trials(deepcopy=False)
    spec = study.user_attrs.get(ATTR_SPEC) or {}
    search = StudySpec.model_validate(spec).search if spec else {}
    parent = study.user_attrs.get(ATTR_PARENT)
    runs = _run_numbers(trials)
    reader = RunReader(tracking_uri)  # no runs: the store is left untouched
    if parent and runs:
        reader.check_run(parent, name)
    ablated = (spec.get("study") or {}).get("ablation")
    selected = (spec.get("study") or {}).get("selection")
    # an ablation fixes every key but its factor at each stratum's best: fANOVA would credit
    # the strata's differences to them; a selection trains a few of the search's configs again
    fitted = None if ablated or selected else importances_meanwhile(study, trials)
    points = reader.curves(runs, metrics) if curves else reader.last_points(runs, metrics)
    # the rest of the frames while the importances may still be fitting in a child process
    table, configs, finals = _trials_frame(study, trials), _configs(trials), _finals(points)
    if fitted is None:
        importances, note = pd.DataFrame(columns=IMPORTANCE_COLUMNS), (
            f"not computed for an ablation: every param but {ablated['factor']} and the seed "
            "is fixed within each stratum, so fANOVA would credit the strata's differences to "
            "them; the paired verdict within each stratum is the answer" if ablated else
            f"not computed for a selection: its trials are a few of {selected['of']}'s best "
            "configs trained again, too few and too alike to rank params by; that study's "
            "report ranks them")
    else:
        importances, note = fitted()
    return StudyFrames(
        name=name, metric=spec.get("study", {}).get("metric", "value"),
        direction=study.direction.name.lower(), budget=study.user_attrs.get(ATTR_BUDGET),
        search=tuple(search) or tuple(sorted({k for t in trials for k in t.params})),
        log_keys=tuple(k for k, d in search.items() if d.log), parent_run_id=parent,
        experiment=study.user_attrs.get(ATTR_EXPERIMENT), spec=spec, trials=table,
        configs=configs, curves=points if curves else points.iloc[:0], finals=finals,
        importances=importances, importance_note=note,
        tracking_uri=reader.masked_uri, steps=_steps(trials),
        judged_by=_judged_by(storage, name, spec))


def _steps(trials: Sequence[optuna.trial.FrozenTrial]) -> pd.DataFrame:
    sizes = [len(t.intermediate_values) for t in trials]
    chain = itertools.chain.from_iterable
    return pd.DataFrame({
        "number": np.repeat(np.array([t.number for t in trials], dtype=int), sizes),
        "step": np.fromiter(chain(t.intermediate_values for t in trials), dtype=int,
                            count=sum(sizes)),
        "value": np.fromiter(chain(t.intermediate_values.values() for t in trials),
                             dtype=float, count=sum(sizes))})


def _judged_by(storage: str, name: str,
               spec: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The study whose pruner judges this one's trials, and that pruner (spec defaults filled
    in): the study's own; an ablation's or a selection's searched study's, where this store
    holds it."""
    if not spec:
        return None
    derived = (spec.get("study") or {})
    of = (derived.get("ablation") or derived.get("selection") or {}).get("of")
    if of is not None:
        if not has_study(storage, of):
            return None
        spec, name = load_study(storage, of).user_attrs.get(ATTR_SPEC) or {}, of
        if not spec:
            return None
    return name, StudySpec.model_validate(spec).study.pruner.model_dump(mode="json")


def _run_numbers(trials: Iterable[optuna.trial.FrozenTrial]) -> dict[str, int]:
    return {t.user_attrs[TRIAL_RUN_ID]: t.number for t in trials
            if t.user_attrs.get(TRIAL_RUN_ID)}


def _configs(trials: Iterable[optuna.trial.FrozenTrial]) -> pd.DataFrame:
    rows = [{"number": t.number, **t.user_attrs[TRIAL_CONFIG]} for t in trials
            if isinstance(t.user_attrs.get(TRIAL_CONFIG), dict)]
    return pd.DataFrame(rows) if rows else pd.DataFrame({"number": pd.Series(dtype=int)})


def _finals(curves: pd.DataFrame) -> pd.DataFrame:
    if curves.empty:
        return pd.DataFrame({"number": pd.Series(dtype=int), "epochs": pd.Series(dtype=int)})
    last = curves.loc[curves.groupby(["number", "metric"], sort=False)["epoch"].idxmax()]
    wide = last.pivot(index="number", columns="metric", values="value").add_prefix("final_")
    wide.columns.name = None
    wide.insert(0, "epochs", curves.groupby("number")["epoch"].max())
    return wide.reset_index()


def native(value: Any) -> Any:
    """numpy and pandas scalars as plain Python; NaN from a missing column as None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
