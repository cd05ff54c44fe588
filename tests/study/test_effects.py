"""Verdicts on known, made-up trials: a factor is judged only within comparable trials, with
intervals that match the textbook ones, and says so when the data cannot support a verdict."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from scipy import stats
from support import synthetic_frames

from rnnlab.study.effects import effects
from rnnlab.study.intervals import paired_interval, welch_interval

CELLS = {"model.cell": {"choices": ["rnn", "lstm", "gru"]}}
NORMS = {"data.normalisation": {"choices": ["none", "global", "per_pixel"]}}
LR = {"train.lr": {"low": 1e-5, "high": 1e-2, "log": True}}
SEEDS = {"train.seed": {"choices": [0, 1, 2]}}


def by_key(frames) -> dict:
    return {e.key: e for e in effects(frames)}


def test_a_cell_that_confounds_the_normalisation_gives_no_pooled_verdict():
    """The issue's quickstart case: the only vanilla-RNN trial used `none` and dragged its
    pooled mean down, while within LSTM `none` and `global` were level."""
    rows = [
        {"model.cell": "rnn", "data.normalisation": "none", "train.lr": 1e-3, "value": 0.808},
        {"model.cell": "lstm", "data.normalisation": "none", "train.lr": 2e-3, "value": 0.926},
        {"model.cell": "lstm", "data.normalisation": "global", "train.lr": 3e-3, "value": 0.927},
        {"model.cell": "gru", "data.normalisation": "global", "train.lr": 4e-3, "value": 0.941},
        {"model.cell": "gru", "data.normalisation": "per_pixel", "train.lr": 1e-4,
         "state": "PRUNED"},
    ]
    norm = by_key(synthetic_frames(rows, {**CELLS, **NORMS, **LR}))["data.normalisation"]
    assert norm.support == "none" and "cannot support a verdict" in norm.verdict
    assert "train.lr" in norm.verdict and "normalisation_ablation" in norm.verdict
    assert [dict(s.within) for s in norm.strata] == [{"model.cell": c} for c in
                                                     ("rnn", "lstm", "gru")]
    lstm = {lv.level: lv for lv in norm.strata[1].levels}
    assert (lstm["none"].n, lstm["none"].mean) == (1, 0.926)  # no rnn trial in it
    assert (lstm["global"].n, lstm["global"].mean) == (1, 0.927)
    assert norm.strata[1].gaps == ()  # lr differs: no interval is offered
    assert "per_pixel within model.cell=gru (1 pruned or failed)" in norm.missing
    assert "per_pixel within model.cell=rnn (never tried)" in norm.missing


def grid(effect: dict[str, float], cells=("rnn", "lstm"), noise=0.002, seed=0) -> list[dict]:
    rng = random.Random(seed)
    return [{"model.cell": cell, "data.normalisation": norm, "train.seed": s,
             "value": 0.9 + effect[norm] + 0.01 * s + rng.gauss(0, noise)}
            for cell, norm, s in itertools.product(cells, effect, range(3))]


def test_a_grid_with_seeds_gets_paired_intervals_and_a_verdict():
    rows = grid({"none": -0.05, "global": 0.0, "per_pixel": 0.001})
    search = {"model.cell": {"choices": ["rnn", "lstm"]}, **NORMS, **SEEDS}
    found = by_key(synthetic_frames(rows, search))
    norm = found["data.normalisation"]
    assert norm.support == "verdict"
    assert norm.verdict.endswith("in every stratum, global, per_pixel cannot be told apart "
                                 "(within seed noise); none trail beyond seed noise.")
    for s in norm.strata:
        gaps = {g.other: g for g in s.gaps}
        assert gaps["none"].separated and gaps["none"].test == "paired over seeds"
        assert not any(g.separated for o, g in gaps.items() if o != "none")
        best = s.gaps[0].best
        values = {lv.level: lv.values for lv in s.levels}
        ci = stats.ttest_rel(values[best], values["none"]).confidence_interval(0.95)
        assert gaps["none"].low == pytest.approx(ci.low) and gaps["none"].high == pytest.approx(
            ci.high)
        assert gaps["none"].n == 3
    cell = found["model.cell"]  # no cell effect was put in: nothing is separable
    assert cell.support == "verdict"
    assert "in every stratum, lstm, rnn cannot be told apart (within seed noise)." in cell.verdict
    assert "train.seed" not in found  # the seed is the pairing key, not a factor


def test_a_grid_not_yet_finished_says_so_and_judges_only_what_it_can():
    rows = grid({"none": -0.05, "global": 0.0, "per_pixel": 0.001})
    done = [r for r in rows if not (r["data.normalisation"] == "global" and r["train.seed"])]
    search = {"model.cell": {"choices": ["rnn", "lstm"]}, **NORMS, **SEEDS}
    norm = by_key(synthetic_frames(done, search))["data.normalisation"]
    assert "too few seed pairs to judge global" in norm.verdict
    assert "none trail beyond seed noise" in norm.verdict
    first = by_key(synthetic_frames(done[:1] + done[3:4], search))["data.normalisation"]
    assert first.support == "none" and "finish the study" in first.verdict


def test_one_trial_per_level_cannot_tell_a_gap_from_noise():
    rows = [{"model.cell": "rnn", "data.normalisation": n, "value": v}
            for n, v in (("none", 0.8), ("global", 0.9), ("per_pixel", 0.85))]
    norm = by_key(synthetic_frames(rows, {**NORMS}))["data.normalisation"]
    assert norm.support == "none" and "no level has replicates" in norm.verdict
    assert "train.seed" in norm.verdict
    assert all(g.low is None for g in norm.strata[0].gaps)


def test_minimised_metrics_rank_the_lowest_first():
    rows = grid({"none": 0.05, "global": 0.0, "per_pixel": 0.0}, cells=("gru",))
    search = {"model.cell": {"choices": ["gru"]}, **NORMS, **SEEDS}
    norm = by_key(synthetic_frames(rows, search, direction="minimize"))["data.normalisation"]
    gaps = {g.other: g for g in norm.strata[0].gaps}
    assert norm.strata[0].gaps[0].best != "none"  # the lowest loss is the best level
    assert gaps["none"].separated and gaps["none"].diff > 0.04


def test_continuous_factors_get_their_best_range_per_cell_with_l2_off_apart():
    rng = random.Random(1)
    rows = []
    for cell, best_lr in (("rnn", 1e-4), ("gru", 3e-3)):
        for _ in range(12):
            lr = 10 ** rng.uniform(-5, -2)
            l2 = 0.0 if rng.random() < 0.3 else 10 ** rng.uniform(-6, -3)
            rows.append({"model.cell": cell, "train.lr": lr, "train.l2": l2,
                         "value": 0.95 - 0.05 * abs(math.log10(lr / best_lr))
                         + rng.gauss(0, 0.002)})
    search = {"model.cell": {"choices": ["rnn", "gru"]}, **LR,
              "train.l2": {"low": 1e-7, "high": 1e-3, "log": True, "zero_below": 1e-6}}
    found = by_key(synthetic_frames(rows, search))
    lr = found["train.lr"]
    assert lr.kind == "continuous" and lr.support == "hint"
    assert "not a controlled effect" in lr.verdict
    ranges = {dict(s.within)["model.cell"]: s.top for s in lr.strata}
    assert ranges["rnn"][1] < 1e-3 < ranges["gru"][1]  # each cell's own optimum, not pooled
    assert sum(lv.n for lv in lr.strata[0].levels) == 12
    l2 = found["train.l2"]
    assert "0 (off)" in {lv.level for s in l2.strata for lv in s.levels}


def test_intervals_match_scipy():
    a, b = [0.91, 0.93, 0.92, 0.95], [0.90, 0.88, 0.91]
    low, high = welch_interval(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (low, high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    diffs = [0.01, 0.03, 0.02]
    low, high = paired_interval(diffs)
    ci = stats.ttest_1samp(diffs, 0).confidence_interval(0.95)
    assert (low, high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert paired_interval([0.01]) == (None, None) and welch_interval([1.0], [1.0, 2.0]) == (
        None, None)
