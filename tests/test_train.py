"""The fit loop: determinism, callbacks, divergence, L2, checkpoints, and a core free of stores."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from rnnlab.core.data import load_data
from rnnlab.train import EPOCH_METRICS, Checkpoint, best_epoch, evaluate, fit

TIMING = {"epoch_time_s", "samples_per_s"}


def _curve(result) -> list[dict[str, float]]:
    """The history without wall-clock figures: what the same seed must repeat exactly."""
    return [{k: v for k, v in h.items() if k not in TIMING} for h in result.history]


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_same_seed_same_curve_bit_for_bit(tiny, cell):
    cfg = tiny({"model.cell": cell, "train.epochs": 2})
    first, second = fit(cfg), fit(cfg)
    assert first.status == second.status == "completed" and first.epochs_run == 2
    assert _curve(first) == _curve(second)  # exact float equality, not approx
    assert _same_weights(first.model, second.model)
    other = fit(tiny({"model.cell": cell, "train.epochs": 2, "train.seed": 1}))
    assert _curve(other) != _curve(first)


def test_callbacks_get_every_metric_each_epoch_and_may_stop(tiny):
    seen = []

    def watch(epoch, metrics):
        seen.append((epoch, dict(metrics)))

    def stop_after_two(epoch, metrics):
        return "enough" if epoch == 2 else None

    result = fit(tiny({"train.epochs": 5}), [watch, stop_after_two])
    assert [e for e, _ in seen] == [1, 2]
    for _, metrics in seen:
        assert set(metrics) == set(EPOCH_METRICS) >= {
            "train_loss", "train_acc", "val_loss", "val_acc", "epoch_time_s", "samples_per_s"}
        assert all(math.isfinite(v) for v in metrics.values())
        assert 0 <= metrics["val_acc"] <= 1 and metrics["samples_per_s"] > 0
    assert (result.status, result.stop_reason, result.epochs_run) == ("stopped", "enough", 2)
    assert result.history == [m for _, m in seen]

    plain = fit(tiny({"train.epochs": 3}), [lambda e, m: e == 1])
    assert plain.status == "stopped" and plain.stop_reason == "stopped at epoch 1"


def test_a_non_finite_loss_ends_the_run_as_diverged(tiny):
    seen = []
    # SGD with a step of 1e36 sends the read-out weights past float32: the loss is inf/nan.
    result = fit(tiny({"train.optimizer": "sgd", "train.lr": 1e36, "train.epochs": 4}),
                 [lambda e, m: seen.append(e)])
    assert result.status == "diverged" and result.diverged_epoch == 1
    assert result.epochs_run == 1 and seen == [1]  # callbacks still see the fatal epoch
    assert not math.isfinite(result.history[0]["train_loss"])
    assert "non-finite training loss at epoch 1" in result.stop_reason
    # the weights are past float32: no finite validation loss to be best, none made up
    assert not math.isfinite(result.history[0]["val_loss"])
    assert result.best("val_loss", maximize=False) is None
    assert result.best_epoch("val_loss", maximize=False) is None


def test_the_best_epoch_is_the_first_at_the_best_finite_value():
    history = [{"m": v} for v in (0.5, math.nan, 0.7, 0.7, math.inf, 0.6)]
    assert best_epoch(history, "m") == 3  # 0.7 twice: the first; inf is no value
    assert best_epoch(history, "m", maximize=False) == 1
    assert best_epoch([{"m": math.nan}], "m") is None and best_epoch([], "m") is None


def test_l2_penalty_is_logged_apart_from_the_data_loss(tiny):
    l2 = 0.05
    result = fit(tiny({"train.l2": l2}))
    h = result.history[0]
    with torch.no_grad():
        expected = 0.5 * l2 * sum(w.pow(2).sum() for w in result.model.weight_matrices()).item()
    assert h["l2_penalty"] == pytest.approx(expected, rel=1e-5) and h["l2_penalty"] > 1
    assert h["train_loss"] < 3  # cross-entropy over 10 classes alone, without the penalty
    assert fit(tiny()).history[0]["l2_penalty"] == 0.0


def test_resume_from_a_checkpoint_repeats_the_uninterrupted_run(tiny, tmp_path):
    cfg = tiny({"train.epochs": 3, "train.checkpoint_every": 1, "model.cell": "lstm"})
    saved: list[Checkpoint] = []
    full = fit(cfg, on_checkpoint=saved.append)
    assert [c.epoch for c in saved] == [1, 2, 3]
    # Held in memory: later epochs must not have changed what epoch 1 handed out.
    resumed = fit(cfg, resume=saved[0])
    assert _curve(resumed) == _curve(full) and _same_weights(resumed.model, full.model)
    assert resumed.history[0] == full.history[0]  # the checkpoint's epoch is not trained again

    # Through a file, the way a tracked trial stores it (weights_only loading).
    path = tmp_path / "checkpoint.pt"
    torch.save(dataclasses.asdict(saved[1]), path)
    again = fit(cfg, resume=Checkpoint(**torch.load(path, weights_only=True)))
    assert _curve(again) == _curve(full) and _same_weights(again.model, full.model)
    assert _curve(fit(cfg, resume=saved[0])) == _curve(full)  # the checkpoint is reusable


def test_preloaded_data_gives_the_same_run(tiny):
    cfg = tiny({"train.epochs": 1})
    assert _curve(fit(cfg, data=load_data(cfg.data))) == _curve(fit(cfg))


def test_keep_best_ends_with_the_best_validation_epochs_weights(tiny):
    config = tiny({"train.epochs": 4, "train.lr": 0.05})  # a high rate: the curve wobbles
    data = load_data(config.data)
    plain = fit(config, data=data)
    best = fit(config, data=data, keep_best=("val_loss", False))
    losses = [h["val_loss"] for h in best.history]
    assert [h["val_loss"] for h in plain.history] == losses  # the same training
    assert best.weights_epoch == losses.index(min(losses)) + 1 and plain.weights_epoch is None
    assert evaluate(best.model, data.val_x, data.val_y)[0] == pytest.approx(min(losses))
    assert evaluate(plain.model, data.val_x, data.val_y)[0] == pytest.approx(losses[-1])
