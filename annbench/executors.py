"""Where a sweep's runs execute: here, one at a time (`local`), or as tasks on a Dask cluster (`dask`).

Owns the dispatch only. What a run is (a small task dict) and how it is executed (a supervised
`annbench.replay` subprocess: time limit, memory limit, crash containment) are annbench.supervisor's,
identical for both executors; how its result is written is annbench.harness's, whose caller (the CLI)
makes the executor and hands it to the sweep. The executor moves the task to the machine that executes
it and brings its execution back; the sweep's own process writes every result file.

Dask is optional (`pip install 'annbench[dask]'`) and imported only when asked for. With Dask:

- one task per run; its payload is the task dict (the run's validated workload: paths and settings, a
  few hundred bytes). Workers read the dataset, the ground truth and the op log from the paths in it, so
  the cache folder must be on a path every worker shares; nothing big is ever pickled.
- each task reserves the cores its run uses through the worker resource `cores` (`dask worker ADDR
  --resources cores=N`), so a worker never runs more threads of annbench's than it has cores for.
- a run whose task fails, is lost, or whose worker dies is recorded as that run's failure and the rest
  go on. A run is never executed twice in one sweep: when the scheduler reschedules a run whose worker
  died while it ran, the second attempt reports the death instead of replaying (an unexplained retry
  would hide a run that kills its machine); `--retry-failed` reruns it deliberately.
- Ctrl-C cancels the outstanding tasks; a run being executed notices its task was cancelled (or that the
  client is gone) and kills its replay process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

from annbench.errors import ConfigError
from annbench.scenarios import Scenario
from annbench.supervisor import Execution, Task, execute_task, failed_execution

EXECUTORS = ("local", "dask")
WAIT_S = 0.25  # how often the client looks at Ctrl-C while waiting for tasks
CORES = "cores"  # the Dask worker resource a run reserves (`dask worker … --resources cores=N`)
CANCEL_CHECK_S = 0.5  # how often a worker looks whether its run's task was cancelled


class LocalExecutor:
    """Run each task on this machine, one after another, in the order given."""

    def execute(self, tasks: list[Task], stop: threading.Event) -> Iterator[tuple[str, Execution]]:
        for task in tasks:
            if stop.is_set():
                raise KeyboardInterrupt
            yield task.run_id, execute_task(task, stop)

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "local: one run at a time on this machine"


def cores_needed(sc: Scenario) -> int:
    """The cores one run of `sc` keeps busy at once: its threads, or more when it measures concurrency."""
    need = sc.threads
    if sc.concurrency is not None:
        need = max(need, *sc.concurrency.levels)
    updates = sc.timeline.concurrent_updates
    if updates is not None:
        need = max(need, updates.threads + 1)  # the searching clients and the writer thread
    return need


def make_executor(kind: str, scheduler: str | None, sc: Scenario) -> LocalExecutor | DaskExecutor:
    """The executor the command line asked for; raises ConfigError (before anything is written) if unusable."""
    if kind == "local":
        if scheduler is not None:
            raise ConfigError("--scheduler needs --executor dask")
        return LocalExecutor()
    if kind != "dask":
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    return DaskExecutor.connect(scheduler, cores_needed(sc))


class DaskExecutor:
    """Send each task to a Dask cluster (an existing scheduler, or a LocalCluster on 127.0.0.1)."""

    def __init__(self, client: Any, cluster: Any, cores: int) -> None:
        self.client, self.cluster, self.cores = client, cluster, cores

    @classmethod
    def connect(cls, scheduler: str | None, cores: int) -> DaskExecutor:
        """Connect to `scheduler` (or start a LocalCluster when None) and check a worker can run a task."""
        try:  # deferred: Dask is optional (pip install 'annbench[dask]') and slow to import
            import dask
            from distributed import Client, LocalCluster
        except ImportError as e:
            raise ConfigError(f"--executor dask needs Dask: pip install 'annbench[dask]' ({e})") from None
        cluster = None
        try:
            if scheduler is None:
                have = max(os.cpu_count() or 1, cores)  # like the local executor, never refuse a run here
                # Loopback only, no dashboard: nothing of a benchmark run is reachable from the network.
                # memory_limit=0: annbench's own --max-memory-gib polices each run's process instead.
                with warnings.catch_warnings():  # its health-check HTTP port moves if 8787 is taken: say nothing
                    warnings.filterwarnings("ignore", message="Port .* is already in use")
                    cluster = LocalCluster(n_workers=1, threads_per_worker=have, processes=True, host="127.0.0.1",
                                           dashboard_address=None, resources={CORES: have}, memory_limit=0,
                                           silence_logs=logging.ERROR)
                client = Client(cluster)
            else:
                timeout = dask.config.get("distributed.comm.timeouts.connect")
                client = Client(scheduler, timeout=timeout)
        except Exception as e:  # noqa: BLE001  refused, timed out, a bad address, an unusable protocol, a worker
            # that did not start: distributed raises all of these as different types; each is an input error
            if cluster is not None:
                cluster.close()
            where = "start a local Dask cluster" if scheduler is None else f"reach the Dask scheduler {scheduler}"
            raise ConfigError(f"cannot {where}: {_one_line(e)}") from None
        executor = cls(client, cluster, cores)
        workers = _workers(client)
        if not any(_cores(w) >= cores for w in workers.values()):
            executor.close()
            raise ConfigError(f"no worker of the Dask cluster at {scheduler} offers the resource cores={cores} a run "
                              f"of this scenario reserves ({len(workers)} worker(s)); start workers with "
                              f"'dask worker {scheduler} --resources cores=N' (N ≥ {cores})")
        return executor

    def describe(self) -> str:
        workers = _workers(self.client)
        cores = sum(_cores(w) for w in workers.values())
        where = "a local cluster" if self.cluster is not None else self.client.scheduler.address
        return f"dask: {where}, {len(workers)} worker(s), {cores:g} cores; each run reserves {self.cores}"

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def execute(self, tasks: list[Task], stop: threading.Event) -> Iterator[tuple[str, Execution]]:
        from distributed import wait  # deferred, as every Dask import here: Dask is optional

        token = uuid.uuid4().hex[:12]  # names this sweep's tasks and attempt markers apart from any other's
        futures = {self.client.submit(_run_on_worker, task, token, key=f"annbench-{task.run_id}-{token}",
                                      resources={CORES: self.cores}, pure=False, retries=0): task.run_id
                   for task in tasks}
        pending = set(futures)
        try:
            while pending:
                if stop.is_set():
                    raise KeyboardInterrupt
                try:
                    done, pending = wait(list(pending), timeout=WAIT_S, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    continue
                for fut in done:
                    execution = _execution(fut)
                    fut.release()  # the result is no longer needed on the worker
                    yield futures[fut], execution
        finally:
            if pending:  # Ctrl-C, or the caller stopped early: nothing more is wanted of the cluster
                self.client.cancel(list(pending), force=True)
            _forget_markers(self.client, token, list(futures.values()))


def _workers(client: Any) -> dict[str, Any]:
    """Every worker the scheduler knows, with its resources (some versions list only the first 5 by default)."""
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # a distributed from before the n_workers argument lists them all
        info = client.scheduler_info()
    return info.get("workers", {})


def _cores(worker: dict[str, Any]) -> float:
    """The cores a worker offers (its `CORES` resource), as the scheduler describes the worker."""
    return worker.get("resources", {}).get(CORES, 0)


def _execution(fut: Any) -> Execution:
    """The run's execution from its finished future; a task that failed or was lost becomes a failed one."""
    from distributed.scheduler import KilledWorker  # deferred: Dask is optional

    if fut.status == "finished":
        try:
            return fut.result()
        except Exception as e:  # noqa: BLE001  the worker holding the result died before it was fetched
            return failed_execution(f"the run's result was lost before it reached the client: {_one_line(e)}")
    if fut.status == "error":
        exc = fut.exception()
        if isinstance(exc, KilledWorker):
            return failed_execution(f"the Dask worker running this run died ({_one_line(exc)}); "
                                    "rerun with --retry-failed")
        return failed_execution(f"the run's Dask task failed: {type(exc).__name__}: {_one_line(exc)}")
    return failed_execution(f"the Dask cluster lost this run's task (status {fut.status}); "
                            "rerun with --retry-failed")


def _marker(token: str, run_id: str) -> str:
    return f"annbench-started-{token}-{run_id}"


def _forget_markers(client: Any, token: str, run_ids: list[str]) -> None:
    """Clear this sweep's attempt markers on the scheduler (a cleared distributed Event is deleted)."""
    from distributed import Event  # deferred: Dask is optional

    for run_id in run_ids:
        try:
            Event(_marker(token, run_id), client=client).clear()
        except Exception:  # noqa: BLE001  a scheduler that is gone has nothing left to clean
            return


def _run_on_worker(task: Task, token: str) -> Execution:
    """A Dask task: execute one run on this worker, as the local executor does, once per sweep."""
    from distributed import Event, get_worker  # deferred: Dask is optional (this runs on a worker, which has it)

    # The scheduler reschedules a task whose worker died while running it. The first attempt set this
    # marker before starting the replay, so a second attempt knows the run's worker died and says so.
    started = Event(_marker(token, task.run_id))
    if started.is_set():
        return failed_execution("the Dask worker running this run died while it ran (lost worker: not "
                                "retried, so that a run that kills its machine is seen); rerun with "
                                "--retry-failed")
    started.set()
    try:
        worker = get_worker()
        return execute_task(task, _TaskCancelled(worker, worker.get_current_task()))
    except KeyboardInterrupt:  # the task was cancelled: the replay process is killed, nobody wants a result
        return failed_execution("cancelled")


class _TaskCancelled:
    """`is_set()` once the scheduler no longer wants this task (Ctrl-C's cancel, or its client is gone)."""

    def __init__(self, worker: Any, key: str) -> None:
        self.worker, self.key = worker, key
        self.next_check, self.cancelled = 0.0, False

    def is_set(self) -> bool:
        now = time.monotonic()
        if not self.cancelled and now >= self.next_check:
            self.next_check = now + CANCEL_CHECK_S
            try:
                ts = self.worker.state.tasks.get(self.key)
                self.cancelled = ts is None or ts.state in ("cancelled", "released", "forgotten")
            except AttributeError:  # a distributed without WorkerState: the run goes to its end
                self.cancelled = False
        return self.cancelled


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text or type(e).__name__)[:300]
