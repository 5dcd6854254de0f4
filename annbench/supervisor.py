"""One run's task executed on this machine: a fresh `annbench.replay` subprocess, supervised.

Owns the task (`Task`: the run's id, its workload — annbench.workload — its limits, plain values),
the run's private work folder and environment (threads, TMPDIR), and the supervision: a time limit, a
memory limit, crash containment (a segfault or an abort is the run's status, not the sweep's), the child
dying with the process that started it, and Ctrl-C. `execute_task` returns an `Execution`: what only
the executing machine knows (status, error, the child's measurements, start, wall time, machine, library
versions). Every executor (annbench.executors) calls it, on this machine or on a Dask worker; the sweep
(annbench.harness) makes the tasks and turns executions into result records, and imports neither.

A task travels to a Dask worker pickled; pickle restores a dataclass's attributes without calling its
constructor, so a worker with another annbench version still reads `annbench_version` and says so.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import psutil

import annbench
from annbench import results, tempdirs
from annbench.adapters.base import SHARED_TMP_ENV, shared_tmp
from annbench.workload import Workload

POLL_S = 0.05  # how often a running child's time and memory are checked
_WORK_PREFIX = "annbench-run-"


class StopFlag(Protocol):
    """What `execute_task` polls to abandon a run: a threading.Event, or a Dask task's cancellation."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class Task:
    """Everything a run needs to execute, wherever it executes: a few hundred bytes of plain values.

    The dataset, ground truth and op log travel as paths into the prepared cache (in the workload), never
    as arrays: a remote worker reads them from the shared folder.
    """

    run_id: str
    workload: Workload
    timeout_s: float
    max_memory_bytes: int | None = None
    # the family's `Adapter.distributions`: the libraries whose versions on the executing machine are recorded
    distributions: tuple[str, ...] = ()
    annbench_version: str = field(default=annbench.__version__)


@dataclass
class Execution:
    """What executing a task on some machine gave: its status and error, what the run's process measured
    (checked on arrival: results.Measurements), and what only that machine knows (start, wall time,
    machine, library versions). The sweep turns it into the run's record (harness.make_record)."""

    started_at: str
    wall_seconds: float
    status: str  # ok | failed | timeout
    error: str | None
    measurements: results.Measurements | None = None
    machine: results.Machine = field(default_factory=results.Machine)
    libraries: dict[str, str] = field(default_factory=dict)


def execute_task(task: Task, stop: StopFlag | None = None) -> Execution:
    """Run one task's replay in a fresh, supervised subprocess on this machine; return what it gave.

    Raises KeyboardInterrupt (child killed) on stop.
    """
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    status, error, measured = "ok", None, None
    missing = [p for p in task.workload.paths() if not Path(p).exists()]
    if task.annbench_version != annbench.__version__:
        status, error = "failed", (f"annbench {annbench.__version__} here, {task.annbench_version} in the "
                                   "sweep: install the same version on every machine")
    elif missing:  # a worker of a cluster that does not share the client's folders
        status, error = "failed", (f"{missing[0]} is not readable on {platform.node()}: the cache "
                                   "(--out/.cache or --cache) must be on a path every machine shares")
    else:
        status, error, measured = _replay(task.workload, task.timeout_s, task.max_memory_bytes, stop)
    return Execution(started.isoformat(), time.perf_counter() - t0, status, error, measured,
                     results.Machine(**results.machine_info()), results.library_versions(task.distributions))


def failed_execution(error: str) -> Execution:
    """A run that never reported back (its task or its worker was lost): no machine to name."""
    return Execution(datetime.now(timezone.utc).isoformat(), 0.0, "failed", error)


def replay_env(work_dir: Path, threads: int) -> dict[str, str]:
    """The run's environment: this interpreter's path, a private TMPDIR inside its work folder, its threads."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    # The run's own TMPDIR lies inside its work folder and goes with it, even when the run is killed
    # (a LanceDB directory, saved indexes); caches meant to outlive a run use the shared one.
    (work_dir / "tmp").mkdir(exist_ok=True)
    env[SHARED_TMP_ENV] = str(shared_tmp())
    env["TMPDIR"] = str(work_dir / "tmp")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def _replay(workload: Workload, timeout_s: float, max_memory_bytes: int | None,
            stop: StopFlag | None) -> tuple[str, str | None, results.Measurements | None]:
    status, error, measured = "ok", None, None
    # work folders of SIGKILLed sweeps; an unmarked one may be a running older annbench's: left alone
    tempdirs.sweep(_WORK_PREFIX, unmarked=False)
    work_dir = tempdirs.make(_WORK_PREFIX)
    try:
        out_path = work_dir / "payload.json"
        workload_path = work_dir / "workload.json"
        workload.dump(workload_path)
        log_path = work_dir / "log.txt"
        env = replay_env(work_dir, workload.threads)
        prctl = _prctl()  # resolved here: the child, forked from a possibly threaded process, must not dlopen
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "annbench.replay", str(workload_path), str(out_path)],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True, preexec_fn=lambda: _die_with_parent(prctl))
            try:
                rc, status, error = _supervise(proc, timeout_s, max_memory_bytes, stop)
            except BaseException:
                _kill(proc)  # Ctrl-C: the child must not outlive the sweep
                raise
        if status == "ok":
            if rc != 0:
                status, error = "failed", _describe_exit(rc, log_path)
            elif not out_path.exists():
                status, error = "failed", "the run exited without writing its measurements"
            else:
                try:
                    measured = results.decode(results.Measurements, json.loads(out_path.read_text()),
                                              "the run's measurements")
                except (ValueError, results.ResultError) as e:  # a bug of the run's process: its failure
                    status, error = "failed", str(e).splitlines()[0][:300]
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return status, error, measured


def _supervise(proc: subprocess.Popen, timeout_s: float, max_memory_bytes: int | None,
               stop: StopFlag | None = None) -> tuple[int | None, str, str | None]:
    """Wait for the child, killing it past its time limit or memory limit: (exit code, status, error)."""
    deadline = time.monotonic() + timeout_s
    watched = psutil.Process(proc.pid)
    while True:
        try:
            return proc.wait(timeout=POLL_S), "ok", None
        except subprocess.TimeoutExpired:
            pass
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt  # the caller kills the child
        if time.monotonic() > deadline:
            _kill(proc)
            return None, "timeout", f"no result after the time limit of {timeout_s:g} s; killed"
        if max_memory_bytes is not None:
            try:
                rss = watched.memory_info().rss
            except psutil.Error:  # exited between the two calls: the next wait() reaps it
                continue
            if rss > max_memory_bytes:
                _kill(proc)
                return None, "failed", (f"memory limit exceeded: RSS {rss / 2**30:.2f} GiB > "
                                        f"--max-memory-gib {max_memory_bytes / 2**30:g}; killed")


def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up in the parent: loading a library after fork() can deadlock a threaded parent."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: an orphaned run still ends at its own time limit


def _die_with_parent(prctl: Callable[..., int] | None) -> None:
    """In the child, before exec: ask Linux to SIGKILL it if the sweep dies (even by SIGKILL).

    Linux sends the signal when the thread that started the child ends: the sweep's main thread, or the
    Dask worker thread that supervises the run, which stays in `_supervise` for the child's whole life.
    """
    if prctl is not None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _describe_exit(rc: int, log_path: Path) -> str:
    if rc < 0:
        try:
            what = f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            what = f"killed by signal {-rc}"
    else:
        what = f"exited with status {rc}"
    lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln or "error" in ln or "Assertion" in ln or "abort" in ln.lower()]
    tail = (errors or lines)[-1].strip() if lines else ""
    return f"the run {what}" + (f": {tail[:400]}" if tail else "")
