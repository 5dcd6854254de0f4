"""The sweep: prepare a scenario's data and ground truth once, then run each configuration in its own process.

`prepare` validates everything that can be validated before the first index exists (the scenario, the
dataset, every run's op log) and materialises the dataset once as memory-mapped .npy files in the
cache, normalised for cosine, so each run's subprocess maps the same bytes instead of regenerating or
copying them. The exact ground truth of every search step (over that step's live set, maintained
incrementally) is computed once per (scenario workload, dataset, catalog size) and cached.

`run_sweep` then starts one fresh subprocess per run (`annbench.replay`), with a time limit: a crash,
an abort or a hang becomes that run's status and the sweep goes on. Where that subprocess starts (here,
or on a Dask worker) is the executor's business (annbench.executors); a run travels as a small task dict
(`make_task`), is executed by `execute_task`, and comes back as a record that `make_doc` turns into the
result. The sweep's process alone writes result files, atomically, so an interrupted sweep leaves
finished results intact and nothing half-written.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np

import annbench
from annbench import adapters, results, tempdirs
from annbench.adapters.base import SHARED_TMP_ENV, Metric, prepare_vectors, shared_tmp
from annbench.datasets import drop_pages
from annbench.errors import ConfigError
from annbench.scenarios import RunSpec, Scenario, check_dataset_dim, op_log

BLOCK_ROWS = 65_536  # rows copied at a time when materialising a dataset: bounded memory at any n


@dataclass
class Prepared:
    """What every run of a scenario shares: the dataset on disk, its hash and the ground truth files."""

    scenario: Scenario
    metric: Metric
    data_dir: Path
    dataset_info: dict[str, Any]
    gt_paths: dict[int | None, Path]


def open_scenario_dataset(sc: Scenario) -> Any:
    """The scenario's dataset, scaled: generated (catalog) or loaded from the user's files."""
    from annbench import datasets

    spec = dict(sc.dataset)
    if "path" not in spec:
        from annbench import catalog

        params = dict(spec.get("params", {}))
        scale = params.pop("scale", 1.0)
        if scale != 1.0:
            default_n = inspect.signature(catalog.generate).parameters["n"].default
            params["n"] = max(1, int(round(default_n * scale)))
        for key in ("n", "dim", "n_queries", "seed"):
            if key in params:
                params[key] = int(params[key])
        return datasets.open_dataset("catalog", **params)
    ds = datasets.open_dataset(spec["path"], queries=spec.get("queries"), labels=spec.get("labels"),
                               query_labels=spec.get("query_labels"))
    scale = spec.get("scale", 1.0)
    if scale > 1.0:
        raise ConfigError(f"--scale {scale} asks for more vectors than {spec['path']} holds; use --scale ≤ 1")
    if scale < 1.0:
        import dataclasses

        m = max(1, int(round(ds.n * scale)))
        ds = dataclasses.replace(
            ds, base=ds.base[:m], ids=None if ds.ids is None else ds.ids[:m],
            base_labels=None if ds.base_labels is None else ds.base_labels[:m])
    return ds


def resolve_metric(sc: Scenario, ds: Any) -> Metric:
    return sc.metric if sc.metric is not None else (ds.metric or Metric.COSINE)


def prepare(sc: Scenario, cache_dir: Path, progress: Callable[[str], None] = lambda _m: None) -> Prepared:
    """Validate every run and materialise data and ground truth; raises AnnbenchError before any build."""
    from annbench import datasets

    ds = open_scenario_dataset(sc)
    check_dataset_dim(sc, ds.dim, ds.source)
    if ds.queries is None or len(ds.queries) == 0:
        raise ConfigError(f"dataset {ds.source} has no queries; pass queries with the dataset")
    metric = resolve_metric(sc, ds)
    datasets.validate_dataset(ds, metric)  # e.g. zero rows, which have no cosine
    ids = ds.base_ids()
    logs = {size: op_log(sc, ids, ds.base_labels, ds.query_labels, len(ds.queries), size) for size in sc.sizes()}
    ds_hash = ds.content_hash()
    data_dir = Path(cache_dir) / "data" / f"{ds_hash[:20]}-{metric.value}"
    if not (data_dir / "done").exists():
        progress(f"materialising dataset {ds.name} ({ds.n} × {ds.dim})")
        _materialise(ds, metric, data_dir)
    info = {"name": ds.name, "hash": ds_hash, "source": ds.source, "n": int(ds.n), "dim": int(ds.dim),
            "nq": int(len(ds.queries)), "metric": metric.value, "labels": ds.base_labels is not None}
    gt_paths = {}
    for size, ops in logs.items():
        gt_paths[size] = _ground_truth(sc, metric, data_dir, ds_hash, size, ops, progress)
    return Prepared(sc, metric, data_dir, info, gt_paths)


def _materialise(ds: Any, metric: Metric, data_dir: Path) -> None:
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=data_dir.parent, prefix=".tmp-"))
    try:
        base = np.lib.format.open_memmap(tmp / "base.npy", mode="w+", dtype=np.float32, shape=(ds.n, ds.dim))
        for start in range(0, ds.n, BLOCK_ROWS):
            src = ds.base[start:start + BLOCK_ROWS]
            base[start:start + BLOCK_ROWS] = prepare_vectors(src, metric)
            # neither file's pages stay in this process's RSS: a catalog may be as large as the machine's RAM
            drop_pages(src)
            drop_pages(base[start:start + BLOCK_ROWS])
        base.flush()
        del base
        np.save(tmp / "queries.npy", prepare_vectors(ds.queries, metric))
        np.save(tmp / "ids.npy", np.asarray(ds.base_ids(), dtype=np.int64))
        if ds.base_labels is not None:
            np.save(tmp / "base_labels.npy", np.asarray(ds.base_labels, dtype=np.int64))
        if ds.query_labels is not None:
            np.save(tmp / "query_labels.npy", np.asarray(ds.query_labels, dtype=np.int64))
        (tmp / "done").write_text("ok\n")
        if data_dir.exists():  # a previous attempt died before 'done': replace it
            shutil.rmtree(data_dir)
        os.replace(tmp, data_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _ground_truth(sc: Scenario, metric: Metric, data_dir: Path, ds_hash: str, size: int | None, ops: list,
                  progress: Callable[[str], None]) -> Path:
    """The cached file of the per-step exact ground truth (search steps × queries × k)."""
    from annbench.groundtruth import LiveGroundTruth, cache_key, cached

    key = {"kind": "step-gt", "version": 1, "scenario": sc.content_hash(), "dataset": ds_hash,
           "metric": metric.value, "k": sc.k, "size": size}

    def compute() -> tuple[np.ndarray, np.ndarray]:
        progress(f"exact ground truth for {sum(op.kind == 'search' for op in ops)} search steps"
                 + (f" at n={size}" if size else ""))
        pool = np.load(data_dir / "base.npy", mmap_mode="r")
        queries = np.load(data_dir / "queries.npy")
        q_all = queries[: sc.n_queries] if sc.n_queries else queries
        live = LiveGroundTruth(pool, q_all, sc.k, metric)
        dists, ids = [], []
        for op in ops:
            if op.kind in ("build", "insert"):
                live.insert(op.rows, op.ids)
            elif op.kind == "delete":
                live.delete(op.ids)
            elif op.kind == "update":
                live.update(op.rows, op.ids)
            elif op.kind == "search":
                d, i = live.current()
                dists.append(d)
                ids.append(i)
        return np.stack(dists), np.stack(ids)

    cached(data_dir / "gt", key, compute)
    return data_dir / "gt" / f"gt-{hashlib.sha256(cache_key(key).encode()).hexdigest()}.npz"


# --- the sweep --------------------------------------------------------------------------------------
@dataclass
class RunOutcome:
    spec: RunSpec
    path: Path
    status: str  # ok | failed | timeout | skipped
    doc: dict[str, Any] | None


def existing_result(path: Path, prep: Prepared, spec: RunSpec) -> dict[str, Any] | None:
    """The finished result for this run, if one exists for the same workload, dataset and configuration."""
    if not path.exists():
        return None
    try:
        doc = results.load(path)
    except results.ResultError:
        return None
    same = (doc["scenario"]["hash"] == prep.scenario.content_hash()
            and doc["dataset"]["hash"] == prep.dataset_info["hash"]
            # what the library resolved (build_params_used) is the run's outcome, not its configuration
            and {k: v for k, v in doc["index"].items() if k != "build_params_used"}
            == _index_record(spec, prep.scenario))
    return doc if same else None


def _index_record(spec: RunSpec, sc: Scenario) -> dict[str, Any]:
    return {"family": spec.index.family, "label": spec.index.label, "build_params": spec.index.build,
            "search_grid": spec.index.search, "policy": spec.policy,
            "rebuild_every": sc.rebuild_every if spec.policy == "rebuild" else None, "size": spec.size}


def run_sweep(prep: Prepared, out_dir: Path, *, force: bool = False, retry_failed: bool = False,
              max_memory_bytes: int | None = None,
              on_done: Callable[[RunOutcome], None] = lambda _o: None,
              executor: Executor | None = None) -> list[RunOutcome]:
    """Run every configuration of the scenario, each in its own subprocess; return what happened.

    `executor` decides where each run's subprocess is started (annbench.executors: this machine, one
    run at a time, by default; or the workers of a Dask cluster). Wherever it runs, this process alone
    writes the result files, atomically, in the same place and under the same names.

    Ctrl-C (SIGINT) only sets a flag, acted on at safe points (between runs, and while waiting for a
    run, which is then killed): a KeyboardInterrupt raised wherever the signal lands could be swallowed
    by a library's lock or land between writing a result and reporting it. It then raises
    KeyboardInterrupt with every finished result on disk.
    """
    if executor is None:
        from annbench.executors import LocalExecutor  # lazy: executors imports this module

        executor = LocalExecutor()
    with _stop_on_sigint() as stop:
        return _sweep(prep, out_dir, force, retry_failed, max_memory_bytes, on_done, stop, executor)


@contextmanager
def _stop_on_sigint() -> Iterator[threading.Event]:
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGINT, lambda _sig, _frame: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _sweep(prep: Prepared, out_dir: Path, force: bool, retry_failed: bool, max_memory_bytes: int | None,
           on_done: Callable[[RunOutcome], None], stop: threading.Event, executor: Executor) -> list[RunOutcome]:
    sc = prep.scenario
    outcomes = []
    todo: dict[str, tuple[RunSpec, Path]] = {}
    for spec in sc.runs():
        path = results.result_path(out_dir, sc.name, spec.run_id)
        old = None if force else existing_result(path, prep, spec)
        if old is not None and (old["status"] == "ok" or not retry_failed):
            outcome = RunOutcome(spec, path, "skipped", old)
            outcomes.append(outcome)
            on_done(outcome)
        else:
            todo[spec.run_id] = (spec, path)
    tasks = [make_task(prep, spec, max_memory_bytes) for spec, _ in todo.values()]
    for run_id, record in executor.execute(tasks, stop):  # in the order runs finish
        spec, path = todo[run_id]
        doc = make_doc(prep, spec, record)
        results.write_atomic(path, doc)
        outcome = RunOutcome(spec, path, doc["status"], doc)
        outcomes.append(outcome)
        on_done(outcome)
    return outcomes


def run_one(prep: Prepared, spec: RunSpec, max_memory_bytes: int | None = None,
            stop: StopFlag | None = None) -> dict[str, Any]:
    """Replay one run in a fresh subprocess here and return its result document (any status)."""
    return make_doc(prep, spec, execute_task(make_task(prep, spec, max_memory_bytes), stop))


class StopFlag(Protocol):
    """What `execute_task` polls to abandon a run: a threading.Event, or a Dask task's cancellation."""

    def is_set(self) -> bool: ...


class Executor(Protocol):
    """Where runs are executed (annbench.executors): yields (run id, record of `execute_task`) as runs finish.

    Raises KeyboardInterrupt once `stop` is set, after abandoning the runs not finished.
    """

    def execute(self, tasks: list[dict[str, Any]], stop: threading.Event) -> Iterator[tuple[str, dict[str, Any]]]:
        ...


def make_task(prep: Prepared, spec: RunSpec, max_memory_bytes: int | None = None) -> dict[str, Any]:
    """Everything a run needs to execute, wherever it executes: a small JSON-able dict of paths and settings.

    The dataset and ground truth travel as paths into the prepared cache, never as arrays: a remote
    worker reads them from the shared folder.
    """
    sc = prep.scenario
    # The child re-validates the whole scenario, so it must know every family in it, not just its own.
    families = {c.family for c in sc.indexes}
    modules = sorted({adapters.get(f).__module__ for f in families})
    child_spec = {
        "scenario_path": str(Path(sc.path).resolve()), "scale": sc.scale, "metric": prep.metric.value,
        "dataset_override": None, "data_dir": str(prep.data_dir.resolve()),
        "gt_path": str(prep.gt_paths[spec.size].resolve()), "size": spec.size,
        "family": spec.index.family, "build_params": spec.index.build, "search_grid": spec.index.search,
        "policy": spec.policy,
        "adapter_modules": [m for m in modules if not m.startswith("annbench.")],
    }
    return {"run_id": spec.run_id, "child_spec": child_spec, "threads": sc.threads,
            "timeout_s": spec.index.timeout_s or sc.timeout_s, "max_memory_bytes": max_memory_bytes,
            "annbench_version": annbench.__version__}


def execute_task(task: dict[str, Any], stop: StopFlag | None = None) -> dict[str, Any]:
    """Run one task's replay in a fresh, supervised subprocess on this machine; return its record.

    The record holds what only the executing machine knows: status, error, the child's measurements,
    start time, wall time, machine and library versions. Raises KeyboardInterrupt (child killed) on stop.
    """
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    status, error, payload = "ok", None, None
    missing = [p for p in (task["child_spec"]["data_dir"], task["child_spec"]["gt_path"],
                           task["child_spec"]["scenario_path"]) if not Path(p).exists()]
    if task["annbench_version"] != annbench.__version__:
        status, error = "failed", (f"annbench {annbench.__version__} here, {task['annbench_version']} in the "
                                   "sweep: install the same version on every machine")
    elif missing:  # a worker of a cluster that does not share the client's folders
        status, error = "failed", (f"{missing[0]} is not readable on {platform.node()}: the scenario file and "
                                   "the cache (--out/.cache or --cache) must be on a path every machine shares")
    else:
        status, error, payload = _replay(task, stop)
    return {"started_at": started.isoformat(), "wall_seconds": time.perf_counter() - t0,
            "machine": results.machine_info(), "libraries": results.library_versions(),
            "status": status, "error": error, "payload": payload}


def failed_record(error: str) -> dict[str, Any]:
    """The record of a run that never reported back (its task or its worker was lost): no machine to name."""
    return {"started_at": datetime.now(timezone.utc).isoformat(), "wall_seconds": 0.0, "machine": {},
            "libraries": {}, "status": "failed", "error": error, "payload": None}


_WORK_PREFIX = "annbench-run-"


def _replay(task: dict[str, Any], stop: StopFlag | None) -> tuple[str, str | None, dict[str, Any] | None]:
    status, error, payload = "ok", None, None
    # work folders of SIGKILLed sweeps; an unmarked one may be a running older annbench's: left alone
    tempdirs.sweep(_WORK_PREFIX, unmarked=False)
    work_dir = tempdirs.make(_WORK_PREFIX)
    try:
        out_path = work_dir / "payload.json"
        spec_path = work_dir / "spec.json"
        spec_path.write_text(json.dumps({**task["child_spec"], "out_path": str(out_path)}))
        log_path = work_dir / "log.txt"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        # The run's own TMPDIR lies inside its work folder and goes with it, even when the run is killed
        # (a LanceDB directory, saved indexes); caches meant to outlive a run use the shared one.
        (work_dir / "tmp").mkdir()
        env[SHARED_TMP_ENV] = str(shared_tmp())
        env["TMPDIR"] = str(work_dir / "tmp")
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(task["threads"])
        prctl = _prctl()  # resolved here: the child, forked from a possibly threaded process, must not dlopen
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "annbench.replay", str(spec_path)], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True, preexec_fn=lambda: _die_with_parent(prctl))
            try:
                rc, status, error = _supervise(proc, task["timeout_s"], task["max_memory_bytes"], stop)
            except BaseException:
                _kill(proc)  # Ctrl-C: the child must not outlive the sweep
                raise
        if status == "ok":
            if rc != 0:
                status, error = "failed", _describe_exit(rc, log_path)
            elif not out_path.exists():
                status, error = "failed", "the run exited without writing its measurements"
            else:
                payload = json.loads(out_path.read_text())
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return status, error, payload


def make_doc(prep: Prepared, spec: RunSpec, record: dict[str, Any]) -> dict[str, Any]:
    """The result document of a run from its record (`execute_task`), whichever machine executed it."""
    sc = prep.scenario
    payload = record["payload"] or {}
    return {
        "schema": results.SCHEMA,
        "annbench_version": annbench.__version__,
        "run_id": spec.run_id,
        "started_at": record["started_at"],
        "wall_seconds": record["wall_seconds"],
        "machine": record["machine"],
        "libraries": record["libraries"],
        "scenario": {"name": sc.name, "hash": sc.content_hash(), "path": sc.path, "k": sc.k,
                     "scale": sc.scale, "timeline": sc.timeline.kind, "runbook": sc.timeline.runbook is not None},
        "dataset": prep.dataset_info,
        "index": {**_index_record(spec, sc),
                  **({"build_params_used": payload["build_params_used"]} if "build_params_used" in payload else {})},
        "threads": sc.threads,
        "status": record["status"],
        "error": record["error"],
        "memory": payload.get("memory", {}),
        "threadpools": payload.get("threadpools", []),
        "steps": payload.get("steps", []),
    }


POLL_S = 0.05  # how often a running child's time and memory are checked


def _supervise(proc: subprocess.Popen, timeout_s: float, max_memory_bytes: int | None,
               stop: StopFlag | None = None) -> tuple[int | None, str, str | None]:
    """Wait for the child, killing it past its time limit or memory limit: (exit code, status, error)."""
    import psutil

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
                                        f"--max-memory-gb {max_memory_bytes / 2**30:g}; killed")


def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up in the parent: loading a library after fork() can deadlock a threaded parent."""
    try:
        import ctypes

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


def noisy_settings(doc: dict[str, Any]) -> int:
    """How many (search step, setting) timings of a run were marked noisy (annbench.timing.noise_verdict)."""
    return sum(bool((s.get("noise") or {}).get("noisy")) for st in doc.get("steps", []) for s in st.get("settings", []))


def summary_line(outcome: RunOutcome) -> str:
    """One line per finished run, with the figures the report ranks on, each labelled with its worst step.

    The setting shown is the one with the best worst-step recall; its p99 and QPS are that setting's worst
    steps too (each named), so no figure of one day sits beside another day's unlabelled.
    """
    spec, doc = outcome.spec, outcome.doc or {}
    head = f"{spec.index.label} [{spec.policy}]"
    if spec.size:
        head += f" n={spec.size}"
    if outcome.status == "skipped":
        return f"  = {head}: already done ({doc.get('status')})"
    if outcome.status != "ok":
        return f"  ✗ {head}: {outcome.status}: {doc.get('error')}"
    per: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for step in doc["steps"]:
        for s in step.get("settings", []):
            per.setdefault(json.dumps(s["params"], sort_keys=True), []).append((int(step.get("day") or 0), s))
    if not per:
        return f"  ✓ {head}"
    what = "day" if doc["scenario"].get("timeline") == "daily" else "step"
    key = max(per, key=lambda kk: min(s["recall"] for _d, s in per[kk]))
    steps = per[key]
    rd, rs = min(steps, key=lambda x: x[1]["recall"])
    pd, ps = max(steps, key=lambda x: x[1]["latency_ms"]["p99"])
    qd, qs = min(steps, key=lambda x: x[1]["qps"])
    lo, hi = (ps.get("latency_ms_ci95") or {}).get("p99") or (None, None)
    band = f" [{lo:.3g}–{hi:.3g}]" if lo is not None else ""
    mem = doc.get("memory") or {}
    own = mem.get("index_bytes")
    memory = f"index {own / 2**20:.1f} MiB" if isinstance(own, (int, float)) else \
        f"RSS {mem.get('rss_steady_bytes', 0) / 2**20:.0f} MiB"
    noisy = [s for _d, s in steps if (s.get("noise") or {}).get("noisy")]
    params = ", ".join(f"{k}={v}" for k, v in json.loads(key).items()) or "—"
    return (f"  ✓ {head} {params}: worst-{what} recall@{doc['scenario']['k']} {rs['recall']:.3f} ({what} {rd}) · "
            f"worst-{what} p99 {ps['latency_ms']['p99']:.3g} ms{band} ({what} {pd}) · "
            f"worst-{what} QPS {qs['qps']:,.0f} ({what} {qd}) · {memory}"
            + (f" · NOISY ({len(noisy)}/{len(steps)} {what}s)" if noisy else ""))
