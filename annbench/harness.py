"""The sweep: prepare a scenario's data and ground truth once, then run each configuration in its own process.

`prepare` validates everything that can be validated before the first index exists (the scenario, the
dataset, every run's op log) and materialises the dataset once as .npy files in the cache, normalised
for cosine, so each run's subprocess maps the same bytes instead of regenerating or copying them. The
files are written, never memory-mapped, and their space is reserved first: a full disk is an OSError
(ENOSPC) before any data is written, not a SIGBUS (a store into a mapped page the filesystem cannot
back). The materialisation's temp folder is owner-marked (annbench.tempdirs), and the next `prepare`
removes those of dead processes. The op log of each catalog size and the exact ground truth of its
search steps (over each step's live set, maintained incrementally) are computed once per (scenario
workload, dataset, catalog size) and cached side by side.

`run_sweep` then hands each run its validated workload as data (annbench.workload: settings, resolved
parameters, the paths of the dataset, ground truth and op log) in a small task dict, to the executor its
caller chose (annbench.executors: here, or on a Dask worker), which starts one fresh subprocess per run
(annbench.supervisor, annbench.replay) with a time limit: a crash, an abort or a hang becomes that run's
status and the sweep goes on. The run's execution comes back and `make_record` turns it into the result. The
sweep's process alone writes result files, atomically, so an interrupted sweep leaves finished results
intact and nothing half-written. It holds the results folder's lock (annbench.outlock) throughout, so a
second sweep into the same folder stops or waits instead of racing it. A result that cannot be written
(disk full, read-only) is kept in the system temp folder and the sweep stops (`UnsavedResult`).
"""

from __future__ import annotations

import dataclasses
import errno
import getpass
import hashlib
import inspect
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol

import numpy as np

import annbench
from annbench import adapters, catalog, datasets, oplog, outlock, results, supervisor, tempdirs, workload
from annbench.dataset import drop_pages
from annbench.errors import ConfigError
from annbench.groundtruth import cache_key, cached, step_ground_truth
from annbench.scenarios import RunSpec, Scenario, check_dataset_dim
from annbench.vectors import Metric, prepare_vectors

BLOCK_ROWS = 65_536  # rows copied at a time when materialising a dataset: bounded memory at any n
MATERIALISING = ".tmp-"  # prefix of a materialisation's temp folder in <cache>/data (owner-marked)


@dataclass
class Prepared:
    """What every run of a scenario shares: the dataset on disk, its hash and the ground truth files."""

    scenario: Scenario
    metric: Metric
    data_dir: Path
    dataset_info: dict[str, Any]
    gt_paths: dict[int | None, Path]
    ops_paths: dict[int | None, Path]  # the op log of each catalog size (annbench.oplog.save_ops)


def open_scenario_dataset(sc: Scenario) -> Any:
    """The scenario's dataset, scaled: generated (catalog) or loaded from the user's files."""
    spec = dict(sc.dataset)
    if "path" not in spec:
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
        m = max(1, int(round(ds.n * scale)))
        ds = dataclasses.replace(
            ds, base=ds.base[:m], ids=None if ds.ids is None else ds.ids[:m],
            base_labels=None if ds.base_labels is None else ds.base_labels[:m])
    return ds


def resolve_metric(sc: Scenario, ds: Any) -> Metric:
    return sc.metric if sc.metric is not None else (ds.metric or Metric.COSINE)


def prepare(sc: Scenario, cache_dir: Path, progress: Callable[[str], None] = lambda _m: None) -> Prepared:
    """Validate every run and materialise data, op logs and ground truth; raises AnnbenchError before any build."""
    ds = open_scenario_dataset(sc)
    check_dataset_dim(sc, ds.dim, ds.source)
    if ds.queries is None or len(ds.queries) == 0:
        raise ConfigError(f"dataset {ds.source} has no queries: give a queries file with --queries PATH, or hold "
                          "out N base vectors as queries with --holdout-queries N (dataset.holdout_queries)")
    metric = resolve_metric(sc, ds)
    datasets.validate_dataset(ds, metric)  # e.g. zero rows, which have no cosine
    ids = ds.base_ids()
    logs = {size: oplog.op_log(sc, ids, ds.base_labels, ds.query_labels, len(ds.queries), size) for size in sc.sizes()}
    ds_hash = ds.content_hash()
    data_dir = Path(cache_dir) / "data" / f"{ds_hash[:20]}-{metric.value}"
    # A killed materialisation leaves its temp folder (193 MB at 1M × 64): removed once its owner is gone,
    # never while the sweep writing it (another one sharing this cache) lives. Unmarked ones (an older
    # annbench's) go after tempdirs' grace period: the cache's data folder holds only annbench's files.
    tempdirs.sweep(MATERIALISING, data_dir.parent)
    if not (data_dir / "done").exists():
        progress(f"materialising dataset {ds.name} ({ds.n} × {ds.dim})")
        _materialise(ds, metric, data_dir)
    info = {"name": ds.name, "hash": ds_hash, "source": ds.source, "n": int(ds.n), "dim": int(ds.dim),
            "nq": int(len(ds.queries)), "metric": metric.value, "labels": ds.base_labels is not None}
    gt_paths, ops_paths = {}, {}
    for size, ops in logs.items():
        gt_paths[size] = _ground_truth(sc, metric, data_dir, ds_hash, size, ops, progress)
        ops_paths[size] = _op_log_file(gt_paths[size], ops)
    return Prepared(sc, metric, data_dir, info, gt_paths, ops_paths)


def _materialise(ds: Any, metric: Metric, data_dir: Path) -> None:
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempdirs.make(MATERIALISING, data_dir.parent)
    try:
        small = {"queries.npy": prepare_vectors(ds.queries, metric),
                 "ids.npy": np.asarray(ds.base_ids(), dtype=np.int64)}
        if ds.base_labels is not None:
            small["base_labels.npy"] = np.asarray(ds.base_labels, dtype=np.int64)
        if ds.query_labels is not None:
            small["query_labels.npy"] = np.asarray(ds.query_labels, dtype=np.int64)
        # Every file's space is reserved before any data is written, so a disk too small fails here, at
        # once, and not after minutes of copying. The files are written, never memory-mapped: a store into
        # a mapped page the filesystem cannot back (full disk; a copy-on-write filesystem that cannot keep
        # its reservation) is a SIGBUS that kills annbench without a word, where a write is an OSError.
        try:
            at = {name: _reserve_npy(tmp / name, arr.dtype, arr.shape) for name, arr in small.items()}
            at["base.npy"] = _reserve_npy(tmp / "base.npy", np.dtype(np.float32), (ds.n, ds.dim))
            with open(tmp / "base.npy", "r+b") as f:
                f.seek(at["base.npy"])
                for start in range(0, ds.n, BLOCK_ROWS):
                    src = ds.base[start:start + BLOCK_ROWS]
                    f.write(np.ascontiguousarray(prepare_vectors(src, metric), dtype=np.float32).data)
                    # the source's pages do not stay in this process's RSS: it may be as large as the RAM
                    drop_pages(src)
                f.flush()
                os.fsync(f.fileno())  # a filesystem that allocates late may say ENOSPC only now
            for name, arr in small.items():
                with open(tmp / name, "r+b") as f:
                    f.seek(at[name])
                    f.write(np.ascontiguousarray(arr).data)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            need = ds.n * ds.dim * 4 + sum(arr.nbytes for arr in small.values())
            # the folder rides as the error's file name: the command line names it once, a caller sees it too
            raise OSError(e.errno, f"{e.strerror}: materialising dataset {ds.name} ({ds.n} × {ds.dim}) needs "
                                   f"{need / 2**20:,.0f} MiB free; free some space, or put the cache elsewhere "
                                   "with --cache", str(data_dir.parent)) from e
        (tmp / "done").write_text("ok\n")
        if (data_dir / "done").exists():
            # another sweep sharing this cache finished the same data (same content hash) meanwhile: keep its
            # copy, which its runs may be reading, and drop ours
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if data_dir.exists():  # a previous attempt died before 'done': replace it
            shutil.rmtree(data_dir)
        os.replace(tmp, data_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # the owner mark only protected the temp folder from sweeps; the finished data folder is nobody's
    (data_dir / tempdirs.OWNER).unlink(missing_ok=True)


def _reserve_npy(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> int:
    """Create the .npy file `path` with its header and its data's space reserved; return the data's offset.

    The header is the one np.save writes (format 1.0), so the file is byte for byte what np.save would
    have made once the data are written at the offset. Raises OSError (ENOSPC) when the space is not there.
    """
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(int(x) for x in shape)}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        offset = f.tell()
        size = offset + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        reserve = getattr(os, "posix_fallocate", None)  # not on macOS: the writes still fail with an OSError
        if reserve is not None and size > offset:
            try:
                reserve(f.fileno(), 0, size)
            except OSError as e:
                # a filesystem that cannot reserve (glibc emulates the call where it can): the plain writes
                # that follow still fail with an OSError, never a SIGBUS
                if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
    return offset


def _ground_truth(sc: Scenario, metric: Metric, data_dir: Path, ds_hash: str, size: int | None, ops: list,
                  progress: Callable[[str], None]) -> Path:
    """The cached file of the per-step exact ground truth (search steps × queries × k)."""
    key = {"kind": "step-gt", "version": 1, "scenario": sc.content_hash(), "dataset": ds_hash,
           "metric": metric.value, "k": sc.k, "size": size}

    def compute() -> tuple[np.ndarray, np.ndarray]:
        progress(f"exact ground truth for {sum(op.kind == 'search' for op in ops)} search steps"
                 + (f" at n={size}" if size else ""))
        pool = np.load(data_dir / "base.npy", mmap_mode="r")
        queries = np.load(data_dir / "queries.npy")
        q_all = queries[: sc.n_queries] if sc.n_queries else queries
        # the whole log at once: one pass over every vector the log ever makes live, not a call per day
        return step_ground_truth(pool, q_all, sc.k, metric, oplog.ground_truth_steps(ops))

    cached(data_dir / "gt", key, compute)
    return data_dir / "gt" / f"gt-{hashlib.sha256(cache_key(key).encode()).hexdigest()}.npz"


def _op_log_file(gt_path: Path, ops: list[Any]) -> Path:
    """The op log the ground truth at `gt_path` was computed over, stored beside it for the runs to replay.

    Same key, same log: the ground truth's file name is the hash of everything the op log depends on
    (scenario workload, dataset, catalog size), so a file already there under that key is kept.
    """
    path = gt_path.with_name("ops-" + gt_path.name.removeprefix("gt-"))
    key = gt_path.name
    if oplog.ops_key(path) != key:
        oplog.save_ops(path, ops, key)
    return path


# --- the sweep --------------------------------------------------------------------------------------
@dataclass
class RunOutcome:
    spec: RunSpec
    path: Path
    status: str  # ok | failed | timeout | skipped
    record: results.RunRecord | None


def existing_result(path: Path, prep: Prepared, spec: RunSpec) -> results.RunRecord | None:
    """The finished result for this run, if one exists for the same workload, dataset and configuration."""
    if not path.exists():
        return None
    try:
        run = results.load(path)
    except results.ResultError:
        return None
    same = (run.scenario.hash == prep.scenario.content_hash()
            and run.dataset.hash == prep.dataset_info["hash"]
            # what the library resolved (build_params_used) is the run's outcome, not its configuration
            and dataclasses.replace(run.index, build_params_used=None) == _index_info(spec, prep.scenario))
    return run if same else None


def _index_info(spec: RunSpec, sc: Scenario, used: dict[str, Any] | None = None) -> results.IndexInfo:
    return results.IndexInfo(family=spec.index.family, label=spec.index.label, build_params=spec.index.build,
                             search_grid=spec.index.search, policy=spec.policy,
                             rebuild_every=sc.rebuild_every if spec.policy == "rebuild" else None, size=spec.size,
                             build_params_used=used)


def run_sweep(prep: Prepared, out_dir: Path, *, executor: Executor, force: bool = False,
              retry_failed: bool = False, max_memory_bytes: int | None = None,
              on_done: Callable[[RunOutcome], None] = lambda _o: None,
              wait_for_lock: bool = False) -> list[RunOutcome]:
    """Run every configuration of the scenario, each in its own subprocess; return what happened.

    `executor` decides where each run's subprocess is started (annbench.executors, chosen by the caller:
    this machine, one run at a time; or the workers of a Dask cluster). Wherever it runs, this process
    alone writes the result files, atomically, in the same place and under the same names.

    Ctrl-C (SIGINT) only sets a flag, acted on at safe points (between runs, and while waiting for a
    run, which is then killed): a KeyboardInterrupt raised wherever the signal lands could be swallowed
    by a library's lock or land between writing a result and reporting it. It then raises
    KeyboardInterrupt with every finished result on disk.

    The results folder's lock (annbench.outlock) is held throughout: when another sweep holds it, this
    raises outlock.FolderBusy naming it, or with `wait_for_lock` waits for it. (The command line takes
    the lock before `prepare` already, so that a waiting sweep computes nothing while another is timed;
    here it is then a re-entry.)

    A finished run whose result cannot be written (an OSError: disk full, read-only, quota) is kept in
    the system temp folder (`unsaved_path`) and the sweep stops with `UnsavedResult` (see there for why).
    """
    with outlock.hold(out_dir, prep.scenario.name, wait=wait_for_lock), _stop_on_sigint() as stop:
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
        if old is not None and (old.ok or not retry_failed):
            outcome = RunOutcome(spec, path, "skipped", old)
            outcomes.append(outcome)
            on_done(outcome)
        else:
            todo[spec.run_id] = (spec, path)
    tasks = [make_task(prep, spec, max_memory_bytes) for spec, _ in todo.values()]
    # closing: when the sweep stops early (a result it cannot write), the executor abandons the runs it has
    # under way (a Dask cluster's tasks are cancelled) at once, not whenever the generator is collected
    with closing(executor.execute(tasks, stop)) as finished:
        for run_id, execution in finished:  # in the order runs finish
            spec, path = todo[run_id]
            record = make_record(prep, spec, execution)
            try:
                results.write(path, record)
            except OSError as e:
                _keep_unsaved(RunOutcome(spec, path, record.status, record), e)
            outcome = RunOutcome(spec, path, record.status, record)
            outcomes.append(outcome)
            on_done(outcome)
    return outcomes


class UnsavedResult(OSError):
    """A finished run's result could not be written to the results folder; the sweep stopped there.

    An OSError with the write's errno (ENOSPC, EROFS, EDQUOT…), so the command line reports it as the
    environment fault it is. Its message is one line saying where the record was kept and how to move it
    back, or, when even that failed, the run's summary line (its figures). `outcome` holds the record;
    `kept` is where it was written, or None. The run is not reported through `on_done`: it is not saved
    where the caller counts saved runs.

    Why stop rather than go on: the runs left would meet the same full or read-only disk after running
    for minutes or hours each, and pile their records into the fallback folder, which is often on the
    same disk or in RAM. Rerunning the sweep once there is room resumes it, skipping every result already
    in place (the kept one too, once moved back).
    """

    def __init__(self, err: int | None, message: str, outcome: RunOutcome, kept: Path | None) -> None:
        super().__init__(err, message)
        self.outcome, self.kept = outcome, kept

    def __str__(self) -> str:  # the one line, without OSError's "[Errno 28]" prefix
        return str(self.strerror)


def unsaved_path(scenario: str, run_id: str) -> Path:
    """Where a finished run's result goes when the results folder cannot take it: the system temp folder,
    one folder per user (a shared /tmp's folder made by another user would not be writable)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container): the uid says who it is
        user = str(os.getuid())
    return Path(tempfile.gettempdir()) / f"annbench-unsaved-{user}" / scenario / f"{run_id}.json"


def _keep_unsaved(outcome: RunOutcome, err: OSError) -> NoReturn:
    """Keep a finished run's record that could not be written to `outcome.path`, then stop the sweep."""
    record = outcome.record
    assert record is not None
    kept: Path | None = unsaved_path(record.scenario.name, record.run_id)
    what = f"cannot write the result of run {record.run_id} to {outcome.path} ({err.strerror or err})"
    try:
        results.write(kept, record)
    except OSError as e2:
        # nowhere to keep it: the figures at least are not lost silently
        why = f"nor keep it in {kept} ({e2.strerror or e2}); its figures: {summary_line(outcome).strip()}"
        kept = None
    else:
        why = (f"the finished run is kept in {kept}; once there is room, move it back with "
               f"`mkdir -p {outcome.path.parent} && mv {kept} {outcome.path}`")
    raise UnsavedResult(err.errno, f"{what}; {why}; the sweep stops here (the runs left would fail the same way)",
                        outcome, kept) from err


class Executor(Protocol):
    """Where runs are executed (annbench.executors): yields (run id, annbench.supervisor's `Execution`) as
    runs finish.

    Raises KeyboardInterrupt once `stop` is set, after abandoning the runs not finished.
    """

    def execute(self, tasks: list[supervisor.Task],
                stop: threading.Event) -> Iterator[tuple[str, supervisor.Execution]]:
        ...


def make_workload(prep: Prepared, spec: RunSpec) -> workload.Workload:
    """What one run replays and how, as data: the scenario's settings, the run's index and policy, its files."""
    sc = prep.scenario
    return workload.Workload(
        family=spec.index.family, adapter_module=adapters.module_of(spec.index.family),
        build_params=spec.index.build, search_grid=spec.index.search, policy=spec.policy, metric=prep.metric,
        k=sc.k, seed=sc.seed, threads=sc.threads, timeline=sc.timeline.kind, rebuild_every=sc.rebuild_every,
        maintain_every=sc.maintain_every, rounds=sc.rounds, warmup=sc.warmup, keep_answers=sc.keep_answers,
        concurrency=sc.concurrency, concurrent_updates=sc.timeline.concurrent_updates,
        data_dir=str(prep.data_dir.resolve()), gt_path=str(prep.gt_paths[spec.size].resolve()),
        ops_path=str(prep.ops_paths[spec.size].resolve()))


def make_task(prep: Prepared, spec: RunSpec, max_memory_bytes: int | None = None) -> supervisor.Task:
    """The task an executor runs (annbench.supervisor): the run's workload and its limits."""
    return supervisor.Task(spec.run_id, make_workload(prep, spec), spec.index.timeout_s or prep.scenario.timeout_s,
                           max_memory_bytes, tuple(adapters.get(spec.index.family).distributions))


def make_record(prep: Prepared, spec: RunSpec, ex: supervisor.Execution) -> results.RunRecord:
    """The result record of a run from its execution, whichever machine executed it."""
    sc = prep.scenario
    m = ex.measurements or results.Measurements()
    return results.RunRecord(
        schema=results.SCHEMA, annbench_version=annbench.__version__, run_id=spec.run_id,
        started_at=ex.started_at, wall_seconds=ex.wall_seconds, machine=ex.machine, libraries=ex.libraries,
        scenario=results.ScenarioInfo(name=sc.name, hash=sc.content_hash(), path=sc.path, k=sc.k, scale=sc.scale,
                                      timeline=sc.timeline.kind, runbook=sc.timeline.runbook is not None),
        dataset=results.decode(results.DatasetInfo, prep.dataset_info, "the prepared dataset"),
        index=_index_info(spec, sc, m.build_params_used), threads=sc.threads, status=ex.status, error=ex.error,
        memory=m.memory, threadpools=m.threadpools, steps=m.steps)


def noisy_settings(run: results.RunRecord) -> int:
    """How many (search step, setting) timings of a run were marked noisy (annbench.timing.noise_verdict)."""
    return sum(s.noisy for st in run.steps for s in st.settings)


def summary_line(outcome: RunOutcome) -> str:
    """One line per finished run, with the figures the report ranks on, each labelled with its worst step.

    The setting shown is the one with the best worst-step recall; its p99 and QPS are that setting's worst
    steps too (each named), so no figure of one day sits beside another day's unlabelled.
    """
    spec, run = outcome.spec, outcome.record
    head = f"{spec.index.label} [{spec.policy}]"
    if spec.size:
        head += f" n={spec.size}"
    if outcome.status == "skipped":
        return f"  = {head}: already done ({run.status if run else '?'})"
    if outcome.status != "ok" or run is None:
        return f"  ✗ {head}: {outcome.status}: {run.error if run else 'no record'}"
    per: dict[str, list[tuple[int, results.SearchSetting]]] = {}
    for step in run.steps:
        for s in step.settings:
            per.setdefault(json.dumps(s.params, sort_keys=True), []).append((step.day, s))
    if not per:
        return f"  ✓ {head}"
    what = "day" if run.scenario.timeline == "daily" else "step"
    key = max(per, key=lambda kk: min(s.recall for _d, s in per[kk]))
    steps = per[key]
    rd, rs = min(steps, key=lambda x: x[1].recall)
    pd, ps = max(steps, key=lambda x: x[1].latency_ms.p99)
    qd, qs = min(steps, key=lambda x: x[1].qps)
    band = f" [{ps.p99_ci[0]:.3g}–{ps.p99_ci[1]:.3g}]" if ps.p99_ci else ""
    mem = run.memory
    memory = f"index {mem.index_bytes / 2**20:.1f} MiB" if mem.index_bytes is not None else \
        f"RSS {(mem.rss_steady_bytes or 0) / 2**20:.0f} MiB"
    noisy = [s for _d, s in steps if s.noisy]
    params = results.format_params(json.loads(key))
    return (f"  ✓ {head} {params}: worst-{what} recall@{run.scenario.k} {rs.recall:.3f} ({what} {rd}) · "
            f"worst-{what} p99 {ps.latency_ms.p99:.3g} ms{band} ({what} {pd}) · "
            f"worst-{what} QPS {qs.qps:,.0f} ({what} {qd}) · {memory}"
            + (f" · NOISY ({len(noisy)}/{len(steps)} {what}s)" if noisy else ""))
