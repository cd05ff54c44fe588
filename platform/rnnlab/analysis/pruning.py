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
from rnnlab.core.study_spec import stalled

REPLAYED = ("median", "percentile")  # the pruners whose rule the replay applies


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


def replay_pruning(frames: StudyFrames) -> PruningReplay | None:
    """The study's pruner (an ablation: its searched study's, when the store holds that study)
    replayed on the study's complete trials; None where there is none to replay."""
    if frames.judged_by is None:
        return None
    epochs = {}
    if "train.epochs" in frames.configs:
        epochs = {int(n): int(e) for n, e in zip(frames.configs["number"],
                                                 frames.configs["train.epochs"], strict=True)
                  if pd.notna(e)}
    judged_by, pruner = frames.judged_by
    return replay(frames.steps, frames.trials, pruner, frames.direction, judged_by, epochs)


def replay(steps: pd.DataFrame, trials: pd.DataFrame, pruner: dict[str, Any],
           direction: str, judged_by: str, epochs: dict[int, int]) -> PruningReplay | None:
    """Replay ``pruner`` (a spec's ``study.pruner``) on the complete trials.

    Args:
        steps: the values the trials reported to the pruner: ``number``, ``step``, ``value``.
        trials: the trials frame: ``number``, ``state``, ``value`` and, stratified,
            ``stratum``.
        pruner: the pruner's settings, as a spec holds them.
        direction: ``maximize`` or ``minimize``.
        judged_by: the study whose pruner it is.
        epochs: each trial's number of epochs (the last step, never judged).

    Returns:
        None when the pruner is not one the replay applies (:data:`REPLAYED`).
    """
    name = pruner.get("name", "median")
    if name not in REPLAYED:
        return None
    percentile = 50.0 if name == "median" else float(pruner.get("percentile", 25.0))
    warmup = int(pruner.get("n_warmup_steps", 1))
    interval = int(pruner.get("interval_steps", 1))
    startup = int(pruner.get("n_startup_trials", 5))
    patience = None if pruner.get("patience") is None else int(pruner["patience"])
    rule = dict(percentile=percentile, warmup=warmup, interval=interval, startup=startup,
                maximize=direction == "maximize", patience=patience,
                min_delta=float(pruner.get("min_delta", 0.0)))
    done = trials[(trials["state"] == "COMPLETE") & trials["value"].notna()]
    mine = steps[steps["number"].isin(done["number"])]
    wide = mine.pivot(index="step", columns="number", values="value").sort_index()  # step x trial
    groups = (done.groupby("stratum", sort=False) if "stratum" in done and
              done["stratum"].notna().any() else [("", done)])
    out = []
    for stratum, group in groups:
        numbers = [int(n) for n in group["number"] if int(n) in wide.columns]
        values = {int(n): float(v) for n, v in zip(group["number"], group["value"], strict=True)}
        table = wide[numbers].dropna(how="all")
        ranked = sorted(numbers, key=lambda n: (-values[n] if rule["maximize"] else values[n], n))
        best = ranked[0] if ranked else None
        cuts = _cuts(table, epochs, **rule)
        keeps = None
        if best in cuts:
            keeps = next(w for w in range(rule["warmup"] + 1, int(table.index.max()) + 2)
                         if best not in _cuts(table[[best]], epochs, others=table.drop(
                             columns=best), **(rule | {"warmup": w})))
        out.append(StratumReplay(
            str(stratum), len(numbers),
            tuple(Cut(n, *cuts[n], values[n]) for n in numbers if n in cuts), best, keeps,
            judged=len(numbers) - 1 >= max(rule["startup"], 1)))
    return PruningReplay(name, rule["startup"], _settings(name, **rule), judged_by, tuple(out))


def _cuts(table: pd.DataFrame, epochs: dict[int, int], *, percentile: float, warmup: int,
          interval: int, startup: int, maximize: bool, patience: int | None, min_delta: float,
          others: pd.DataFrame | None = None) -> dict[int, tuple[int, float, float]]:
    """Each trial of ``table`` (steps x trials) the rule would cut, judged against the other
    trials of ``table`` and ``others``: its first cut as (step, best so far, threshold).
    Vectorised over trials and steps, so a stratum of thousands of trials replays in seconds;
    where a trial's value ties with the threshold, the threshold is computed as Optuna does."""
    pool = table if others is None else pd.concat([table, others], axis=1)
    judged = list(table.columns)
    if pool.shape[1] - 1 < max(startup, 1):
        return {}
    grid = pool.to_numpy(dtype=float)  # steps x trials
    q = (100 - percentile if maximize else percentile) / 100
    threshold = _leave_one_out(grid, q)[:, :len(judged)]
    mine = grid[:, :len(judged)]
    so_far = (np.fmax if maximize else np.fmin).accumulate(mine, axis=0)
    with np.errstate(invalid="ignore"):
        below = (so_far < threshold) if maximize else (so_far > threshold)
        near = np.abs(so_far - threshold) <= 1e-9 * np.maximum(1.0, np.abs(threshold))
    steps = pool.index.to_numpy()
    present = ~np.isnan(mine)
    # Optuna judges a step only when no earlier reported step fell in its interval
    lower = (steps - warmup) // interval * interval + warmup
    previous = pd.DataFrame(np.where(present, steps[:, None], np.nan)).ffill().shift(1)
    first = ~(previous.to_numpy() >= lower[:, None])  # no earlier step (NaN) counts as first
    last = np.array([epochs.get(n, np.inf) for n in judged], dtype=float)
    candidate = (present & (below | near) & first & (steps >= warmup)[:, None]
                 & (steps[:, None] < last[None, :]))
    out = {}
    for j in np.flatnonzero(candidate.any(axis=0)):
        for row in np.flatnonzero(candidate[:, j]):
            if patience is not None and not stalled(
                    list(mine[:row + 1, j][present[:row + 1, j]]), patience, min_delta,
                    maximize):
                continue
            best, cut_at = float(so_far[row, j]), float(threshold[row, j])
            if near[row, j]:  # a tie: the threshold exactly as Optuna computes it
                rest = np.delete(grid[row], j)
                cut_at = float(np.percentile(rest[~np.isnan(rest)], q * 100))
                if not (best < cut_at if maximize else best > cut_at):
                    continue
            out[judged[j]] = (int(steps[row]), best, cut_at)
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


def _settings(name: str, *, percentile: float, warmup: int, interval: int, startup: int,
              patience: int | None, min_delta: float, **_: Any) -> str:
    parts = [] if name == "median" else [f"percentile {percentile:g}"]
    parts += [f"warm-up {warmup} epoch{'s' * (warmup != 1)}",
              f"{startup} start-up trial{'s' * (startup != 1)}",
              "every epoch" if interval == 1 else f"every {interval} epochs"]
    if patience is not None:
        parts.append(f"only once stalled for {patience} epoch{'s' * (patience != 1)}"
                     + (f" (by {min_delta:g})" if min_delta else ""))
    return ", ".join(parts)
