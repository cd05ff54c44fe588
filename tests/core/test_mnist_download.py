"""The download path: a real HTTP server on 127.0.0.1 serves the MNIST files as a mirror.

With no data folder, ``load_raw("mnist")`` fills the user cache from the mirrors named in
``$RNNLAB_MNIST_MIRRORS``, checking each file's MD5 before it takes its name. A corrupt file is
never used and never left in the cache as if it were good.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rnnlab.core.mnist import MNIST_MD5, cache_dir, load_raw
from rnnlab.errors import RnnlabError

CORRUPT = "train-labels-idx1-ubyte"  # small, and the second file fetched: one good file precedes


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def mirrors(mnist_dir, tmp_path_factory):
    """``good`` and ``bad`` mirror URLs on a local server; ``bad`` has one flipped byte."""
    root = tmp_path_factory.mktemp("mirror-root")
    for name in ("good", "bad"):
        (root / name).mkdir()
        for stem in MNIST_MD5:
            (root / name / f"{stem}.gz").symlink_to(mnist_dir / f"{stem}.gz")
    (root / "bad" / f"{CORRUPT}.gz").unlink()
    (root / "bad" / f"{CORRUPT}.gz").write_bytes(_corrupted(mnist_dir / f"{CORRUPT}.gz"))
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    load_raw.cache_clear()
    yield {"good": f"{base}/good/", "bad": f"{base}/bad/", "missing": f"{base}/missing/"}
    load_raw.cache_clear()
    server.shutdown()
    server.server_close()
    thread.join()


def _corrupted(path: Path) -> bytes:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _cache() -> Path:
    return cache_dir() / "mnist"


def _cache_all_but(mnist_dir: Path, stem: str) -> None:
    """Put good copies of the other three files in the cache, so only ``stem`` is fetched."""
    _cache().mkdir(parents=True)
    for other in MNIST_MD5:
        if other != stem:
            shutil.copy(mnist_dir / f"{other}.gz", _cache())


def _use(monkeypatch, *urls: str) -> None:
    monkeypatch.setenv("RNNLAB_MNIST_MIRRORS", ",".join(urls))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the loopback server, never a proxy


def test_download_fills_the_cache_with_verified_files(mirrors, monkeypatch):
    _use(monkeypatch, mirrors["good"])
    raw = load_raw("mnist")
    assert raw.train_x.shape == (60000, 784) and raw.test_x.shape == (10000, 784)
    assert raw.provenance["data.origin"] == f"cache:{_cache()}"
    assert sorted(os.listdir(_cache())) == sorted(f"{stem}.gz" for stem in MNIST_MD5)
    for stem, md5 in MNIST_MD5.items():
        assert _md5(_cache() / f"{stem}.gz") == md5 == raw.provenance[f"data.md5.{stem}"]

    # A second load uses the cache: with every mirror gone it still works.
    load_raw.cache_clear()
    _use(monkeypatch, mirrors["missing"])
    assert load_raw("mnist").provenance["data.origin"] == f"cache:{_cache()}"


def test_a_corrupt_download_is_rejected_and_not_kept(mirrors, monkeypatch):
    _use(monkeypatch, mirrors["bad"])
    with pytest.raises(RnnlabError, match=f"could not download {CORRUPT}.gz") as info:
        load_raw("mnist")
    assert "\n" not in str(info.value)
    left = os.listdir(_cache())
    assert f"{CORRUPT}.gz" not in left
    for name in left:  # whatever remains is a complete, verified original; no partial files
        assert name.endswith(".gz") and _md5(_cache() / name) == MNIST_MD5[name[:-3]]


def test_the_next_mirror_is_tried_after_a_bad_one(mirrors, mnist_dir, monkeypatch):
    _cache_all_but(mnist_dir, CORRUPT)
    _use(monkeypatch, mirrors["missing"], mirrors["bad"], mirrors["good"])
    load_raw("mnist")
    assert _md5(_cache() / f"{CORRUPT}.gz") == MNIST_MD5[CORRUPT]


def test_a_corrupt_cached_file_is_downloaded_again(mirrors, mnist_dir, monkeypatch):
    _cache_all_but(mnist_dir, CORRUPT)
    (_cache() / f"{CORRUPT}.gz").write_bytes(_corrupted(mnist_dir / f"{CORRUPT}.gz"))
    _use(monkeypatch, mirrors["good"])
    raw = load_raw("mnist")
    assert _md5(_cache() / f"{CORRUPT}.gz") == MNIST_MD5[CORRUPT]
    assert raw.provenance[f"data.md5.{CORRUPT}"] == MNIST_MD5[CORRUPT]


def test_a_corrupt_cached_file_is_removed_even_when_no_mirror_answers(
        mirrors, mnist_dir, monkeypatch):
    _cache().mkdir(parents=True)
    (_cache() / f"{CORRUPT}.gz").write_bytes(_corrupted(mnist_dir / f"{CORRUPT}.gz"))
    _use(monkeypatch, mirrors["missing"])
    with pytest.raises(RnnlabError, match="could not download"):
        load_raw("mnist")
    assert f"{CORRUPT}.gz" not in os.listdir(_cache())
