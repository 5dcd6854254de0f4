"""P2 and P3: how fast annbench computes exact ground truth, against the machine's sgemm, faiss and recomputation.

P2 times `groundtruth.exact_knn`, `faiss.knn` and the bare GEMMs of exact_knn's pass (numpy float32
matmul through the same BLAS, on the same tiles: `DEFAULT_QUERY_BLOCK` queries × `DEFAULT_BLOCK_SIZE`
base rows × d, each into a reused buffer; once as one matmul per tile on BLAS's threads, once split
over threads with a one-thread BLAS as exact_knn runs it: the faster is the limit) on the same base and
queries, in an order that alternates (forward, backward, …). Throughput is GFLOP/s-equivalent =
2·n·q·d / seconds (the GEMM's work, whatever the method really does); the figures are exact_knn ÷ that
sgemm and exact_knn ÷ faiss.knn, per repeat, median over repeats. exact_knn's memory is measured with
tracemalloc (numpy's allocations; the pool is allocated before tracing starts) at n and at n/4: if it
is bounded by the block size, the two peaks are the same. The BLAS numpy runs is read with threadpoolctl.

P3 replays a 30-day version of `reseller_daily_updates` (same catalog, k, queries, churn rates and
delete rule; the day-0 share is lowered so the reserve lasts 30 days, and the catalog enlarged so day 0
holds as many images as the shipped scenario's) through the harness's own ground-truth code
(`harness._ground_truth`: `step_ground_truth` over the op log, cached file written), and divides its
time by one `exact_knn` over the final catalog with the same queries. Every step is also recomputed
from scratch and compared with the harness's file, which gives the "recompute every step" ratio too;
the previous implementation (`LiveGroundTruth` replayed op by op) is timed and compared as well.
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
from common import Line, blas_info, median, proc_status, profile_text

from annbench.memory import reset_peak_rss


def _gflops(n: int, q: int, d: int, seconds: float) -> float:
    return 2.0 * n * q * d / seconds / 1e9


def _traced_peak(fn: Any) -> tuple[int, Any]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        out = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, out


def _sgemm_tiles(queries: np.ndarray, base: np.ndarray, query_block: int, block_size: int, split: int) -> None:
    """The GEMMs of exact_knn's pass and nothing else: every (query block × base block × d) product.

    Same tiles as exact_knn (base blocks the outer loop, each product into a reused buffer, the block
    transposed as the right operand), with `split` = 1: one matmul per tile on BLAS's own threads;
    `split` = w > 1: w threads, each with a one-thread BLAS and query blocks of its own, as exact_knn
    runs them when BLAS may use w threads.
    """
    from concurrent.futures import ThreadPoolExecutor

    import threadpoolctl

    nq, n = len(queries), len(base)
    qb = min(query_block, -(-nq // split))
    bufs = [np.empty((min(qb, nq), min(block_size, n)), dtype=np.float32) for _ in range(split)]

    def work(w: int, xt: np.ndarray) -> None:
        buf = bufs[w]
        for q0 in range(w * qb, nq, split * qb):
            q1 = min(nq, q0 + qb)
            full = buf.shape == (q1 - q0, xt.shape[1])
            np.matmul(queries[q0:q1], xt, out=buf if full else None)

    if split == 1:
        for b0 in range(0, n, block_size):
            work(0, base[b0:b0 + block_size].T)
        return
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(split) as ex:
        for b0 in range(0, n, block_size):
            xt = base[b0:b0 + block_size].T
            for f in [ex.submit(work, w, xt) for w in range(split)]:
                f.result()


def _exact_parts(run: Any) -> tuple[float, dict[str, float]]:
    """Run `run` (one exact_knn) with the parts of groundtruth's pass timed: (wall seconds, seconds per part).

    groundtruth's own functions (and its numpy's matmul) are wrapped in this process only, for this one
    call, and restored afterwards; the parts run on several threads, so their seconds are summed.
    """
    import threading

    from annbench import groundtruth

    spent: dict[str, float] = {}
    lock = threading.Lock()

    def add(key: str, t0: float) -> None:
        with lock:
            spent[key] = spent.get(key, 0.0) + time.perf_counter() - t0

    def timed(key: str, fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                add(key, t0)
        return call

    class Numpy:  # groundtruth's `np`, with matmul timed
        matmul = staticmethod(timed("GEMM (np.matmul)", np.matmul))

        def __getattr__(self, name: str) -> Any:
            return getattr(np, name)

    names = {"_merge_tile": "selection of candidates, all (_merge_tile)",
             "_le_positions": "  of which: compare + nonzero (_le_positions)",
             "_cut": "  of which: cut back to m (_cut)", "_rerank": "exact float64 rerank (_rerank)",
             "_filtered_exact": "near-tie rescans (_filtered_exact)", "_gather": "row gathers (_gather)"}
    saved = {name: getattr(groundtruth, name) for name in names}
    saved_np = groundtruth.np
    try:
        for name, label in names.items():
            setattr(groundtruth, name, timed(label, saved[name]))
        groundtruth.np = Numpy()
        t0 = time.perf_counter()
        run()
        wall = time.perf_counter() - t0
    finally:
        for name, fn in saved.items():
            setattr(groundtruth, name, fn)
        groundtruth.np = saved_np
    order = ["GEMM (np.matmul)", *names.values()]
    return wall, {key: spent[key] for key in order if key in spent}


def measure_exact(n: int, n_queries: int, k: int, repeats: int, want_profile: bool = False) -> list[Line]:
    """P2: exact_knn ÷ same-shape sgemm and ÷ faiss.knn, for cosine and L2; exact_knn's memory at n and n/4."""
    import faiss

    from annbench import catalog
    from annbench.adapters.base import Metric, prepare_vectors
    from annbench.groundtruth import DEFAULT_BLOCK_SIZE, DEFAULT_QUERY_BLOCK, GTStats, exact_knn

    ds = catalog.generate(n=n, n_queries=n_queries, seed=0)
    base = prepare_vectors(ds.base, Metric.COSINE)
    queries = prepare_vectors(ds.queries, Metric.COSINE)
    d = base.shape[1]
    blas = blas_info()
    threads = max((b["num_threads"] or 1 for b in blas if b["user_api"] == "blas"), default=1)
    splits = (1, threads) if threads > 1 else (1,)
    lines: list[Line] = []
    for metric, fmetric in ((Metric.COSINE, faiss.METRIC_INNER_PRODUCT), (Metric.L2, faiss.METRIC_L2)):
        ours: list[float] = []
        theirs: list[float] = []
        sgemm: dict[int, list[float]] = {s: [] for s in splits}
        stats = GTStats()
        ans_ours = ans_theirs = None
        who_all = ["ours", "faiss", *(f"sgemm{s}" for s in splits)]
        for r in range(repeats):
            # alternate the order (forward, backward, …) so that a drift of the machine's speed cancels
            for who in (who_all if r % 2 == 0 else who_all[::-1]):
                t0 = time.perf_counter()
                if who == "ours":
                    ans_ours = exact_knn(base, queries, k, metric, stats=stats)
                    ours.append(time.perf_counter() - t0)
                elif who == "faiss":
                    ans_theirs = faiss.knn(queries, base, k, metric=fmetric)
                    theirs.append(time.perf_counter() - t0)
                else:
                    split = int(who.removeprefix("sgemm"))
                    _sgemm_tiles(queries, base, DEFAULT_QUERY_BLOCK, DEFAULT_BLOCK_SIZE, split)
                    sgemm[split].append(time.perf_counter() - t0)
        # same neighbours (as sets: faiss orders ties arbitrarily and works in float32)
        agree = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ans_ours[1], ans_theirs[1], strict=True)]))
        nq = len(queries)
        g_ours, g_faiss = _gflops(n, nq, d, median(ours)), _gflops(n, nq, d, median(theirs))
        g_sgemm = {s: _gflops(n, nq, d, median(t)) for s, t in sgemm.items()}
        best = max(g_sgemm, key=lambda s: g_sgemm[s])  # the limit: the faster way this machine runs those GEMMs
        # per repeat (the calls of one repeat ran next to each other), then the median over repeats
        vs_sgemm = median([b / a for a, b in zip(ours, sgemm[best], strict=True)])
        vs_faiss = median([b / a for a, b in zip(ours, theirs, strict=True)])
        prof = ""
        parts: dict[str, float] = {}
        if want_profile or vs_sgemm < 0.75 or vs_faiss < 1.0:
            wall, parts = _exact_parts(lambda m=metric: exact_knn(base, queries, k, m))
            rows = "\n".join(f"  {name:<44} {sec:7.3f} s" for name, sec in parts.items())
            prof = (f"one exact_knn ({metric.value}, {n} × {d}, {nq} queries, k={k}): {wall:.3f} s wall on {threads} "
                    f"thread(s); same-shape sgemm {median(sgemm[best]):.3f} s. Its parts, seconds summed over the "
                    f"threads that ran them (the pass runs on every thread):\n{rows}\n"
                    f"cProfile (the pass's threads show as lock waits):\n"
                    + profile_text(lambda m=metric: exact_knn(base, queries, k, m), top=10))
        raw = {"metric": metric.value, "n": n, "queries": nq, "d": d, "k": k, "repeats": repeats,
               "exact_knn_seconds": ours, "faiss_knn_seconds": theirs,
               "sgemm_seconds": {str(s): t for s, t in sgemm.items()},
               "sgemm_split_meaning": "1: one matmul per tile on BLAS's threads; w: w threads × one-thread BLAS",
               "exact_knn_gflops": g_ours, "faiss_knn_gflops": g_faiss,
               "sgemm_gflops": {str(s): g for s, g in g_sgemm.items()}, "sgemm_limit_split": best,
               "exact_knn_over_sgemm": vs_sgemm, "exact_knn_over_faiss": vs_faiss, "exact_knn_parts_seconds": parts,
               "neighbour_overlap_with_faiss": agree,
               "stats_per_call": {key: v // repeats for key, v in stats.as_dict().items()},
               "blas": blas, "block_size": DEFAULT_BLOCK_SIZE, "query_block": DEFAULT_QUERY_BLOCK}
        lines.append(Line(
            "P2", f"exact GT {metric.value}: exact_knn ÷ same-shape sgemm ({g_ours:.1f} / {g_sgemm[best]:.1f} GFLOP/s)",
            vs_sgemm, "×", ">=", 0.75, raw=raw, profile=prof,
            target_text="≥ 0.75 of sgemm on exact_knn's tiles, same run"))
        lines.append(Line(
            "P2", f"exact GT {metric.value}: exact_knn ÷ faiss.knn ({g_ours:.1f} / {g_faiss:.1f} GFLOP/s)",
            vs_faiss, "×", ">=", 1.0, raw={"metric": metric.value, "see": "the sgemm line's raw figures"},
            profile=prof if vs_sgemm >= 0.75 else "", target_text="≥ faiss.knn (1×), same run"))

    # Memory: peak of exact_knn's own allocations at n and n/4. Bounded by the block size means equal.
    small = max(n // 4, DEFAULT_BLOCK_SIZE + 1)
    peaks = {}
    hwm = {}
    for m in (n, small):
        sub = np.ascontiguousarray(base[:m])
        before = proc_status()["VmRSS"]
        reset = reset_peak_rss()
        peaks[m], _ = _traced_peak(lambda s=sub: exact_knn(s, queries, k, Metric.COSINE))
        hwm[m] = proc_status()["VmHWM"] - before if reset else None
        del sub
    out_bytes = len(queries) * k * (4 + 8)
    ratio = peaks[n] / peaks[small]
    lines.append(Line(
        "P2", f"exact GT memory: peak at n={n:,} ÷ at n={small:,} ({peaks[n] / 2**20:.0f} MiB)", ratio, "×", "<=", 1.10,
        target_text="≤ 1.1× (bounded by block size, not n)",
        raw={"tracemalloc_peak_bytes": {str(key): v for key, v in peaks.items()},
             "vmhwm_delta_bytes": {str(key): v for key, v in hwm.items()},
             "output_bytes": out_bytes, "full_distance_matrix_bytes": n * len(queries) * 4,
             "tile_bytes": DEFAULT_QUERY_BLOCK * DEFAULT_BLOCK_SIZE * 5,
             "base_block_bytes": DEFAULT_BLOCK_SIZE * (d + 1) * 4 * 2}))
    return lines


def _scenario_30_days(tmp: Path, days: int, n: int, initial_fraction: float) -> Path:
    """A copy of reseller_daily_updates with `days` days, catalog size n and day-0 share `initial_fraction`."""
    import yaml
    from common import repo_root

    src = repo_root() / "configs" / "scenarios" / "reseller_daily_updates.yaml"
    doc = yaml.safe_load(src.read_text())
    doc["name"] = f"reseller_daily_updates_{days}d"
    doc["dataset"]["params"] = {**doc["dataset"].get("params", {}), "n": n}
    doc["timeline"]["days"] = days
    doc["timeline"]["initial_fraction"] = initial_fraction
    # Day lists name days of the shipped 7-day timeline (e.g. concurrent ingestion on day 7); keep those
    # that exist in this replay, so a short --quick replay stays valid and a 30-day one keeps the shipped
    # day-7 snapshots (each is a search step with its own ground truth).
    cu = doc["timeline"].get("concurrent_updates")
    if cu and "days" in cu:
        cu["days"] = [d for d in cu["days"] if d <= days]
        if not cu["days"]:
            del doc["timeline"]["concurrent_updates"]
    search = doc.get("search") or {}
    if "concurrency_days" in search:
        search["concurrency_days"] = [d for d in search["concurrency_days"] if d <= days]  # day 0 always stays
    doc["indexes"] = [{"name": "exact", "family": "faiss-flat", "policies": ["native"]}]  # GT ignores indexes
    doc["policies"] = ["native"]
    path = tmp / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def measure_incremental(days: int, n: int, initial_fraction: float, repeats: int,
                        want_profile: bool = False) -> list[Line]:
    """P3: the harness's per-step ground truth over a `days`-day replay ÷ one full exact_knn on the final set."""
    from annbench import harness
    from annbench.groundtruth import GTStats, LiveGroundTruth, exact_knn, step_ground_truth
    from annbench.oplog import ground_truth_steps, op_log
    from annbench.scenarios import load_scenario

    with tempfile.TemporaryDirectory(prefix="annbench-p3-") as tmp_s:
        tmp = Path(tmp_s)
        sc = load_scenario(_scenario_30_days(tmp, days, n, initial_fraction))
        stamps: list[tuple[float, str]] = []
        t0 = time.perf_counter()
        prep = harness.prepare(sc, tmp / "cache", progress=lambda m: stamps.append((time.perf_counter(), m)))
        prepare_s = time.perf_counter() - t0
        ds = harness.open_scenario_dataset(sc)
        ops = op_log(sc, np.asarray(ds.base_ids()), ds.base_labels, ds.query_labels, len(ds.queries), None)
        pool = np.load(prep.data_dir / "base.npy", mmap_mode="r")
        queries = np.load(prep.data_dir / "queries.npy")
        q_all = queries[: sc.n_queries] if sc.n_queries else queries
        metric = prep.metric
        gt_file = prep.gt_paths[None]
        with np.load(gt_file) as z:
            want_d, want_i = np.array(z["dists"]), np.array(z["ids"])

        # The live set at every search step, replayed from the op log (id → pool row).
        live: dict[int, int] = {}
        steps: list[tuple[np.ndarray, np.ndarray]] = []
        for op in ops:
            if op.kind in ("build", "insert", "update"):
                live.update(zip(op.ids.tolist(), op.rows.tolist(), strict=True))
            elif op.kind == "delete":
                for i in op.ids.tolist():
                    del live[i]
            elif op.kind == "search":
                ids = np.fromiter(live, np.int64, len(live))
                rows = np.fromiter(live.values(), np.int64, len(live))
                steps.append((rows, ids))
        final_rows, final_ids = steps[-1]

        def harness_gt() -> float:
            gt_file.unlink()  # the harness caches it: remove it so the harness computes it again
            t = time.perf_counter()
            harness._ground_truth(sc, metric, prep.data_dir, prep.dataset_info["hash"], None, ops, lambda _m: None)
            return time.perf_counter() - t

        def full_gt() -> float:
            t = time.perf_counter()
            exact_knn(pool, q_all, sc.k, metric, rows=final_rows, ids=final_ids)
            return time.perf_counter() - t

        def live_gt() -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
            """The previous implementation: LiveGroundTruth replayed op by op (timed for information)."""
            t = time.perf_counter()
            out = LiveGroundTruth(pool, q_all, sc.k, metric).replay(ground_truth_steps(ops))
            return time.perf_counter() - t, out

        # Both are short (a full GT is ~0.1 s): each harness GT sits between two full GTs before and two after,
        # and the figure is the median over repeats of (harness GT ÷ the median of its four neighbours). A
        # burst of load from other processes (they last seconds) then hits both sides of one ratio.
        harness_gt()
        full_gt()  # warm-up: page cache, first-call allocations
        inc, full, pair_ratios = [], [], []
        for _ in range(repeats):
            around = [full_gt(), full_gt()]
            inc.append(harness_gt())
            around += [full_gt(), full_gt()]
            full.extend(around)
            pair_ratios.append(inc[-1] / median(around))
        with np.load(gt_file) as z:
            equal_runs = bool(np.array_equal(z["dists"], want_d) and np.array_equal(z["ids"], want_i))

        # Recompute every step from scratch: the cost per-step GT avoids, and a check of its answers.
        every_s = 0.0
        equal = equal_runs
        for s, (rows, ids) in enumerate(steps):
            t = time.perf_counter()
            d, i = exact_knn(pool, q_all, sc.k, metric, rows=rows, ids=ids)
            every_s += time.perf_counter() - t
            equal &= bool(np.array_equal(d, want_d[s]) and np.array_equal(i, want_i[s]))
        # The previous implementation, for information (and one more cross-check of every step's answer).
        live_s = []
        for _ in range(2):
            secs, answers = live_gt()
            live_s.append(secs)
        equal_live = all(np.array_equal(d, want_d[s]) and np.array_equal(i, want_i[s])
                         for s, (d, i) in enumerate(answers))
        equal &= equal_live
        one = median(full)
        ratio = median(pair_ratios)
        # Work of the harness's computation (same call as the harness makes, counted, not timed)
        work = GTStats()
        step_ground_truth(pool, q_all, sc.k, metric,
                          [("insert" if op.kind == "build" else op.kind, op.rows, op.ids) for op in ops], stats=work)
        # GEMM work of the whole replay in units of one full GT's (final live set × queries): the part
        # of the ratio no implementation detail can remove (every vector ever live meets every query once).
        work_ratio = work.distance_evals / (len(final_ids) * len(q_all))
        prof = ""
        if want_profile or ratio > 3:
            prof = (f"one full GT on the final catalog: {one:.3f} s; the harness's {days}-day GT: {median(inc):.3f} s\n"
                    f"  work: {work.as_dict()}; GEMM pairs = {work_ratio:.2f} × one full GT's\n"
                    f"cProfile of the harness's per-step ground truth ({days} days):\n"
                    + profile_text(harness_gt, top=16))
        stamp_rel = [(round(t - t0, 3), m) for t, m in stamps]
        return [Line(
            "P3", f"per-step GT over {days} days ÷ one full GT on the final catalog", ratio, "×", "<=", 3.0,
            raw={"days": days, "dataset_n": n, "initial_fraction": initial_fraction, "k": sc.k,
                 "queries": len(q_all), "search_steps": len(steps), "final_live": len(final_ids),
                 "day0_live": len(steps[0][1]), "harness_gt_seconds": inc, "one_full_gt_seconds": full,
                 "paired_ratios": pair_ratios, "ratio_of_medians": median(inc) / one,
                 "recompute_every_step_seconds": every_s, "recompute_every_step_ratio": every_s / one,
                 "equal_to_recompute_every_step": equal, "equal_to_live_ground_truth": equal_live,
                 "equal_across_repeats": equal_runs,
                 "live_ground_truth_seconds": live_s, "live_ground_truth_ratio": median(live_s) / one,
                 "prepare_seconds_first": prepare_s, "work": work.as_dict(), "gemm_work_in_full_gts": work_ratio,
                 "prepare_progress": stamp_rel},
            profile=prof, sound=equal)]
