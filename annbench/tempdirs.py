"""Temp folders that a SIGKILL cannot leak: each records its owner, and the next start sweeps the orphans.

A killed process runs no cleanup, so a run killed on timeout, or a sweep the user SIGKILLs, would leave
its temp folders (a run's work folder with a LanceDB directory inside, a PostgreSQL data folder) behind
for good. A folder made here holds an owner mark, "<pid> <process create time>" (a reused pid cannot pass
for the owner); `sweep` removes every folder of a prefix whose owner is gone. Used by the harness for
each run's work folder and by the pgvector adapter for its servers' data folders.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

OWNER = "annbench.owner"
STAGING = ".staging-"  # a folder being made and marked: never a sweep's match, until it is renamed
GRACE_S = 60.0  # a folder without its mark yet may be being made: left alone this long


def make(prefix: str, dir: Path | None = None) -> Path:
    """A fresh folder `dir`/`prefix`XXXX (dir: the temp folder) marked as this process's.

    The folder appears under its name already marked: it is made, and marked, under a staging name that
    `sweep` never matches, then renamed (atomic). A sweeper in another process that found the folder
    between its creation and its mark took it for an orphan and removed it (21 of 3,000 folders lost to
    one concurrent sweeper, and the Dask test's now-and-then FileNotFoundError)."""
    base = Path(dir or tempfile.gettempdir())
    me = psutil.Process()
    while True:
        staging = Path(tempfile.mkdtemp(prefix=STAGING + prefix, dir=base))
        (staging / OWNER).write_text(f"{me.pid} {me.create_time()}")
        folder = base / (prefix + staging.name[len(STAGING + prefix):])
        try:
            os.rename(staging, folder)  # fails if the name is taken (a non-empty folder): pick another
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            continue
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
    server still using it). A folder without a readable mark is removed after GRACE_S, or never if not
    `unmarked` (when another program, e.g. another annbench version, may make folders of that prefix
    without one). Staging folders of a maker killed before its rename go after GRACE_S too.
    Returns what was removed."""
    base = Path(dir or tempfile.gettempdir())
    removed = []
    for folder in base.glob(f"{STAGING}{prefix}*"):
        if _older_than_grace(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    for folder in base.glob(f"{prefix}*"):
        try:
            mark = (folder / OWNER).read_text()
        except OSError:
            mark = ""
        if mark and owner_alive(mark):
            continue
        if not mark or not _parses(mark):
            # no mark (an older annbench's folder, or not ours), or one we cannot read: not evidence of a
            # dead owner, so only after the grace period, and only if folders of this prefix are all ours
            if not unmarked or not _older_than_grace(folder):
                continue
        before_remove(folder)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _parses(mark: str) -> bool:
    parts = mark.split()
    try:
        return len(parts) == 2 and int(parts[0]) > 0 and float(parts[1]) > 0
    except ValueError:
        return False


def _older_than_grace(folder: Path) -> bool:
    try:
        return time.time() - folder.stat().st_mtime >= GRACE_S
    except OSError:
        return False  # gone already
