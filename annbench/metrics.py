"""Quality and speed figures of one search step, computed from raw arrays — pure numpy, no index library.

Owns the scoring rules:
- recall@k, tie-aware (ann-benchmarks' rule): a returned item counts when its *true* distance, recomputed
  by annbench from the vectors (`groundtruth.true_distances`), is ≤ the k-th true distance + ε. Ties at the
  k-th distance therefore count whichever of the equal items an index returns. Id -1 (padding) never
  counts; an id returned twice in one answer counts once.
- leaks: deleted (tombstoned) ids returned, counted apart from recall.
- hit@k and P@k over product labels (what the business quotes).
- latency percentiles, QPS, and the recall-vs-cost Pareto front used by reports and `recommend`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _first_occurrence(ids: np.ndarray) -> np.ndarray:
    """Mask of the entries of each row that are the first occurrence of their id in that row."""
    order = np.argsort(ids, axis=1, kind="stable")
    s = np.take_along_axis(ids, order, axis=1)
    first_sorted = np.ones(s.shape, dtype=bool)
    first_sorted[:, 1:] = s[:, 1:] != s[:, :-1]
    first = np.empty_like(first_sorted)
    np.put_along_axis(first, order, first_sorted, axis=1)
    return first


def recall_at_k(returned_ids: np.ndarray, returned_dists: np.ndarray, kth_true: np.ndarray, eps: float = 1e-3,
                n_true: np.ndarray | None = None) -> np.ndarray:
    """Per-query recall@k with ann-benchmarks' tie rule (float64, length q).

    returned_ids: q×k int64 (-1 = nothing); returned_dists: their true distances (q×k); kth_true: the
    k-th true distance per query (+inf when fewer than k items live). The denominator is k, or
    min(k, n_true) when `n_true` (the number of live items / valid ground-truth entries per query) is
    given, so a perfect answer over a live set smaller than k still scores 1.
    """
    ids = np.asarray(returned_ids, dtype=np.int64)
    dists = np.asarray(returned_dists, dtype=np.float64)
    if ids.ndim != 2 or dists.shape != ids.shape:
        raise ValueError(f"returned ids {ids.shape} and distances {dists.shape} must be the same q×k shape")
    k = ids.shape[1]
    kth = np.asarray(kth_true, dtype=np.float64).reshape(-1)
    if kth.size != ids.shape[0]:
        raise ValueError(f"kth_true has {kth.size} values for {ids.shape[0]} queries")
    if k == 0:
        return np.zeros(ids.shape[0])
    good = (ids != -1) & (dists <= (kth + eps)[:, None]) & _first_occurrence(ids)
    denom = np.full(ids.shape[0], float(k))
    if n_true is not None:
        denom = np.clip(np.asarray(n_true, dtype=np.float64).reshape(-1), 1.0, float(k))
    return good.sum(axis=1) / denom


def leaks(returned_ids: np.ndarray, deleted_ids: np.ndarray) -> np.ndarray:
    """Per query, how many distinct deleted ids the answer holds (int64, length q)."""
    ids = np.asarray(returned_ids, dtype=np.int64)
    deleted = np.asarray(deleted_ids, dtype=np.int64).reshape(-1)
    if ids.ndim != 2:
        raise ValueError(f"returned ids must be q×k, got shape {ids.shape}")
    bad = np.isin(ids, deleted) & (ids != -1) & _first_occurrence(ids)
    return bad.sum(axis=1).astype(np.int64)


def hit_at_k(returned_labels: np.ndarray, query_labels: np.ndarray) -> np.ndarray:
    """1.0 where the query's product label appears among the returned labels (-1 = none), else 0.0."""
    lab = np.asarray(returned_labels, dtype=np.int64)
    ql = np.asarray(query_labels, dtype=np.int64).reshape(-1)
    if lab.ndim != 2 or lab.shape[0] != ql.size:
        raise ValueError(f"returned labels {lab.shape} do not match {ql.size} query labels")
    return ((lab == ql[:, None]) & (lab != -1)).any(axis=1).astype(np.float64)


def precision_at_k(returned_labels: np.ndarray, query_labels: np.ndarray, k: int) -> np.ndarray:
    """Share of the top k slots holding the query's product; padding and missing slots count as misses."""
    if int(k) < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    lab = np.asarray(returned_labels, dtype=np.int64)
    ql = np.asarray(query_labels, dtype=np.int64).reshape(-1)
    if lab.ndim != 2 or lab.shape[0] != ql.size:
        raise ValueError(f"returned labels {lab.shape} do not match {ql.size} query labels")
    top = lab[:, : int(k)]
    return ((top == ql[:, None]) & (top != -1)).sum(axis=1) / float(k)


def latency_summary(samples_ns: np.ndarray) -> dict[str, float]:
    """p50/p95/p99/mean/min/max of latency samples in milliseconds, plus n (NaN figures when empty)."""
    ms = np.asarray(samples_ns, dtype=np.float64).reshape(-1) / 1e6
    if ms.size == 0:
        nan = float("nan")
        return {"n": 0, "p50": nan, "p95": nan, "p99": nan, "mean": nan, "min": nan, "max": nan}
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"n": int(ms.size), "p50": float(p50), "p95": float(p95), "p99": float(p99),
            "mean": float(ms.mean()), "min": float(ms.min()), "max": float(ms.max())}


def qps(n_queries: int, seconds: float) -> float:
    """Queries per second of a batch of n_queries that took `seconds` (> 0)."""
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    return float(n_queries) / float(seconds)


def pareto_front(x: Sequence[tuple[float, float]] | np.ndarray, y: np.ndarray | Sequence[float] | None = None
                 ) -> np.ndarray:
    """Indices of the points on the Pareto front, sorted by x ascending (then index).

    x is higher-is-better (recall), y lower-is-better (latency, memory). Give either a sequence of
    (x, y) points or two arrays. A point is dropped when another has x ≥ and y ≤ with one strict;
    identical points are all kept. Points with a NaN coordinate are never on the front.
    """
    if y is None:
        pts = np.asarray(x, dtype=np.float64).reshape(-1, 2)
        xs, ys = pts[:, 0], pts[:, 1]
    else:
        xs = np.asarray(x, dtype=np.float64).reshape(-1)
        ys = np.asarray(y, dtype=np.float64).reshape(-1)
        if xs.size != ys.size:
            raise ValueError(f"x has {xs.size} values, y has {ys.size}")
    idx = np.flatnonzero(~(np.isnan(xs) | np.isnan(ys)))
    if idx.size == 0:
        return np.empty(0, dtype=np.int64)
    # Sweep by x descending: a point survives when its y is its x-group's minimum and strictly below
    # every y of the points with a strictly larger x.
    order = idx[np.lexsort((ys[idx], -xs[idx]))]
    keep = []
    best_above = np.inf  # min y over points with strictly larger x
    i = 0
    while i < order.size:
        j = i
        while j < order.size and xs[order[j]] == xs[order[i]]:
            j += 1
        group = order[i:j]
        gmin = ys[group[0]]  # sorted by y ascending within the group
        if gmin < best_above:
            keep.extend(int(g) for g in group if ys[g] == gmin)
            best_above = gmin
        i = j
    out = np.asarray(keep, dtype=np.int64)
    return out[np.lexsort((out, xs[out]))] if out.size else out
