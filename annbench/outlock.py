"""The results folder's lock: one sweep at a time writes into an `--out` folder.

Owns `<out>/.annbench.lock` and the rule around it. Two sweeps into one folder would both run every
configuration, each overwrite the other's results (the last writer wins, silently) and both record
timings taken while the other competed for the cores. A sweep therefore holds an exclusive `flock` on
that file from before it prepares its data until its last result is written. An flock belongs to the
open file, so the kernel releases it when its process dies however it dies: a SIGKILLed sweep never
leaves a stale lock, and nothing here ever decides that a holder is dead.

The file holds one line naming the holder ("pid 123 on host since 2025-… · scenario small"), written
after the lock is taken and emptied before it is released: a second sweep reads it to say who holds
the folder. The file itself is never removed: removing a locked file lets a third sweep lock a new
file of the same name while the second still waits on the old one, and both would then run.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from annbench.errors import AnnbenchError

LOCK_NAME = ".annbench.lock"
_READ_TRIES = 20  # a holder writes its line just after taking the lock: a reader may look in between

# Locks this process holds, by the lock file's real path → the thread holding it and how many times.
# The command line holds the lock around prepare + the sweep, and `harness.run_sweep` takes it again so
# that a library caller is covered too: that second `hold` in the same thread is a re-entry, not a
# second flock (an flock on a second open file would conflict with the first, even in one process).
_held: dict[str, tuple[int, int]] = {}
_held_guard = threading.Lock()


class FolderBusy(AnnbenchError):
    """Another sweep holds the results folder; the message names it in one line."""


def lock_path(out_dir: Path) -> Path:
    return Path(out_dir) / LOCK_NAME


def holder_line(scenario: str) -> str:
    """What the lock file says about this process while it holds the lock."""
    since = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
    return f"pid {os.getpid()} on {socket.gethostname()} since {since} · scenario {scenario}"


def read_holder(out_dir: Path) -> str:
    """The holder's line as the lock file has it ("" when there is none)."""
    try:
        return lock_path(out_dir).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _try_lock(fd: int, out_dir: Path) -> str | None:
    """Take the lock without waiting: None when taken, else the holder's line.

    An empty line means the holder has just taken the lock and not written its line yet, or is just
    releasing it (it empties the line first): look again, briefly, so that the line names someone and a
    lock being released is taken rather than reported busy."""
    for _ in range(_READ_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return None
        except BlockingIOError:
            line = read_holder(out_dir)
            if line:
                return line
        time.sleep(0.025)
    return "a process that has not written its name yet"


@contextmanager
def hold(out_dir: Path, scenario: str, *, wait: bool = False,
         on_wait: Callable[[str], None] = lambda _m: None) -> Iterator[None]:
    """Hold the lock of `out_dir` for the block.

    Busy: raise FolderBusy naming the holder, or with `wait`, call `on_wait` once with a line naming
    the holder and block until it is released (Ctrl-C interrupts the wait as usual).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(out_dir)
    key = os.path.realpath(path)
    me = threading.get_ident()
    with _held_guard:
        owner = _held.get(key)
        if owner is not None and owner[0] == me:
            _held[key] = (me, owner[1] + 1)
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] = (me, _held[key][1] - 1)
        return

    # O_CREAT without O_TRUNC: the holder's line must not be wiped by a process that does not get the lock.
    # O_CLOEXEC: a run's process (exec'd) never shares the lock. A child forked without exec would share it
    # and keep it held after this process dies; a sweep starts its runs with exec, and its Dask cluster (if
    # any) before it takes the lock.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        holder = _try_lock(fd, out_dir)
        if holder is not None:
            if not wait:
                raise FolderBusy(f"results folder {out_dir} is in use by another sweep ({holder}); wait for it, "
                                 "or pass --wait-for-lock to start when it ends, or use another --out") from None
            on_wait(f"results folder {out_dir} is in use by another sweep ({holder}); waiting for it to end")
            fcntl.flock(fd, fcntl.LOCK_EX)
        _write_line(fd, holder_line(scenario))
        with _held_guard:
            _held[key] = (me, 1)
        try:
            yield
        finally:
            with _held_guard:
                del _held[key]
            _write_line(fd, "")  # before the unlock: the next holder's line is never wiped
    finally:
        os.close(fd)  # releases the flock


def _write_line(fd: int, line: str) -> None:
    """Replace the lock file's content. The line only informs: a full or failing disk must not stop a sweep
    that holds the lock (the lock is the flock, not the text)."""
    data = (line + "\n").encode() if line else b""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except OSError:
        pass
