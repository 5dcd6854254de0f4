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


_MAKER = """
import sys
from pathlib import Path
from annbench import tempdirs
root, n = Path(sys.argv[1]), int(sys.argv[2])
made = [tempdirs.make("t-", root) for _ in range(n)]
lost = [str(f) for f in made if not (f / tempdirs.OWNER).is_file()]
print(len(lost))
"""
_SWEEPER = """
import sys, time
from pathlib import Path
from annbench import tempdirs
root, stop = Path(sys.argv[1]), Path(sys.argv[2])
sweeps = 0
while not stop.exists():
    tempdirs.sweep("t-", root)
    sweeps += 1
    if sweeps == 1:
        (stop.parent / "sweeping").touch()
print(sweeps)
"""


def test_a_concurrent_sweeper_never_takes_a_folder_being_made(tmp_path: Path) -> None:
    # issue 16: one process making 3,000 work folders against one sweeping lost 21 of them (the mark was
    # written after the folder appeared, and an empty mark read as a dead owner)
    root, stop = tmp_path / "tmp", tmp_path / "stop"
    root.mkdir()
    sweeper = subprocess.Popen([sys.executable, "-c", _SWEEPER, str(root), str(stop)], stdout=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "sweeping").exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # the maker starts once the sweeper is sweeping
    try:
        maker = subprocess.run([sys.executable, "-c", _MAKER, str(root), "3000"], capture_output=True, text=True,
                               timeout=600, check=True)
    finally:
        stop.touch()
        sweeps = int(sweeper.communicate(timeout=60)[0])
    assert sweeps >= 2  # the sweeper really ran beside the maker
    assert maker.stdout.strip() == "0", maker.stdout  # every folder still there, marked, while its maker lives
    assert not list(root.glob(".staging-*"))


def test_a_staging_folder_of_a_killed_maker_is_swept_after_the_grace(tmp_path: Path) -> None:
    staging = tmp_path / f"{tempdirs.STAGING}t-abc"
    staging.mkdir()
    assert tempdirs.sweep("t-", tmp_path) == []
    past = time.time() - 2 * tempdirs.GRACE_S
    os.utime(staging, (past, past))
    assert tempdirs.sweep("t-", tmp_path) == [staging]
