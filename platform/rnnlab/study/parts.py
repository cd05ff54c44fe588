"""Spec pieces turned into Optuna objects: samplers, pruners, and sampled configs."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna

from rnnlab.core.spec import RunConfig, apply_overrides, validate
from rnnlab.core.study_spec import KEEP_BEST, Distribution, StudySpec, stalled
from rnnlab.study.strata import StratifiedPruner, StratifiedSampler
from rnnlab.study.views import WindowedSampler


def make_sampler(spec: StudySpec, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler, modelling each stratum apart when the study has strata, and a window
    of its trials when the spec sets one. Each worker
    offsets the seed, so workers never draw the same points; a grid keeps the spec's seed,
    since its points are numbered by their shuffled order."""
    sampler = _sampler(spec, seed_offset)
    if spec.study.sampler.window is not None:  # within each stratum, where there are strata
        sampler = WindowedSampler(sampler, spec.study.sampler.window, KEEP_BEST)
    return StratifiedSampler(sampler, spec.study.strata) if spec.study.strata else sampler


def _sampler(spec: StudySpec, seed_offset: int) -> optuna.samplers.BaseSampler:
    cfg = spec.study.sampler
    seed = None if cfg.seed is None else cfg.seed + seed_offset
    if cfg.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=cfg.n_startup_trials)
    if cfg.name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if cfg.name == "grid":  # every worker shuffles alike, or grid ids name different points
        return _Grid(grid_space(spec), seed=cfg.seed or 0)
    # Optuna 5's TPE always models the keys jointly (multivariate) and, by default, lets parallel
    # workers avoid the points others are training (constant liar).
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.n_startup_trials)


class _Grid(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``study.stop()`` after the last point: outside
    ``optimize()`` (workers ask and tell) that raises from ``tell``, after the trial was told,
    and the study's budget ends the workers anyway."""

    def after_trial(self, study, trial, state, values) -> None:
        return None


def grid_space(spec: StudySpec) -> dict[str, list[Any]]:
    """Every searched key's grid values (choices, every int, or a float range by its step)."""
    space = {}
    for key, d in spec.search.items():
        if d.type == "categorical":
            space[key] = list(d.choices)
        elif d.type == "int":
            space[key] = list(range(int(d.low), int(d.high) + 1, int(d.step or 1)))
        else:
            space[key] = [float(v) for v in np.arange(d.low, d.high + d.step / 2, d.step)]
    return space


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The spec's pruner, judging each trial within its stratum when the study has strata.
    Hyperband's largest budget is the trial's epochs (unless searched)."""
    pruner = _pruner(spec)
    cfg = spec.study.pruner
    if cfg.patience is not None:
        pruner = StalledPruner(pruner, cfg.patience, cfg.min_delta)
    return StratifiedPruner(pruner, spec.study.strata) if spec.study.strata else pruner


class StalledPruner(optuna.pruners.BasePruner):
    """A pruner that may cut a trial only once its curve has stalled (:func:`stalled`): within
    one cell, a learning rate whose curve rises late is below the median early on while it
    still climbs, and ends best."""

    def __init__(self, inner: optuna.pruners.BasePruner, patience: int, min_delta: float):
        self.inner, self.patience, self.min_delta = inner, patience, min_delta

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        values = [v for _, v in sorted(trial.intermediate_values.items())]
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        return (stalled(values, self.patience, self.min_delta, maximize)
                and self.inner.prune(study, trial))


def _pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    cfg, p = spec.study.pruner, optuna.pruners
    max_resource = "auto" if "train.epochs" in spec.search else spec.train.epochs
    if cfg.name == "none":
        return p.NopPruner()
    if cfg.name == "median":
        return p.MedianPruner(n_startup_trials=cfg.n_startup_trials,
                              n_warmup_steps=cfg.n_warmup_steps, interval_steps=cfg.interval_steps)
    if cfg.name == "percentile":
        return p.PercentilePruner(cfg.percentile, n_startup_trials=cfg.n_startup_trials,
                                  n_warmup_steps=cfg.n_warmup_steps,
                                  interval_steps=cfg.interval_steps)
    if cfg.name == "hyperband":
        return p.HyperbandPruner(min_resource=cfg.min_resource, max_resource=max_resource,
                                 reduction_factor=cfg.reduction_factor)
    if cfg.name == "successive_halving":
        return p.SuccessiveHalvingPruner(min_resource=cfg.min_resource,
                                         reduction_factor=cfg.reduction_factor)
    return p.WilcoxonPruner(p_threshold=cfg.p_threshold, n_startup_steps=cfg.n_warmup_steps)


def _suggest(trial: optuna.Trial, key: str, d: Distribution) -> Any:
    if d.type == "categorical":
        return trial.suggest_categorical(key, d.choices)
    if d.type == "int":
        return trial.suggest_int(key, int(d.low), int(d.high), step=int(d.step or 1), log=d.log)
    value = trial.suggest_float(key, d.low, d.high, step=d.step, log=d.log)
    return 0.0 if d.zero_below is not None and value < d.zero_below else value


def sample_config(trial: optuna.Trial, spec: StudySpec,
                  device: str | None = None) -> tuple[RunConfig, list[str]]:
    """Sample every search key into the base config; returns the config and the sampled keys.

    Args:
        trial: the trial to sample from.
        spec: the study spec.
        device: a worker's placement (``cuda:N``), used when the spec's device is ``auto``.
    """
    values = {key: _suggest(trial, key, d) for key, d in spec.search.items()}
    if device is not None and spec.train.device == "auto" and "train.device" not in values:
        values["train.device"] = device
    raw = apply_overrides(spec.base.model_dump(), values)
    return validate(RunConfig, raw, f"trial {trial.number}"), list(spec.search)
