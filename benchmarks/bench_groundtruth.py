"""P2 and P3: how fast annbench computes exact ground truth, against faiss and against recomputation.

P2 times `groundtruth.exact_knn` and `faiss.knn` on the same base and queries, alternating the two
(A B, B A, …), and reports GFLOP/s-equivalent = 2·n·q·d / seconds (the GEMM's work, whatever the
method really does), median over repeats. exact_knn's memory is measured with tracemalloc (numpy's
allocations; the pool is allocated before tracing starts) at n and at n/4: if it is bounded by the
block size, the two peaks are the same. The BLAS numpy runs is read with threadpoolctl.

P3 replays a 30-day version of `reseller_daily_updates` (same catalog, k, queries, churn rates and
delete rule; the day-0 share is lowered so the reserve lasts 30 days, and the catalog enlarged so day 0
holds as many images as the shipped scenario's) through the harness's own ground-truth code
(`harness._ground_truth`: `LiveGroundTruth` over the op log, cached file written), and divides its
time by one `exact_knn` over the final catalog with the same queries. Every step is also recomputed
from scratch and compared with the harness's file, which gives the "recompute every step" ratio too.
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from collections.abc import Callable
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


def measure_exact(n: int, n_queries: int, k: int, repeats: int, want_profile: bool = False) -> list[Line]:
    """P2: exact_knn vs faiss.knn throughput for cosine and L2, and exact_knn's memory at n and n/4."""
    import faiss

    from annbench import catalog
    from annbench.adapters.base import Metric, prepare_vectors
    from annbench.groundtruth import DEFAULT_BLOCK_SIZE, DEFAULT_QUERY_BLOCK, GTStats, exact_knn

    ds = catalog.generate(n=n, n_queries=n_queries, seed=0)
    base = prepare_vectors(ds.base, Metric.COSINE)
    queries = prepare_vectors(ds.queries, Metric.COSINE)
    d = base.shape[1]
    blas = blas_info()
    lines: list[Line] = []
    for metric, fmetric in ((Metric.COSINE, faiss.METRIC_INNER_PRODUCT), (Metric.L2, faiss.METRIC_L2)):
        ours: list[float] = []
        theirs: list[float] = []
        stats = GTStats()
        ans_ours = ans_theirs = None
        for r in range(repeats):
            for who in (("a", "b") if r % 2 == 0 else ("b", "a")):
                t0 = time.perf_counter()
                if who == "a":
                    ans_ours = exact_knn(base, queries, k, metric, stats=stats)
                    ours.append(time.perf_counter() - t0)
                else:
                    ans_theirs = faiss.knn(queries, base, k, metric=fmetric)
                    theirs.append(time.perf_counter() - t0)
        # same neighbours (as sets: faiss orders ties arbitrarily and works in float32)
        agree = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ans_ours[1], ans_theirs[1], strict=True)]))
        g_ours, g_faiss = _gflops(n, len(queries), d, median(ours)), _gflops(n, len(queries), d, median(theirs))
        limit = max(g_faiss, 100.0)
        prof = ""
        if want_profile or g_ours < limit:
            prof = (f"cProfile of one exact_knn ({metric.value}, {n} × {d}, {len(queries)} queries, k={k}):\n"
                    + profile_text(lambda m=metric: exact_knn(base, queries, k, m), top=14))
        lines.append(Line(
            "P2", f"exact GT {metric.value}: exact_knn (faiss.knn {g_faiss:.1f})", g_ours, " GFLOP/s", ">=", limit,
            target_text=f"≥ faiss.knn and ≥ 100 → ≥ {limit:.1f} GFLOP/s",
            raw={"metric": metric.value, "n": n, "queries": len(queries), "d": d, "k": k, "repeats": repeats,
                 "exact_knn_seconds": ours, "faiss_knn_seconds": theirs, "exact_knn_gflops": g_ours,
                 "faiss_knn_gflops": g_faiss, "neighbour_overlap_with_faiss": agree,
                 "stats_per_call": {key: v // repeats for key, v in stats.as_dict().items()},
                 "blas": blas, "block_size": DEFAULT_BLOCK_SIZE, "query_block": DEFAULT_QUERY_BLOCK},
            profile=prof))

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
    from annbench.groundtruth import exact_knn
    from annbench.oplog import op_log
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

        # Recompute every step from scratch: the cost incremental GT avoids, and a check of its answers.
        every_s = 0.0
        equal = True
        for s, (rows, ids) in enumerate(steps):
            t = time.perf_counter()
            d, i = exact_knn(pool, q_all, sc.k, metric, rows=rows, ids=ids)
            every_s += time.perf_counter() - t
            equal &= bool(np.array_equal(d, want_d[s]) and np.array_equal(i, want_i[s]))
        one = median(full)
        ratio = median(pair_ratios)
        total, spent, work = _by_operation(harness_gt)
        # GEMM work of the whole replay in units of one full GT's (final live set × queries): the part
        # of the ratio no implementation detail can remove (every new vector meets every query once).
        work_ratio = work["distance_evals"] / (len(final_ids) * len(q_all))
        prof = ""
        if want_profile or ratio > 3:
            rows = "\n".join(f"  {name:<48} {spent[name]:7.3f} s  {spent[name] / one:5.2f} full GTs"
                             for name in _ORDER if name in spent)
            prof = (f"one full GT on the final catalog: {one:.3f} s; the harness's {days}-day GT: {total:.3f} s "
                    f"(timed per LiveGroundTruth call; overlapping rows: `exact_knn` runs inside the others):\n"
                    f"{rows}\n  work: {work}; GEMM pairs = {work_ratio:.2f} × one full GT's\n"
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
                 "equal_to_recompute_every_step": equal, "prepare_seconds_first": prepare_s,
                 "seconds_by_call": spent, "work": work, "gemm_work_in_full_gts": work_ratio,
                 "prepare_progress": stamp_rel},
            profile=prof, sound=equal)]


_ORDER = ("insert (day-0 build)", "insert", "update", "delete", "current",
          "  inside: _merge_new (new items' top-k merged in)", "  inside: _drop (deleted ids removed)",
          "  inside: _repair (short lists recomputed)", "  inside: exact_knn (called by the above)")


def _by_operation(run: Callable[[], float]) -> tuple[float, dict[str, float], dict[str, int]]:
    """Run `run` (the harness's GT) with LiveGroundTruth's calls timed; (seconds, per call kind, work stats).

    The class is patched in this process only, for this one call, and restored afterwards.
    """
    from annbench import groundtruth

    cls = groundtruth.LiveGroundTruth
    names = ("insert", "delete", "update", "current", "_merge_new", "_drop", "_repair", "_knn")
    originals = {name: getattr(cls, name) for name in names}
    orig_init = cls.__init__
    spent: dict[str, float] = {}
    made: list[Any] = []
    labels = dict(zip(names[4:], _ORDER[5:], strict=True))

    def wrap(name: str, fn: Any) -> Any:
        def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
            key = labels.get(name, name)
            if name == "insert" and not any(k.startswith("insert") for k in spent):
                key = "insert (day-0 build)"
            t = time.perf_counter()
            try:
                return fn(self, *args, **kwargs)
            finally:
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - t
        return timed

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        orig_init(self, *args, **kwargs)
        made.append(self)

    try:
        for name, fn in originals.items():
            setattr(cls, name, wrap(name, fn))
        cls.__init__ = init
        total = run()
    finally:
        for name, fn in originals.items():
            setattr(cls, name, fn)
        cls.__init__ = orig_init
    return total, spent, made[0].stats.as_dict()
