"""Files rnnlab writes: whole or not at all, with the mode any new file gets, and the process's
umask never read or changed (a tracker's thread may be writing meanwhile)."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest

from rnnlab.errors import RnnlabError
from rnnlab.files import atomic_write

SCRIPT = """
import os, stat, sys
os.umask(0o027)
from rnnlab.files import atomic_write
os.umask = None  # reading or changing the umask from here on would fail
atomic_write("page.html", lambda p: open(p, "w").write("<p>hi</p>"))
atomic_write("private.sbatch", lambda p: open(p, "w").write("#!/bin/bash"), mode=0o600)
print(oct(stat.S_IMODE(os.stat("page.html").st_mode)),
      oct(stat.S_IMODE(os.stat("private.sbatch").st_mode)))
"""


def test_a_file_gets_the_mode_of_any_new_file_without_the_umask_being_touched(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["0o640", "0o600"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html", "private.sbatch"]


def test_a_failed_write_leaves_no_file_at_all(tmp_path):
    def half(path: str) -> None:
        with open(path, "w") as fh:
            fh.write("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(RnnlabError, match="No space left on device"):
        atomic_write(tmp_path / "r.md", half)
    assert list(tmp_path.iterdir()) == []
    atomic_write(tmp_path / "r.md", lambda p: open(p, "w").write("whole"))
    assert (tmp_path / "r.md").read_text() == "whole"
    (tmp_path / "plain").write_text("any new file")
    assert stat.S_IMODE((tmp_path / "r.md").stat().st_mode) == stat.S_IMODE(
        (tmp_path / "plain").stat().st_mode)
