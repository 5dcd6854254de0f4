"""One run, inside its own subprocess: replay the op log on one index under one policy and measure it.

Started as `python -m annbench.replay WORKLOAD.json OUT.json` (annbench.supervisor). The workload
(annbench.workload) is what the sweep's parent validated: settings, the index's resolved parameters, its
policy, and the paths of the prepared dataset (memory-mapped .npy files), the per-step ground truth and
the op log in the harness's cache. The scenario file is never read here, so this process imports neither
the scenario reader (YAML) nor any adapter module but its own family's. It replays the op log and writes
its measurements as JSON to OUT.json. Everything measured here is this process's alone: the index's own
memory (annbench.memory: anonymous memory after the build beyond the reading the policy takes just before
it), the build's peak, threads. Every search setting is timed in `search.rounds` rounds (annbench.timing:
medians, 95 % intervals, the noisy verdict, each round's CPU share and load). Only the library call, the
id mapping it needs and, for a policy, the filtering or merging it needs are inside a timed region: a
step's queries are validated once and each setting's search is prepared (`Policy.prepare_search`) before
its clock starts. Recall, leaks and labels are computed afterwards from the answers.
"""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import threadpoolctl

from annbench import adapters, concurrency, memory, metrics, timing
from annbench.adapters.base import as_vectors, folder_bytes
from annbench.atomic import atomic_path
from annbench.groundtruth import true_distances
from annbench.jsoncodec import json_default
from annbench.oplog import Op, load_ops
from annbench.policies import Policy, make_policy
from annbench.workload import Workload

FRESHNESS_SAMPLE = 200  # items searched by their own vector per step to measure freshness
WARMUP_SINGLES = 20
BATCH_MIN_NS = 20_000_000  # a round's batch call is repeated until this much time has passed


def run(w: Workload) -> dict[str, Any]:
    """Replay the workload's op log on its index under its policy; the run's measurements."""
    if w.adapter_module is not None:
        importlib.import_module(w.adapter_module)  # registers an adapter that lives outside annbench (tests)
    data = Path(w.data_dir)
    pool = np.load(data / "base.npy", mmap_mode="r")
    queries_all = np.load(data / "queries.npy")
    base_labels = np.load(data / "base_labels.npy", mmap_mode="r") if (data / "base_labels.npy").exists() else None
    query_labels = np.load(data / "query_labels.npy") if (data / "query_labels.npy").exists() else None
    gt = np.load(w.gt_path)
    gt_d = gt["dists"]  # (search steps × all queries × k), exact over each step's live set

    ops = load_ops(Path(w.ops_path))  # the very log the parent computed the ground truth over
    cls = adapters.get(w.family)
    cls.load_library()  # a library the adapter imports lazily is loaded here, outside the timed build
    policy = make_policy(w.policy, cls, w.metric, pool.shape[1], w.threads, w.build_params, pool,
                         w.rebuild_every, static=w.timeline == "static", maintain_every=w.maintain_every)
    try:
        return _replay(w, policy, ops, pool, queries_all, gt_d, base_labels, query_labels)
    finally:
        policy.close()  # a database's server or folder must not outlive the run


def _replay(w: Workload, policy: Policy, ops: list[Op], pool: np.ndarray, queries_all: np.ndarray,
            gt_d: np.ndarray, base_labels: np.ndarray | None, query_labels: np.ndarray | None) -> dict[str, Any]:
    out: dict[str, Any] = {"steps": [], "memory": {}}  # the run's threads are the workload's: not repeated
    rng = np.random.default_rng(w.seed + 1)
    with threadpoolctl.threadpool_limits(limits=w.threads):
        out["threadpools"] = [
            {k: info.get(k) for k in ("user_api", "internal_api", "num_threads", "version")}
            for info in threadpoolctl.threadpool_info()
        ]
        search_i = 0
        build_memory: memory.IndexMemory | None = None
        ingested: set[int] = set()
        for i, op in enumerate(ops):
            if _concurrent_day(w, op):
                # the day's deletes, inserts and updates, applied together while clients search
                if op.day not in ingested:
                    ingested.add(op.day)
                    out["steps"].append(_ingest_step(w, policy, ops, i, queries_all, pool))
                continue
            if op.kind == "search":
                t0 = time.perf_counter()
                action = policy.maintain(op.day)
                if action is not None:
                    secs = time.perf_counter() - t0
                    live = len(policy.live.row_of)
                    # a rebuild, or a maintenance policy's upkeep call (op "maintain", named by "action")
                    step = {"op": "rebuild" if action == "rebuild" else "maintain", "day": op.day, "count": live,
                            "live": live, "seconds": secs, "vectors_per_s": live / secs if secs > 0 else None}
                    if action != "rebuild":
                        step["action"] = action
                    out["steps"].append(step)
                step = _search_step(w, policy, op, queries_all, pool, gt_d[search_i], base_labels, query_labels,
                                    rng)
                search_i += 1
                out["steps"].append(step)
                continue
            mem = None
            if op.kind == "build":
                # the policy takes the "before" reading itself, after its own bookkeeping and before the index
                mem = memory.IndexMemory()
                policy.before_index_build = mem.mark_before
            peak_reset = op.kind == "build" and memory.reset_peak_rss()
            t0 = time.perf_counter()
            if op.kind == "build":
                policy.build(op.rows, op.ids)
            else:
                getattr(policy, op.kind)(*((op.rows, op.ids) if op.rows is not None else (op.ids,)))
            secs = time.perf_counter() - t0
            step = {"op": op.kind, "day": op.day, "count": op.count, "live": len(policy.live.row_of),
                    "seconds": secs, "vectors_per_s": op.count / secs if secs > 0 else None}
            out["steps"].append(step)
            if mem is not None:
                policy.before_index_build = None  # a rebuild's memory is not the day-0 build's
                out["memory"] = _build_memory(policy, queries_all, w.k, mem, peak_reset)
                out["build_params_used"] = policy.adapter.resolved_params()  # e.g. nlist 0 → the 4·√n it used
                build_memory = mem
        if build_memory is not None and w.timeline == "daily":
            # what the index and the policy's search-side state (tombstones, fresh buffer) hold at the end
            out["memory"]["index_bytes_last_day"] = build_memory.held()
    return out


def _concurrent_day(w: Workload, op: Op) -> bool:
    cu = w.concurrent_updates
    return cu is not None and op.kind in ("delete", "insert", "update") and cu.applies(op.day)


def _ingest_step(w: Workload, policy: Policy, ops: list[Op], i: int, queries_all: np.ndarray,
                 pool: np.ndarray) -> dict[str, Any]:
    """Search while updating (annbench.concurrency.ingest_day) for the day of ops[i], its first write."""
    day = ops[i].day
    day_ops = [o for o in ops[i:] if o.day == day and o.kind in ("delete", "insert", "update")]
    search_op = next(o for o in ops[i:] if o.kind == "search")
    return concurrency.ingest_day(policy, day_ops, search_op, w.search_grid, queries_all, pool, w.k, w.metric,
                                  w.concurrent_updates)


def _build_memory(policy: Policy, queries: np.ndarray, k: int, mem: memory.IndexMemory,
                  peak_reset: bool) -> dict[str, Any]:
    peak = memory.peak_rss()
    policy.search(queries, k)  # one pass, so mmapped indexes (annoy) have paged in what queries touch
    index_bytes = mem.held()
    steady = memory.rss()
    with tempfile.TemporaryDirectory(prefix="annbench-save-") as tmp:
        written = policy.save(Path(tmp) / "index")
        on_disk = folder_bytes(Path(tmp))
    out: dict[str, Any] = {
        "index_bytes": index_bytes, "index_bytes_how": memory.HOW,
        "library_bytes": policy.adapter.library_bytes(),
        # an embedding transform's PCA and kept original vectors: inside index_bytes, reported apart
        **policy.adapter.parts_bytes(),
        "rss_baseline_bytes": mem.rss_before, "rss_peak_bytes": peak, "rss_steady_bytes": steady,
        # RSS after − before: also counts the dataset's file pages the build read; kept for comparison
        "index_rss_bytes": steady - mem.rss_before, "saved_bytes": int(written), "saved_bytes_on_disk": on_disk,
        "peak_is_build_only": peak_reset}
    external = _external(policy)  # a database's files and server: memory figures add them (annbench.recommend)
    if external:
        out.update(external)
        out["index_bytes_note"] = ("the index lives outside this process (a database's files and server, "
                                   "external_bytes): this process's own figure is only its client's")
    return out


def _external(policy: Policy) -> dict[str, Any]:
    """{"external_bytes": the adapter's footprint outside this process}, or {} for an in-process library."""
    external = policy.adapter.footprint()
    return {"external_bytes": {key: int(v) for key, v in external.items()}} if external else {}


def _search_step(w: Workload, policy: Policy, op: Op, queries_all: np.ndarray, pool: np.ndarray, gt_d: np.ndarray,
                 base_labels: np.ndarray | None, query_labels: np.ndarray | None,
                 rng: np.random.Generator) -> dict[str, Any]:
    grid, metric = w.search_grid, w.metric
    qidx = op.queries
    # validated once, here: the timed calls (Policy.prepare_search) take C-contiguous float32 (m, dim) as given
    queries = as_vectors(queries_all[qidx], pool.shape[1], "search step queries")
    singles = [queries[i:i + 1] for i in range(len(queries))]  # views prepared outside the timed loop
    k = w.k
    kth = gt_d[qidx, k - 1]
    fresh = sorted(policy.fresh_ids)
    if len(fresh) > FRESHNESS_SAMPLE:
        fresh = sorted(rng.choice(np.asarray(fresh, np.int64), FRESHNESS_SAMPLE, replace=False).tolist())
    fresh_ids = np.asarray(fresh, np.int64)
    fresh_vecs = np.ascontiguousarray(pool[policy.live.rows_for(fresh_ids)], dtype=np.float32) if fresh else None
    deleted = np.fromiter(policy.live.deleted, np.int64, len(policy.live.deleted))
    timed = _timed_rounds(w, policy, grid, queries, singles, k)
    settings = []
    for si, params in enumerate(grid):
        policy.set_search_params(**params)
        found = timed[si]["found"]
        rows = policy.live.rows_for(found)
        dists = true_distances(queries, pool, rows, metric)
        recall = metrics.recall_at_k(np.where(rows >= 0, found, -1), dists, kth)
        s: dict[str, Any] = {
            "params": params,
            "recall": float(recall.mean()),
            "recall_min": float(recall.min()),
            "recall_per_query_quantiles": {str(p): float(np.quantile(recall, p)) for p in (0.01, 0.1, 0.5)},
            "leaks": int(metrics.leaks(found, deleted).sum()),
            "queries_with_leaks": int((metrics.leaks(found, deleted) > 0).sum()),
            **timed[si]["figures"],
        }
        if base_labels is not None and query_labels is not None:
            labels = np.where(rows >= 0, np.asarray(base_labels)[np.maximum(rows, 0)], -1)
            s["hit_at_k"] = float(metrics.hit_at_k(labels, query_labels[qidx]).mean())
            s["p_at_k"] = float(metrics.precision_at_k(labels, query_labels[qidx], k).mean())
        if w.keep_answers:
            s["answers"] = found.tolist()
            s["query_indices"] = qidx.tolist()
        if fresh_vecs is not None:
            got = policy.search(fresh_vecs, k)
            s["freshness"] = float((got == fresh_ids[:, None]).any(axis=1).mean())
            s["freshness_sample"] = len(fresh_ids)
        if w.concurrency is not None and w.concurrency.applies(op.day):
            # T client threads, then batch with T library threads beside it (annbench.concurrency)
            s["concurrency"] = concurrency.measure_levels(policy, queries, singles, k, w.concurrency,
                                                          {"library_threads": w.threads, "qps": s["qps"]},
                                                          rounds=w.rounds)
        settings.append(s)
    step = {"op": "search", "day": op.day, "count": int(len(qidx)), "live": len(policy.live.row_of),
            "seconds": float(sum(s["batch_seconds"] for s in settings)), "settings": settings}
    step.update(_external(policy))  # a database's files grow with the days: kept per step, outside the timed region
    return step


def _timed_rounds(w: Workload, policy: Policy, grid: list[dict[str, Any]], queries: np.ndarray,
                  singles: list[np.ndarray], k: int) -> list[dict[str, Any]]:
    """Every search setting's single-query loop and batch call, repeated in `w.rounds` rounds.

    Rounds interleave the settings (round 1 of every setting, then round 2 …), so a burst of load on the
    machine lands on several settings' rounds instead of wholly on one setting's figures, and each round
    alternates the one-query loop with the batch call. What is timed is the policy's prepared search
    (`Policy.prepare_search`, made after the setting is applied and before its clock starts): the library
    call and the id mapping, filtering or merging it needs; `queries` were validated by the caller. Per
    timed loop the process's CPU time ÷ wall time (did the timed thread have its core?) and the load
    average are kept beside the timings.
    """
    rounds, n = w.rounds, len(singles)
    lat = np.empty((len(grid), rounds, n), dtype=np.int64)
    batch_s: list[list[float]] = [[] for _ in grid]
    loops: list[list[dict[str, float]]] = [[] for _ in grid]
    found: list[np.ndarray | None] = [None] * len(grid)
    clock, cpu = time.perf_counter_ns, time.process_time
    for r in range(rounds):
        for si, params in enumerate(grid):
            policy.set_search_params(**params)
            search = policy.prepare_search(k)  # the checks that do not depend on the queries, done once
            if r == 0 and w.warmup:  # both paths: the batch call and the one-query call reach different code
                search(queries)
                for q in singles[:WARMUP_SINGLES]:
                    search(q)
            row = lat[si, r]
            c0, w0 = cpu(), clock()
            for i, q in enumerate(singles):
                t0 = clock()
                search(q)
                row[i] = clock() - t0
            c1, w1 = cpu(), clock()
            # a batch call of a few milliseconds is at the mercy of one scheduler tick: repeat it for at least
            # BATCH_MIN_S and time the calls together
            calls = 0
            while True:
                found[si] = search(queries)
                calls += 1
                w2 = clock()
                if w2 - w1 >= BATCH_MIN_NS:
                    break
            c2 = cpu()
            batch_s[si].append((w2 - w1) / 1e9 / calls)
            # a batch call may use `threads` cores: its share is per core it was allowed
            loops[si].append({"round": r, "single_seconds": (w1 - w0) / 1e9,
                              "single_cpu_share": timing.cpu_share(c1 - c0, (w1 - w0) / 1e9),
                              "batch_calls": calls,
                              "batch_cpu_share": timing.cpu_share(c2 - c1, (w2 - w1) / 1e9, w.threads),
                              "load1": timing.load_average()})
    out = []
    for si in range(len(grid)):
        figures = timing.summarise_rounds(lat[si], batch_s[si], len(singles), seed=si)
        for rec, loop in zip(figures["per_round"], loops[si], strict=True):
            rec.update(loop)
        shares = [x for lp in loops[si] for x in (lp["single_cpu_share"], lp["batch_cpu_share"])]
        figures["noise"] = timing.noise_verdict(figures["per_round"], shares,
                                                min(lp["single_seconds"] for lp in loops[si]))
        figures["rounds"] = rounds
        figures["latency_ns"] = lat[si].reshape(-1).tolist()  # round after round, each in query order
        figures["batch_seconds_all"] = batch_s[si]
        out.append({"figures": figures, "found": found[si]})
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m annbench.replay WORKLOAD.json OUT.json`: replay the run, write its measurements to OUT.json."""
    workload_path, out_path = sys.argv[1:] if argv is None else argv
    out = run(Workload.load(Path(workload_path)))
    with atomic_path(out_path) as tmp:  # the supervisor reads it whole or not at all
        tmp.write_text(json.dumps(out, default=json_default))
    return 0


if __name__ == "__main__":
    sys.exit(main())
