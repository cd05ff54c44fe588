"""The study's pruner replayed on its complete trials: would it cut the ones that ended best?

A median pruner judges a trial at epoch ``s`` by the complete trials' values at ``s``. Where a
kind of trial starts slow and ends best (a vanilla RNN among GRUs; within one cell, a learning
rate whose curve rises late), it is cut before it shows what it can do; strata fix the first
case, not the second. The replay judges each complete trial, epoch by epoch, against every
other complete trial of its stratum, as the pruner would judge it had it run last, and says
which it would cut, whether the stratum's best is among them, and from which warm-up on the
pruner keeps that best. The trials the pruner did cut have no end to compare, so the replay
can only show the risk on the trials that finished; an ablation's arms, all run to the end
and judged by its searched study's pruner, show it best.

The rule is Optuna's :class:`~optuna.pruners.PercentilePruner` (the median is its 50th
percentile): at a judged step (from ``n_warmup_steps`` on, every ``interval_steps``), a trial
whose best value so far is worse than the percentile of the other complete trials' values at
that step is cut, given at least ``n_startup_trials`` others. No trial is judged at its last
epoch (rnnlab's workers never ask then). Other pruners (successive halving, Hyperband,
Wilcoxon) compare by rules that do not replay this way, and are not replayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rnnlab.analysis.frames import StudyFrames
from rnnlab.core.study_spec import PERCENTILE_RULES, PrunerConfig, stalled

REPLAYED = PERCENTILE_RULES  # the pruners whose rule the replay applies


@dataclass(frozen=True)
class Cut:
    """A complete trial the pruner would cut: at which step, at what value, how it ended."""

    number: int
    step: int
    value: float  # its best value up to ``step``
    threshold: float  # the others' percentile at ``step``
    final: float  # the trial's objective (what the pruner would have thrown away)


@dataclass(frozen=True)
class StratumReplay:
    """One stratum (or the whole study, ``name`` empty): its complete trials under replay."""

    name: str
    complete: int
    cuts: tuple[Cut, ...]
    best: int | None  # the stratum's best complete trial
    keeps_best_from: int | None  # the smallest warm-up that keeps the best (None: no cut)
    judged: bool = True  # False: fewer others than the pruner's start-up trials

    @property
    def best_cut(self) -> Cut | None:
        return next((c for c in self.cuts if c.number == self.best), None)


@dataclass(frozen=True)
class PruningReplay:
    """The replay of study ``judged_by``'s pruner on this study's complete trials."""

    pruner: str  # median, percentile
    startup: int  # its n_startup_trials
    settings: str  # "warm-up 5 epochs, 3 start-up trials, every epoch"
    judged_by: str  # the study whose pruner it is (an ablation: its searched study)
    strata: tuple[StratumReplay, ...]

    @property
    def best_cut(self) -> bool:
        return any(s.best_cut is not None for s in self.strata)


def trial_epochs(frames: StudyFrames) -> dict[int, int]:
    """Each trial's number of epochs (its last step, which no pruner judges), from its config."""
    configs = frames.configs
    if "train.epochs" not in configs:
        return {}
    return {int(n): int(e) for n, e in zip(configs["number"], configs["train.epochs"],
                                           strict=True) if pd.notna(e)}


def replay_pruning(frames: StudyFrames) -> PruningReplay | None:
    """The study's pruner (an ablation: its searched study's, when the store holds that study)
    replayed on the study's complete trials; None where there is none to replay."""
    if frames.judged_by is None:
        return None
    judged_by, pruner = frames.judged_by
    return replay(frames.steps, frames.trials, pruner, frames.direction, judged_by,
                  trial_epochs(frames))


def replay(steps: pd.DataFrame, trials: pd.DataFrame, pruner: dict[str, Any],
           direction: str, judged_by: str, epochs: dict[int, int]) -> PruningReplay | None:
    """Replay ``pruner`` (a spec's ``study.pruner``) on the complete trials.

    Args:
        steps: the values the trials reported to the pruner: ``number``, ``step``, ``value``.
        trials: the trials frame: ``number``, ``state``, ``value`` and, stratified,
            ``stratum``.
        pruner: the pruner's settings, as a spec holds them (unset keys take the spec's
            defaults).
        direction: ``maximize`` or ``minimize``.
        judged_by: the study whose pruner it is.
        epochs: each trial's number of epochs (the last step, never judged).

    Returns:
        None when the pruner is not one the replay applies (:data:`REPLAYED`).
    """
    cfg = PrunerConfig.model_validate(pruner)
    if cfg.name not in REPLAYED:
        return None
    maximize = direction == "maximize"
    percentile = 50.0 if cfg.name == "median" else cfg.percentile
    rule = dict(warmup=cfg.n_warmup_steps, interval=cfg.interval_steps,
                startup=cfg.n_startup_trials, maximize=maximize, patience=cfg.patience,
                min_delta=cfg.min_delta)
    done = trials[(trials["state"] == "COMPLETE") & trials["value"].notna()]
    mine = steps[steps["number"].isin(done["number"])]
    wide = mine.pivot(index="step", columns="number", values="value").sort_index()  # step x trial
    groups = (done.groupby("stratum", sort=False) if "stratum" in done and
              done["stratum"].notna().any() else [("", done)])
    out = []
    for stratum, group in groups:
        numbers = [int(n) for n in group["number"] if int(n) in wide.columns]
        values = {int(n): float(v) for n, v in zip(group["number"], group["value"], strict=True)}
        judge = _Judge(wide[numbers].dropna(how="all"), percentile, maximize)
        ranked = sorted(numbers, key=lambda n: (-values[n] if maximize else values[n], n))
        best = ranked[0] if ranked else None
        cuts = judge.cuts(epochs, **rule)
        keeps = None
        if best in cuts:  # the same thresholds, a later warm-up each time
            keeps = next(w for w in range(cfg.n_warmup_steps + 1, int(judge.steps.max()) + 2)
                         if best not in judge.cuts(epochs, only=best, **(rule | {"warmup": w})))
        out.append(StratumReplay(
            str(stratum), len(numbers),
            tuple(Cut(n, *cuts[n], values[n]) for n in numbers if n in cuts), best, keeps,
            judged=len(numbers) - 1 >= max(cfg.n_startup_trials, 1)))
    return PruningReplay(cfg.name, cfg.n_startup_trials, _settings(cfg), judged_by, tuple(out))


class _Judge:
    """One stratum's complete trials (``table``: steps x trials) and, at every step, each
    trial's best value so far and its threshold, the percentile of the others' values there:
    computed once, whatever warm-up or interval the cuts are then judged with. Vectorised over
    trials and steps, so a stratum of thousands of trials replays in seconds."""

    def __init__(self, table: pd.DataFrame, percentile: float, maximize: bool):
        self.numbers, self.maximize = list(table.columns), maximize
        self.steps = table.index.to_numpy()
        self.grid = table.to_numpy(dtype=float)
        self.q = (100 - percentile if maximize else percentile) / 100
        self.threshold = _leave_one_out(self.grid, self.q)
        self.so_far = (np.fmax if maximize else np.fmin).accumulate(self.grid, axis=0)
        with np.errstate(invalid="ignore"):
            self.below = (self.so_far < self.threshold if maximize
                          else self.so_far > self.threshold)
            self.near = (np.abs(self.so_far - self.threshold)
                         <= 1e-9 * np.maximum(1.0, np.abs(self.threshold)))
        self.present = ~np.isnan(self.grid)

    def cuts(self, epochs: dict[int, int], *, warmup: int, interval: int, startup: int,
             maximize: bool, patience: int | None, min_delta: float,
             only: int | None = None) -> dict[int, tuple[int, float, float]]:
        """Each trial (or trial ``only``) the rule would cut: its first cut as (step, best so
        far, threshold); where a trial's value ties with the threshold, the threshold is
        computed as Optuna does."""
        if len(self.numbers) - 1 < max(startup, 1):
            return {}
        steps, present = self.steps, self.present
        # Optuna judges a step only when no earlier reported step fell in its interval
        lower = (steps - warmup) // interval * interval + warmup
        previous = pd.DataFrame(np.where(present, steps[:, None], np.nan)).ffill().shift(1)
        first = ~(previous.to_numpy() >= lower[:, None])  # no earlier step (NaN): first
        last = np.array([epochs.get(n, np.inf) for n in self.numbers], dtype=float)
        candidate = (present & (self.below | self.near) & first & (steps >= warmup)[:, None]
                     & (steps[:, None] < last[None, :]))
        columns = (range(len(self.numbers)) if only is None
                   else [self.numbers.index(only)])
        out = {}
        for j in columns:
            for row in np.flatnonzero(candidate[:, j]):
                if patience is not None and not stalled(
                        list(self.grid[:row + 1, j][present[:row + 1, j]]), patience,
                        min_delta, maximize):
                    continue
                best, cut_at = float(self.so_far[row, j]), float(self.threshold[row, j])
                if self.near[row, j]:  # a tie: the threshold exactly as Optuna computes it
                    rest = np.delete(self.grid[row], j)
                    cut_at = float(np.percentile(rest[~np.isnan(rest)], self.q * 100))
                    if not (best < cut_at if maximize else best > cut_at):
                        continue
                out[self.numbers[j]] = (int(steps[row]), best, cut_at)
                break
        return out


def _leave_one_out(grid: np.ndarray, q: float) -> np.ndarray:
    """At each step (row), each trial's (column's) threshold: the ``q`` quantile (linear, as
    numpy's) of the other trials' values at that step; NaN where the trial has no value there
    or no other trial has one."""
    out = np.full(grid.shape, np.nan)
    for r, row in enumerate(grid):
        idx = np.flatnonzero(~np.isnan(row))
        m = len(idx)
        if m < 2:
            continue
        order = np.argsort(row[idx], kind="stable")
        ordered = row[idx][order]
        rank = np.empty(m, dtype=int)
        rank[order] = np.arange(m)
        position = q * (m - 2)  # among the m - 1 others, sorted
        k = int(np.floor(position))
        frac = position - k
        low = ordered[_nth_other(k, rank, m)]
        high = ordered[_nth_other(min(k + 1, m - 2), rank, m)]
        out[r, idx] = low + (high - low) * frac
    return out


def _nth_other(j: int, rank: np.ndarray, m: int) -> np.ndarray:
    """Where in the sorted values of all ``m`` trials each trial's ``j``-th smallest other
    value is (the trial of rank ``rank`` left out)."""
    return np.where(j < rank, j, np.minimum(j + 1, m - 1))


def _settings(cfg: PrunerConfig) -> str:
    parts = [] if cfg.name == "median" else [f"percentile {cfg.percentile:g}"]
    warmup, startup, interval = cfg.n_warmup_steps, cfg.n_startup_trials, cfg.interval_steps
    parts += [f"warm-up {warmup} epoch{'s' * (warmup != 1)}",
              f"{startup} start-up trial{'s' * (startup != 1)}",
              "every epoch" if interval == 1 else f"every {interval} epochs"]
    if cfg.patience is not None:
        parts.append(f"only once stalled for {cfg.patience} epoch{'s' * (cfg.patience != 1)}"
                     + (f" (by {cfg.min_delta:g})" if cfg.min_delta else ""))
    return ", ".join(parts)
