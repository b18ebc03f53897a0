"""Fixtures shared by the tests that start a local Ray through the ``ablate`` command line."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest


def _pids_mentioning(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def ray_tmp():
    """A private, short RAY_TMPDIR (unix socket paths are limited to ~107 characters). Every Ray
    process started under it names it on its command line; afterwards none may be left running."""
    path = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    yield path
    deadline = time.monotonic() + 60
    while _pids_mentioning(path) and time.monotonic() < deadline:
        time.sleep(1)
    left = _pids_mentioning(path)
    for pid in left:  # ours: their command lines name our private RAY_TMPDIR
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    shutil.rmtree(path, ignore_errors=True)
    assert not left, f"Ray processes still running after the sweep: {left}"
