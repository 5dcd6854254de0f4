"""Concurrency: search throughput under T client threads, and search while the catalog is being updated.

Owns what happens inside a run's process when a scenario asks for concurrency (`search.concurrency`,
`timeline.concurrent_updates`; keys in configs/scenarios/README.md):

- `measure_levels`: at a search step, for each level T, T client threads started together behind a
  barrier each issue single queries (cycling over the step's queries) for a fixed time through the same
  policy and adapter, with the library's own threads at 1. Per level: QPS, latency percentiles (every
  raw sample kept), process CPU time ÷ wall time (cores used), queries per thread, and beside it the
  batch figure with the library's own threads at T (one client, one call, all queries).
- `ingest_day`: a day's deletes, inserts and updates applied in batches by one writer thread at a
  target rate (vectors/s) while T client threads search. Records the achieved ingest rate, latency
  under ingestion against the same load at rest (measured right after, same threads, same setting),
  and recall on snapshots: at evenly spaced points the writer pauses between batches with no search in
  flight, every search setting is searched and scored against the exact ground truth over the live set
  of that moment, then writing resumes. Pauses are excluded from the rate and from the latencies.
- `Guard`: the lock a policy takes when its library is not safe for concurrent reads and writes. Which
  calls may overlap is declared by each adapter class as `concurrency` (an
  `annbench.adapters.base.Safety`, with the library's documentation or the check run here as its
  source); `safety_of` reads it. Annbench never uses a library in a way it does not support; the
  lock's cost (a search waiting for a write batch) is inside the timed search, so it shows in the
  latency figures.

Which libraries release the GIL is measured, not assumed: `annbench concurrency` prints per family
(`library_table`) how far a pure-Python thread gets while the library searches (`gil_share`), QPS at
1 and 2 client threads, and the cores the machine could give at that moment (`free_cores`).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from annbench import adapters, catalog, metrics, timing
from annbench.adapters.base import Adapter, Safety, declared_safety, validate_params
from annbench.groundtruth import exact_knn, true_distances
from annbench.oplog import Op
from annbench.policies import Policy, make_policy
from annbench.vectors import Metric, prepare_vectors
from annbench.workload import Concurrency, ConcurrentUpdates

BATCH_REPEATS = 3  # batch QPS with the library's threads: median of these
CONTROL_SECONDS = 0.03  # the free-cores control, per thread count
_CONTROL_BUF = bytes(1 << 18)  # hashlib releases the GIL for inputs this large


# --- what each library allows -----------------------------------------------------------------------------
# Every adapter class declares its own `concurrency` (annbench/adapters/*.py). An adapter that declares
# none (a plugin written before the declaration existed) fails the conformance suite; run anyway, it is
# locked as if nothing may overlap.
UNKNOWN = Safety(False, False, "the adapter declares no `concurrency` (annbench.adapters.base.Safety): every "
                 "search and every write takes one lock.")


def safety_of(adapter: type[Adapter] | Adapter | None, policy: str) -> Safety:
    """The rule a guarded policy follows: the adapter class's declaration (UNKNOWN when it has none).

    The rebuild policy swaps its buffer's ids and vectors as two separate arrays, which a search must
    never see half-swapped: its writes are always exclusive, whatever the library allows.
    """
    cls = adapter if adapter is None or isinstance(adapter, type) else type(adapter)
    s = (declared_safety(cls) if cls is not None else None) or UNKNOWN
    if policy == "rebuild" and s.concurrent_write:
        return Safety(s.concurrent_search, False, s.source + " Rebuild policy: its buffer is swapped under the lock.")
    return s


class RWLock:
    """Many readers or one writer, with writers served first and in arrival order.

    A waiting writer stops new readers, and exclusive holders are served by ticket (FIFO): under a search
    load that never pauses, a lock without either starves the writer (measured: a writer waiting 86 s for
    an exclusive lock that searching clients kept taking), and the ingest rate would mean nothing.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._next_ticket = 0
        self._serving = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._writers_waiting += 1
            while self._writer or self._readers or self._serving != ticket:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._serving += 1
                self._cond.notify_all()


class Guard:
    """A policy used by several threads at once, with the locking its adapter declares (`safety_of`)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.family = policy.adapter.name if policy.adapter is not None else ""
        self.safety = safety_of(policy.adapter, policy.name)
        self.lock = RWLock()

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "policy": self.policy.name,
                "searches": "concurrent" if self.safety.concurrent_search else "one at a time (exclusive lock)",
                "writes": "beside searches" if self.safety.concurrent_write else "exclusive lock (no search runs)",
                "source": self.safety.source}

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        with self.lock.shared() if self.safety.concurrent_search else self.lock.exclusive():
            return self.policy.search(queries, k)

    def write(self, kind: str, rows: np.ndarray | None, ids: np.ndarray) -> float:
        """Apply one write batch; return the seconds spent waiting for the lock."""
        call: Callable[..., None] = getattr(self.policy, kind)
        args = (ids,) if kind == "delete" else (rows, ids)
        if self.safety.concurrent_write:
            call(*args)
            return 0.0
        t0 = time.perf_counter()
        with self.lock.exclusive():
            waited = time.perf_counter() - t0
            call(*args)
        return waited


def _unguarded(policy: Policy, k: int) -> Callable[[np.ndarray, int], np.ndarray]:
    """At rest (no writer) searches need a lock only for an adapter not declaring concurrent searches safe.

    Clients time the policy's prepared call at depth k, as the single-query loop does (replay), so one client's
    figure here and the step's p50 measure the same work; nothing writes while they run, so it stays valid.
    Prepared after the library's threads are set: a prepared call keeps them."""
    prepared = policy.prepare_search(k)
    if safety_of(policy.adapter, policy.name).concurrent_search:
        return lambda queries, _k: prepared(queries)
    lock = threading.Lock()

    def search(queries: np.ndarray, _k: int) -> np.ndarray:
        with lock:
            return prepared(queries)

    return search


# --- client threads -----------------------------------------------------------------------------------------
class _Pause:
    """Lets the writer stop the clients between queries and wait until none is in flight (for a snapshot).

    Clients pass it *before* starting their timer, so a pause never shows as a slow query."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._paused = False
        self._in_flight = 0

    def enter(self) -> None:
        with self._cond:
            while self._paused:
                self._cond.wait()
            self._in_flight += 1

    def leave(self) -> None:
        with self._cond:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._cond.notify_all()

    @contextmanager
    def paused(self) -> Iterator[None]:
        with self._cond:
            self._paused = True
            while self._in_flight:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._paused = False
                self._cond.notify_all()


@dataclass
class _Load:
    """What T client threads measured: one latency list and one end time per thread."""

    latencies: list[list[int]]
    start_ns: int
    end_ns: list[int]
    cpu_s: float

    def summary(self, paused_ns: int = 0) -> dict[str, Any]:
        lat = np.asarray([x for per in self.latencies for x in per], dtype=np.int64)
        wall = (max(self.end_ns) - self.start_ns - paused_ns) / 1e9
        return {
            "threads": len(self.latencies),
            "seconds": wall,
            "queries": int(lat.size),
            "qps": float(lat.size / wall) if wall > 0 else float("nan"),
            "latency_ms": metrics.latency_summary(lat),
            "latency_ns": lat.tolist(),
            "per_thread_queries": [len(per) for per in self.latencies],
            "cpu_seconds": self.cpu_s,
            # process CPU time over wall time: 2.0 = two cores busy; 1.0 with T=2 = the threads took turns
            "cpu_utilisation": self.cpu_s / wall if wall > 0 else float("nan"),
        }


def _run_clients(search: Callable[[np.ndarray, int], np.ndarray], singles: list[np.ndarray], k: int, threads: int,
                 stop: Callable[[int, int], bool], pause: _Pause | None = None,
                 per_thread_init: Callable[[], None] | None = None,
                 started: threading.Event | None = None) -> _Load:
    """T threads issue single queries until `stop(now_ns, start_ns)`; each starts at its own offset in the queries.

    Each thread sends one untimed query first (per-thread library state, e.g. OpenMP's), then all start
    together behind a barrier; `started` is set at that moment. Only the search call is timed.
    """
    n = len(singles)
    lats: list[list[int]] = [[] for _ in range(threads)]
    ends = [0] * threads
    errors: list[BaseException] = []
    mark = {"start": 0, "cpu": 0.0}

    def begin() -> None:  # the barrier's action: runs once, just before every thread is released
        mark["cpu"] = time.process_time()
        mark["start"] = time.perf_counter_ns()
        if started is not None:
            started.set()

    barrier = threading.Barrier(threads, action=begin)

    def client(i: int) -> None:
        try:
            if per_thread_init is not None:
                per_thread_init()
            j = (i * n) // threads
            search(singles[j], k)
            barrier.wait()
            start, mine, clock = mark["start"], lats[i], time.perf_counter_ns
            while True:
                if pause is not None:
                    pause.enter()
                t0 = clock()
                if stop(t0, start):
                    if pause is not None:
                        pause.leave()
                    break
                try:
                    search(singles[j], k)
                finally:
                    if pause is not None:
                        pause.leave()
                mine.append(clock() - t0)
                j = j + 1 if j + 1 < n else 0
        except threading.BrokenBarrierError:
            pass
        except BaseException as e:  # re-raised in the caller: a crash in a client is the run's failure
            errors.append(e)
            barrier.abort()
        ends[i] = time.perf_counter_ns()

    workers = [threading.Thread(target=client, args=(i,), name=f"annbench-client-{i}", daemon=True)
               for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    cpu = time.process_time() - mark["cpu"]
    if errors:
        raise errors[0]
    return _Load(lats, mark["start"], ends, cpu)


def _one_library_thread(policy: Policy) -> Callable[[], None]:
    """Per client thread: the library's own threads at 1. Some setters are per calling thread (OpenMP's
    omp_set_num_threads, used by faiss), so each client calls the adapter's setter itself."""
    adapter = policy.adapter

    def init() -> None:
        adapter.set_threads(1)

    return init


def free_cores(threads: int, seconds: float = CONTROL_SECONDS) -> float:
    """How many cores `threads` threads of this process get right now: CPU time ÷ wall time of GIL-free work.

    hashlib releases the GIL on large inputs, so on an idle 2-core machine 2 hashing threads keep 2 cores
    busy; when other processes are running, fewer. Measured just before a level, it tells a library that
    does not scale from a machine that had no second core to give.
    """
    budget = int(seconds * 1e9)
    barrier = threading.Barrier(threads)

    def work() -> None:
        barrier.wait()
        start = time.perf_counter_ns()
        while time.perf_counter_ns() - start < budget:
            hashlib.sha256(_CONTROL_BUF)

    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    c0, t0 = time.process_time(), time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    return (time.process_time() - c0) / wall if wall > 0 else float("nan")


def measure_level(policy: Policy, singles: list[np.ndarray], k: int, threads: int, seconds: float,
                  search: Callable[[np.ndarray, int], np.ndarray] | None = None) -> dict[str, Any]:
    """T client threads searching for `seconds`, the library's own threads at 1 (restored afterwards)."""
    base = policy.adapter.threads
    control = free_cores(threads)
    policy.adapter.set_threads(1)
    budget = int(seconds * 1e9)
    try:
        load = _run_clients(search or _unguarded(policy, k), singles, k, threads,
                            lambda now, start: now - start >= budget, per_thread_init=_one_library_thread(policy))
    finally:
        policy.adapter.set_threads(base)
    return {**load.summary(), "free_cores": control, "load1": timing.load_average()}


def batch_qps(policy: Policy, queries: np.ndarray, k: int, library_threads: int) -> dict[str, Any]:
    """One client, one call with every query, the library's own threads (and BLAS's) at `library_threads`."""
    base = policy.adapter.threads
    try:
        policy.adapter.set_threads(library_threads)
        with threadpool_limits(limits=library_threads):
            policy.search(queries, k)  # warm: the thread pool is (re)started at this size
            secs = []
            for _ in range(BATCH_REPEATS):
                t0 = time.perf_counter_ns()
                policy.search(queries, k)
                secs.append((time.perf_counter_ns() - t0) / 1e9)
    finally:
        policy.adapter.set_threads(base)
    med = float(np.median(secs))
    return {"library_threads": library_threads, "qps": metrics.qps(len(queries), med), "seconds_all": secs}


def measure_levels(policy: Policy, queries: np.ndarray, singles: list[np.ndarray], k: int,
                   spec: Concurrency, step_batch: dict[str, Any] | None = None,
                   rounds: int = 1) -> list[dict[str, Any]]:
    """Every level of `search.concurrency` for the current search setting: clients, and batch beside it.

    The levels run in `rounds` rounds (level 1, level 2, …, then again), each `seconds / rounds` long, so a
    burst of load on the machine shows as a round that disagrees instead of as one level's figure. Per
    level: QPS is the median over rounds with a 95 % interval (annbench.timing), latencies pool every
    round's samples, and `per_round` keeps each round's figures.

    `step_batch` ({"library_threads", "qps"}) is the batch figure the search step measured already; a
    level with that many library threads reuses it instead of timing the same call again.
    """
    seconds = max(spec.seconds / rounds, 0.02)
    per: dict[int, list[dict[str, Any]]] = {level: [] for level in spec.levels}
    for _ in range(rounds):
        for level in spec.levels:
            per[level].append(measure_level(policy, singles, k, level, seconds))
    out = []
    for level in spec.levels:
        rec = _pool_rounds(per[level])
        if step_batch is not None and step_batch["library_threads"] == level:
            rec["batch"] = {**step_batch, "from": "the search step's batch figure"}
        else:
            rec["batch"] = batch_qps(policy, queries, k, level)
        out.append(rec)
    return out


def _pool_rounds(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """One level's record from its rounds (`measure_level` each): the same keys, figures over all rounds."""
    lat = np.asarray([x for r in recs for x in r["latency_ns"]], dtype=np.int64)
    qps = np.asarray([r["qps"] for r in recs], dtype=np.float64)
    wall = sum(r["seconds"] for r in recs)
    cpu = sum(r["cpu_seconds"] for r in recs)
    qps_median, qps_ci = timing.median_over_rounds(qps)
    return {
        "threads": recs[0]["threads"], "seconds": wall, "queries": int(lat.size),
        "qps": qps_median, "qps_ci95": qps_ci,
        "latency_ms": metrics.latency_summary(lat), "latency_ns": lat.tolist(),
        "per_thread_queries": [sum(q) for q in zip(*(r["per_thread_queries"] for r in recs), strict=True)],
        "cpu_seconds": cpu, "cpu_utilisation": cpu / wall if wall > 0 else float("nan"),
        "free_cores": float(min(r["free_cores"] for r in recs)),
        "rounds": len(recs),
        "per_round": [{"qps": r["qps"], "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"],
                       "cpu_utilisation": r["cpu_utilisation"], "free_cores": r["free_cores"],
                       "load1": r["load1"]} for r in recs],
    }


# --- search while updating ------------------------------------------------------------------------------------
def _write_batches(day_ops: list[Op], size: int) -> list[tuple[str, np.ndarray | None, np.ndarray]]:
    """The day's ops, in their order (deletes, inserts, updates), cut into write calls of `size` items."""
    out = []
    for op in day_ops:
        assert op.ids is not None
        for a in range(0, len(op.ids), size):
            rows = None if op.rows is None else op.rows[a:a + size]
            out.append((op.kind, rows, op.ids[a:a + size]))
    return out


def _snapshot(policy: Policy, grid: list[dict[str, Any]], queries: np.ndarray, pool: np.ndarray, k: int,
              metric: Metric, applied: int) -> dict[str, Any]:
    """Recall of every search setting over the live set of this moment (no write, no search in flight)."""
    t0 = time.perf_counter()
    rows, ids = policy.live.arrays()
    gt_d, _ = exact_knn(pool, queries, k, metric, rows=rows, ids=ids)
    kth = gt_d[:, k - 1]
    gt_s = time.perf_counter() - t0
    deleted = np.fromiter(policy.live.deleted, np.int64, len(policy.live.deleted))
    settings = []
    for params in grid:
        policy.set_search_params(**params)
        found = policy.search(queries, k)
        frows = policy.live.rows_for(found)
        recall = metrics.recall_at_k(np.where(frows >= 0, found, -1), true_distances(queries, pool, frows, metric), kth)
        settings.append({"params": params, "recall": float(recall.mean()), "recall_min": float(recall.min()),
                         "leaks": int(metrics.leaks(found, deleted).sum())})
    return {"applied": applied, "live": len(policy.live.row_of), "gt_seconds": gt_s, "settings": settings}


def ingest_day(policy: Policy, day_ops: list[Op], search_op: Op, grid: list[dict[str, Any]],
               queries_all: np.ndarray, pool: np.ndarray, k: int, metric: Metric,
               spec: ConcurrentUpdates) -> dict[str, Any]:
    """Apply one day's writes from this thread at `spec.rate` while `spec.threads` clients search; the step record.

    The clients search with the index's last search setting (usually its highest-effort one) and the day's
    search step's queries. The same load is then measured at rest for `spec.at_rest_seconds`.
    """
    guard = Guard(policy)
    load_params = grid[-1]
    qidx = search_op.queries
    queries = np.ascontiguousarray(queries_all[qidx])
    singles = [queries[i:i + 1] for i in range(len(queries))]
    batches = _write_batches(day_ops, spec.batch)
    total = sum(len(ids) for _, _, ids in batches)
    # after which batch each snapshot is taken: evenly spaced in items written, never after the last batch
    cum = np.cumsum([len(ids) for _, _, ids in batches])
    marks = {int(np.searchsorted(cum, total * (i + 1) / (spec.snapshots + 1))) for i in range(spec.snapshots)}
    marks.discard(len(batches) - 1)

    policy.set_search_params(**load_params)
    base_threads = policy.adapter.threads
    policy.adapter.set_threads(1)
    pause = _Pause()
    done = threading.Event()
    started = threading.Event()
    box: dict[str, Any] = {}

    def clients() -> None:
        try:
            box["load"] = _run_clients(guard.search, singles, k, spec.threads, lambda _now, _start: done.is_set(),
                                       pause=pause, per_thread_init=_one_library_thread(policy), started=started)
        except BaseException as e:
            box["error"] = e
            started.set()

    runner = threading.Thread(target=clients, name="annbench-clients", daemon=True)
    runner.start()
    started.wait()
    write_s = wait_s = paused_s = 0.0
    per_kind = {"delete": 0, "insert": 0, "update": 0}
    snaps: list[dict[str, Any]] = []
    applied = 0
    t0 = time.perf_counter()
    try:
        for bi, (kind, rows, ids) in enumerate(batches):
            if "error" in box:
                break
            # the writer's schedule: item `applied` is due at t0 + paused + applied / rate
            due = t0 + paused_s + applied / spec.rate
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            w0 = time.perf_counter()
            wait_s += guard.write(kind, rows, ids)
            write_s += time.perf_counter() - w0
            applied += len(ids)
            per_kind[kind] += len(ids)
            if bi in marks:
                p0 = time.perf_counter()
                with pause.paused():
                    snaps.append(_snapshot(policy, grid, queries, pool, k, metric, applied))
                    policy.set_search_params(**load_params)
                paused_s += time.perf_counter() - p0
        # The window ends when the schedule does (the last item's slot, total / rate), not at the last call:
        # a writer that keeps up achieves exactly the target, a slower one less.
        end = t0 + paused_s + applied / spec.rate
        now = time.perf_counter()
        if end > now and "error" not in box:
            time.sleep(end - now)
        active_s = time.perf_counter() - t0 - paused_s
    finally:
        done.set()
        runner.join()
        policy.adapter.set_threads(base_threads)
    if "error" in box:
        raise box["error"]
    under = box["load"].summary(paused_ns=int(paused_s * 1e9))
    at_rest = measure_level(policy, singles, k, spec.threads, spec.at_rest_seconds)
    return {
        "op": "ingest", "day": search_op.day, "count": applied, "live": len(policy.live.row_of),
        "ops": per_kind,
        # `seconds` is what the writes cost (calls + lock waits), comparable with an at-rest update step;
        # the wall time is set by the target rate
        "seconds": write_s, "wall_seconds": active_s, "paused_seconds": paused_s,
        "target_rate": spec.rate, "achieved_rate": applied / active_s if active_s > 0 else None,
        "vectors_per_s": applied / active_s if active_s > 0 else None,
        "batch": spec.batch, "batches": len(batches), "lock_wait_seconds": wait_s,
        "guard": guard.describe(), "params": load_params, "search_threads": spec.threads,
        "under_ingest": under, "at_rest": at_rest, "snapshots": snaps,
    }


# --- which libraries release the GIL, measured -----------------------------------------------------------------
def gil_share(call: Callable[[], Any], seconds: float = 0.3) -> float:
    """How much a pure-Python thread progresses while `call` runs in another thread, relative to alone.

    A library that releases the GIL during its C++ work leaves the interpreter to the other thread: ~1 with
    a free core, ~0.5 when the two threads share one core. One that holds it leaves only the gaps between
    calls: near 0. Unlike a QPS ratio, this holds on a machine whose other core is busy. `call` should
    take well over the interpreter's 5 ms switch interval (a batch search), so the gaps do not dominate.
    """
    def count(until: Callable[[], bool]) -> float:
        n, t0 = 0, time.perf_counter()
        while not until():
            for _ in range(1000):
                n += 1
        return n / (time.perf_counter() - t0)

    t_end = time.perf_counter() + seconds
    alone = count(lambda: time.perf_counter() >= t_end)
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            call()

    worker = threading.Thread(target=busy, daemon=True)
    worker.start()
    t_end = time.perf_counter() + seconds
    during = count(lambda: time.perf_counter() >= t_end)
    stop.set()
    worker.join()
    return during / alone if alone > 0 else float("nan")


TABLE_CONFIGS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # family → (policy, build params, search params): the middle settings of reseller_daily_updates
    "faiss-flat": ("native", {}, {}),
    "faiss-ivf": ("native", {"nlist": 0}, {"nprobe": 8}),
    "faiss-hnsw": ("native", {"M": 16, "efConstruction": 100}, {"efSearch": 48}),
    "hnswlib": ("native", {"M": 16, "ef_construction": 100}, {"ef": 48}),
    "annoy": ("rebuild", {"n_trees": 32}, {"search_k": 2000}),
    "scann": ("native", {"num_leaves": 0}, {"leaves_to_search": 16}),
}


def library_table(n: int = 50_000, seconds: float = 1.0, families: Sequence[str] | None = None) -> Iterator[str]:
    """`annbench concurrency`: per family, GIL release and QPS at 1 and 2 client threads, as text lines.

    A generator, so each family's line can be shown as soon as it is measured (each takes seconds).
    `families` defaults to those of `TABLE_CONFIGS`; another family is measured with its defaults.
    """
    wanted = list(families) if families else list(TABLE_CONFIGS)
    classes = {family: adapters.get(family) for family in wanted}  # an unknown name fails before any work
    ds = catalog.generate(n=n, seed=0)
    base = prepare_vectors(ds.base, Metric.COSINE)
    queries = prepare_vectors(ds.queries[:500], Metric.COSINE)
    singles = [queries[i:i + 1] for i in range(len(queries))]
    rows = np.arange(n, dtype=np.int64)
    yield (f"catalog {n} × {base.shape[1]}, {len(queries)} queries, k=10; cores 2 threads get now: "
           f"{free_cores(2, 0.3):.2f}")
    yield "family      GIL share  QPS T=1  QPS T=2  ratio  cores busy T=2  free cores  batch 1 lib thr  2 lib thr"
    for family, cls in classes.items():
        policy_name, build, search = TABLE_CONFIGS.get(family, ("native", {}, {}))
        policy = make_policy(policy_name, cls, Metric.COSINE, base.shape[1], 1,
                             validate_params(cls.build_params, build, family, "build"), base, 3)
        policy.build(rows, rows)
        policy.set_search_params(**search)
        for q in singles[:50]:
            policy.search(q, 10)
        long_batch = np.tile(queries, (4, 1))  # ~100 ms calls: the gaps between calls then hardly count
        share = gil_share(lambda p=policy, q=long_batch: p.search(q, 10))
        one, two = (measure_level(policy, singles, 10, t, seconds) for t in (1, 2))
        b1, b2 = (batch_qps(policy, queries, 10, t)["qps"] for t in (1, 2))
        yield (f"{family:11s} {share:9.2f} {one['qps']:8.0f} {two['qps']:8.0f} {two['qps'] / one['qps']:6.2f} "
               f"{two['cpu_utilisation']:15.2f} {two['free_cores']:11.2f} {b1:16.0f} {b2:10.0f}")
