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

Undefined points. A point whose nearest neighbour is at distance 0 (an exact copy) or whose k neighbour
distances all tie has no LID (the estimate divides by zero) and, at distance 0, no contrast either; such
points are left out of the medians. When every sampled point is undefined, the set is *degenerate* (e.g.
all vectors identical, or every query a copy of a base vector): the figures are None, and `info` says so
in one line instead of printing -inf or nan.

What the figures are compared with (`info`, REFERENCES): the built-in catalog's own, and MNIST's, each
with where it was measured. Published figures for other sets (Aumüller & Ceccarello, "The role of local
dimensionality measurement in benchmarking nearest neighbor search", Information Systems 2021, measure
LID and relative contrast of SIFT, GloVe, MNIST, Fashion-MNIST and others) are not quoted here: their
estimators and samples differ from this module's, and only figures measured the same way compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from annbench.dataset import Dataset
from annbench.vectors import Metric, prepare_vectors

#: base rows per block in the distance scan (sample × BLOCK float32 stays ≈ 32 MB at sample=1000)
BLOCK = 8192
#: a squared distance below this share of |q|² + |x|² is float32 rounding of an exact copy, not a distance:
#: identical vectors came out at 1e-4…1e-3 instead of 0, all "tied", and their LID printed as -inf
ROUNDING = 1e-5


@dataclass(frozen=True)
class Reference:
    """Hardness figures of a known set, measured with this module (LID at k=20, median relative contrast)."""

    name: str
    lid: float
    relative_contrast: float
    source: str


#: what `info` puts beside a user's figures. Only figures measured with this module's estimators are here.
REFERENCES: tuple[Reference, ...] = (
    Reference("catalog", 18.24, 3.592,
              "annbench's built-in catalog at its defaults (50,000 × 128, 1,000 queries, seed 0): "
              "`annbench datasets info catalog`"),
    Reference("MNIST test", 13.5, 2.1,
              "MNIST's 10,000 test images, measured with annbench's hardness module (as reported in issue 16)"),
)

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
        d2[d2 <= ROUNDING * (q_sq + (x**2).sum(axis=1)[None, :])] = 0.0
        dist = np.sqrt(d2)
        finite = np.isfinite(dist)
        total += np.where(finite, dist, 0.0).sum(axis=1)
        count += finite.sum(axis=1)
        both = np.concatenate([best, dist], axis=1)
        best = np.partition(both, k - 1, axis=1)[:, :k]
    best.sort(axis=1)
    return best, total / np.maximum(count, 1)


def _lid_from(dists: np.ndarray) -> np.ndarray:
    """Per-query MLE; rows with a zero or missing distance (duplicates, too few points) or k tied
    distances (the estimate's denominator is 0) give NaN: undefined, left out of the median."""
    ok = np.isfinite(dists).all(axis=1) & (dists[:, 0] > 0) & (dists[:, 0] < dists[:, -1])
    out = np.full(len(dists), np.nan)
    d = dists[ok].astype(np.float64)
    out[ok] = -1.0 / np.log(d / d[:, -1:]).mean(axis=1)
    return out


def _median(values: np.ndarray) -> float | None:
    """The median of the defined (finite) values; None when there are none (no numpy all-NaN warning)."""
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else None


def _rc_from(dists: np.ndarray, mean: np.ndarray) -> np.ndarray:
    nn = dists[:, 0].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(nn > 0, mean / nn, np.nan)


def lid_mle(data: Data, k: int = 20, sample: int = 1000, *, metric: Metric | str | None = None,
            seed: int = 0) -> float:
    """Median local intrinsic dimensionality (MLE at k neighbours) over a sample of queries."""
    base, q, self_pos, m = _unpack(data, metric, sample, seed)
    dists, _ = _scan(base, q, k, self_pos, m)
    lid = _median(_lid_from(dists))
    return float("nan") if lid is None else lid


def relative_contrast(data: Data, sample: int = 1000, *, metric: Metric | str | None = None,
                      seed: int = 0) -> float:
    """Median over a sample of queries of (mean distance to the base) ÷ (nearest-neighbour distance)."""
    base, q, self_pos, m = _unpack(data, metric, sample, seed)
    dists, mean = _scan(base, q, 1, self_pos, m)
    rc = _median(_rc_from(dists, mean))
    return float("nan") if rc is None else rc


def describe(ds: Dataset, k: int = 20, sample: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Size, memory and hardness of a dataset in one dict (one distance pass over the base).

    `lid` and `relative_contrast` are None when no sampled point has them (a degenerate set);
    `hardness_undefined` counts the sampled points left out of the medians (see the module docstring).
    """
    base, q, self_pos, m = _unpack(ds, None, sample, seed)
    dists, mean = _scan(base, q, k, self_pos, m)
    lids, rcs = _lid_from(dists), _rc_from(dists[:, :1], mean)
    lid, rc = _median(lids), _median(rcs)
    return {
        "name": ds.name,
        "source": ds.source,
        "n": ds.n,
        "dim": ds.dim,
        "nq": ds.nq,
        "metric": ds.metric.value if ds.metric is not None else None,
        "memory_bytes": ds.memory_bytes(),
        "lid": None if lid is None else round(lid, 2),
        "relative_contrast": None if rc is None else round(rc, 3),
        "hardness_k": k,
        "hardness_sample": len(q),
        "hardness_points": "queries" if self_pos is None else "base rows",
        "hardness_undefined": int(np.count_nonzero(~np.isfinite(lids))),
        "hardness_at_zero": int(np.count_nonzero(dists[:, 0] == 0)),
        "base_labels": ds.base_labels is not None,
        "query_labels": ds.query_labels is not None,
        "ids": ds.ids is not None,
    }


def info(ds: Dataset, k: int = 20, sample: int = 1000, seed: int = 0) -> dict[str, Any]:
    """What `annbench datasets info` prints, by label: `describe`'s figures (floats to 4 digits), then one
    line saying the set is degenerate when it is, and the reference sets' figures beside this one's."""
    d = describe(ds, k, sample, seed)
    out: dict[str, Any] = {key: f"{v:.4g}" if isinstance(v, float) else v for key, v in d.items()}
    points = "queries" if d["hardness_points"] == "queries" else "base rows"
    if d["lid"] is None:
        out["lid"] = out["relative_contrast"] = "undefined"
        if d["relative_contrast"] is not None:
            out["relative_contrast"] = f"{d['relative_contrast']:.4g}"
        at_zero, n = d["hardness_at_zero"], d["hardness_sample"]
        copy = "another vector" if points == "base rows" else "a base vector"
        why = (f"{at_zero} of the {n} sampled {points} have {copy} at distance 0 (identical vectors)" if at_zero
               else f"all {n} sampled {points} have their {k} nearest neighbours at one same distance")
        out["degenerate"] = f"yes: {why}; LID is undefined, and recall on this set measures ties, not an index"
    elif d["hardness_undefined"]:
        out["hardness_undefined"] = (f"{d['hardness_undefined']} of {d['hardness_sample']} sampled {points} "
                                     "(a vector at distance 0 or tied neighbours), left out of the medians")
    for ref in REFERENCES:
        out[f"vs {ref.name}"] = f"LID {ref.lid:.4g}, relative contrast {ref.relative_contrast:.4g}: {ref.source}"
    return out
