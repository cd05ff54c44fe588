"""The fit loop: one config in, per-epoch metrics out to callbacks, a result back.

It knows nothing of Optuna or MLflow. Callbacks receive ``(epoch, metrics)`` after every epoch
and may ask to stop by returning something truthy (a string is kept as the reason); the study
turns that into pruning, tracking into MLflow metrics.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rnnlab.core.data import Splits, load_data
from rnnlab.core.models import RecurrentClassifier, build_model
from rnnlab.core.spec import RunConfig
from rnnlab.errors import RnnlabError

EpochCallback = Callable[[int, dict[str, float]], Any]
# What ``fit`` reports after every epoch, in this order.
EPOCH_METRICS = ("train_loss", "l2_penalty", "train_acc", "val_loss", "val_acc",
                 "epoch_time_s", "samples_per_s")


@dataclass
class Checkpoint:
    """Everything needed to continue a run after ``epoch`` as if it had never stopped."""

    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: torch.Tensor  # state of the batch-order generator
    history: list[dict[str, float]]


@dataclass
class FitResult:
    """What a run produced. ``status`` is ``completed``, ``stopped`` or ``diverged``."""

    status: str
    history: list[dict[str, float]]
    model: RecurrentClassifier
    data_info: dict[str, str]
    device: str
    stop_reason: str | None = None
    diverged_epoch: int | None = None
    weights_epoch: int | None = None  # the epoch whose weights ``model`` holds (None: the last)

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    def best_epoch(self, metric: str = "val_acc", maximize: bool = True) -> int | None:
        """The first epoch where ``metric`` is at its best finite value (:func:`best_epoch`)."""
        return best_epoch(self.history, metric, maximize)

    def best(self, metric: str = "val_acc", maximize: bool = True) -> float | None:
        """The best finite value of ``metric`` over the epochs (None: none is finite)."""
        epoch = self.best_epoch(metric, maximize)
        return None if epoch is None else self.history[epoch - 1][metric]

    def final(self, metric: str = "val_acc") -> float | None:
        return self.history[-1][metric] if self.history else None


def best_epoch(history: Sequence[dict[str, float]], metric: str,
               maximize: bool = True) -> int | None:
    """The first epoch (counted from 1) where ``metric`` is at its best finite value; None when
    no value is finite."""
    sign = 1.0 if maximize else -1.0
    finite = [(sign * h[metric], -epoch) for epoch, h in enumerate(history, start=1)
              if math.isfinite(h[metric])]
    return -max(finite)[1] if finite else None


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else CPU; an absent CUDA device is a user error."""
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RnnlabError(f"train.device {name}: no CUDA device here; use auto or cpu")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise RnnlabError(f"train.device {name}: only {torch.cuda.device_count()} GPU(s)")
    if device.type == "cuda":
        # Without a fixed cuBLAS workspace a run on a GPU need not repeat bit for bit
        # (PyTorch's reproducibility notes); cuBLAS reads it when it starts, before any
        # training step. A value the user set is kept.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return device


def auto_gpus(device: str) -> int:
    """How many GPUs workers of a ``train.device`` setting spread over: every visible one for
    ``auto``, none for an explicit device (its workers all go there)."""
    if device != "auto" or not torch.cuda.is_available():
        return 0
    return torch.cuda.device_count()


def free_device_memory() -> None:
    """Give cached GPU memory back, so that a trial after an out-of-memory one starts clean."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def make_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "rmsprop":  # the tutorial's RMSprop: decay 0.99, eps 1e-8
        return torch.optim.RMSprop(params, lr=t.lr, alpha=0.99, eps=1e-8)
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr)
    return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum)


@torch.inference_mode()
def evaluate(model: RecurrentClassifier, x: torch.Tensor, y: torch.Tensor,
             batch: int = 2000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on (x, y)."""
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for i in range(0, len(x), batch):
        logits = model(x[i : i + batch]).float()
        loss += F.cross_entropy(logits, y[i : i + batch], reduction="sum")
        correct += (logits.argmax(1) == y[i : i + batch]).sum()
    model.train()
    return loss.item() / len(x), correct.item() / len(x)


def fit(config: RunConfig, callbacks: Sequence[EpochCallback] = (), *,
        data: Splits | None = None, resume: Checkpoint | None = None,
        on_checkpoint: Callable[[Checkpoint], None] | None = None,
        keep_best: tuple[str, bool] | None = None) -> FitResult:
    """Train the classifier a config describes.

    Args:
        config: the resolved run config.
        callbacks: called as ``cb(epoch, metrics)`` after every epoch (epochs count from 1);
            a truthy return stops the run (a string return is kept as the reason).
        data: splits already on the right device (loaded from ``config.data`` when omitted).
        resume: a checkpoint to continue from; its epochs are not trained again.
        on_checkpoint: receives a :class:`Checkpoint` every ``train.checkpoint_every`` epochs.
        keep_best: ``(metric, maximize)``: end with the weights of the epoch where this
            validation metric was best (early stopping's choice), not the last epoch's.

    Returns:
        A :class:`FitResult`; a non-finite training loss ends it with status ``diverged``.

    Raises:
        RnnlabError: the data or device the config names is not available.
    """
    t = config.train
    device = resolve_device(t.device)
    if t.threads:
        torch.set_num_threads(t.threads)
    data = data if data is not None else load_data(config.data, device)
    torch.manual_seed(t.seed)  # weights; batch order has its own generator below
    model = build_model(config.model, input_size=config.data.patch).to(device)
    optimizer = make_optimizer(config, model.parameters())
    order = torch.Generator().manual_seed(t.seed)
    history: list[dict[str, float]] = []
    if resume is not None:
        model.load_state_dict(resume.model)
        # A copy: the optimizer adopts the given state tensors and would update the checkpoint.
        optimizer.load_state_dict(copy.deepcopy(resume.optimizer))
        order.set_state(resume.rng)
        history = [dict(h) for h in resume.history]
    weights = model.weight_matrices()
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if t.precision == "bf16"
                else contextlib.nullcontext())
    n = len(data.train_x)
    result = FitResult("completed", history, model, data.info, str(device))
    first = len(history) + 1  # the first epoch this call trains
    best: tuple[int, dict] | None = None  # (epoch, weights) under keep_best

    for epoch in range(first, t.epochs + 1):
        started = time.perf_counter()
        perm = torch.randperm(n, generator=order).to(device)
        data_loss = torch.zeros((), device=device)  # summed on the device: one sync per epoch
        correct = torch.zeros((), device=device, dtype=torch.long)
        for i in range(0, n, t.batch_size):
            idx = perm[i : i + t.batch_size]
            xb, yb = data.train_x[idx], data.train_y[idx]  # (B, steps, patch), (B,)
            with autocast:
                logits = model(xb).float()
            loss = F.cross_entropy(logits, yb)
            total = loss
            if t.l2:  # l2/2 * sum(w**2) over weight matrices: the same for every optimizer
                total = loss + 0.5 * t.l2 * sum(w.pow(2).sum() for w in weights)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if t.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            optimizer.step()
            data_loss += loss.detach() * len(idx)
            correct += (logits.argmax(1) == yb).sum()
        train_time = time.perf_counter() - started
        train_loss = data_loss.item() / n
        val_loss, val_acc = evaluate(model, data.val_x, data.val_y)
        with torch.no_grad():
            penalty = 0.5 * t.l2 * sum(w.pow(2).sum() for w in weights).item() if t.l2 else 0.0
        metrics = {
            "train_loss": train_loss, "l2_penalty": penalty, "train_acc": correct.item() / n,
            "val_loss": val_loss, "val_acc": val_acc,
            "epoch_time_s": time.perf_counter() - started, "samples_per_s": n / train_time,
        }
        history.append(metrics)
        if keep_best and best_epoch(history[first - 1:], *keep_best) == epoch - first + 1:
            best = (epoch, copy.deepcopy(model.state_dict()))
        if not math.isfinite(train_loss):
            result.status, result.diverged_epoch = "diverged", epoch
            result.stop_reason = f"non-finite training loss at epoch {epoch}"
        if on_checkpoint and t.checkpoint_every and result.status != "diverged" and (
                epoch % t.checkpoint_every == 0 or epoch == t.epochs):
            # Copies: state_dict() returns the live tensors, which the next step changes in place.
            on_checkpoint(Checkpoint(epoch, copy.deepcopy(model.state_dict()),
                                     copy.deepcopy(optimizer.state_dict()),
                                     order.get_state(), [dict(h) for h in history]))
        answers = [cb(epoch, metrics) for cb in callbacks]
        if result.status == "diverged":
            break
        stop = next((a for a in answers if a), None)
        if stop:
            result.status = "stopped"
            result.stop_reason = stop if isinstance(stop, str) else f"stopped at epoch {epoch}"
            break
    if best is not None:
        result.weights_epoch = best[0]
        model.load_state_dict(best[1])
    return result
