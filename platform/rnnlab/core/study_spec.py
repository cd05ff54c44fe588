"""Study specs: a base run config plus ``study`` (what to optimise, how) and ``search``.

Every search key and range is checked against the run config before anything runs, so a bad
spec fails as one line naming the key, never in a trial.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from rnnlab.core.spec import (
    RunConfig,
    Section,
    apply_overrides,
    config_keys,
    flatten,
    override_flags,
    parse_overrides,
    read_yaml,
    validate,
)
from rnnlab.errors import RnnlabError

Metric = Literal["val_acc", "val_loss", "train_acc", "train_loss"]
# The metrics a study can optimise: the epoch metrics that reports and dashboards read back.
OBJECTIVE_METRICS: tuple[str, ...] = get_args(Metric)


class SamplerConfig(Section):
    name: Literal["tpe", "random", "gp", "cmaes", "grid"] = "tpe"
    seed: int | None = 0
    n_startup_trials: Annotated[int, Field(ge=0)] = 10  # tpe, gp: random trials before modelling
    # tpe, gp: model from the `window` most recent finished trials (of the stratum) and the
    # best KEEP_BEST of the rest; None: every trial (a cost that grows with the study)
    window: Annotated[int, Field(ge=100)] | None = None


KEEP_BEST = 25  # what a windowed sampler keeps of the trials outside its window: the best


# The pruners that cut a trial below a percentile of the others at the same epoch: patience
# applies to them, and a report replays them on the complete trials.
PERCENTILE_RULES = ("median", "percentile")


class PrunerConfig(Section):
    name: Literal["none", "median", "percentile", "hyperband", "successive_halving",
                  "wilcoxon"] = "median"
    n_startup_trials: Annotated[int, Field(ge=0)] = 5  # median, percentile
    n_warmup_steps: Annotated[int, Field(ge=0)] = 1  # epochs before a trial may be pruned
    interval_steps: Annotated[int, Field(ge=1)] = 1
    percentile: Annotated[float, Field(gt=0, lt=100)] = 25.0
    min_resource: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"  # hyperband, sha
    reduction_factor: Annotated[int, Field(ge=2)] = 3
    p_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.1  # wilcoxon
    # median, percentile: cut a trial only once it has stalled, its best of the last `patience`
    # epochs no better than its best before them by more than min_delta (:func:`stalled`), so
    # a slow starter that still climbs is judged when it levels off, not while it rises
    patience: Annotated[int, Field(ge=1)] | None = None
    min_delta: Annotated[float, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _patience_for_rules(self) -> PrunerConfig:
        if self.patience is not None and self.name not in PERCENTILE_RULES:
            raise ValueError(f"patience applies to the median and percentile pruners, not "
                             f"{self.name}; drop it or use one of those")
        return self


def stalled(values: Sequence[float], patience: int, min_delta: float, maximize: bool) -> bool:
    """Whether a trial's curve so far (its values in epoch order) has stalled: its best of the
    last ``patience`` values is no better than its best before them by more than
    ``min_delta`` (``patience: N`` in a pruner's spec lets it cut only such a trial)."""
    if len(values) <= patience:
        return False
    before, recent = values[:-patience], values[-patience:]
    if maximize:
        return max(recent) <= max(before) + min_delta
    return min(recent) >= min(before) - min_delta


# What a trial's run logs besides its curves, for the MLflow UI's columns (see
# rnnlab.tracking.ui): the epoch of its best metric value, and its objective value.
BEST_EPOCH = "best_epoch"


def objective_key(metric: str, objective: str) -> str:
    """The MLflow metric that holds a trial's objective value: ``best_val_acc``, say."""
    return f"{objective}_{metric}"


class AblationOf(Section):
    """What a derived ablation study comes from, and the trials it runs (``rnnlab ablate``
    writes it: each stratum's best config with the factor at each level, each seed)."""

    of: str  # the searched study
    factor: str
    trials: list[dict[str, Any]]  # the params of every trial, in order


class AblationConfig(Section):
    """An ablation of one searched key, run once the search is done: each stratum's best
    config with ``factor`` set to each level, ``seeds`` paired seeds each (fresh ones: the
    best's own seed + 1, 2, ...), no pruning."""

    factor: str
    # default: a categorical's every choice; a range with zero_below, 0 and the best value;
    # another float range, the best value /3, x1 and x3 (those inside the range); given levels
    # always get each stratum's best value too (the control arm)
    levels: list[Any] | None = None
    seeds: Annotated[int, Field(ge=2)] = 3


class SelectConfig(Section):
    """Each stratum's best chosen on fresh seeds once the search is done: its ``top`` trials
    (by the study's objective) trained again with ``seeds`` fresh paired seeds each (the
    search's seed + 1, 2, ...), no pruning; the stratum's best is the one with the best mean
    over those seeds, not the luckiest single run of the search."""

    top: Annotated[int, Field(ge=2)] = 3
    seeds: Annotated[int, Field(ge=1)] = 2


class SelectionOf(Section):
    """What a derived selection study comes from, and the trials it runs (``rnnlab select``
    writes it: each stratum's top trials, each seed)."""

    of: str  # the searched study
    top: int
    seeds: int
    # each candidate: its trial number in the searched study, its value there, and the
    # params it trained with (every searched key)
    candidates: list[dict[str, Any]]
    trials: list[dict[str, Any]]  # the params of every trial, in order


class StudySection(Section):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    metric: Metric = "val_acc"
    direction: Literal["maximize", "minimize"] = "maximize"
    objective: Literal["best", "last"] = "best"
    n_trials: Annotated[int, Field(ge=1)]
    timeout: Annotated[float, Field(gt=0)] | None = None
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    # Categorical search keys whose levels share the budget equally, each pruned against and
    # sampled from its own trials only (a vanilla RNN is not cut against GRUs).
    strata: list[str] = Field(default_factory=list)
    ablation: AblationOf | None = None
    selection: SelectionOf | None = None
    # A running trial stamps a heartbeat every heartbeat_interval s; one silent for
    # grace_period s (its worker was killed) is failed and retried up to max_retries times,
    # resuming from its last checkpoint (train.checkpoint_every).
    heartbeat_interval: Annotated[float, Field(gt=0)] = 10.0
    grace_period: Annotated[float, Field(gt=0)] = 60.0
    max_retries: Annotated[int, Field(ge=0)] = 2
    # A worker whose trials fail this many times in a row (out of memory on every config, say)
    # stops with the last reason instead of failing trial after trial; the study stays
    # resumable. A user error in a trial (data missing, a sampled value rejected) stops it at once.
    max_failures_in_a_row: Annotated[int, Field(ge=1)] = 10
    # The Optuna database or the MLflow server unreachable mid-study (a restart, a failover):
    # workers retry, with backoff, for up to store_outage_limit s, then stop in one line (exit
    # code 2), the study resumable.
    store_outage_limit: Annotated[float, Field(gt=0)] = 120.0

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            raise ValueError("letters, digits, '_', '.' and '-' only (it names the study's "
                             "MLflow experiment, and files such as its dashboard)")
        return name

    @model_validator(mode="after")
    def _grace_after_heartbeat(self) -> StudySection:
        if self.grace_period <= 2 * self.heartbeat_interval:
            raise ValueError("grace_period must exceed twice heartbeat_interval, or live "
                             "trials would be taken for dead ones")
        return self


class Distribution(Section):
    """One searched key: ``choices`` (categorical) or ``low``/``high`` (int or float).

    ``type`` is inferred when omitted: ``choices`` make it categorical, an integer config key
    makes it int, anything else float. ``zero_below`` (float only) maps sampled values below it
    to exactly 0, so a log-uniform L2 range can still switch the penalty off.
    """

    type: Literal["float", "int", "categorical"] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: Annotated[float, Field(gt=0)] | None = None
    choices: list[Any] | None = None
    zero_below: Annotated[float, Field(gt=0)] | None = None


class StudySpec(RunConfig):
    """A study: the base config every trial starts from (the run config's sections), what to
    optimise, and where to look."""

    study: StudySection
    search: dict[str, Distribution] = Field(default_factory=dict)
    select: SelectConfig | None = None  # run before the ablations: they start from its bests
    ablate: list[AblationConfig] = Field(default_factory=list)

    @property
    def base(self) -> RunConfig:
        """The run config every trial starts from (the spec without ``study`` and ``search``)."""
        return RunConfig(data=self.data, model=self.model, train=self.train)


def _config_with(base: RunConfig, key: str, value: Any, origin: str) -> RunConfig:
    section, _, name = key.partition(".")
    raw = base.model_dump()
    raw[section][name] = value
    return validate(RunConfig, raw, origin)


def _check_distribution(base: RunConfig, key: str, dist: Distribution, origin: str) -> None:
    where = f"{origin}: search.{key}"
    if key not in config_keys():
        raise RnnlabError(f"{where}: no such config key; searchable keys are listed by "
                          "`rnnlab keys`")
    field_type = type(flatten(base)[key])
    if dist.type is None:
        dist.type = ("categorical" if dist.choices is not None
                     else "int" if field_type is int else "float")
    if dist.type == "categorical":
        if not dist.choices:
            raise RnnlabError(f"{where}: choices must list at least one value")
        probes = dist.choices
    else:
        if dist.low is None or dist.high is None:
            raise RnnlabError(f"{where}: a {dist.type} range needs low and high")
        if dist.low > dist.high:
            raise RnnlabError(f"{where}: low {dist.low} is greater than high {dist.high}")
        if dist.log and dist.low <= 0:
            raise RnnlabError(f"{where}: a log range needs low > 0 (got {dist.low})")
        if dist.log and dist.step is not None:
            raise RnnlabError(f"{where}: log and step cannot be combined")
        if dist.type == "int" and not (float(dist.low).is_integer()
                                       and float(dist.high).is_integer()):
            raise RnnlabError(f"{where}: an int range needs whole low and high")
        probes = [dist.low, dist.high] if dist.type == "float" else [int(dist.low),
                                                                     int(dist.high)]
    if dist.zero_below is not None and dist.type != "float":
        raise RnnlabError(f"{where}: zero_below applies to float ranges only")
    for value in probes:
        _config_with(base, key, value, f"{origin} (search.{key} value {value!r})")


def load_study_spec(path: str | Path, overrides: list[str] | None = None, *,
                    n_trials: int | None = None, timeout: float | None = None) -> StudySpec:
    """Load and validate a study spec; every search key and range is checked before anything runs.

    Args:
        path: the study YAML.
        overrides: ``section.key=value`` strings (``study.n_trials=20`` works too).
        n_trials: overrides ``study.n_trials`` when given.
        timeout: overrides ``study.timeout`` when given.

    Raises:
        RnnlabError: the spec is malformed, names an unknown key, or has an invalid range.
    """
    raw = read_yaml(path)
    extra = {"study.n_trials": n_trials, "study.timeout": timeout}
    over = {**parse_overrides(overrides), **{k: v for k, v in extra.items() if v is not None}}
    raw = apply_overrides(raw, over)
    if "study" not in raw:
        raise RnnlabError(f"{path}: no `study` section; a study spec needs study.name and "
                          "study.n_trials (see studies/quickstart.yaml)")
    flags = {**override_flags(overrides), **{k: f"--{k.split('.')[1].replace('_', '-')} {v}"
                                             for k, v in extra.items() if v is not None}}
    return study_spec(raw, str(path), flags)


def study_spec(raw: dict[str, Any], origin: str,
               flags: dict[str, str] | None = None) -> StudySpec:
    """A study spec from its raw mapping, every search key, range, stratum and ablation checked.

    Args:
        raw: the spec as a mapping (read from YAML, or made by rnnlab).
        origin: what error lines name (the spec's path).
        flags: dotted keys set on the command line, with the flag that set each.

    Raises:
        RnnlabError: the spec is malformed, names an unknown key, or has an invalid range.
    """
    spec = validate(StudySpec, raw, origin, flags)
    for key, dist in spec.search.items():
        _check_distribution(spec.base, key, dist, origin)
    _check_strata(spec, origin)
    for i, ablation in enumerate(spec.ablate):
        check_ablation(spec, ablation, f"{origin}: ablate[{i}]")
    if spec.study.sampler.window is not None and spec.study.sampler.name not in ("tpe", "gp"):
        raise RnnlabError(f"{origin}: study.sampler.window: the {spec.study.sampler.name} "
                          "sampler has no model of past trials to window; drop window, or use "
                          "tpe or gp")
    if spec.study.sampler.name == "grid":
        size = 1
        for key, dist in spec.search.items():
            if dist.type != "categorical" and not (dist.type == "int" or dist.step):
                raise RnnlabError(f"{origin}: search.{key}: the grid sampler needs choices, an "
                                  "int range or a float range with step")
            size *= (len(dist.choices) if dist.type == "categorical"
                     else int((dist.high - dist.low) / (dist.step or 1) + 1e-9) + 1)
        if spec.study.n_trials > size:
            raise RnnlabError(f"{origin}: study.n_trials {spec.study.n_trials} exceeds the "
                              f"{size} points of the grid; lower it")
    return spec


def derived_spec(stored: dict[str, Any], name: str, kind: str, plan: dict[str, Any],
                 origin: str) -> StudySpec:
    """A derived study (``kind``: ``ablation`` or ``selection``) named ``name`` that runs
    ``plan["trials"]`` exactly, neither pruned nor sampled: its base config and settings are
    the searched study's (``stored``, its spec as JSON), and each key's choices are the values
    its trials are enqueued with."""
    trials = plan["trials"]
    settings = {k: v for k, v in stored["study"].items()
                if k not in ("timeout", "ablation", "selection")}
    raw = {**{k: stored[k] for k in ("data", "model", "train")},
           "study": {**settings, "name": name, "n_trials": len(trials),
                     "sampler": {"name": "random", "seed": 0}, "pruner": {"name": "none"},
                     kind: plan},
           "search": {k: {"choices": list(dict.fromkeys(t[k] for t in trials))}
                      for k in trials[0]}}
    return study_spec(raw, origin)


def planned_trials(spec: StudySpec) -> list[dict[str, Any]] | None:
    """The trials a derived study (an ablation or a selection) runs, in order; None for a
    searched study, which samples its trials."""
    plan = spec.study.ablation or spec.study.selection
    return None if plan is None else plan.trials


def stratum_name(levels: dict[str, Any]) -> str:
    """A stratum as text: ``model.cell=gru`` (several keys joined by ``, ``)."""
    return ", ".join(f"{k}={v}" for k, v in levels.items())


def shares(budget: int, strata: int) -> list[int]:
    """A budget shared out equally between strata: the first ``budget % strata`` get one more."""
    return [budget // strata + (i < budget % strata) for i in range(strata)]


def strata_levels(spec: StudySpec) -> list[dict[str, Any]]:
    """Every stratum of a study, as ``{key: level}`` over ``study.strata``, in search order
    (one stratum, ``{}``, without strata)."""
    keys = spec.study.strata
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(spec.search[k].choices for k in keys))]


def _check_strata(spec: StudySpec, origin: str) -> None:
    where = f"{origin}: study.strata"
    for key in spec.study.strata:
        if key not in spec.search:
            raise RnnlabError(f"{where}: {key} is not searched; strata are categorical search "
                              "keys (e.g. [model.cell])")
        if spec.search[key].type != "categorical":
            raise RnnlabError(f"{where}: {key} is a {spec.search[key].type} range; strata are "
                              "categorical search keys (give it choices)")
    if len(set(spec.study.strata)) < len(spec.study.strata):
        raise RnnlabError(f"{where}: a key is listed twice; list each once")
    if spec.study.strata and spec.study.sampler.name == "grid":
        raise RnnlabError(f"{where}: the grid sampler runs every point already, balanced; drop "
                          "strata or use another sampler")
    count = len(strata_levels(spec))
    if count > spec.study.n_trials:
        raise RnnlabError(f"{where}: {count} strata need at least one trial each, but "
                          f"study.n_trials is {spec.study.n_trials}; raise it or stratify on "
                          "fewer keys")


def check_ablation(spec: StudySpec, ablation: AblationConfig, where: str) -> None:
    """Refuse an ablation the study cannot run: a factor it did not search, a stratum or the
    seed, given levels outside the searched range, an empty list of levels, or an int
    range without levels.

    Raises:
        RnnlabError: one line naming ``where`` and the fix.
    """
    key, dist = ablation.factor, spec.search.get(ablation.factor)
    if dist is None:
        keys = [k for k in spec.search if k not in spec.study.strata and k != "train.seed"]
        raise RnnlabError(f"{where}: factor {key} was not searched in study "
                          f"{spec.study.name!r}; ablate one of {', '.join(keys)}")
    if key in spec.study.strata or key == "train.seed":
        what = "the seed" if key == "train.seed" else "a stratum"
        raise RnnlabError(f"{where}: factor {key} is {what} of the study, which every "
                          "ablation keeps apart; ablate another key")
    if ablation.levels is None:
        if dist.type == "int":
            raise RnnlabError(f"{where}: factor {key} is an int range: give its levels")
        return
    for level in ablation.levels:
        if not _in_range(dist, level):
            bounds = (dist.choices if dist.type == "categorical" else
                      f"{dist.low:g} to {dist.high:g}" + (" or 0" if dist.zero_below else ""))
            raise RnnlabError(f"{where}: level {level!r} of {key} is outside what the study "
                              f"searched ({bounds}); give levels inside it")
    if not ablation.levels:  # each stratum's best level is added: one given is a comparison
        raise RnnlabError(f"{where}: give at least one level of {key} to compare each "
                          "stratum's best with")


def _in_range(dist: Distribution, level: Any) -> bool:
    if dist.type == "categorical":
        return level in dist.choices
    if isinstance(level, bool) or not isinstance(level, int | float):
        return False
    if dist.type == "int" and not float(level).is_integer():
        return False
    return dist.low <= level <= dist.high or (dist.zero_below is not None and level == 0)
