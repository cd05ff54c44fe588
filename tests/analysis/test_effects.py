"""What is concluded from known, made-up trials: a factor is judged only within comparable
trials, with intervals that match published and textbook ones, and the record says why when the
data cannot support a verdict. The sentences are checked apart, from hand-made records."""

from __future__ import annotations

import itertools
import math
import random
import statistics
import warnings

import pytest
from scipy import stats
from support import synthetic_frames

from rnnlab.analysis.effects import effects
from rnnlab.analysis.intervals import paired_interval, welch_interval
from rnnlab.analysis.levels import Effect, Gap, Level, Stratum
from rnnlab.analysis.verdicts import worded

CELLS = {"model.cell": {"choices": ["rnn", "lstm", "gru"]}}
NORMS = {"data.normalisation": {"choices": ["none", "global", "per_pixel"]}}
LR = {"train.lr": {"low": 1e-5, "high": 1e-2, "log": True}}
SEEDS = {"train.seed": {"choices": [0, 1, 2]}}


def by_key(frames) -> dict:
    return {e.key: e for e in effects(frames)}


def textbook_t(diffs: list[float]) -> tuple[float, float]:
    """mean ± t(0.975, n - 1) s / sqrt(n), written out."""
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return statistics.mean(diffs) - half, statistics.mean(diffs) + half


def textbook_welch(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch's interval with the Welch-Satterthwaite degrees of freedom, written out."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    diff = statistics.mean(a) - statistics.mean(b)
    return diff - half, diff + half


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
    assert (norm.support, norm.reason, norm.confounders) == ("none", "confounded", ("train.lr",))
    assert norm.stratified_by == ("model.cell",)
    assert [dict(s.within) for s in norm.strata] == [{"model.cell": c} for c in
                                                     ("rnn", "lstm", "gru")]
    assert [s.leader for s in norm.strata] == ["none", "global", "global"]
    lstm = {lv.level: lv for lv in norm.strata[1].levels}
    assert (lstm["none"].n, lstm["none"].mean) == (1, 0.926)  # no rnn trial in it
    assert (lstm["global"].n, lstm["global"].mean) == (1, 0.927)
    assert norm.strata[1].confounders == ("train.lr",)
    assert norm.strata[1].gaps == ()  # lr differs: no interval is offered
    untried = {(s.name, lv.level): lv.unfinished for s, lv in norm.untried}
    assert untried == {("model.cell=rnn", "global"): 0, ("model.cell=rnn", "per_pixel"): 0,
                       ("model.cell=lstm", "per_pixel"): 0, ("model.cell=gru", "none"): 0,
                       ("model.cell=gru", "per_pixel"): 1}
    assert len(norm.missing) == len(norm.untried)


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
    assert (norm.support, norm.reason, norm.comparisons) == ("verdict", "", 4)
    for s in norm.strata:
        gaps = {g.other: g for g in s.gaps}
        # global and per_pixel tie within seed noise; none trails beyond it
        assert {s.leader, *gaps} == {"none", "global", "per_pixel"} and s.leader != "none"
        assert gaps["none"].separated and gaps["none"].test == "paired over seeds"
        assert all(g.low is not None for g in s.gaps)
        assert not any(g.separated for o, g in gaps.items() if o != "none")
        values = {lv.level: lv.values for lv in s.levels}  # trials in seed order
        diffs = [x - y for x, y in zip(values[s.leader], values["none"], strict=True)]
        low, high = textbook_t(diffs)
        assert (gaps["none"].low, gaps["none"].high) == (pytest.approx(low), pytest.approx(high))
        assert gaps["none"].diff == pytest.approx(statistics.mean(diffs))
        assert gaps["none"].n == 3
    cell = found["model.cell"]  # no cell effect was put in: nothing is separable
    assert (cell.support, cell.comparisons) == ("verdict", 3)
    assert all(g.low is not None and not g.separated for s in cell.strata for g in s.gaps)
    assert "train.seed" not in found  # the seed is the pairing key, not a factor


def test_a_grid_not_yet_finished_says_so_and_judges_only_what_it_can():
    rows = grid({"none": -0.05, "global": 0.0, "per_pixel": 0.001})
    done = [r for r in rows if not (r["data.normalisation"] == "global" and r["train.seed"])]
    search = {"model.cell": {"choices": ["rnn", "lstm"]}, **NORMS, **SEEDS}
    norm = by_key(synthetic_frames(done, search))["data.normalisation"]
    assert norm.support == "verdict" and norm.comparisons == 2
    for s in norm.strata:
        gaps = {g.other: g for g in s.gaps}
        assert s.leader == "per_pixel"
        assert (gaps["global"].low, gaps["global"].n) == (None, 1)  # one seed: too few pairs
        assert gaps["none"].separated
    first = by_key(synthetic_frames(done[:1] + done[3:4], search))["data.normalisation"]
    assert (first.support, first.reason, first.comparisons) == ("none", "unfinished", 0)


def test_one_trial_per_level_cannot_tell_a_gap_from_noise():
    rows = [{"model.cell": "rnn", "data.normalisation": n, "value": v}
            for n, v in (("none", 0.8), ("global", 0.9), ("per_pixel", 0.85))]
    norm = by_key(synthetic_frames(rows, {**NORMS}))["data.normalisation"]
    assert (norm.support, norm.reason) == ("none", "no replicates")
    assert norm.strata[0].leader == "global"
    assert [(g.other, g.low, g.test) for g in norm.strata[0].gaps] == [
        ("per_pixel", None, ""), ("none", None, "")]


def test_minimised_metrics_rank_the_lowest_first():
    rows = grid({"none": 0.05, "global": 0.0, "per_pixel": 0.0}, cells=("gru",))
    search = {"model.cell": {"choices": ["gru"]}, **NORMS, **SEEDS}
    norm = by_key(synthetic_frames(rows, search, direction="minimize"))["data.normalisation"]
    gaps = {g.other: g for g in norm.strata[0].gaps}
    assert norm.strata[0].leader != "none"  # the lowest loss is the best level
    assert norm.strata[0].gaps[0].best == norm.strata[0].leader
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
    assert lr.kind == "continuous" and (lr.support, lr.reason) == ("hint", "")
    assert lr.stratified_by == ("model.cell",)
    assert lr.confounders == ("train.l2",)  # where good trials were, not a controlled effect
    ranges = {dict(s.within)["model.cell"]: s.top for s in lr.strata}
    assert ranges["rnn"][1] < 1e-3 < ranges["gru"][1]  # each cell's own optimum, not pooled
    for s in lr.strata:
        values = [v for lv in s.levels for v in lv.values]
        assert (s.complete, s.top_n, len(values)) == (12, 3, 12)
        assert s.best[0] == max(values) and s.top[0] <= s.best[1] <= s.top[1]
    l2 = found["train.l2"]
    assert "0 (off)" in {lv.level for s in l2.strata for lv in s.levels}
    few = by_key(synthetic_frames(rows[:4] + rows[12:], search))["train.lr"]
    assert (few.support, few.reason, few.strata[0].complete) == ("none", "too few trials", 4)


def test_intervals_match_published_and_textbook_values():
    # Student's sleep data; R's t.test(extra ~ group, data = sleep) prints these intervals.
    x = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
    y = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]
    assert welch_interval(x, y) == (pytest.approx(-3.3654832), pytest.approx(0.2054832))
    diffs = [a - b for a, b in zip(x, y, strict=True)]  # paired = TRUE
    assert paired_interval(diffs) == (pytest.approx(-2.4598858), pytest.approx(-0.7001142))
    a, b = [0.91, 0.93, 0.92, 0.95], [0.90, 0.88, 0.91]
    assert welch_interval(a, b) == tuple(pytest.approx(v) for v in textbook_welch(a, b))
    assert paired_interval(a) == tuple(pytest.approx(v) for v in textbook_t(a))
    assert paired_interval([0.01]) == (None, None) and welch_interval([1.0], [1.0, 2.0]) == (
        None, None)


def test_values_without_spread_give_a_point_interval_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert welch_interval([0.9] * 3, [0.8] * 3) == (pytest.approx(0.1), pytest.approx(0.1))
        assert paired_interval([0.02] * 3) == (pytest.approx(0.02), pytest.approx(0.02))


# The sentences, from hand-made records.

def level(name: str, *values: float, unfinished: int = 0) -> Level:
    return Level(name, len(values), statistics.mean(values) if values else None, None,
                 max(values) if values else None, tuple(range(len(values))), values,
                 unfinished)


def stratum(cell: str, levels: tuple[Level, ...], gaps: tuple[Gap, ...] = (),
            confounders: tuple[str, ...] = ()) -> Stratum:
    leader = max((lv for lv in levels if lv.n), key=lambda lv: lv.mean, default=None)
    return Stratum(within=(("model.cell", cell),), levels=levels, gaps=gaps,
                   confounders=confounders, top=None, leader=leader and leader.level,
                   best=None, top_n=0, complete=sum(lv.n for lv in levels))


def norm_effect(strata: tuple[Stratum, ...], reason: str = "", **fields) -> Effect:
    return Effect(**{"key": "data.normalisation", "kind": "categorical", "strata": strata,
                     "support": "none" if reason else "verdict", "metric": "val_acc",
                     "stratified_by": ("model.cell",), "confounders": (), "comparisons": 0,
                     "reason": reason, **fields})


LEVELS = (level("none", 0.86, 0.87), level("global", 0.91, 0.91, 0.91), level("per_pixel", 0.9))
TIED = Gap("global", "per_pixel", 0.001, 3, "paired over seeds", -0.002, 0.004)
BEATEN = Gap("global", "none", 0.04, 3, "paired over seeds", 0.03, 0.05)
UNTESTED = Gap("global", "per_pixel", 0.01, 1, "", None, None)


def test_a_verdict_names_each_strata_judgement_or_one_for_all():
    rnn, lstm = stratum("rnn", LEVELS, (TIED, BEATEN)), stratum("lstm", LEVELS, (UNTESTED, BEATEN))
    said = worded(norm_effect((rnn, lstm), comparisons=3))
    assert said.verdict == (
        "data.normalisation (validation val_acc, 95% intervals within each model.cell; 3 "
        "comparisons, not corrected for multiplicity): model.cell=rnn: global, per_pixel cannot "
        "be told apart (within seed noise); none trail beyond seed noise; model.cell=lstm: "
        "global leads; none trail beyond seed noise; too few seed pairs to judge per_pixel.")
    assert [s.text for s in said.strata] == [
        "global has the best mean (0.9100, n=3); per_pixel 0.0010 behind, 95% CI [-0.0020, "
        "+0.0040] paired over seeds (n=3): within seed noise; none 0.0400 behind, 95% CI "
        "[+0.0300, +0.0500] paired over seeds (n=3): beyond seed noise",
        "global has the best mean (0.9100, n=3); per_pixel 0.0100 behind (no interval: n=1); "
        "none 0.0400 behind, 95% CI [+0.0300, +0.0500] paired over seeds (n=3): beyond seed "
        "noise"]
    same = worded(norm_effect((rnn, stratum("lstm", LEVELS, (TIED, BEATEN))), comparisons=4))
    assert same.verdict.endswith(": in every stratum, global, per_pixel cannot be told apart "
                                 "(within seed noise); none trail beyond seed noise.")


@pytest.mark.parametrize(("reason", "fields", "expected"), [
    ("confounded", {"confounders": ("train.l2", "train.lr")},
     "data.normalisation: the data cannot support a verdict: the trials within each model.cell "
     "also differ in train.l2, train.lr (the sampler drew them together), so a gap between "
     "levels may be theirs. To get one, run a grid of data.normalisation x model.cell with "
     "those keys fixed and train.seed choices [0, 1, 2] (as studies/normalisation_ablation.yaml "
     "does). Best mean within each model.cell, as a hint only: model.cell=rnn: global."),
    ("unfinished", {}, "data.normalisation: the data cannot support a verdict: a gap cannot be "
     "told from seed noise (finish the study: no level has two seeds done within each "
     "model.cell yet). Best within each model.cell: model.cell=rnn: global."),
    ("no replicates", {}, "data.normalisation: the data cannot support a verdict: a gap cannot "
     "be told from seed noise (no level has replicates within each model.cell; add train.seed: "
     "{choices: [0, 1, 2]} to the search). Best within each model.cell: model.cell=rnn: "
     "global."),
])
def test_no_verdict_says_why_and_what_to_run(reason, fields, expected):
    assert worded(norm_effect((stratum("rnn", LEVELS),), reason, **fields)).verdict == expected


def test_levels_without_a_complete_trial_are_listed_as_missing():
    levels = (level("none", unfinished=1), level("global", 0.9), level("per_pixel"))
    said = worded(norm_effect((stratum("gru", levels), stratum("rnn", ())), "no replicates"))
    assert said.missing == ("none within model.cell=gru (1 pruned or failed)",
                            "per_pixel within model.cell=gru (never tried)")
    assert said.strata[0].text == ("global has the best mean (0.9000, n=1); the only level "
                                   "with a complete trial")
    assert said.strata[1].text == "no complete trial"


def test_a_continuous_range_is_a_first_look_below_enough_trials():
    gru = Stratum(within=(("model.cell", "gru"),), levels=(), gaps=(), confounders=("train.l2",),
                  top=(0.00106, 0.00309), leader=None, best=(0.9485, 0.00309), top_n=3,
                  complete=4)
    rnn = Stratum(within=(("model.cell", "rnn"),), levels=(), gaps=(), confounders=(),
                  top=None, leader=None, best=None, top_n=0, complete=2)
    said = worded(Effect(key="train.lr", kind="continuous", strata=(gru, rnn), support="none",
                         metric="val_acc", stratified_by=("model.cell",),
                         confounders=("train.l2",), comparisons=0, reason="too few trials"))
    assert said.verdict == (
        "train.lr: best range per model.cell (validation val_acc; the other factors vary too, "
        "so this is where good trials were found, not a controlled effect; fewer than 6 "
        "complete trials in some stratum, so treat it as a first look): model.cell=gru: best "
        "0.9485 at train.lr=0.00309; the top 3 of 4 used 0.00106 to 0.00309.")
    assert said.strata[1].text == "2 complete trial(s): too few to place train.lr"
    assert said.missing == ()
