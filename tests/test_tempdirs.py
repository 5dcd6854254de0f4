"""tempdirs: a marked folder survives while its owner lives and is swept once it is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from annbench import tempdirs


def test_sweep_removes_only_orphans(tmp_path: Path) -> None:
    mine = tempdirs.make("t-", tmp_path)
    # a folder made by a process that has exited since
    code = f"from annbench import tempdirs; from pathlib import Path; tempdirs.make('t-', Path({str(tmp_path)!r}))"
    subprocess.run([sys.executable, "-c", code], check=True)
    (orphan,) = [p for p in tmp_path.glob("t-*") if p != mine]
    # a live pid with another start time is a reused pid, not the owner
    reused = tmp_path / "t-reused"
    reused.mkdir()
    (reused / tempdirs.OWNER).write_text(f"{os.getpid()} 1.0")
    unmarked_old, unmarked_new = tmp_path / "t-old", tmp_path / "t-new"
    unmarked_old.mkdir()
    unmarked_new.mkdir()
    past = time.time() - 2 * tempdirs.GRACE_S
    os.utime(unmarked_old, (past, past))
    seen = []
    assert sorted(tempdirs.sweep("t-", tmp_path, seen.append, unmarked=False)) == sorted([orphan, reused])
    assert sorted(seen) == sorted([orphan, reused])
    assert mine.is_dir() and unmarked_old.is_dir() and unmarked_new.is_dir()
    assert tempdirs.sweep("t-", tmp_path) == [unmarked_old]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, "t-new"])
