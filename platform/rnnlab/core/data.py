"""MNIST as sequences of pixel patches: splits and normalisation, as tensors on a device.

Validation images are carved from the training images; the test images are only for scoring
chosen configs. ``mnist-5k`` has no official test set, so a fixed 1000 of its images are held
out as one. Where the images come from is :mod:`rnnlab.core.mnist`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from rnnlab.core.mnist import Raw, load_raw
from rnnlab.core.spec import PIXELS, DataConfig
from rnnlab.errors import RnnlabError

MNIST5K_TEST_SIZE = 1000
_MNIST5K_TEST_SEED = 20150403  # fixed forever: the held-out test images of mnist-5k never move
TUTORIAL_TRAIN, TUTORIAL_VAL = 5000, 1000


@dataclass
class Splits:
    """Train/validation/test tensors, shape (N, steps, patch), already on the target device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    info: dict[str, str] = field(default_factory=dict)


def check(cfg: DataConfig) -> None:
    """Find (downloading if need be) and verify the data, and check that the split fits,
    without building any tensor.

    Raises:
        RnnlabError: the data cannot be found or is corrupt, or the split does not fit.
    """
    _split_indices(cfg, load_raw(cfg.source, cfg.dir))


def fixed_subset(cfg: DataConfig) -> str | None:
    """Why every ``split_seed`` trains on the same images (the tutorial's fixed split, or a
    budget of every image there is); None when each draws its own training subset.

    Raises:
        RnnlabError: the data cannot be found or is corrupt.
    """
    if cfg.split == "tutorial":
        return "the tutorial's split is fixed (its first 5000 training images)"
    raw = load_raw(cfg.source, cfg.dir)
    pool = len(raw.train_x) - (MNIST5K_TEST_SIZE if raw.test_x is None else 0)
    if cfg.train_size + cfg.val_size >= pool:
        return (f"the study trains and validates on all {pool} images {cfg.source} has for "
                "them")
    return None


def _split_indices(cfg: DataConfig, raw: Raw) -> tuple[np.ndarray, ...]:
    """Indices (into the train pool and test pool) of train, val and test; disjoint, fixed."""
    n = len(raw.train_x)
    if cfg.split == "tutorial":
        if raw.test_x is None:
            raise RnnlabError(
                "data.split tutorial validates on the official test images; "
                "use data.source: mnist (mnist-5k has none)"
            )
        # The tutorial: first 5000 training images, first 1000 test images to validate.
        # Scoring later uses the rest of the test set, so it never overlaps validation.
        return (np.arange(TUTORIAL_TRAIN), ("test", np.arange(TUTORIAL_VAL)),
                np.arange(TUTORIAL_VAL, len(raw.test_x)))
    if raw.test_x is None:  # mnist-5k: hold a fixed test set out of the 5000 first
        perm = np.random.default_rng(_MNIST5K_TEST_SEED).permutation(n)
        test_idx, pool = np.sort(perm[:MNIST5K_TEST_SIZE]), perm[MNIST5K_TEST_SIZE:]
    else:
        test_idx, pool = np.arange(len(raw.test_x)), np.arange(n)
    need = cfg.train_size + cfg.val_size
    if need > len(pool):
        raise RnnlabError(
            f"data.train_size + data.val_size = {need} exceeds the {len(pool)} images "
            f"{cfg.source} has for training and validation; lower them"
        )
    pool = np.random.default_rng(cfg.split_seed).permutation(pool)
    return pool[cfg.val_size:need], ("train", pool[:cfg.val_size]), test_idx


def normalisation_stats(cfg: DataConfig, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) such that ``(x - mean) / scale`` is the normalised image; train only."""
    x = train.astype(np.float64)
    if cfg.normalisation == "none":
        return np.zeros(PIXELS), np.full(PIXELS, 255.0)
    if cfg.normalisation == "global":
        return np.full(PIXELS, x.mean()), np.full(PIXELS, x.std())
    mean, std = x.mean(axis=0), x.std(axis=0)
    if cfg.normalisation == "per_pixel_tutorial":
        return mean, std + 1e-5  # exactly the tutorial; constant pixels explode on new images
    return mean, np.maximum(std, cfg.std_floor * x.std())


def load_data(cfg: DataConfig, device: torch.device | str = "cpu") -> Splits:
    """Build the normalised train/val/test sequence tensors on ``device``.

    Args:
        cfg: the data section of a run config.
        device: where the tensors live for the whole run.

    Returns:
        :class:`Splits` with tensors of shape (N, 784 // patch, patch) and labels (N,).

    Raises:
        RnnlabError: the data cannot be found or is corrupt, or the split does not fit.
    """
    raw = load_raw(cfg.source, cfg.dir)
    train_idx, (val_pool, val_idx), test_idx = _split_indices(cfg, raw)
    test_x = raw.test_x if raw.test_x is not None else raw.train_x
    test_y = raw.test_y if raw.test_y is not None else raw.train_y
    val_x = (test_x if val_pool == "test" else raw.train_x)[val_idx]
    val_y = (test_y if val_pool == "test" else raw.train_y)[val_idx]
    train_x = raw.train_x[train_idx]
    mean, scale = normalisation_stats(cfg, train_x)

    def seq(x: np.ndarray) -> torch.Tensor:
        z = ((x.astype(np.float64) - mean) / scale).astype(np.float32)
        return torch.from_numpy(z.reshape(len(x), cfg.steps, cfg.patch)).to(device)

    def lab(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(y.astype(np.int64)).to(device)

    test_set = {
        ("mnist", "tutorial"): "official MNIST test images 1000-9999 (0-999 validate)",
        ("mnist", "holdout"): "official MNIST test set (10000 images)",
        ("mnist-5k", "holdout"): f"{MNIST5K_TEST_SIZE} images held out of mnist-5k (fixed)",
    }[(cfg.source, cfg.split)]
    info = dict(raw.provenance)
    info.update({
        "data.source": cfg.source, "data.split": cfg.split, "data.test_set": test_set,
        "data.sizes": f"train={len(train_idx)} val={len(val_idx)} test={len(test_idx)}",
    })
    return Splits(seq(train_x), lab(raw.train_y[train_idx]), seq(val_x), lab(val_y),
                  seq(test_x[test_idx]), lab(test_y[test_idx]), info)


class SplitsCache:
    """The splits of the last data config asked for: a worker or a report trains many configs
    that share their data. One config at a time keeps memory flat."""

    def __init__(self) -> None:
        self._key: tuple[str, str] | None = None
        self._splits: Splits | None = None

    def get(self, cfg: DataConfig, device: torch.device | str) -> Splits:
        key = (cfg.model_dump_json(), str(device))
        if key != self._key:
            self._key, self._splits = None, None  # free the old tensors before loading
            self._splits, self._key = load_data(cfg, device), key
        return self._splits
