"""What incremental ground truth costs compared with recomputing it, on a synthetic daily-churn catalog.

Replays `--days` days of inserts, deletes and updates (a few % of the catalog a day) twice: with
`LiveGroundTruth` (incremental), and with a full `exact_knn` over the live set after every day. Checks
that both give the same ids and distances every day, then prints the cost ratios

    incremental_total / full_recompute_every_step_total
    incremental_total / one_full_gt_on_final_set

(totals include the day-0 build, which costs both the same) and the BLAS numpy uses.

    python benchmarks/groundtruth_incremental.py [--n 200000 --dim 128 --queries 1000 --k 100 --days 30]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import threadpoolctl

from annbench.adapters.base import Metric
from annbench.groundtruth import GTStats, LiveGroundTruth, exact_knn


def catalog(rng: np.random.Generator, count: int, dim: int, centres: np.ndarray) -> np.ndarray:
    """Category centre + product offset in a power-law spectrum, L2-normalised (roughly like CNN features)."""
    scale = (1.0 + np.arange(dim)) ** -0.5
    x = centres[rng.integers(0, len(centres), count)] + 0.6 * rng.standard_normal((count, dim)) * scale
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="catalog size on day 0")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--depth", type=int, default=None, help="LiveGroundTruth depth (default 2k)")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--insert", type=float, default=0.02, help="share of the catalog inserted a day")
    ap.add_argument("--delete", type=float, default=0.02, help="share deleted a day")
    ap.add_argument("--update", type=float, default=0.01, help="share given a new vector a day")
    ap.add_argument("--metric", choices=["cosine", "l2"], default="cosine")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    metric = Metric.parse(a.metric)
    rng = np.random.default_rng(a.seed)

    n_ins, n_del, n_upd = (int(round(a.n * s)) for s in (a.insert, a.delete, a.update))
    pool_size = a.n + a.days * (n_ins + n_upd)
    centres = rng.standard_normal((max(10, a.n // 250), a.dim)) * ((1.0 + np.arange(a.dim)) ** -0.5)
    pool = catalog(rng, pool_size, a.dim, centres)
    picks = pool[rng.integers(0, a.n, a.queries)]
    queries = picks + 0.05 * rng.standard_normal(picks.shape).astype(np.float32) / np.sqrt(a.dim)
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)

    blas = [{key: info.get(key) for key in ("user_api", "internal_api", "version", "num_threads", "architecture")}
            for info in threadpoolctl.threadpool_info()]
    print(f"numpy {np.__version__}; BLAS: {blas}")
    print(f"catalog n={a.n} d={a.dim} metric={metric.value}, {a.queries} queries, k={a.k}, {a.days} days of "
          f"+{n_ins} −{n_del} ~{n_upd} items a day (pool of {pool_size} rows)")

    # the op log: (kind, rows, ids) per day; ids are arbitrary (not row positions)
    next_row = a.n
    ids_live = rng.choice(10**12, a.n, replace=False).astype(np.int64)
    row_of = dict(zip(ids_live.tolist(), range(a.n), strict=True))
    days: list[list[tuple[str, np.ndarray, np.ndarray]]] = []
    fresh_ids = iter((10**12 + rng.choice(10**12, a.days * n_ins, replace=False)).tolist())
    for _ in range(a.days):
        alive = np.fromiter(row_of, np.int64, len(row_of))
        gone = rng.choice(alive, n_del, replace=False)
        rest = np.setdiff1d(alive, gone)
        moved = rng.choice(rest, n_upd, replace=False)
        new_ids = np.array([next(fresh_ids) for _ in range(n_ins)], dtype=np.int64)
        new_rows = np.arange(next_row, next_row + n_ins)
        moved_rows = np.arange(next_row + n_ins, next_row + n_ins + n_upd)
        next_row += n_ins + n_upd
        for g in gone.tolist():
            del row_of[g]
        row_of.update(zip(new_ids.tolist(), new_rows.tolist(), strict=True))
        row_of.update(zip(moved.tolist(), moved_rows.tolist(), strict=True))
        days.append([("delete", np.empty(0, np.int64), gone), ("insert", new_rows, new_ids),
                     ("update", moved_rows, moved)])

    live = LiveGroundTruth(pool, queries, a.k, metric, depth=a.depth)
    full_stats = GTStats()
    rows = np.arange(a.n, dtype=np.int64)
    ids = ids_live.copy()

    t0 = time.perf_counter()
    live.insert(rows, ids)
    inc_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    want = exact_knn(pool, queries, a.k, metric, rows=rows, ids=ids, stats=full_stats)
    full_build = time.perf_counter() - t0
    got = live.current()
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), "day 0 differs"

    inc_days, full_days = [], []
    recomputed_before = 0
    for day, ops in enumerate(days, start=1):
        t0 = time.perf_counter()
        for kind, r, i in ops:
            if kind == "delete":
                live.delete(i)
            elif kind == "insert":
                live.insert(r, i)
            else:
                live.update(r, i)
        got = live.current()
        inc_days.append(time.perf_counter() - t0)
        # the same changes on plain arrays, then a full recomputation
        for kind, r, i in ops:
            if kind == "delete":
                keep = ~np.isin(ids, i)
                rows, ids = rows[keep], ids[keep]
            elif kind == "insert":
                rows, ids = np.concatenate([rows, r]), np.concatenate([ids, i])
            else:
                order = np.argsort(ids)
                rows[order[np.searchsorted(ids, i, sorter=order)]] = r
        t0 = time.perf_counter()
        want = exact_knn(pool, queries, a.k, metric, rows=rows, ids=ids, stats=full_stats)
        full_days.append(time.perf_counter() - t0)
        if not (np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])):
            print(f"day {day}: incremental ground truth differs from recomputation", file=sys.stderr)
            return 1
        if day in (1, a.days) or day % 10 == 0:
            print(f"day {day:3d}: live {ids.size}, incremental {inc_days[-1]:.3f} s "
                  f"({live.stats.queries_recomputed - recomputed_before} queries recomputed), "
                  f"full {full_days[-1]:.3f} s")
        recomputed_before = live.stats.queries_recomputed

    final_full = full_days[-1]
    inc_total = inc_build + sum(inc_days)
    full_total = full_build + sum(full_days)
    print(f"all {a.days + 1} steps equal (ids and distances)")
    print(f"incremental: build {inc_build:.2f} s + days {sum(inc_days):.2f} s = {inc_total:.2f} s; "
          f"stats {live.stats.as_dict()}")
    print(f"full recompute every step: {full_total:.2f} s; one full GT on the final set: {final_full:.3f} s")
    print(f"incremental_total / full_recompute_every_step_total = {inc_total / full_total:.3f}")
    print(f"incremental_total / one_full_gt_on_final_set = {inc_total / final_full:.2f}")
    print(f"per day after the build: incremental / full = {sum(inc_days) / sum(full_days):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
