"""The fork pool that draws a report's figures in parallel.

Owns `run_tasks`: call each of a list of independent, argument-free tasks and return their results in
order — in forked worker processes when there are several cores and several tasks, else here, one after
another. Drawing and saving the figures (the layout runs once per format) is nearly all of a report's
time, and each figure is independent of the others.

Why fork, and why not `ProcessPoolExecutor`: a task holds the configurations and runs it draws
(megabytes for a big sweep). A forked worker inherits them, so nothing is pickled on the way in: the
tasks are the worker function's own argument, passed through the fork, and only a task's index goes
down a pipe and its (small) result comes back. `ProcessPoolExecutor` pickles every call's arguments, so
its workers could find the tasks only through module-level state. Nothing here is module state.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

T = TypeVar("T")


class WorkerError(RuntimeError):
    """A task failed in a forked worker (its traceback is the message), or the worker died."""


def available_cores() -> int:
    """The cores this process may run on (its affinity, where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_tasks(tasks: Sequence[Callable[[], T]], workers: int | None = None) -> list[T]:
    """Each task's result, in order. `workers`: processes to use (None: one per core; 1: in this process).

    A task that raises in a worker raises the same exception here (its worker's traceback as the cause);
    the other workers are stopped.
    """
    n = min(workers or available_cores(), len(tasks))
    # lancedb's runtime thread re-starts itself in every forked child and warns on stderr: a process that
    # loaded it (never `annbench plot`; a test session may) runs one task after another
    if n < 2 or "fork" not in mp.get_all_start_methods() or "lancedb" in sys.modules:
        return [task() for task in tasks]
    return _forked(tasks, n)


def _forked(tasks: Sequence[Callable[[], T]], n: int) -> list[T]:
    ctx = mp.get_context("fork")
    procs: list[Any] = []
    conns: list[Connection] = []
    results: list[Any] = [None] * len(tasks)
    failed = True
    try:
        for _ in range(n):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(tasks, there, here), daemon=True)
            proc.start()
            there.close()  # the worker's end lives in the worker only, so its death reads as EOF here
            procs.append(proc)
            conns.append(here)
        busy: dict[int, int] = {}  # worker → the task it is running
        queue = iter(range(len(tasks)))

        def give(w: int) -> None:
            i = next(queue, None)
            conns[w].send(i)  # None: no more work, the worker returns
            if i is not None:
                busy[w] = i

        for w in range(n):
            give(w)
        while busy:
            ready = wait([conns[w] for w in busy] + [procs[w].sentinel for w in busy])
            for w in list(busy):
                if conns[w].poll():
                    try:
                        i, error, value = conns[w].recv()
                    except EOFError:
                        raise _died(procs[w], busy[w]) from None
                    if error is not None:
                        exc, text = error
                        raise exc from WorkerError(text)
                    results[i] = value
                    del busy[w]
                    give(w)
                elif procs[w].sentinel in ready:
                    raise _died(procs[w], busy[w])
        failed = False
        return results
    finally:
        for conn in conns:
            conn.close()
        for proc in procs:
            if failed:
                proc.terminate()
            proc.join()


def _died(proc: Any, task: int) -> WorkerError:
    proc.join()
    return WorkerError(f"a worker (pid {proc.pid}) exited with code {proc.exitcode} while running task {task}")


def _worker(tasks: Sequence[Callable[[], Any]], conn: Connection, parent_end: Connection) -> None:
    """In a forked child: run the tasks whose indices arrive on `conn` until told to stop (None) or the
    parent is gone (EOF); send back (index, None, result) or (index, (exception, traceback text), None)."""
    parent_end.close()  # the parent's end, inherited: closed here, the parent's death reaches recv as EOF
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    while True:
        try:
            i = conn.recv()
        except EOFError:
            return
        if i is None:
            return
        try:
            conn.send((i, None, tasks[i]()))
        except Exception as e:  # noqa: BLE001 - any failure is sent to the parent, which raises it
            text = traceback.format_exc()
            try:
                conn.send((i, (e, text), None))  # send() serialises before writing: a failure writes nothing
            except Exception:  # noqa: BLE001 - an exception that cannot cross the pipe goes as its text
                conn.send((i, (WorkerError(text), text), None))
