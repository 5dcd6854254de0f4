"""Temp folders that a SIGKILL cannot leak: each records its owner, and the next start sweeps the orphans.

A killed process runs no cleanup, so a run killed on timeout, or a sweep the user SIGKILLs, would leave
its temp folders (a run's work folder with a LanceDB directory inside, a PostgreSQL data folder) behind
for good. A folder made here holds an owner mark, "<pid> <process create time>" (a reused pid cannot pass
for the owner); `sweep` removes every folder of a prefix whose owner is gone. Used by the harness for
each run's work folder and by the pgvector adapter for its servers' data folders.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

OWNER = "annbench.owner"
GRACE_S = 60.0  # a folder without its mark yet may be being made: left alone this long


def make(prefix: str, dir: Path | None = None) -> Path:
    """A fresh folder `dir`/`prefix`XXXX (dir: the temp folder) marked as this process's."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=dir))
    me = psutil.Process()
    (folder / OWNER).write_text(f"{me.pid} {me.create_time()}")
    return folder


def owner_alive(mark: str) -> bool:
    try:
        pid, created = mark.split()
        return abs(psutil.Process(int(pid)).create_time() - float(created)) < 1.0
    except (ValueError, psutil.Error):
        return False


def sweep(prefix: str, dir: Path | None = None,
          before_remove: Callable[[Path], None] = lambda _folder: None, unmarked: bool = True) -> list[Path]:
    """Remove the folders `dir`/`prefix`* whose owner is gone; `before_remove` runs first on each (to stop a
    server still using it). A folder without a mark is removed after GRACE_S, or never if not `unmarked`
    (when another program, e.g. another annbench version, may make folders of that prefix without one).
    Returns what was removed."""
    removed = []
    for folder in Path(dir or tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            mark = (folder / OWNER).read_text()
        except OSError:
            if not unmarked:
                continue
            with contextlib.suppress(OSError):
                if time.time() - folder.stat().st_mtime < GRACE_S:
                    continue
            mark = ""
        if mark and owner_alive(mark):
            continue
        before_remove(folder)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed
