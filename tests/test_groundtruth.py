"""Exact kNN, true distances, incremental ground truth and the cache, each against a naive float64 oracle."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import threadpoolctl

from annbench.adapters.base import Metric
from annbench.groundtruth import (
    GTStats,
    LiveGroundTruth,
    cached,
    exact_knn,
    hash_array,
    step_ground_truth,
    true_distances,
)


def naive_knn(pool: np.ndarray, queries: np.ndarray, k: int, metric: Metric, rows: np.ndarray | None = None,
              ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The definition, written the obvious way: every distance in float64, sort by (float32 dist, id)."""
    rows = np.arange(len(pool)) if rows is None else np.asarray(rows)
    ids = rows if ids is None else np.asarray(ids)
    x = np.asarray(pool, dtype=np.float32)[rows].astype(np.float64)
    q = np.asarray(queries, dtype=np.float32).astype(np.float64)
    if metric is Metric.L2:
        diff = x[None, :, :] - q[:, None, :]
        dist = np.sqrt(np.sum(diff * diff, axis=-1)).astype(np.float32)
    else:
        dist = (1.0 - np.sum(x[None, :, :] * q[:, None, :], axis=-1)).astype(np.float32)
    idm = np.broadcast_to(ids.astype(np.int64), dist.shape)
    order = np.lexsort((idm, dist), axis=-1)[:, :k]
    d = np.take_along_axis(dist, order, axis=1)
    i = np.take_along_axis(idm, order, axis=1)
    pad = k - d.shape[1]
    if pad > 0:
        d = np.pad(d, ((0, 0), (0, pad)), constant_values=np.inf)
        i = np.pad(i, ((0, 0), (0, pad)), constant_values=-1)
    return d, i


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def assert_same(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> None:
    assert got[0].dtype == np.float32 and got[1].dtype == np.int64
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])


# --- exact_knn against the oracle ---------------------------------------------------------------------
def _case(name: str, rng: np.random.Generator):
    """(pool, queries, k, metric, rows, ids) for a named situation."""
    if name == "l2-gauss":
        pool = rng.standard_normal((700, 24)).astype(np.float32)
        return pool, rng.standard_normal((40, 24)).astype(np.float32), 10, Metric.L2, None, None
    if name == "cosine-clustered":
        centres = rng.standard_normal((5, 48))
        pool = normalise(centres[rng.integers(0, 5, 500)] + 0.3 * rng.standard_normal((500, 48)))
        queries = normalise(pool[rng.integers(0, 500, 30)] + 0.05 * rng.standard_normal((30, 48)))
        return pool, queries, 50, Metric.COSINE, None, None
    if name == "l2-integer-ties":  # many exactly equal distances: order must be by id
        pool = rng.integers(-2, 3, (600, 3)).astype(np.float32)
        return pool, rng.integers(-2, 3, (30, 3)).astype(np.float32), 40, Metric.L2, None, None
    if name == "cosine-duplicates":  # 60 copies of one vector and of another, ids shuffled
        pool = normalise(rng.standard_normal((300, 16)))
        pool[rng.choice(300, 60, replace=False)] = pool[0]
        pool[rng.choice(300, 60, replace=False)] = pool[1]
        queries = normalise(np.vstack([pool[:2], pool[:2] + 0.01 * rng.standard_normal((2, 16)),
                                       rng.standard_normal((6, 16))]))
        ids = rng.choice(10**9, 300, replace=False).astype(np.int64)
        return pool, queries, 25, Metric.COSINE, None, ids
    if name == "subset-arbitrary-ids":  # live rows in random order, negative and huge ids
        pool = rng.standard_normal((900, 8)).astype(np.float32)
        rows = rng.choice(900, 350, replace=False)
        ids = rng.choice(np.arange(-(2**62), 2**62, 2**50), 350, replace=False).astype(np.int64)
        return pool, rng.standard_normal((20, 8)).astype(np.float32), 15, Metric.L2, rows, ids
    if name == "fewer-live-than-k":
        pool = rng.standard_normal((50, 6)).astype(np.float32)
        rows = np.array([7, 3, 41, 19, 3 + 20], dtype=np.int64)
        return pool, rng.standard_normal((9, 6)).astype(np.float32), 12, Metric.L2, rows, rows * 10 + 1
    if name == "l2-far-from-origin":  # ‖x‖² ≫ distances²: the float32 GEMM cancels, only the exact pass can order
        pool = (1000.0 + 1e-3 * rng.standard_normal((400, 16))).astype(np.float32)
        queries = (1000.0 + 1e-3 * rng.standard_normal((12, 16))).astype(np.float32)
        return pool, queries, 20, Metric.L2, None, None
    if name == "all-identical":  # the whole live set ties: the k smallest ids win
        pool = np.tile(rng.standard_normal((1, 10)).astype(np.float32), (240, 1))
        ids = rng.permutation(5000)[:240].astype(np.int64)
        return pool, rng.standard_normal((7, 10)).astype(np.float32), 30, Metric.L2, None, ids
    raise KeyError(name)


CASES = ["l2-gauss", "cosine-clustered", "l2-integer-ties", "cosine-duplicates", "subset-arbitrary-ids",
         "fewer-live-than-k", "l2-far-from-origin", "all-identical"]


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("blocks", [(None, None), (1, 1), (7, 3), (64, 16)])
def test_exact_knn_equals_float64_brute_force(name: str, blocks: tuple[int | None, int | None]) -> None:
    pool, queries, k, metric, rows, ids = _case(name, np.random.default_rng(CASES.index(name)))
    bs, qb = blocks
    got = exact_knn(pool, queries, k, metric, rows=rows, ids=ids, block_size=bs, query_block=qb)
    assert_same(got, naive_knn(pool, queries, k, metric, rows, ids))


def test_padding_when_fewer_live_than_k() -> None:
    pool, queries, k, metric, rows, ids = _case("fewer-live-than-k", np.random.default_rng(0))
    d, i = exact_knn(pool, queries, k, metric, rows=rows, ids=ids)
    assert (i[:, :5] >= 0).all() and (i[:, 5:] == -1).all()
    assert np.isfinite(d[:, :5]).all() and np.isinf(d[:, 5:]).all()
    d, i = exact_knn(pool, queries, 3, metric, rows=rows[:0], ids=ids[:0])
    assert (i == -1).all() and np.isinf(d).all()


def test_ties_are_broken_by_id_and_the_near_tie_fallback_runs() -> None:
    pool, queries, k, metric, rows, ids = _case("cosine-duplicates", np.random.default_rng(3))
    stats = GTStats()
    d, i = exact_knn(pool, queries, k, metric, ids=ids, block_size=50, stats=stats)
    assert stats.fallback_queries > 0  # the duplicate queries' boundary sits inside a tie block
    dup = ids[np.all(pool == pool[0], axis=1)]
    np.testing.assert_array_equal(i[0], np.sort(dup)[:k])  # 60 equal distances: the 25 smallest ids
    assert np.all(d[0] == d[0, 0])


def test_larger_run_with_default_blocks_and_memmap(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    arr = rng.standard_normal((40_000, 12)).astype(np.float32)
    np.save(tmp_path / "pool.npy", arr)
    pool = np.load(tmp_path / "pool.npy", mmap_mode="r")
    queries = rng.standard_normal((25, 12)).astype(np.float32)
    rows = rng.choice(40_000, 30_000, replace=False)
    got = exact_knn(pool, queries, 20, Metric.L2, rows=rows, ids=rows + 7, block_size=4096)
    assert_same(got, naive_knn(arr, queries, 20, Metric.L2, rows, rows + 7))


@pytest.mark.parametrize("metric", [Metric.L2, Metric.COSINE])
def test_threaded_pass_and_rerank_equal_one_thread_and_brute_force(metric: Metric) -> None:
    # enough queries that the candidate pass and the exact rerank both run on two threads; duplicated
    # rows put ties at the k-th place
    rng = np.random.default_rng(17)
    pool = rng.integers(-3, 4, (2500, 5)).astype(np.float32)
    pool[rng.choice(2500, 300, replace=False)] = pool[7]
    if metric is Metric.COSINE:
        pool = normalise(pool + 0.01)
    queries = np.vstack([pool[rng.integers(0, 2500, 500)], rng.standard_normal((200, 5)).astype(np.float32)])
    ids = rng.permutation(10**6)[:2500].astype(np.int64)
    want = naive_knn(pool, queries, 12, metric, None, ids)
    for threads in (2, 1):
        with threadpoolctl.threadpool_limits(threads, user_api="blas"):
            got = exact_knn(pool, queries, 12, metric, ids=ids, block_size=700, query_block=64)
        assert_same(got, want)


@pytest.mark.parametrize("name", ["l2-gauss", "cosine-duplicates", "l2-integer-ties", "l2-far-from-origin"])
def test_max_dist_truncates_the_same_answer(name: str) -> None:
    pool, queries, k, metric, rows, ids = _case(name, np.random.default_rng(21))
    want_d, want_i = naive_knn(pool, queries, k, metric, rows, ids)
    rng = np.random.default_rng(0)
    # per query: exactly the distance of some neighbour (inclusive bound), something in between, or none
    md = want_d[np.arange(len(queries)), rng.integers(0, k, len(queries))].astype(np.float64)
    md[::3] = np.nextafter(md[::3].astype(np.float32), np.float32(0))  # just below a neighbour's distance
    md[1::5] = np.inf
    got = exact_knn(pool, queries, k, metric, rows=rows, ids=ids, block_size=29, max_dist=md)
    beyond = want_d > md[:, None].astype(np.float32)
    assert beyond.any() and (~beyond).any()
    assert_same(got, (np.where(beyond, np.float32(np.inf), want_d), np.where(beyond, -1, want_i)))


def test_memory_is_bounded_by_the_tile_not_by_n_times_q() -> None:
    rng = np.random.default_rng(5)
    n, q, d, k = 200_000, 300, 4, 10
    pool = rng.standard_normal((n, d)).astype(np.float32)
    queries = rng.standard_normal((q, d)).astype(np.float32)
    stats = GTStats()
    tracemalloc.start()
    try:
        exact_knn(pool, queries, k, Metric.L2, block_size=2000, query_block=100, stats=stats)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.blocks_scanned == n // 2000
    assert stats.distance_evals == n * q
    # an n×q float32 matrix would be 240 MB; the tile is 0.8 MB, a gathered block 32 kB
    assert peak < 8_000_000, peak


def test_bad_arguments() -> None:
    pool = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError):
        exact_knn(pool, np.zeros((2, 5), np.float32), 1, Metric.L2)
    with pytest.raises(ValueError):
        exact_knn(pool, np.zeros((2, 3), np.float32), 0, Metric.L2)
    with pytest.raises(ValueError):
        exact_knn(pool, np.zeros((2, 3), np.float32), 1, Metric.L2, rows=np.array([4]))
    with pytest.raises(ValueError):
        exact_knn(pool, np.zeros((2, 3), np.float32), 1, Metric.L2, rows=np.array([1, 2]), ids=np.array([1]))


# --- true distances ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["l2-gauss", "cosine-clustered", "subset-arbitrary-ids"])
def test_true_distances_match_exact_knn_bit_for_bit(name: str) -> None:
    rng = np.random.default_rng(7)
    pool, queries, k, metric, rows, ids = _case(name, rng)
    rows = np.arange(len(pool)) if rows is None else rows
    ids = rows if ids is None else ids
    d, i = exact_knn(pool, queries, k, metric, rows=rows, ids=ids, block_size=33)
    row_of = dict(zip(ids.tolist(), rows.tolist(), strict=True))
    found_rows = np.vectorize(lambda x: row_of.get(int(x), -1))(i)
    found_rows[:, ::3] = -1  # holes, as in an answer padded by an index
    got = true_distances(queries, pool, found_rows, metric)
    want = np.where(found_rows >= 0, d, np.inf)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.float32


# --- incremental ground truth ----------------------------------------------------------------------------
def _check(live: LiveGroundTruth, pool: np.ndarray, queries: np.ndarray, k: int, metric: Metric) -> None:
    rows, ids = live.live()
    want = naive_knn(pool, queries, k, metric, rows, ids)
    assert_same(live.current(), want)


@pytest.mark.parametrize("seed", range(6))
def test_live_ground_truth_equals_recomputation_after_every_step(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    metric = Metric.L2 if seed % 2 == 0 else Metric.COSINE
    d = int(rng.integers(2, 9))
    base = rng.integers(-2, 3, (900, d)).astype(np.float32) if seed % 3 == 0 else \
        rng.standard_normal((900, d)).astype(np.float32)
    base[rng.choice(900, 120, replace=False)] = base[5]  # duplicates → ties at the list boundaries
    pool = normalise(base + 1e-3 * (seed % 3 == 0)) if metric is Metric.COSINE else base
    queries = np.vstack([pool[rng.integers(0, 900, 10)], rng.standard_normal((6, d)).astype(np.float32)])
    if metric is Metric.COSINE:
        queries = normalise(queries)
    k = int(rng.integers(1, 9))
    live = LiveGroundTruth(pool, queries, k, metric, depth=k + int(rng.integers(0, 6)), block_size=37)
    next_row, next_id = 0, 10_000
    id_row: dict[int, int] = {}

    def take_rows(c: int) -> np.ndarray:
        nonlocal next_row
        r = np.arange(next_row, next_row + c) % len(pool)  # reusing rows is fine: same vector, other id
        next_row += c
        return r

    for step in range(40):
        op = rng.choice(["insert", "delete", "update", "delete_nn", "delete_most"],
                        p=[0.35, 0.2, 0.2, 0.15, 0.1])
        alive = np.array(sorted(id_row), dtype=np.int64)
        if step == 0 or op == "insert" or alive.size < 3:
            c = int(rng.integers(1, 80))
            ids = np.arange(next_id, next_id + c, dtype=np.int64)[rng.permutation(c)]
            next_id += c
            r = take_rows(c)
            live.insert(r, ids)
            id_row.update(zip(ids.tolist(), r.tolist(), strict=True))
        elif op == "delete":
            gone = rng.choice(alive, int(rng.integers(1, max(2, alive.size // 4))), replace=False)
            live.delete(gone)
            for g in gone.tolist():
                del id_row[g]
        elif op == "delete_nn":  # the current nearest neighbours of some queries
            _, cur = live.current()
            gone = np.unique(cur[rng.integers(0, len(queries), 4), : k + 1])
            gone = gone[gone >= 0]
            live.delete(gone)
            for g in gone.tolist():
                del id_row[g]
        elif op == "delete_most":
            gone = rng.choice(alive, alive.size - int(rng.integers(1, 4)), replace=False)
            live.delete(gone)
            for g in gone.tolist():
                del id_row[g]
        else:
            moved = rng.choice(alive, int(rng.integers(1, max(2, alive.size // 3))), replace=False)
            r = take_rows(moved.size)
            live.update(r, moved)
            id_row.update(zip(moved.tolist(), r.tolist(), strict=True))
        _check(live, pool, queries, k, metric)
        assert live.n_live == len(id_row)
    assert live.stats.queries_recomputed > 0  # the repair path ran


def test_items_beyond_the_horizon_are_not_admitted() -> None:
    # 1-d L2, query at 0. depth 2, k 1. A list that shrank must not take in a far newcomer while a
    # nearer live item exists outside it: the horizon is what keeps the answer exact.
    pool = np.array([[1.0], [2.0], [3.0], [2.5], [5.0]], dtype=np.float32)
    live = LiveGroundTruth(pool, np.zeros((1, 1), np.float32), 1, Metric.L2, depth=2)
    live.insert(np.array([0, 1, 2]), np.array([10, 20, 30]))  # list [10, 20], C=30 outside
    live.insert(np.array([3]), np.array([40]))  # 2.5: beyond the horizon (2.0)
    live.delete(np.array([10]))  # list [20]
    live.insert(np.array([4]), np.array([50]))  # 5.0 must not enter: 30 and 40 are nearer
    live.delete(np.array([20]))
    d, i = live.current()
    assert i.tolist() == [[40]] and d.tolist() == [[2.5]]
    assert live.stats.queries_recomputed == 1


def test_live_ground_truth_query_subset_and_errors() -> None:
    rng = np.random.default_rng(3)
    pool = rng.standard_normal((100, 5)).astype(np.float32)
    queries = rng.standard_normal((8, 5)).astype(np.float32)
    live = LiveGroundTruth(pool, queries, 4, Metric.L2)
    d, i = live.current()
    assert (i == -1).all() and np.isinf(d).all()  # nothing live yet
    live.insert(np.arange(60), np.arange(60) + 1000)
    sub = np.array([6, 1])
    d, i = live.current(sub)
    full = naive_knn(pool, queries[sub], 4, Metric.L2, np.arange(60), np.arange(60) + 1000)
    assert_same((d, i), full)
    with pytest.raises(ValueError, match="already live"):
        live.insert(np.array([70]), np.array([1000]))
    with pytest.raises(ValueError, match="not live"):
        live.delete(np.array([5]))
    with pytest.raises(ValueError, match="not live"):
        live.update(np.array([70]), np.array([5]))
    with pytest.raises(ValueError, match="repeat"):
        live.insert(np.array([70, 71]), np.array([7, 7]))
    with pytest.raises(ValueError, match="reserved"):
        live.insert(np.array([70]), np.array([-1]))
    assert_same(live.current(sub), full)  # refused operations left the state alone


# --- the ground truth of a whole op log -----------------------------------------------------------------
def _random_log(rng: np.random.Generator, n_pool: int, n_ops: int) -> list[tuple]:
    """An op log with a search after every operation: inserts, deletes (some of a query's nearest, most of
    the live set), updates (to a new row, to the row the item already has, to a row another id holds) and
    ids deleted then inserted again (with their old row or another)."""
    ops: list[tuple] = []
    id_row: dict[int, int] = {}
    dead: dict[int, int] = {}
    next_id = 5_000
    for step in range(n_ops):
        alive = np.array(sorted(id_row), dtype=np.int64)
        kind = rng.choice(["insert", "delete", "update", "delete_most", "reinsert"], p=[0.3, 0.25, 0.25, 0.1, 0.1])
        if step == 0 or kind == "insert" or alive.size < 3 or (kind == "reinsert" and not dead):
            c = int(rng.integers(1, 60))
            ids = np.arange(next_id, next_id + c, dtype=np.int64)[rng.permutation(c)] * 7 - 3 * 10**15
            next_id += c
            rows = rng.integers(0, n_pool, c)  # rows shared between ids: same vector, other id
            ops.append(("insert", rows, ids))
            id_row.update(zip(ids.tolist(), rows.tolist(), strict=True))
        elif kind == "reinsert":
            back = rng.choice(np.array(sorted(dead)), min(len(dead), int(rng.integers(1, 10))), replace=False)
            rows = np.array([dead[b] if rng.random() < 0.5 else int(rng.integers(0, n_pool)) for b in back.tolist()])
            ops.append(("insert", rows, back))
            for b, r in zip(back.tolist(), rows.tolist(), strict=True):
                id_row[b] = r
                del dead[b]
        elif kind in ("delete", "delete_most"):
            c = alive.size - int(rng.integers(1, 4)) if kind == "delete_most" else \
                int(rng.integers(1, max(2, alive.size // 4)))
            gone = rng.choice(alive, c, replace=False)
            ops.append(("delete", None, gone))
            for g in gone.tolist():
                dead[g] = id_row.pop(g)
        else:
            moved = rng.choice(alive, int(rng.integers(1, max(2, alive.size // 3))), replace=False)
            rows = np.array([id_row[m] if rng.random() < 0.2 else int(rng.integers(0, n_pool)) for m in moved.tolist()])
            ops.append(("update", rows, moved))
            id_row.update(zip(moved.tolist(), rows.tolist(), strict=True))
        ops.append(("search", None, None))
    return ops


def _replay_live(pool: np.ndarray, queries: np.ndarray, k: int, metric: Metric, ops: list[tuple]
                 ) -> tuple[list, list]:
    """Per search: LiveGroundTruth's answer (the implementation the harness used before) and the naive oracle's."""
    live = LiveGroundTruth(pool, queries, k, metric, block_size=41)
    inc, oracle = [], []
    for kind, rows, ids in ops:
        if kind == "insert":
            live.insert(rows, ids)
        elif kind == "delete":
            live.delete(ids)
        elif kind == "update":
            live.update(rows, ids)
        else:
            inc.append(live.current())
            oracle.append(naive_knn(pool, queries, k, metric, *live.live()))
    return inc, oracle


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("variant", ["default", "deepened", "rescanned"])
def test_step_ground_truth_equals_live_ground_truth_and_brute_force(seed: int, variant: str) -> None:
    rng = np.random.default_rng(200 + seed)
    metric = Metric.L2 if seed % 2 == 0 else Metric.COSINE
    d = int(rng.integers(2, 9))
    base = rng.integers(-2, 3, (500, d)).astype(np.float32) if seed % 3 == 0 else \
        rng.standard_normal((500, d)).astype(np.float32)
    base[rng.choice(500, 80, replace=False)] = base[5]  # duplicates: ties inside and at the lists' ends
    pool = normalise(base + 1e-3 * (seed % 3 == 0)) if metric is Metric.COSINE else base
    queries = np.vstack([pool[rng.integers(0, 500, 10)], rng.standard_normal((6, d)).astype(np.float32)])
    if metric is Metric.COSINE:
        queries = normalise(queries)
    k = int(rng.integers(1, 9))
    ops = _random_log(rng, len(pool), 30)
    inc, oracle = _replay_live(pool, queries, k, metric, ops)
    extra = {"default": {}, "deepened": {"depth": k}, "rescanned": {"depth": k, "max_entries": 4 * k * len(queries)}}
    stats = GTStats()
    got_d, got_i = step_ground_truth(pool, queries, k, metric, ops, block_size=37, stats=stats, **extra[variant])
    assert got_d.shape == got_i.shape == (len(inc), len(queries), k)
    for s, (a, b) in enumerate(zip(inc, oracle, strict=True)):
        assert_same((got_d[s], got_i[s]), b)
        assert_same((got_d[s], got_i[s]), a)
    if variant == "deepened":
        assert stats.queries_deepened > 0 and stats.searches_rescanned == 0
    if variant == "rescanned":
        assert stats.searches_rescanned > 0


def test_step_ground_truth_small_logs_and_errors() -> None:
    rng = np.random.default_rng(4)
    pool = rng.standard_normal((60, 5)).astype(np.float32)
    queries = rng.standard_normal((7, 5)).astype(np.float32)
    search = ("search", None, None)
    # nothing live at the first search, fewer live than k at the second, one id updated to its own row
    ops = [search, ("insert", np.array([3, 9]), np.array([30, 90])), search,
           ("update", np.array([3]), np.array([30])), ("insert", np.arange(20, 40), np.arange(200, 220)), search,
           ("delete", None, np.arange(200, 220)), search]
    d, i = step_ground_truth(pool, queries, 4, Metric.L2, ops)
    assert (i[0] == -1).all() and np.isinf(d[0]).all()
    assert_same((d[1], i[1]), naive_knn(pool, queries, 4, Metric.L2, np.array([3, 9]), np.array([30, 90])))
    assert_same((d[2], i[2]), naive_knn(pool, queries, 4, Metric.L2, np.r_[3, 9, 20:40], np.r_[30, 90, 200:220]))
    assert_same((d[3], i[3]), (d[1], i[1]))
    d, i = step_ground_truth(pool, queries, 4, Metric.L2, [("insert", np.arange(5), np.arange(5))])
    assert d.shape == i.shape == (0, 7, 4)
    d, i = step_ground_truth(pool, queries[:0], 4, Metric.L2, ops)
    assert d.shape == (4, 0, 4)
    ins = ("insert", np.array([1, 2]), np.array([10, 20]))
    bad = {
        "already live": [ins, ("insert", np.array([5]), np.array([10]))],
        "is not live": [ins, ("delete", None, np.array([10])), ("update", np.array([3]), np.array([10]))],
        "repeat": [("insert", np.array([1, 2]), np.array([7, 7]))],
        "reserved": [("insert", np.array([1]), np.array([-1]))],
        "index the pool": [("insert", np.array([60]), np.array([1]))],
        "rows for": [("insert", np.array([1, 2]), np.array([1]))],
        "unknown operation": [("rebuild", None, None)],
    }
    for message, log in bad.items():
        with pytest.raises(ValueError, match=message):
            step_ground_truth(pool, queries, 4, Metric.L2, [*log, search])
    with pytest.raises(ValueError, match="is not live"):  # never inserted at all
        step_ground_truth(pool, queries, 4, Metric.L2, [("delete", None, np.array([3])), search])


# --- cache ---------------------------------------------------------------------------------------------
def test_cache_hits_recomputes_on_new_key_and_survives_corruption(tmp_path: Path) -> None:
    calls = []
    rng = np.random.default_rng(0)
    value = (rng.standard_normal((4, 3)).astype(np.float32), rng.integers(0, 9, (4, 3)))

    def compute() -> tuple[np.ndarray, np.ndarray]:
        calls.append(1)
        return value

    key = {"dataset": "abc", "live": "def", "queries": "123", "k": np.int64(3), "metric": Metric.COSINE}
    d1, i1 = cached(tmp_path, key, compute)
    d2, i2 = cached(tmp_path, dict(key), compute)
    assert len(calls) == 1
    np.testing.assert_array_equal(d2, value[0])
    np.testing.assert_array_equal(i2, value[1])
    assert d2.dtype == np.float32 and i2.dtype == np.int64
    cached(tmp_path, {**key, "k": 4}, compute)
    assert len(calls) == 2
    files = sorted(tmp_path.glob("gt-*.npz"))
    assert len(files) == 2 and not list(tmp_path.glob(".gt-*"))  # no temp files left behind
    for f in files:
        f.write_bytes(f.read_bytes()[:40])  # truncated: a corrupt zip
    d3, _ = cached(tmp_path, key, compute)
    assert len(calls) == 3
    np.testing.assert_array_equal(d3, value[0])
    cached(tmp_path, key, compute)
    assert len(calls) == 3  # the rewritten file is good again


def test_hash_array_is_content_addressed_and_memmap_safe(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((70_000, 64)).astype(np.float32)  # > 16 MB: several hashing slices
    np.save(tmp_path / "a.npy", a)
    mm = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert hash_array(mm) == hash_array(a)
    b = a.copy()
    b[-1, -1] += 1
    assert hash_array(b) != hash_array(a)
    assert hash_array(a.astype(np.float64)) != hash_array(a)
    assert hash_array(a.reshape(-1, 32)) != hash_array(a)
    assert hash_array(a[:, :32]) == hash_array(np.ascontiguousarray(a[:, :32]))
