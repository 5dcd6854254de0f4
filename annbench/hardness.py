"""How hard a dataset is for approximate search: local intrinsic dimensionality and relative contrast.

This module owns the hardness figures annbench reports next to a dataset, so that a user can see how
their own embeddings compare with the built-in catalog (a high LID and a low relative contrast mean
that the neighbours of a query are hard to tell apart, and every index needs more work to find them).

* LID, maximum-likelihood estimate at k neighbours (Levina & Bickel 2004, in the form of Amsaleg et
  al. 2015): for one query with neighbour distances r_1 ≤ … ≤ r_k,
  LID = -(1/k · Σ_i ln(r_i / r_k))^-1. Reported: the median over a sample of queries.
* Relative contrast (He, Kumar & Chang 2012): mean distance from the query to the base ÷ distance to
  its nearest neighbour. Reported: the median over the same kind of sample. Uniform noise in high
  dimension tends to 1 (every point about as far); clustered data is well above.

Distances are Euclidean, on L2-normalised vectors when the metric is cosine (the order then matches
cosine similarity). When a dataset has no queries, sampled base rows stand in and their own row is
excluded. Everything is pure numpy and blockwise: memory is sample × block, never queries × n.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from annbench.dataset import Dataset
from annbench.vectors import Metric, prepare_vectors

#: base rows per block in the distance scan (sample × BLOCK float32 stays ≈ 32 MB at sample=1000)
BLOCK = 8192

Data = Dataset | np.ndarray | tuple[np.ndarray, np.ndarray]


def _unpack(
    data: Data, metric: Metric | str | None, sample: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Metric]:
    """(base, sampled queries ready for L2 distances, base position of each sampled query or None, metric)."""
    if isinstance(data, Dataset):
        base, queries = data.base, data.queries
        metric = metric if metric is not None else data.metric
    elif isinstance(data, tuple):
        base, queries = data
    else:
        base, queries = data, None
    m = Metric.parse(metric) if metric is not None else Metric.L2
    rng = np.random.default_rng(seed)
    if queries is not None and len(queries):
        pick = np.sort(rng.choice(len(queries), size=min(sample, len(queries)), replace=False))
        q, self_pos = np.asarray(queries[pick]), None
    else:
        pick = np.sort(rng.choice(len(base), size=min(sample, len(base)), replace=False))
        q, self_pos = np.asarray(base[pick]), pick
    return base, prepare_vectors(q, m), self_pos, m


def _scan(
    base: np.ndarray, q: np.ndarray, k: int, self_pos: np.ndarray | None, metric: Metric
) -> tuple[np.ndarray, np.ndarray]:
    """One blockwise pass: the k smallest distances of each query (sorted) and its mean distance."""
    nq = len(q)
    best = np.full((nq, k), np.inf, dtype=np.float32)
    total = np.zeros(nq, dtype=np.float64)
    q_sq = (q.astype(np.float32) ** 2).sum(axis=1)[:, None]
    count = np.zeros(nq, dtype=np.int64)
    for start in range(0, len(base), BLOCK):
        x = prepare_vectors(np.asarray(base[start : start + BLOCK]), metric)
        d2 = q_sq + (x**2).sum(axis=1)[None, :] - 2.0 * (q @ x.T)
        np.maximum(d2, 0.0, out=d2)  # rounding can make tiny squared distances negative
        if self_pos is not None:
            # a sampled base row must not be its own neighbour
            rows = np.nonzero((self_pos >= start) & (self_pos < start + len(x)))[0]
            d2[rows, self_pos[rows] - start] = np.inf
        dist = np.sqrt(d2)
        finite = np.isfinite(dist)
        total += np.where(finite, dist, 0.0).sum(axis=1)
        count += finite.sum(axis=1)
        both = np.concatenate([best, dist], axis=1)
        best = np.partition(both, k - 1, axis=1)[:, :k]
    best.sort(axis=1)
    return best, total / np.maximum(count, 1)


def _lid_from(dists: np.ndarray) -> np.ndarray:
    """Per-query MLE; rows with a zero or missing distance (duplicates, too few points) give NaN."""
    ok = np.isfinite(dists).all(axis=1) & (dists[:, 0] > 0)
    out = np.full(len(dists), np.nan)
    d = dists[ok].astype(np.float64)
    logs = np.log(d / d[:, -1:]).mean(axis=1)
    with np.errstate(divide="ignore"):
        out[ok] = -1.0 / logs  # logs == 0 only when all k distances tie: LID is then infinite
    return out


def _rc_from(dists: np.ndarray, mean: np.ndarray) -> np.ndarray:
    nn = dists[:, 0].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(nn > 0, mean / nn, np.nan)


def lid_mle(data: Data, k: int = 20, sample: int = 1000, *, metric: Metric | str | None = None,
            seed: int = 0) -> float:
    """Median local intrinsic dimensionality (MLE at k neighbours) over a sample of queries."""
    base, q, self_pos, m = _unpack(data, metric, sample, seed)
    dists, _ = _scan(base, q, k, self_pos, m)
    return float(np.nanmedian(_lid_from(dists)))


def relative_contrast(data: Data, sample: int = 1000, *, metric: Metric | str | None = None,
                      seed: int = 0) -> float:
    """Median over a sample of queries of (mean distance to the base) ÷ (nearest-neighbour distance)."""
    base, q, self_pos, m = _unpack(data, metric, sample, seed)
    dists, mean = _scan(base, q, 1, self_pos, m)
    return float(np.nanmedian(_rc_from(dists, mean)))


def describe(ds: Dataset, k: int = 20, sample: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Size, memory and hardness of a dataset in one dict (one distance pass over the base)."""
    base, q, self_pos, m = _unpack(ds, None, sample, seed)
    dists, mean = _scan(base, q, k, self_pos, m)
    return {
        "name": ds.name,
        "source": ds.source,
        "n": ds.n,
        "dim": ds.dim,
        "nq": ds.nq,
        "metric": ds.metric.value if ds.metric is not None else None,
        "memory_bytes": ds.memory_bytes(),
        "lid": round(float(np.nanmedian(_lid_from(dists))), 2),
        "relative_contrast": round(float(np.nanmedian(_rc_from(dists[:, :1], mean))), 3),
        "hardness_k": k,
        "hardness_sample": len(q),
        "hardness_points": "queries" if self_pos is None else "base rows",
        "base_labels": ds.base_labels is not None,
        "query_labels": ds.query_labels is not None,
        "ids": ds.ids is not None,
    }
