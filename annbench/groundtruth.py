"""Exact nearest neighbours over the live set: blockwise kNN, incremental per-step ground truth, cache.

This module owns the definition of the *true distance* every recall figure is scored against, and the
only code that computes it:

- L2: Euclidean distance, ``sqrt(sum((x - q)**2))``; cosine: ``1 - dot(q, x)`` on vectors annbench has
  already L2-normalised. Both are evaluated in float64 from the float32 vectors and rounded to float32
  once, per pair, always by the same helper (`_pair_dist`), so `exact_knn`, `true_distances` and
  `LiveGroundTruth` give bit-identical values for the same (query, vector) pair.
- Neighbours are ordered by the key (float32 distance, id): smaller is nearer, equal distances are
  broken by id ascending. A result is padded with id -1 and distance +inf when fewer than k items live.

`exact_knn` follows the faiss ``contrib/exhaustive_search`` pattern: the live rows are visited in base
blocks (gathered from the pool one block at a time, so a memmapped pool of millions of rows is never
loaded whole), and each (query block × base block) distance tile is one float32 GEMM whose survivors
are merged into a running top-(k + margin) per query. Memory is bounded by the tile, never by n × q.
The float32 pass only *selects* candidates; their distances are then recomputed exactly and ordered
by key. A query whose float32 selection boundary is closer than the proven rounding bound of the GEMM
(near ties, duplicated vectors) is rescanned with a threshold that provably keeps every item that can
belong to its exact top-k, so the answer equals a float64 brute force exactly.

`LiveGroundTruth` keeps that answer exact across inserts, deletes and updates at a fraction of the
cost of recomputing every step, one operation at a time. `step_ground_truth` answers every search of
a whole op log known in advance (what the harness has) with one pass over every vector the log ever
makes live; both equal `exact_knn` over the live set at each search. `cached` stores a result on disk
under a content-hash key.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annbench.atomic import atomic_path
from annbench.dataset import drop_pages
from annbench.jsoncodec import json_default
from annbench.vectors import Metric

GT_SCHEMA = 1
"""Version of the ground-truth definition; part of every cache key.

History: 1 — float64-per-pair true distance rounded to float32, ties by id ascending.
"""

# Default tile: 256 queries × 16384 base rows = 16 MB of float32 distances (+4 MB of bool mask), within
# the L3 of the machines annbench runs on, so the passes after the GEMM (compare, nonzero) mostly hit
# cache. The GEMM is at BLAS peak from ~256 query rows on (*measured*, d = 128: 256 was ~5% faster
# than 512 or 1024 end to end). The base block is large because each block's merge of survivors
# costs O(q · (k + margin)) whatever the block size: fewer, larger blocks amortise it. The first
# block is smaller (`_FIRST_BLOCK`): it is the one block partitioned whole, before a threshold exists;
# the blocks after it grow (each as large as all before it) up to the block size (`_blocks`).
DEFAULT_BLOCK_SIZE = 16384
DEFAULT_QUERY_BLOCK = 256
_FIRST_BLOCK = 4096

_SENT = np.iinfo(np.int64).max  # id of an empty slot while sorting: (inf, _SENT) sorts after every item
_U32 = 2.0**-24  # unit roundoff of float32
_PAIR_VALUES = 1 << 19  # float64 values per exact-distance chunk (4 MB): bounded, and its passes stay in cache


@dataclass
class GTStats:
    """Work counters, so a benchmark can report what a ground truth cost."""

    knn_calls: int = 0
    blocks_scanned: int = 0  # base blocks gathered from the pool (one pass over the live set = n / block)
    distance_evals: int = 0  # (query, row) pairs of the float32 GEMM pass
    exact_evals: int = 0  # (query, row) pairs recomputed in float64
    fallback_queries: int = 0  # queries rescanned because of near ties at their selection boundary
    queries_recomputed: int = 0  # LiveGroundTruth: queries whose list was recomputed over the whole live set
    queries_deepened: int = 0  # step_ground_truth: queries whose list of versions was computed again, deeper
    searches_rescanned: int = 0  # step_ground_truth: searches at which queries left over were computed anew

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# --- the true distance --------------------------------------------------------------------------------
def _pair_dist(qv: np.ndarray, xv: np.ndarray, metric: Metric) -> np.ndarray:
    """The true distance of pairs (qv[i], xv[i]), both P×d float32, as float32.

    float64 products of float32 values are exact, and the per-row reduction of a C-contiguous P×d
    array runs in an order that depends only on d, so a pair gets the same value in any batch.
    """
    return _dist64(np.array(xv, dtype=np.float64, order="C"), np.asarray(qv, dtype=np.float64), metric)


def _dist64(x64: np.ndarray, q64: np.ndarray, metric: Metric) -> np.ndarray:
    """`_pair_dist`'s arithmetic: x64 (…×d float64, C-contiguous, overwritten) against q64 broadcast to it.

    The elementwise steps are the same whatever the leading shape, and the sum runs over the rows of
    the same P×d C-contiguous layout, so every caller gets bit-identical values for a pair.
    """
    if metric is Metric.L2:
        np.subtract(x64, q64, out=x64)
        np.multiply(x64, x64, out=x64)
        return np.sqrt(np.add.reduce(x64.reshape(-1, x64.shape[-1]), axis=1)).astype(np.float32).reshape(
            x64.shape[:-1])
    np.multiply(x64, q64, out=x64)
    return (1.0 - np.add.reduce(x64.reshape(-1, x64.shape[-1]), axis=1)).astype(np.float32).reshape(x64.shape[:-1])


def _gather(pool: np.ndarray, rows: np.ndarray | None, idx: np.ndarray | slice) -> np.ndarray:
    """float32 C-contiguous copy of pool rows (`rows[idx]`, or `pool[idx]` when rows is None)."""
    sel = pool[idx] if rows is None else pool[rows[idx]]
    return np.ascontiguousarray(sel, dtype=np.float32)


def true_distances(queries: np.ndarray, pool: np.ndarray, rows: np.ndarray, metric: Metric | str) -> np.ndarray:
    """Exact distance of query i to pool row rows[i, j] (q×k float32; +inf where rows is -1).

    Computed by the same per-pair helper as `exact_knn`'s final distances, so a returned item equal to
    the k-th true neighbour compares exactly equal to it.
    """
    metric = Metric.parse(metric)
    q = _as_queries(queries, pool)
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 2 or rows.shape[0] != q.shape[0]:
        raise ValueError(f"rows must be q×k with q={q.shape[0]}, got shape {rows.shape}")
    out = np.full(rows.shape, np.inf, dtype=np.float32)
    qi, kj = np.nonzero(rows >= 0)
    step = max(1, _PAIR_VALUES // max(1, q.shape[1]))
    for s in range(0, qi.size, step):
        a, b = qi[s:s + step], kj[s:s + step]
        out[a, b] = _pair_dist(q[a], _gather(pool, None, rows[a, b]), metric)
    return out


# --- exact kNN ---------------------------------------------------------------------------------------
def _as_queries(queries: np.ndarray, pool: np.ndarray) -> np.ndarray:
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2 or pool.ndim != 2 or q.shape[1] != pool.shape[1]:
        raise ValueError(f"queries {q.shape} and pool {pool.shape} must be 2-d with the same dimension")
    return q


def _live_set(pool: np.ndarray, rows: np.ndarray | None, ids: np.ndarray | None
              ) -> tuple[np.ndarray | None, np.ndarray, int]:
    """(rows or None for 'all of pool', ids, n). Without ids, an item's id is its pool row."""
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= len(pool)):
            raise ValueError(f"rows must index the pool (0..{len(pool) - 1})")
    n = len(pool) if rows is None else rows.size
    if ids is None:
        ids = np.arange(n, dtype=np.int64) if rows is None else rows
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if ids.size != n:
        raise ValueError(f"got {ids.size} ids for {n} live rows")
    if ids.size and ((ids == -1) | (ids == _SENT)).any():
        raise ValueError("ids -1 and 2**63-1 are reserved (padding)")
    return rows, ids, n


def _tolerance(qnorm: np.ndarray, rmax: float, d: int, metric: Metric) -> np.ndarray:
    """Per query, a bound on |float32 tile value − exact value| plus the float32 rounding of the output.

    A float32 dot product of length d errs by at most γ_d·|q|·|x| (γ_d ≈ d·u, any summation order,
    FMA or not); the L2 tile ‖x‖² − 2q·x adds ‖x‖²'s own error and one addition. Rounding the final
    distance to float32 can merge two values a relative 2^-22 apart, which the 2^-20 term covers. The
    factor 2 on d·u is headroom, not part of the bound.
    """
    scale = (qnorm + rmax) ** 2 if metric is Metric.L2 else 1.0 + qnorm * rmax
    return (2.0 * (d + 4) * _U32 + 2.0**-20) * scale


def _round_up_f32(x: np.ndarray) -> np.ndarray:
    """float32 values ≥ x (so a float32 comparison never drops what the float64 threshold keeps)."""
    with np.errstate(over="ignore"):  # beyond float32 range: +inf, still ≥ x
        y = np.asarray(x, dtype=np.float64).astype(np.float32)
    low = y.astype(np.float64) < x
    y[low] = np.nextafter(y[low], np.float32(np.inf))
    return y


def _tiles(pool: np.ndarray, queries_scaled: np.ndarray, rows: np.ndarray | None, n: int, metric: Metric,
           block_size: int, query_block: int, stats: GTStats, norms: list[float] | None = None,
           first_min: int = 0):
    """Yield (b0, q0, tile, X, mask) where tile[i, j] ranks live row b0+j for query q0+i (smaller is nearer).

    L2: ‖x‖² − 2 q·x (‖q‖² is constant per query and left out); cosine: −q·x. One GEMM per tile: for
    L2 the queries come as [−2q, 1] (`_scaled_queries`) and each block as [x, ‖x‖²], which folds the
    ‖x‖² addition into the GEMM (a separate pass over the tile costs ~10%). Base blocks are the
    outer loop so each block is gathered from the pool once; the first block has at least
    `4 · first_min` rows (see `_FIRST_BLOCK`). The tile and `mask` (a bool scratch tile) are reused
    buffers — fresh multi-MB arrays per tile would cost page faults — so a yielded tile is valid only
    until the generator is advanced. `norms`, if given, collects each block's max ‖x‖².
    """
    nq = queries_scaled.shape[0]
    size = min(query_block, nq) * min(block_size, n)
    buf = np.empty(size, dtype=np.float32)
    mbuf = np.empty(size, dtype=bool)
    for b0, X, Xg in _blocks(pool, rows, n, metric, block_size, stats, norms, first_min):
        for q0 in range(0, nq, query_block):
            q1 = min(nq, q0 + query_block)
            tile = np.matmul(queries_scaled[q0:q1], Xg.T, out=_tile_view(buf, q1 - q0, X.shape[0]))
            stats.distance_evals += tile.size
            yield b0, q0, tile, X, _tile_view(mbuf, q1 - q0, X.shape[0])


def _tile_view(buf: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A C-contiguous rows × cols array over the start of a flat scratch buffer (matmul into a strided view,
    e.g. buf[:rows, :cols] of a 2-d buffer, would copy)."""
    return buf[: rows * cols].reshape(rows, cols)


def _blocks(pool: np.ndarray, rows: np.ndarray | None, n: int, metric: Metric, block_size: int, stats: GTStats,
            norms: list[float] | None, first_min: int):
    """Yield (b0, X, Xg): each base block gathered once, and the GEMM's right operand made from it.

    After the first block each block is as large as all before it, up to `block_size`: a block's
    survivors of the running m-th value are then about m per query (a threshold from 4096 rows let
    ~4m through a 16384-row second block, *measured* the most survivors of a pass).
    """
    first = min(block_size, max(_FIRST_BLOCK, 4 * first_min))
    b0 = 0
    while b0 < n:
        b1 = min(n, b0 + min(block_size, max(first, b0)))
        X = _gather(pool, rows, slice(b0, b1))
        xn = np.einsum("ij,ij->i", X, X) if metric is Metric.L2 or norms is not None else None
        if norms is not None:
            norms.append(float(xn.max()))
        stats.blocks_scanned += 1
        Xg = X
        if metric is Metric.L2:
            Xg = np.empty((X.shape[0], X.shape[1] + 1), dtype=np.float32)
            Xg[:, :-1] = X
            Xg[:, -1] = xn
        yield b0, X, Xg
        # the caller is done with the block: its file pages need not stay in the RSS of a scan over the catalog
        drop_pages(pool[b0:b1] if rows is None else pool[int(rows[b0:b1].min()) : int(rows[b0:b1].max()) + 1])
        b0 = b1


def _scaled_queries(q: np.ndarray, metric: Metric) -> np.ndarray:
    """The GEMM's left operand: [−2q, 1] for L2, −q for cosine (scaling by a power of two is exact)."""
    if metric is Metric.L2:
        return np.hstack([q * np.float32(-2.0), np.ones((q.shape[0], 1), dtype=np.float32)])
    return q * np.float32(-1.0)


def _le_positions(tile: np.ndarray, thr: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Flat positions of tile[i, j] ≤ thr[i] in row-major order.

    The survivors are sparse (after the first block, typically < 1%), so the mask is scanned as
    uint64 words and only nonzero words are expanded (*measured* ~30% faster than np.flatnonzero).
    """
    np.less_equal(tile, thr[:, None], out=mask)
    flat = mask.reshape(-1)
    if flat.size % 8:
        return np.flatnonzero(flat)
    words = np.flatnonzero(flat.view(np.uint64) != 0)
    inner = np.flatnonzero(flat.reshape(-1, 8)[words])  # 1-d nonzero: the 2-d one is ~50× slower
    return words[inner >> 3] * 8 + (inner & 7)


def _max_norm(pool: np.ndarray, rows: np.ndarray | None, n: int, block_size: int) -> float:
    """max ‖x‖ over the live rows, nudged up (float32 ‖x‖² may round down)."""
    r2 = 0.0
    for b0 in range(0, n, block_size):
        X = _gather(pool, rows, slice(b0, min(n, b0 + block_size)))
        r2 = max(r2, float(np.einsum("ij,ij->i", X, X).max()))
    return float(np.sqrt(r2 * (1 + 1e-5)))


def _approx_topm(pool: np.ndarray, qs: np.ndarray, rows: np.ndarray | None, n: int, m: int, metric: Metric,
                 block_size: int, query_block: int, stats: GTStats, cap: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """Per query, the m smallest float32 tile values (unordered), their live positions, and max ‖x‖.

    Values above `cap` (float32, per query; +inf = none) need not be kept: every item left out has a
    tile value > cap or ≥ the final m-th value.
    """
    nq = qs.shape[0]
    # Per query a buffer of m + slack (value, position) slots: `fill` used, the rest (+inf, -1). The
    # survivors of a tile are appended while they fit and the buffer is cut back to its m smallest
    # only when they do not, so a row with a few survivors costs no partition (*measured*: most rows
    # of the later blocks). thr is the m-th value at the last cut: above the current m-th, never
    # below, so a tile value above it cannot be among the m smallest.
    width = m + max(16, m // 2)
    top_a = np.full((nq, width), np.inf, dtype=np.float32)
    top_p = np.full((nq, width), -1, dtype=np.int64)
    fill = np.zeros(nq, dtype=np.int64)
    thr = cap.copy()  # min(the m-th value at the last cut, cap); +inf until m items were seen
    norms: list[float] = []
    # Each thread has tiles of its own, of up to `query_block` queries: a GEMM of half as many rows per
    # thread packs each base block twice as often (*measured*: the whole pass ~10% slower at 10k queries,
    # and half the tiles' selection calls contend for the GIL twice as often). Memory: a tile per thread.
    workers = min(_blas_threads(), query_block, -(-nq // max(1, query_block // 2)))
    if workers < 2:
        for b0, q0, tile, _, mask in _tiles(pool, qs, rows, n, metric, block_size, query_block, stats, norms, m):
            q1 = q0 + tile.shape[0]
            _merge_tile(tile, mask, b0, top_a[q0:q1], top_p[q0:q1], fill[q0:q1], thr[q0:q1], m, cap[q0:q1])
    else:
        _approx_topm_threads(pool, qs, rows, n, m, metric, block_size, min(query_block, -(-nq // workers)), stats,
                             cap, top_a, top_p, fill, thr, norms, workers)
    sel = np.argpartition(top_a, m - 1, axis=1)[:, :m]
    # float32 ‖x‖² may round down: the relative nudge keeps the bound an upper bound
    return (np.take_along_axis(top_a, sel, axis=1), np.take_along_axis(top_p, sel, axis=1),
            float(np.sqrt(max(norms) * (1 + 1e-5))))


_BLAS: list[Any] = []  # the BLAS thread pools of this process (threadpoolctl), looked up once, when first needed


def _blas_controller() -> Any:
    if not _BLAS:
        import threadpoolctl

        _BLAS.append(threadpoolctl.ThreadpoolController().select(user_api="blas"))
    return _BLAS[0]


def _blas_threads() -> int:
    """Threads numpy's BLAS may use now (1 inside a run's threadpool_limits(1), the core count otherwise)."""
    libs = _blas_controller().lib_controllers
    return max((lib.num_threads for lib in libs), default=1)


def _approx_topm_threads(pool: np.ndarray, qs: np.ndarray, rows: np.ndarray | None, n: int, m: int, metric: Metric,
                         block_size: int, query_block: int, stats: GTStats, cap: np.ndarray, top_a: np.ndarray,
                         top_p: np.ndarray, fill: np.ndarray, thr: np.ndarray, norms: list[float], workers: int
                         ) -> None:
    """`_approx_topm`'s loop on `workers` threads, each with a one-thread GEMM and its own query blocks.

    With a multi-threaded GEMM the selection after it (compare, nonzero, partition: numpy, one core)
    leaves the other cores idle for about a third of the time (*measured*, 200k × 10k × 128, k = 100).
    Here every thread runs GEMM + selection on its own tiles, so all cores stay busy; numpy releases
    the GIL in both. Each base block is gathered once and handed to every worker; a query's tiles are
    all merged by the same thread, in base-block order, so the result does not depend on the schedule.
    """
    nq = qs.shape[0]
    mine = [list(range(w * query_block, nq, workers * query_block)) for w in range(workers)]
    size = min(query_block, nq) * min(block_size, n)
    bufs = [(np.empty(size, dtype=np.float32), np.empty(size, dtype=bool)) for _ in range(workers)]
    evals = [0] * workers

    def work(w: int, b0: int, Xg: np.ndarray) -> None:
        buf, mbuf = bufs[w]
        for q0 in mine[w]:
            q1 = min(nq, q0 + query_block)
            tile = np.matmul(qs[q0:q1], Xg.T, out=_tile_view(buf, q1 - q0, Xg.shape[0]))
            evals[w] += tile.size
            mask = _tile_view(mbuf, q1 - q0, Xg.shape[0])
            _merge_tile(tile, mask, b0, top_a[q0:q1], top_p[q0:q1], fill[q0:q1], thr[q0:q1], m, cap[q0:q1])

    with _blas_controller().limit(limits=1), ThreadPoolExecutor(workers, thread_name_prefix="annbench-gt") as ex:
        blocks = _blocks(pool, rows, n, metric, block_size, stats, norms, m)
        block = next(blocks, None)
        while block is not None:
            b0, _, Xg = block
            running = [ex.submit(work, w, b0, Xg) for w in range(workers)]
            # the next block is gathered while the workers compute on this one (the workers read only Xg,
            # a gathered copy, or pool rows that dropped pages fault back in): otherwise the gather is a
            # serial step between blocks (*measured* ~15% of P3's pass, 500 queries over memory-mapped rows)
            block = next(blocks, None)
            for f in running:
                f.result()
    stats.distance_evals += sum(evals)


def _merge_tile(tile: np.ndarray, mask: np.ndarray, b0: int, ta: np.ndarray, tp: np.ndarray, fill: np.ndarray,
                thr: np.ndarray, m: int, cap: np.ndarray) -> None:
    """Merge a tile into the running buffers (ta, tp, fill, thr are row views, updated in place; mask is scratch).

    `tile` and the buffers are C-contiguous. Which of several equal values is kept at the m-th place
    does not matter: the answer is proven from the values, and recomputed exactly (`exact_knn`).
    """
    nq, nb = tile.shape
    width = ta.shape[1]
    if not np.isinf(thr).any():
        # Filter first: after the first blocks only a few values per row beat the current m-th, and a
        # comparison + nonzero is far cheaper than a partition of the whole tile.
        flat = _le_positions(tile, thr, mask)
        if flat.size == 0:
            return
        if flat.size <= tile.size // 8:
            # survivors come row by row (row-major): survivor j of the s-th row that has some is the
            # (j − start[s])-th of its row
            r = flat // nb
            counts = np.bincount(r, minlength=nq)
            sub = np.flatnonzero(counts)
            cnt = counts[sub]
            start = np.cumsum(cnt) - cnt
            vals = tile.reshape(-1)[flat]
            pos = b0 + (flat - r * nb)
            room = fill[sub] + cnt <= width
            if room.any():  # appended after the row's used slots
                each = np.repeat(room, cnt)
                slot = (np.repeat(sub * width + fill[sub] - start, cnt) + np.arange(flat.size))[each]
                ta.reshape(-1)[slot] = vals[each]
                tp.reshape(-1)[slot] = pos[each]
                fill[sub[room]] += cnt[room]
            if not room.all():  # cut back to the m smallest of buffer ∪ survivors
                full = ~room
                rf, cf, sf = sub[full], cnt[full], start[full]
                w = width + int(cf.max())
                j = np.repeat(sf - (np.cumsum(cf) - cf), cf) + np.arange(int(cf.sum()))  # their survivors
                slot = np.repeat(np.arange(rf.size) * w + width, cf) + (j - np.repeat(sf, cf))
                cat_a = np.full((rf.size, w), np.inf, dtype=np.float32)
                cat_p = np.full((rf.size, w), -1, dtype=np.int64)
                cat_a[:, :width] = ta[rf]
                cat_p[:, :width] = tp[rf]
                cat_a.reshape(-1)[slot] = vals[j]
                cat_p.reshape(-1)[slot] = pos[j]
                _cut(cat_a, cat_p, m, rf, ta, tp, fill, thr, cap)
            return
    if b0 == 0 and nb >= m:
        # The first block: the buffers are still empty (+inf, -1), so the tile's own m smallest are them.
        sel = np.argpartition(tile, m - 1, axis=1)[:, :m]
        ta[:, :m] = np.take_along_axis(tile, sel, axis=1)
        tp[:, :m] = sel
        fill[:] = m
        thr[...] = np.minimum(ta[:, :m].max(axis=1), cap)
        return
    # Dense path (a block where most values qualify): the m smallest of buffer ∪ tile.
    cat_a = np.concatenate([ta, tile], axis=1)
    cat_p = np.concatenate([tp, b0 + np.broadcast_to(np.arange(nb), tile.shape)], axis=1)
    _cut(cat_a, cat_p, m, np.arange(nq), ta, tp, fill, thr, cap)


def _cut(cat_a: np.ndarray, cat_p: np.ndarray, m: int, rows: np.ndarray, ta: np.ndarray, tp: np.ndarray,
         fill: np.ndarray, thr: np.ndarray, cap: np.ndarray) -> None:
    """Buffers `rows` := the m smallest of (cat_a, cat_p) rows, then +inf / -1; thr their m-th (≤ cap)."""
    sel = np.argpartition(cat_a, m - 1, axis=1)[:, :m]
    new_a = np.take_along_axis(cat_a, sel, axis=1)
    ta[rows, :m] = new_a
    ta[rows, m:] = np.inf
    tp[rows, :m] = np.take_along_axis(cat_p, sel, axis=1)
    tp[rows, m:] = -1
    fill[rows] = m
    thr[rows] = np.minimum(new_a.max(axis=1), cap[rows])


def _sort_keys(d: np.ndarray, i: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """First k of each row by key (d, i); rows are padded with (inf, _SENT) when narrower than k.

    Empty slots must be (inf, _SENT). Sorting by distance alone is ~10× faster than a lexsort, and
    equal distances among real items are rare: only rows that have some are lexsorted.
    """
    order = np.argsort(d, axis=1)
    ds, is_ = np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)
    tied = np.flatnonzero(((ds[:, 1:] == ds[:, :-1]) & (is_[:, 1:] != _SENT)).any(axis=1))
    if tied.size:
        o = np.lexsort((i[tied], d[tied]), axis=-1)
        ds[tied], is_[tied] = np.take_along_axis(d[tied], o, axis=1), np.take_along_axis(i[tied], o, axis=1)
    ds, is_ = ds[:, :k], is_[:, :k]
    if ds.shape[1] < k:
        pad = k - ds.shape[1]
        ds = np.pad(ds, ((0, 0), (0, pad)), constant_values=np.inf)
        is_ = np.pad(is_, ((0, 0), (0, pad)), constant_values=_SENT)
    return ds, is_


def _rerank(pool: np.ndarray, q: np.ndarray, rows: np.ndarray | None, ids: np.ndarray, pos: np.ndarray, k: int,
            metric: Metric, stats: GTStats) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of each query among its candidate positions `pos` (-1 = none).

    Each row's candidates are moved to its front (they are a few more than k: much narrower than the
    margin), then computed a group of queries at a time as one (queries × width × d) block against the
    queries broadcast, not a copy of the query per pair.
    """
    valid = pos >= 0
    count = valid.sum(axis=1)
    width = max(1, int(count.max())) if count.size else 1
    order = np.argsort(~valid, axis=1, kind="stable")[:, :width]
    p = np.take_along_axis(pos, order, axis=1)
    ok = np.arange(width) < count[:, None]
    p[~ok] = 0  # a placeholder row; its distance is replaced below
    d = np.full(p.shape, np.inf, dtype=np.float32)
    d64 = np.empty(0)
    step = max(1, _PAIR_VALUES // (width * max(1, q.shape[1])))  # queries per block: bounded, as before
    for s in range(0, p.shape[0], step):
        pp = p[s:s + step]
        x = _gather(pool, rows, pp.reshape(-1))
        if d64.size < x.size:
            d64 = np.empty(x.size, dtype=np.float64)
        x64 = d64[: x.size].reshape(pp.shape[0], width, q.shape[1])
        np.copyto(x64, x.reshape(x64.shape))
        d[s:s + step] = _dist64(x64, q[s:s + step, None, :].astype(np.float64), metric)
    d[~ok] = np.inf
    i = np.where(ok, ids[p], _SENT)
    stats.exact_evals += int(count.sum())
    return _sort_keys(d, i, k)


def _filtered_exact(pool: np.ndarray, q: np.ndarray, qs: np.ndarray, rows: np.ndarray | None, ids: np.ndarray,
                    n: int, thr: np.ndarray, k: int, metric: Metric, block_size: int, query_block: int,
                    stats: GTStats) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k keys per query among the items whose tile value is ≤ thr (float32, per query).

    The threshold is chosen so that every item that can be in the exact top-k passes; the exact
    distances are computed only for those, in bounded chunks, and merged by key.
    """
    nq = q.shape[0]
    best_d = np.full((nq, k), np.inf, dtype=np.float32)
    best_i = np.full((nq, k), _SENT, dtype=np.int64)
    step = max(1, _PAIR_VALUES // max(1, q.shape[1]))
    for b0, q0, tile, X, mask in _tiles(pool, qs, rows, n, metric, block_size, query_block, stats):
        r, c = np.divmod(_le_positions(tile, thr[q0:q0 + tile.shape[0]], mask), tile.shape[1])
        for s in range(0, r.size, step):
            rr, cc = r[s:s + step] + q0, c[s:s + step]
            d = _pair_dist(q[rr], X[cc], metric)
            stats.exact_evals += rr.size
            # candidates are grouped by query (nonzero is row-major): pad them into one row per query
            counts = np.bincount(rr, minlength=nq)
            sub = np.flatnonzero(counts)
            col = np.arange(rr.size) - (np.cumsum(counts) - counts)[rr]
            rsub = (np.cumsum(counts > 0) - 1)[rr]
            pd = np.full((sub.size, int(counts.max())), np.inf, dtype=np.float32)
            pi = np.full(pd.shape, _SENT, dtype=np.int64)
            pd[rsub, col] = d
            pi[rsub, col] = ids[b0 + cc]
            best_d[sub], best_i[sub] = _sort_keys(np.concatenate([best_d[sub], pd], axis=1),
                                                  np.concatenate([best_i[sub], pi], axis=1), k)
    return best_d, best_i


def exact_knn(pool: np.ndarray, queries: np.ndarray, k: int, metric: Metric | str, rows: np.ndarray | None = None,
              ids: np.ndarray | None = None, block_size: int | None = None, *, query_block: int | None = None,
              stats: GTStats | None = None, max_dist: np.ndarray | float | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest live items of each query: (dists float32 q×k, ids int64 q×k), nearest first.

    The live set is ``pool[rows]`` labelled ``ids`` (defaults: all of pool; ids = the pool rows).
    Ties are broken by id ascending; rows are padded with id -1 and distance +inf when fewer than k
    items live. `block_size` live rows × `query_block` queries is the largest distance tile held in
    memory (defaults `DEFAULT_BLOCK_SIZE` × `DEFAULT_QUERY_BLOCK`). `stats` accumulates work counters.
    `max_dist` (per query or scalar) keeps only neighbours at distance ≤ it — the same answer
    truncated, but only the items that can pass are recomputed exactly (what makes merging a day's
    new items into `LiveGroundTruth` cheap).
    """
    metric = Metric.parse(metric)
    if int(k) < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    k = int(k)
    bs = int(block_size or DEFAULT_BLOCK_SIZE)
    qb = int(query_block or DEFAULT_QUERY_BLOCK)
    if bs < 1 or qb < 1:
        raise ValueError("block_size and query_block must be ≥ 1")
    stats = stats if stats is not None else GTStats()
    stats.knn_calls += 1
    q = _as_queries(queries, pool)
    rows, ids, n = _live_set(pool, rows, ids)
    nq = q.shape[0]
    out_d = np.full((nq, k), np.inf, dtype=np.float32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    if nq == 0 or n == 0:
        return out_d, out_i

    # A margin beyond k makes the float32 selection boundary (m-th value) usually sit well clear of
    # the k-th value, so most queries are settled by one pass + an exact rerank of m candidates.
    m = min(n, k + max(16, k // 4))
    qs = _scaled_queries(q, metric)
    qn = np.linalg.norm(q.astype(np.float64), axis=1)
    # limit (tile units): no item with a larger tile value can be in the answer. Tile values are the
    # true distance shifted per query (L2: d² − ‖q‖², cosine: d − 1) within ±tol.
    limit = np.full(nq, np.inf)
    rmax_pre = None
    md = None if max_dist is None else np.broadcast_to(np.asarray(max_dist, dtype=np.float64), (nq,))
    if md is not None and np.isfinite(md).any():
        # The bound in tile units needs tol, hence max ‖x‖ before the pass: one cheap pass over the rows
        # (n·d, against the GEMM's q·n·d), which lets the pass drop everything beyond the bound.
        rmax_pre = _max_norm(pool, rows, n, bs)
        shifted = md * md - qn * qn if metric is Metric.L2 else md - 1.0
        limit = np.where(np.isfinite(md), shifted + _tolerance(qn, rmax_pre, q.shape[1], metric), np.inf)
    top_a, top_p, rmax = _approx_topm(pool, qs, rows, n, m, metric, bs, qb, stats, _round_up_f32(limit))
    tol = _tolerance(qn, rmax if rmax_pre is None else rmax_pre, q.shape[1], metric)
    if m == n:  # every live item is a candidate
        ok = np.ones(nq, dtype=bool)
    else:
        a_k = np.partition(top_a, k - 1, axis=1)[:, k - 1].astype(np.float64)
        a_m = top_a.max(axis=1).astype(np.float64)
        # Items outside the candidates have tile value ≥ a_m, so true distance ≥ a_m − tol; the exact
        # k-th is ≤ a_k + tol. A gap > 2·tol (tol includes float32 output rounding) proves the exact
        # top-k, ties included, lies among the candidates; so does a_m beyond the max_dist limit.
        # a_m = inf: an empty slot, so every item with a tile value ≤ cap is a candidate
        with np.errstate(invalid="ignore"):
            ok = np.isinf(a_m) | ((a_m - a_k) > 2.0 * tol) | (a_m > limit + tol)
        limit = np.minimum(limit, a_k + 2.0 * tol)

    good = np.flatnonzero(ok)
    if good.size:
        # Only candidates within the limit can be in the answer: skip the rest of the margin.
        keep = top_a[good] <= _round_up_f32(limit[good])[:, None]
        pos = np.where(keep, top_p[good], -1)
        # as the pass, on as many threads as BLAS may use: one core alone would leave the other idle
        # for this part (*measured* ~8% of a 10k-query exact_knn on 2 cores)
        workers = min(_blas_threads(), good.size // 256)
        if workers < 2:
            out_d[good], out_i[good] = _rerank(pool, q[good], rows, ids, pos, k, metric, stats)
        else:
            parts = np.array_split(np.arange(good.size), workers)
            part_stats = [GTStats() for _ in parts]
            with ThreadPoolExecutor(workers, thread_name_prefix="annbench-gt") as ex:
                done = list(ex.map(lambda a, st: _rerank(pool, q[good[a]], rows, ids, pos[a], k, metric, st),
                                   parts, part_stats))
            for a, (d, i) in zip(parts, done, strict=True):
                out_d[good[a]], out_i[good[a]] = d, i
            stats.exact_evals += sum(st.exact_evals for st in part_stats)
    bad = np.flatnonzero(~ok)
    if bad.size:
        stats.fallback_queries += bad.size
        d, i = _filtered_exact(pool, q[bad], qs[bad], rows, ids, n, _round_up_f32(limit[bad]), k, metric, bs, qb,
                               stats)
        out_d[bad], out_i[bad] = d, i
    if md is not None:
        beyond = out_d.astype(np.float64) > md[:, None]  # a suffix of each sorted row
        out_d[beyond] = np.inf
        out_i[beyond] = _SENT
    out_i[out_i == _SENT] = -1
    return out_d, out_i


def _key_le(d: np.ndarray, i: np.ndarray, hd: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(d, i) ≤ (hd, hi) in key order (distance, then id)."""
    return (d < hd) | ((d == hd) & (i <= hi))


def _key_lt(d: np.ndarray, i: np.ndarray, hd: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (d < hd) | ((d == hd) & (i < hi))


def _check_op(ids: np.ndarray, rows: np.ndarray | None, n_pool: int) -> None:
    """ValueError unless one operation's ids (int64) are distinct and not reserved, and its rows index the pool."""
    if ids.size > 1 and (np.diff(np.sort(ids)) == 0).any():
        raise ValueError("ids repeat within one operation")
    if ((ids == -1) | (ids == _SENT)).any():
        raise ValueError("ids -1 and 2**63-1 are reserved (padding)")
    if rows is None:
        return
    if rows.shape != ids.shape:
        raise ValueError(f"got {rows.size} rows for {ids.size} ids")
    if rows.size and (rows.min() < 0 or rows.max() >= n_pool):
        raise ValueError(f"rows must index the pool (0..{n_pool - 1})")


# --- incremental ground truth --------------------------------------------------------------------------
class LiveGroundTruth:
    """Exact top-k over the items live at each step of an update scenario, maintained incrementally.

    Per query it keeps a list of up to `depth` (default 2k) items sorted by key (dist, id) and a
    *horizon* key h with the invariant:

        list = every live item whose key ≤ h        (h = +inf: the list holds every live item)

    So whenever the list has ≥ k entries (or h = +inf) its first k are the exact top-k.
    - insert: only new items with key ≤ h can belong to a list. The new items' exact top-depth within
      distance h (`exact_knn(max_dist=…)`: items beyond h are never recomputed exactly) is merged in; if
      that answer is full, more new items may lie beyond its last key g, so h drops to g; truncating
      the merged list back to `depth` drops h to the new last key. Both keep the invariant.
    - delete: removing ids keeps the invariant as is; a list left with < k entries and a finite h is
      recomputed over the whole live set (depth deep) — the only full scans, for those queries only.
    - update (same id, new vector): remove + insert, then repair.

    Inserted and updated items are merged lazily, all at once, when the answer is next read (`current`)
    or before a delete: a day of the harness's op log is delete, insert, update, search, so its inserts
    and updates cost one `exact_knn` call over the day's new vectors instead of two (*measured*: half
    of a 30-day replay's calls; each call has a fixed cost of its own beside its GEMM). Until then the
    invariant above holds for the live items that are not pending.
    """

    def __init__(self, pool: np.ndarray, queries: np.ndarray, k: int, metric: Metric | str,
                 depth: int | None = None, block_size: int | None = None, query_block: int | None = None) -> None:
        self.pool = pool
        self.queries = _as_queries(queries, pool)
        self.k = int(k)
        self.metric = Metric.parse(metric)
        self.depth = int(depth) if depth is not None else 2 * self.k
        if self.k < 1 or self.depth < self.k:
            raise ValueError(f"need 1 ≤ k ≤ depth, got k={k}, depth={self.depth}")
        self.block_size = block_size
        self.query_block = query_block
        nq = self.queries.shape[0]
        self._d = np.full((nq, self.depth), np.inf, dtype=np.float32)
        self._i = np.full((nq, self.depth), _SENT, dtype=np.int64)
        self._hd = np.full(nq, np.inf, dtype=np.float32)  # horizon key; (inf, _SENT): list is complete
        self._hi = np.full(nq, _SENT, dtype=np.int64)
        self._rows = np.empty(0, dtype=np.int64)
        self._ids = np.empty(0, dtype=np.int64)
        # live items not merged into the lists yet (rows, ids), and whether short lists await a repair
        self._pend_rows = np.empty(0, dtype=np.int64)
        self._pend_ids = np.empty(0, dtype=np.int64)
        self._repair_due = False
        self.stats = GTStats()

    # -- the live set ---------------------------------------------------------------------------------
    @property
    def n_live(self) -> int:
        return int(self._ids.size)

    def live(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, ids) of the live set, copies."""
        return self._rows.copy(), self._ids.copy()

    def _check_ops(self, ids: np.ndarray, rows: np.ndarray | None = None) -> None:
        _check_op(ids, rows, len(self.pool))

    def _find(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in the live arrays, found mask); the live arrays are kept sorted by id."""
        if self._ids.size == 0:
            return np.zeros(ids.size, dtype=np.int64), np.zeros(ids.size, dtype=bool)
        at = np.minimum(np.searchsorted(self._ids, ids), self._ids.size - 1)
        return at, self._ids[at] == ids

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        """Positions of ids in the live arrays; ValueError if any is not live."""
        at, found = self._find(ids)
        if not found.all():
            raise ValueError(f"id {int(ids[~found][0])} is not live")
        return at

    # -- operations -----------------------------------------------------------------------------------
    def insert(self, rows: np.ndarray, ids: np.ndarray) -> None:
        """New items: ids (not live) whose vectors are pool[rows]."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        self._check_ops(ids, rows)
        _, found = self._find(ids)
        if found.any():
            raise ValueError(f"id {int(ids[found][0])} is already live")
        order = np.argsort(ids)
        at = np.searchsorted(self._ids, ids[order])  # keep the live arrays sorted by id: O(n) inserts,
        self._ids = np.insert(self._ids, at, ids[order])  # O(log n) look-ups for deletes and updates
        self._rows = np.insert(self._rows, at, rows[order])
        self._pend_rows = np.concatenate([self._pend_rows, rows])
        self._pend_ids = np.concatenate([self._pend_ids, ids])

    def delete(self, ids: np.ndarray) -> None:
        """Remove live ids."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        self._check_ops(ids)
        keep = np.ones(self._ids.size, dtype=bool)
        keep[self._positions(ids)] = False
        self._flush()  # merge what is pending first, so that a repair below sees only merged lists
        self._rows, self._ids = self._rows[keep], self._ids[keep]
        self._drop(ids)
        self._repair()

    def update(self, rows: np.ndarray, ids: np.ndarray) -> None:
        """Same (live) ids, vectors now at pool[rows]."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        self._check_ops(ids, rows)
        self._rows[self._positions(ids)] = rows
        self._drop(ids)
        if self._pend_ids.size:  # a pending item's new vector replaces its old one in the queue
            stay = ~np.isin(self._pend_ids, ids)
            self._pend_rows, self._pend_ids = self._pend_rows[stay], self._pend_ids[stay]
        self._pend_rows = np.concatenate([self._pend_rows, rows])
        self._pend_ids = np.concatenate([self._pend_ids, ids])
        self._repair_due = True  # after the merge: the new vectors may refill a list the removal shortened

    def current(self, query_idx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(dists, ids) of the exact top-k over the live set now, for all queries or `query_idx`."""
        self._flush()
        sel = slice(None) if query_idx is None else np.asarray(query_idx, dtype=np.int64)
        d = self._d[sel, : self.k].copy()
        i = self._i[sel, : self.k].copy()
        i[i == _SENT] = -1
        return d, i

    def replay(self, steps: Iterable[StepOp]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Apply an op log's (kind, rows, ids) steps in order (`step_ground_truth`'s input); each search's
        `current()` answer, in order."""
        answers = []
        for kind, rows, ids in steps:
            if kind == "insert":
                self.insert(rows, ids)
            elif kind == "delete":
                self.delete(ids)
            elif kind == "update":
                self.update(rows, ids)
            elif kind == "search":
                answers.append(self.current())
        return answers

    # -- maintenance ----------------------------------------------------------------------------------
    def _flush(self) -> None:
        """Merge the pending items into the lists, then repair the lists an update left short."""
        if self._pend_ids.size:
            rows, ids = self._pend_rows, self._pend_ids
            self._pend_rows = np.empty(0, dtype=np.int64)
            self._pend_ids = np.empty(0, dtype=np.int64)
            self._merge_new(rows, ids)
        if self._repair_due:
            self._repair_due = False
            self._repair()

    def _knn(self, q: np.ndarray, rows: np.ndarray, ids: np.ndarray, max_dist: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        d, i = exact_knn(self.pool, q, self.depth, self.metric, rows=rows, ids=ids, block_size=self.block_size,
                         query_block=self.query_block, stats=self.stats, max_dist=max_dist)
        i[i == -1] = _SENT
        return d, i

    def _merge_new(self, rows: np.ndarray, ids: np.ndarray) -> None:
        if ids.size == 0 or self.queries.shape[0] == 0:
            return
        # Only new items within the horizon distance matter; the rest are never recomputed exactly.
        nd, ni = self._knn(self.queries, rows, ids, max_dist=self._hd)
        # A full answer means the new items are known only up to their own depth-th key g: lower the
        # horizon to it (merely cautious when exactly `depth` new items qualified).
        full = ni[:, -1] != _SENT
        lower = full & _key_lt(nd[:, -1], ni[:, -1], self._hd, self._hi)
        self._hd[lower], self._hi[lower] = nd[lower, -1], ni[lower, -1]
        # Items beyond the horizon must not enter: what lies between h and them is unknown.
        inside = (ni != _SENT) & _key_le(nd, ni, self._hd[:, None], self._hi[:, None])
        touched = np.flatnonzero(inside.any(axis=1))
        if touched.size == 0:
            return
        width = int(inside.sum(axis=1).max())  # inside is a prefix of each (sorted) row
        nd, ni, inside = nd[touched, :width], ni[touched, :width], inside[touched, :width]
        nd[~inside] = np.inf
        ni[~inside] = _SENT
        old_d, old_i = self._d[touched], self._i[touched]
        # old items beyond a lowered horizon leave the list, so that it again holds exactly the items ≤ h
        old_out = ~_key_le(old_d, old_i, self._hd[touched, None], self._hi[touched, None])
        old_d[old_out] = np.inf
        old_i[old_out] = _SENT
        cat_d = np.concatenate([old_d, nd], axis=1)
        cat_i = np.concatenate([old_i, ni], axis=1)
        count = (cat_i != _SENT).sum(axis=1)
        d, i = _sort_keys(cat_d, cat_i, self.depth)
        self._d[touched], self._i[touched] = d, i
        cut = count > self.depth  # truncated: everything kept is ≤ the new last key, nothing else is
        self._hd[touched[cut]] = d[cut, -1]
        self._hi[touched[cut]] = i[cut, -1]

    def _drop(self, ids: np.ndarray) -> None:
        if ids.size == 0:
            return
        gone = np.isin(self._i, ids)  # (measured faster than a binary search per entry)
        hit = np.flatnonzero(gone.any(axis=1))
        if hit.size == 0:
            return
        g = gone[hit]
        order = np.argsort(g, axis=1, kind="stable")  # survivors keep their order, holes go last
        d = np.where(g, np.float32(np.inf), self._d[hit])
        i = np.where(g, _SENT, self._i[hit])
        self._d[hit] = np.take_along_axis(d, order, axis=1)
        self._i[hit] = np.take_along_axis(i, order, axis=1)

    def _repair(self) -> None:
        short = (self._i[:, self.k - 1] == _SENT) & np.isfinite(self._hd)
        need = np.flatnonzero(short)
        if need.size == 0:
            return
        self.stats.queries_recomputed += need.size
        d, i = self._knn(self.queries[need], self._rows, self._ids)
        full = i[:, -1] != _SENT
        self._d[need], self._i[need] = d, i
        self._hd[need] = np.where(full, d[:, -1], np.float32(np.inf))
        self._hi[need] = np.where(full, i[:, -1], _SENT)


# --- the ground truth of a whole op log, at once ---------------------------------------------------------
_LIST_ENTRIES = 1 << 20  # (query × list depth) entries at once: ≈ 70 MB at most with exact_knn's own arrays

StepOp = tuple[str, "np.ndarray | None", "np.ndarray | None"]
"""One operation of an op log for `step_ground_truth`: (kind, rows, ids)."""


@dataclass
class _VersionLog:
    """An op log recast over versions: every distinct (id, row) pair an item ever has, labelled by rank."""

    rows: np.ndarray  # pool row of each version, in (id, row) order: a version's label is its position
    ids: np.ndarray  # its id; non-decreasing with the label
    live: list[np.ndarray]  # per search, the live versions (np.packbits of a bool mask over labels)
    n_live: list[int]  # per search, how many items are live


def _version_log(n_pool: int, ops: list[StepOp]) -> _VersionLog:
    """Check the op log as `LiveGroundTruth` checks its operations, and replay it over versions."""
    checked: list[tuple[str, np.ndarray, np.ndarray]] = []
    for kind, rows, ids in ops:
        if kind == "search":
            continue
        if kind not in ("insert", "delete", "update"):
            raise ValueError(f"unknown operation {kind!r} (insert, delete, update or search)")
        i = np.asarray(ids, dtype=np.int64).reshape(-1)
        r = None if kind == "delete" else np.asarray(rows, dtype=np.int64).reshape(-1)
        _check_op(i, r, n_pool)
        checked.append((kind, r, i))
    new = [(r, i) for kind, r, i in checked if kind != "delete"]
    all_rows = np.concatenate([r for r, _ in new]) if new else np.empty(0, dtype=np.int64)
    all_ids = np.concatenate([i for _, i in new]) if new else np.empty(0, dtype=np.int64)
    order = np.lexsort((all_rows, all_ids))
    s_rows, s_ids = all_rows[order], all_ids[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = (s_ids[1:] != s_ids[:-1]) | (s_rows[1:] != s_rows[:-1])
    labels = np.empty(order.size, dtype=np.int64)
    labels[order] = np.cumsum(first) - 1  # the label of each inserted or updated (id, row), in op order
    # and the rank of its id among the distinct ids (sorted): where its state lives in `cur`
    new_id = np.ones(order.size, dtype=bool)
    new_id[1:] = s_ids[1:] != s_ids[:-1]
    id_at = np.empty(order.size, dtype=np.int64)
    id_at[order] = np.cumsum(new_id) - 1
    uid = s_ids[new_id]  # distinct ids, sorted
    v_rows, v_ids = s_rows[first], s_ids[first]
    del all_rows, all_ids, order, s_rows, s_ids, first, new_id
    # a deleted id's rank, looked up once for all deletes (one that was never inserted is not live)
    dels = [i for kind, _, i in checked if kind == "delete"]
    del_ids = np.concatenate(dels) if dels else np.empty(0, dtype=np.int64)
    del_at = np.minimum(np.searchsorted(uid, del_ids), max(uid.size - 1, 0))
    if uid.size == 0 or (uid[del_at] != del_ids).any():
        bad = del_ids if uid.size == 0 else del_ids[uid[del_at] != del_ids]
        if bad.size:
            raise ValueError(f"id {int(bad[0])} is not live")
    cur = np.full(uid.size, -1, dtype=np.int64)  # per id, the label of its live version (-1: not live)
    live = np.zeros(v_rows.size, dtype=bool)
    out = _VersionLog(v_rows, v_ids, [], [])
    n_live, off, off_del, at_op = 0, 0, 0, 0
    for kind, _, _ in ops:
        if kind == "search":
            out.live.append(np.packbits(live))
            out.n_live.append(n_live)
            continue
        _, _, i = checked[at_op]
        at_op += 1
        if kind == "delete":
            at = del_at[off_del:off_del + i.size]
            off_del += i.size
        else:
            at = id_at[off:off + i.size]
        was = cur[at]
        if kind == "insert" and (was >= 0).any():
            raise ValueError(f"id {int(i[was >= 0][0])} is already live")
        if kind != "insert" and (was < 0).any():
            raise ValueError(f"id {int(i[was < 0][0])} is not live")
        live[was[was >= 0]] = False
        if kind == "delete":
            cur[at] = -1
            n_live -= i.size
            continue
        lab = labels[off:off + i.size]
        off += i.size
        cur[at] = lab
        live[lab] = True
        n_live += i.size if kind == "insert" else 0
    return out


def _first_live(ld: np.ndarray, lab: np.ndarray, live: np.ndarray, k: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the first k entries of a (dist, label) list whose label is live: (dists, labels (-1 pad), count).

    `count` is how many live entries the whole row holds.
    """
    alive = live[np.maximum(lab, 0)] & (lab >= 0)
    take = min(k, lab.shape[1])
    pos = np.argsort(~alive, axis=1, kind="stable")[:, :take]  # live entries first, in list order
    got = np.take_along_axis(alive, pos, axis=1)
    d = np.full((lab.shape[0], k), np.inf, dtype=np.float32)
    labs = np.full((lab.shape[0], k), -1, dtype=np.int64)
    d[:, :take] = np.where(got, np.take_along_axis(ld, pos, axis=1), np.float32(np.inf))
    labs[:, :take] = np.where(got, np.take_along_axis(lab, pos, axis=1), -1)
    return d, labs, alive.sum(axis=1)


def step_ground_truth(pool: np.ndarray, queries: np.ndarray, k: int, metric: Metric | str, ops: list[StepOp], *,
                      depth: int | None = None, block_size: int | None = None, query_block: int | None = None,
                      stats: GTStats | None = None, max_entries: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over the items live at every search of an op log: (dists float32, ids int64), searches × q × k.

    `ops` lists (kind, rows, ids) in order: "insert" (ids not live; vectors pool[rows]), "delete" (live
    ids; rows None), "update" (live ids; vectors now pool[rows]) and "search" (rows and ids None). Each
    search's answer is `exact_knn`'s over the items live then — ids, distances and the order of ties —
    and the operations are checked as `LiveGroundTruth` checks them (ValueError).

    Knowing the whole log, the GEMM work is one pass over every version an item ever has instead of
    one `exact_knn` call per day and per repair (each with its fixed cost: *measured* most of a 30-day
    replay's time). A version is a distinct (id, row) pair, labelled by its rank in (id, row) order.
    One `exact_knn` gives each query its `depth` nearest versions by (distance, label); a search's
    answer is the first k of them live at that search. It is exact whenever the list holds k live
    versions, or every live item, or every version: a live item outside the list has a larger
    (distance, label) than the list's last entry, hence than each of the k taken, and because labels
    rise with ids and live ids are distinct, a larger (distance, id) too. A query for which some search
    finds too few is computed again with a 4× deeper list while (queries × depth) stays within
    `max_entries`; past that, at each such search over the items then live. `depth` defaults to k when
    every version is live at every search, else to 2k ÷ (the smallest live share of the versions) + 16,
    at most 8k + 64.
    """
    metric = Metric.parse(metric)
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    q = _as_queries(queries, pool)
    stats = stats if stats is not None else GTStats()
    budget = int(max_entries) if max_entries is not None else _LIST_ENTRIES
    log = _version_log(len(pool), list(ops))
    nv, nq, ns = log.rows.size, q.shape[0], len(log.live)
    out_d = np.full((ns, nq, k), np.inf, dtype=np.float32)
    out_i = np.full((ns, nq, k), -1, dtype=np.int64)
    if nv == 0 or nq == 0 or max(log.n_live, default=0) == 0:
        return out_d, out_i
    share = min(c for c in log.n_live if c > 0) / nv
    if depth is None:  # a list that holds about 2k live versions at the search with the fewest live
        depth = k if share == 1.0 else min(int(np.ceil(2 * k / share)) + 16, 8 * k + 64)
    depth = max(1, min(int(depth), nv))
    # The pass visits the versions in pool order: each base block is then one stretch of the pool, read
    # in order and its pages dropped as one range. The labels ride along as the ids exact_knn returns.
    scan = np.argsort(log.rows, kind="stable")
    scan_rows = log.rows[scan]

    bad = np.ones((ns, nq), dtype=bool)  # (search, query) answers not proven exact yet
    todo = np.arange(nq)
    first_round = True
    while todo.size and (first_round or todo.size * depth <= budget):
        if not first_round:
            stats.queries_deepened += todo.size
        chunk = max(1, budget // depth)  # bounded memory for any number of queries
        for c0 in range(0, todo.size, chunk):
            part = todo[c0:c0 + chunk]
            ld, lab = exact_knn(pool, q[part], depth, metric, rows=scan_rows, ids=scan, block_size=block_size,
                                query_block=query_block, stats=stats)
            for s in range(ns):
                live = np.unpackbits(log.live[s], count=nv).view(bool)
                d, labs, count = _first_live(ld, lab, live, k)
                ok = (depth >= nv) | (count >= k) | (count == log.n_live[s])
                done = part[ok]
                out_d[s, done] = d[ok]
                out_i[s, done] = np.where(labs[ok] >= 0, log.ids[np.maximum(labs[ok], 0)], -1)
                bad[s, done] = False
        todo = np.flatnonzero(bad.any(axis=0))
        depth = min(nv, 4 * depth)
        first_round = False
    # Lists deeper still would hold too much: what is left is answered at its searches over the live items.
    for s in np.flatnonzero(bad.any(axis=1)):
        qs = np.flatnonzero(bad[s])
        lv = np.flatnonzero(np.unpackbits(log.live[s], count=nv))
        out_d[s, qs], out_i[s, qs] = exact_knn(pool, q[qs], k, metric, rows=log.rows[lv], ids=log.ids[lv],
                                               block_size=block_size, query_block=query_block, stats=stats)
        stats.searches_rescanned += 1
    return out_d, out_i


# --- cache -------------------------------------------------------------------------------------------
def hash_array(a: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and contents, read in ~16 MB slices (a memmap is never loaded whole)."""
    a = np.asarray(a)
    h = hashlib.sha256(f"{a.dtype.str}|{a.shape}|".encode())
    if a.ndim == 0 or a.size == 0:
        h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()
    row_bytes = max(1, a.itemsize * (a.size // a.shape[0]))
    step = max(1, (1 << 24) // row_bytes)
    for s in range(0, a.shape[0], step):
        h.update(memoryview(np.ascontiguousarray(a[s:s + step])).cast("B"))
    return h.hexdigest()


def cache_key(key: dict[str, Any]) -> str:
    """Canonical JSON of a cache key (sorted keys, no spaces), including the ground-truth schema."""
    return json.dumps({"gt_schema": GT_SCHEMA, **key}, sort_keys=True, separators=(",", ":"),
                      default=json_default)


def cached(cache_dir: Path, key: dict[str, Any], compute: Callable[[], tuple[np.ndarray, np.ndarray]]
           ) -> tuple[np.ndarray, np.ndarray]:
    """(dists, ids) from `cache_dir` under `key`, or `compute()`d and stored there atomically.

    The file name is the sha256 of the canonical key, and the key is stored inside too, so a stale or
    colliding file is never trusted. An unreadable or corrupt file is recomputed and replaced.
    """
    cache_dir = Path(cache_dir)
    canon = cache_key(key)
    path = cache_dir / f"gt-{hashlib.sha256(canon.encode()).hexdigest()}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) == canon:
                    d, i = np.array(z["dists"]), np.array(z["ids"])
                    if d.shape == i.shape and d.dtype == np.float32 and i.dtype == np.int64:
                        return d, i
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # corrupt or truncated (e.g. a killed writer on a filesystem without atomic rename)
    d, i = compute()
    d = np.ascontiguousarray(d, dtype=np.float32)
    i = np.ascontiguousarray(i, dtype=np.int64)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, dists=d, ids=i, key=np.array(canon))
    return d, i
