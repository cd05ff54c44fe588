"""Importances come with their spread: a strong param is ranked with certainty, noise is
called too uncertain to rank, and too few trials give no ranking at all."""

from __future__ import annotations

import math

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from rnnlab.analysis.importances import RESAMPLES, importances

DIST = {"lr": FloatDistribution(1e-5, 1e-1, log=True),
        "cell": CategoricalDistribution(["rnn", "gru"]),
        "l2": FloatDistribution(0.0, 1.0)}


def study_of(n: int, value, seed: int = 0) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    rng = np.random.default_rng(seed)
    for _ in range(n):
        params = {"lr": 10 ** rng.uniform(-5, -1), "cell": ["rnn", "gru"][int(rng.integers(2))],
                  "l2": rng.uniform(0, 1)}
        study.add_trial(create_trial(params=params, distributions=DIST,
                                     value=value(params, rng)))
    return study


def test_a_param_that_drives_the_objective_is_ranked_first_for_sure():
    study = study_of(40, lambda p, rng: -abs(math.log10(p["lr"]) + 3) + rng.normal(0, 0.01))
    frame, note = importances(study, study.trials)
    assert list(frame.columns) == ["param", "importance", "std", "low", "high"]
    assert frame["param"].iloc[0] == "lr" and frame["low"].iloc[0] > frame["high"].iloc[1]
    assert note.startswith(f"fANOVA over 40 complete trials, mean of {RESAMPLES} bootstrap")
    first_pair = note.split("; ")[1]
    assert first_pair.startswith("lr ahead of ") and "too uncertain" not in first_pair
    assert ((frame["low"] <= frame["importance"]) & (frame["importance"] <= frame["high"])).all()


def test_noise_is_called_too_uncertain_to_rank():
    study = study_of(8, lambda p, rng: rng.normal(0.9, 0.01), seed=3)
    frame, note = importances(study, study.trials)
    assert len(frame) == 3 and "too uncertain to rank" in note
    assert (frame["std"] > 0).all()


def test_importances_need_two_complete_trials():
    study = optuna.create_study()
    dist = {"x": FloatDistribution(0, 1)}
    study.add_trial(create_trial(params={"x": 0.5}, distributions=dist, value=1.0))
    study.add_trial(create_trial(params={"x": 0.2}, distributions=dist, state=TrialState.FAIL))
    frame, note = importances(study, study.trials)
    assert frame.empty and "at least 2 complete trials (has 1)" in note


def test_an_objective_that_never_varies_ranks_nothing():
    study = study_of(6, lambda p, rng: 0.24)  # every trial predicts one class, say
    frame, note = importances(study, study.trials)
    assert frame.empty and note == "the objective is the same in every complete trial"


def test_resamples_where_the_objective_does_not_vary_are_drawn_again():
    # two of three trials share their value: a fifth of the resamples hold those two alone
    values = iter([0.9, 0.5, 0.5])
    study = study_of(3, lambda p, rng: next(values), seed=1)
    frame, note = importances(study, study.trials)
    assert note.startswith(f"fANOVA over 3 complete trials, mean of {RESAMPLES} bootstrap")
    assert len(frame) == 3


def test_the_same_complete_trials_are_not_fitted_again(monkeypatch):
    """`dashboard --watch` reads the study every few seconds; a new complete trial refits."""
    from rnnlab.analysis import importances as module

    study = study_of(12, lambda p, rng: -abs(math.log10(p["lr"]) + 3))
    fits = []
    real = module._fanova
    monkeypatch.setattr(module, "_fanova", lambda *a: fits.append(1) or real(*a))
    first = importances(study, study.trials)
    assert len(fits) == RESAMPLES
    again = importances(study, study.trials)
    assert len(fits) == RESAMPLES and again[1] == first[1] and again[0].equals(first[0])
    study.add_trial(create_trial(params={"lr": 1e-3, "cell": "gru", "l2": 0.5},
                                 distributions=DIST, value=0.0))
    importances(study, study.trials)
    assert len(fits) == 2 * RESAMPLES


def test_a_large_study_is_resampled_a_capped_number_of_trials_at_a_time(monkeypatch):
    """Past SAMPLE_CAP complete trials each fit sees SAMPLE_CAP of them, so the page stays quick
    at 10,000 trials; the ranking holds and the note says the intervals are the cap's."""
    from rnnlab.analysis import importances as module

    monkeypatch.setattr(module, "SAMPLE_CAP", 30)
    sizes = []
    real = module._fanova
    monkeypatch.setattr(module, "_fanova", lambda d, t, *a: sizes.append(len(t)) or real(d, t, *a))
    study = study_of(90, lambda p, rng: -abs(math.log10(p["lr"]) + 3) + rng.normal(0, 0.01))
    frame, note = importances(study, study.trials)
    assert sizes == [30] * RESAMPLES
    assert frame["param"].iloc[0] == "lr"
    assert note.startswith(f"fANOVA over 90 complete trials, mean of {RESAMPLES} bootstrap "
                           "resamples with a 90% interval (each resample draws 30 of the 90: "
                           "the intervals are those of 30 trials")


_FORKED = """
import math, threading
import numpy as np
from test_importances import study_of
from rnnlab.analysis import importances as module

study = study_of(150, lambda p, rng: -abs(math.log10(p["lr"]) + 3) + rng.normal(0, 0.01))
forks = []
real = module.multiprocessing.get_context
module.multiprocessing.get_context = lambda *kind: forks.extend(kind) or real(*kind)
assert threading.active_count() == 1
frame, note = module.importances_meanwhile(study, study.trials)()
module._LAST.clear()
here, said = module.importances(study, study.trials)
assert forks == ["fork"], forks  # fitted in a child
assert frame.equals(here) and note == said
again, _ = module.importances_meanwhile(study, study.trials)()  # kept: no second child
assert forks == ["fork"] and again.equals(here)
print("ok")
"""


def test_a_large_studys_importances_fitted_in_a_child_are_the_same(tmp_path):
    """Past SAMPLE_CAP complete trials the fits run in a forked child while the curves are read
    (in a fresh process: forking is refused where other threads run, as in this one may); the
    child's answer is the one the fits give here, and it is kept for the next read."""
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    result = subprocess.run([sys.executable, "-c", _FORKED], cwd=here, capture_output=True,
                            text=True, timeout=300,
                            env={**__import__("os").environ,
                                 "PYTHONPATH": f"{here}:{here.parent}"})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
