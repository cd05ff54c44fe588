"""Parameter importances with their spread: fANOVA over bootstrap resamples of the complete
trials.

One fANOVA fit on a handful of trials ranks parameters by noise as readily as by signal (two
tools reading the same study disagreed completely). Resampling the complete trials with
replacement and fitting again shows how much of a ranking survives: each parameter gets a mean
importance and a 90% interval, and each neighbour pair in the ranking the share of resamples
that order them the same way. A pair ordered the same way in fewer than ``SETTLED`` of the
resamples is reported as too uncertain to rank.

A fit costs time in proportion to its trials, so a study of more than ``SAMPLE_CAP`` complete
trials is resampled ``SAMPLE_CAP`` at a time (an m-out-of-n bootstrap): the page stays quick at
10,000 trials, and its intervals are those of ``SAMPLE_CAP`` trials, wider than the whole
study's would be (the note says so).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import sys
import threading
import warnings
from collections.abc import Callable

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState, create_trial

RESAMPLES = 20
TREES = 16
SETTLED = 0.9
MIN_TRIALS = 2
SAMPLE_CAP = 100  # trials per resample at most (benchmarks/dashboard_scale.py)
COLUMNS = ["param", "importance", "std", "low", "high"]


def importances(study: optuna.Study, trials: list[optuna.trial.FrozenTrial], *,
                resamples: int = RESAMPLES, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """Mean fANOVA importance of each varying searched param over ``resamples`` bootstrap
    resamples of the complete trials, with std and a 90% interval; and a note that gives the
    number of trials and says which neighbours in the ranking are settled.

    Returns:
        ``(frame, note)``: the frame has :data:`COLUMNS`, highest mean first (empty with fewer
        than two complete trials or no varying param, the note says why).
    """
    empty = pd.DataFrame(columns=COLUMNS)
    # params and value only: each fit copies its trials, curves and attributes are dead weight
    complete = [create_trial(params=t.params, distributions=t.distributions, value=t.value)
                for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if len(complete) < MIN_TRIALS:
        return empty, f"needs at least {MIN_TRIALS} complete trials (has {len(complete)})"
    params = sorted(_varying(complete))
    if not params:
        return empty, "no searched parameter varies across the complete trials"
    if len({t.value for t in complete}) < 2:
        return empty, "the objective is the same in every complete trial"
    # `dashboard --watch` reads a study every few seconds: fit again only when its complete
    # trials changed (20 fits take seconds)
    key = _key(study, complete, resamples, seed)
    if key in _LAST:
        frame, note = _LAST[key]
        return frame.copy(), note
    _LAST.clear()
    _LAST[key] = _bootstrap(study.direction, complete, params, resamples, seed)
    return _LAST[key][0].copy(), _LAST[key][1]


_LAST: dict[tuple, tuple[pd.DataFrame, str]] = {}  # the last study's result, by its trials


def _key(study: optuna.Study, trials: list[optuna.trial.FrozenTrial], resamples: int = RESAMPLES,
         seed: int = 0) -> tuple:
    """What a fit depends on: the complete trials' values and params, and the settings."""
    return (study.direction, resamples, seed, SAMPLE_CAP,
            tuple((t.value, repr(sorted(t.params.items()))) for t in trials
                  if t.state == TrialState.COMPLETE and t.value is not None))


def importances_meanwhile(study: optuna.Study, trials: list[optuna.trial.FrozenTrial]
                          ) -> Callable[[], tuple[pd.DataFrame, str]]:
    """:func:`importances`, fitted while the caller reads something else; call the result to
    get them.

    A study of more than ``SAMPLE_CAP`` complete trials is fitted in a forked child process
    (20 fits: 3 s), so that on two CPUs reading its curves (a million points of SQL, 3 s) goes
    on meanwhile; only where forking is safe: Linux, more than one CPU, and no other thread in
    this process (a fork copies no thread, and a lock one held would stay held in the child).
    Anywhere else, or when the child fails, the fit runs here when asked. Same result either
    way.
    """
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    key = _key(study, trials)
    if (complete <= SAMPLE_CAP or not sys.platform.startswith("linux")
            or len(os.sched_getaffinity(0)) < 2 or threading.active_count() > 1
            or key in _LAST):  # `dashboard --watch`: fitted already
        return lambda: importances(study, trials)
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_fit_and_send, args=(study, trials, send), daemon=True)
    child.start()
    send.close()

    def result() -> tuple[pd.DataFrame, str]:
        try:
            frame, note = receive.recv()
        except EOFError:  # the child died without an answer: fit here
            return importances(study, trials)
        finally:
            receive.close()
            child.join()
        _LAST.clear()
        _LAST[key] = frame, note
        return frame.copy(), note

    return result


def _fit_and_send(study: optuna.Study, trials: list[optuna.trial.FrozenTrial], send) -> None:
    send.send(importances(study, trials))
    send.close()


def _bootstrap(direction, complete, params, resamples: int,
               seed: int) -> tuple[pd.DataFrame, str]:
    rng = random.Random(seed)
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one "study created" line per fit
    try:
        draws: list[list[float]] = []
        for _ in range(10 * resamples):
            if len(draws) == resamples:
                break
            sample = [rng.choice(complete) for _ in range(min(len(complete), SAMPLE_CAP))]
            # a resample must still vary every param, and the objective (fANOVA needs both)
            if _varying(sample) >= set(params) and len({t.value for t in sample}) > 1:
                draws.append(_fanova(direction, sample, params, seed + len(draws)))
    finally:
        optuna.logging.set_verbosity(level)
    table = pd.DataFrame(draws, columns=params)
    frame = pd.DataFrame({"param": params, "importance": table.mean().to_numpy(),
                          "std": table.std(ddof=1).to_numpy(),
                          "low": table.quantile(0.05).to_numpy(),
                          "high": table.quantile(0.95).to_numpy()})
    frame = frame.sort_values(["importance", "param"], ascending=[False, True])
    return frame.reset_index(drop=True), _note(table, list(frame["param"]), len(complete))


def _varying(trials: list[optuna.trial.FrozenTrial]) -> set[str]:
    keys = {k for t in trials for k, d in t.distributions.items() if not d.single()}
    return {k for k in keys if len({repr(t.params.get(k)) for t in trials}) > 1}


def _fanova(direction, trials, params: list[str], seed: int) -> list[float]:
    """One fANOVA fit over ``trials`` (duplicates allowed), importances in ``params`` order."""
    study = optuna.create_study(direction=direction)
    study.add_trials(trials)
    evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=TREES, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = optuna.importance.get_param_importances(
            study, evaluator=evaluator, params=params, normalize=True)
    values = [float(scores.get(p, 0.0)) for p in params]
    return values if np.isfinite(values).all() else [1.0 / len(params)] * len(params)


def _note(table: pd.DataFrame, order: list[str], n: int) -> str:
    head = (f"fANOVA over {n} complete trials, mean of {len(table)} bootstrap resamples "
            "with a 90% interval")
    if n > SAMPLE_CAP:
        head += (f" (each resample draws {SAMPLE_CAP} of the {n}: the intervals are those of "
                 f"{SAMPLE_CAP} trials, wider than the whole study's)")
    if len(order) < 2:
        return head
    pairs = []
    for upper, lower in zip(order, order[1:], strict=False):
        share = float((table[upper] > table[lower]).mean())
        pairs.append(f"{upper} ahead of {lower} in {share:.0%} of resamples"
                     + ("" if share >= SETTLED else " (too uncertain to rank)"))
    return head + "; " + "; ".join(pairs)
