"""The tombstone and rebuild policies' search path: same answers as a plain implementation, without its cost.

`annbench.policies` keeps deleted ids in a table prepared at write time (a dense mask, or a sorted array
for large sparse ids), filters all queries of a search at once and merges the rebuild policy's fresh
buffer without a Python lookup per id. These tests replay random deletes, inserts and updates (ties,
duplicates, all-dead candidate lists, k above the live set, a "deeper fetch returns other answers" index)
and compare every search, single-row and batch, l2 and cosine, with the code the policies used before
(kept below as `Ref*`: np.isin per query, a Python loop, a dict lookup per id).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from annbench.adapters.base import Metric
from annbench.idtable import DENSE_FLOOR, IdTable
from annbench.policies import (
    LiveSet,
    Policy,
    RebuildPolicy,
    TombstonePolicy,
    Tombstones,
    filtered_search,
)
from tests.policy_reference import RefLiveSet, ref_filtered_search, ref_merge

# ---------------------------------------------------------------------------------------------------
# The reference policies, built on tests/policy_reference.py (the code before issue 14).

class RefTombstone:
    def __init__(self, make_adapter: Callable[[], Any], pool: np.ndarray, metric: Metric, **_: Any) -> None:
        self.make_adapter, self.pool, self.metric = make_adapter, pool, metric
        self.live = RefLiveSet()
        self.tomb = np.empty(0, np.int64)
        self.in_index = 0

    def _vectors(self, rows: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.pool[np.asarray(rows)], dtype=np.float32)

    def build(self, rows: np.ndarray, ids: np.ndarray) -> None:
        self.adapter = self.make_adapter()
        self.adapter.build(self._vectors(rows), ids)
        self.live = RefLiveSet()
        self.live.add(rows, ids)
        self.tomb = np.empty(0, np.int64)
        self.in_index = len(ids)

    def insert(self, rows: np.ndarray, ids: np.ndarray) -> None:
        self.adapter.add(self._vectors(rows), ids)
        self.live.add(rows, ids)
        self.in_index += len(ids)

    def update(self, rows: np.ndarray, ids: np.ndarray) -> None:
        self.adapter.update(self._vectors(rows), ids)
        self.live.add(rows, ids)

    def delete(self, ids: np.ndarray) -> None:
        self.live.remove(ids)
        self.tomb = np.union1d(self.tomb, ids)

    def maintain(self, day: int) -> None:
        return None

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return ref_filtered_search(self.adapter, queries, k, self.tomb, self.in_index)


class RefRebuild(RefTombstone):
    def __init__(self, *args: Any, rebuild_every: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.every, self.last_build_day = rebuild_every, 0
        self.buf_ids = np.empty(0, np.int64)
        self.buf_vecs = np.empty((0, self.pool.shape[1]), np.float32)

    def build(self, rows: np.ndarray, ids: np.ndarray) -> None:
        super().build(rows, ids)
        self.buf_ids = np.empty(0, np.int64)
        self.buf_vecs = np.empty((0, self.pool.shape[1]), np.float32)

    def _to_buffer(self, rows: np.ndarray, ids: np.ndarray) -> None:
        keep = ~np.isin(self.buf_ids, ids)
        self.buf_ids = np.concatenate([self.buf_ids[keep], ids])
        self.buf_vecs = np.concatenate([self.buf_vecs[keep], self._vectors(rows)])

    def insert(self, rows: np.ndarray, ids: np.ndarray) -> None:
        self._to_buffer(rows, ids)
        self.live.add(rows, ids)

    def update(self, rows: np.ndarray, ids: np.ndarray) -> None:
        self.tomb = np.union1d(self.tomb, ids)
        self._to_buffer(rows, ids)
        self.live.add(rows, ids)

    def delete(self, ids: np.ndarray) -> None:
        self.tomb = np.union1d(self.tomb, ids)
        keep = ~np.isin(self.buf_ids, ids)
        self.buf_ids, self.buf_vecs = self.buf_ids[keep], self.buf_vecs[keep]
        self.live.remove(ids)

    def maintain(self, day: int) -> str | None:
        if day - self.last_build_day < self.every:
            return None
        rows, ids = self.live.arrays()
        self.build(rows, ids)
        self.last_build_day = day
        return "rebuild"

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        main = ref_filtered_search(self.adapter, queries, k, self.tomb, self.in_index)
        return ref_merge(queries, k, main, self.pool, self.live, self.buf_ids, self.buf_vecs, self.metric)


# ---------------------------------------------------------------------------------------------------
# A deterministic stand-in index: approximate on purpose.


class FakeIndex:
    """Ranks by a coarsely rounded distance (ties broken by id), so its order is not the true order, and
    in "partial" mode looks only at the first 3k + 5 stored items: a deeper fetch returns other answers,
    as an HNSW search with ef = max(ef, k) does."""

    def __init__(self, metric: Metric, partial: bool) -> None:
        self.metric, self.partial = metric, partial
        self.ids = np.empty(0, np.int64)
        self.vecs = np.empty((0, 0), np.float32)

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self.ids, self.vecs = ids.copy(), vectors.copy()

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self.ids = np.concatenate([self.ids, ids])
        self.vecs = np.concatenate([self.vecs, vectors])

    def update(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        pos = {int(i): p for p, i in enumerate(self.ids.tolist())}
        for v, i in zip(vectors, ids.tolist(), strict=True):
            self.vecs[pos[i]] = v

    def delete(self, ids: np.ndarray) -> None:
        keep = ~np.isin(self.ids, ids)
        self.ids, self.vecs = self.ids[keep], self.vecs[keep]

    def set_search_params(self, **_: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        m = min(len(self.ids), 3 * k + 5) if self.partial else len(self.ids)
        ids, vecs = self.ids[:m], self.vecs[:m]
        if self.metric is Metric.COSINE:
            d = 1.0 - queries @ vecs.T
        else:
            d = ((queries[:, None, :] - vecs[None]) ** 2).sum(-1)
        d = np.round(d, 1)
        out = np.full((len(queries), k), -1, np.int64)
        for qi in range(len(queries)):
            order = np.lexsort((ids, d[qi]))[:k]
            out[qi, : len(order)] = ids[order]
        return out


def make_pool(rng: np.random.Generator, n: int, dim: int, metric: Metric) -> np.ndarray:
    pool = rng.normal(size=(n, dim)).astype(np.float32)
    pool[n // 2: n // 2 + 12] = pool[n // 2]  # a block of duplicates: exact distance ties
    pool[n // 3: n // 3 + 30] = pool[n // 3]  # a cluster that will be deleted whole
    if metric is Metric.COSINE:
        pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    return pool


def check_same(new: Any, ref: Any, queries: np.ndarray, ks: tuple[int, ...]) -> None:
    for k in ks:
        want = ref.search(queries, k)
        got = new.search(queries, k)
        assert got.dtype == np.int64 and got.shape == (len(queries), k)
        np.testing.assert_array_equal(got, want, err_msg=f"batch, k={k}")
        for i in range(len(queries)):
            # against the reference's own one-row search: BLAS may round a 1-row product differently
            one = new.search(queries[i:i + 1], k)
            np.testing.assert_array_equal(one, ref.search(queries[i:i + 1], k), err_msg=f"single query {i}, k={k}")


def replay(policy_cls: type[Policy], ref_cls: type, metric: Metric, partial: bool, id_kind: str,
           seed: int, n: int = 400, dim: int = 8, days: int = 6, ks: tuple[int, ...] = (1, 5, 10, 40)) -> None:
    rng = np.random.default_rng(seed)
    pool = make_pool(rng, n, dim, metric)
    # ids chosen by "the user's data": a shuffled 0…n, an offset range (dense tables over the span) or
    # large sparse ones (sorted-array tables)
    id_of_row = {"range": rng.permutation(n).astype(np.int64),
                 "offset": rng.permutation(n).astype(np.int64) + 1_000_000,
                 "sparse": np.sort(rng.choice(2**40, n, replace=False)).astype(np.int64) + 10**12}[id_kind]
    pols = [cls(lambda: FakeIndex(metric, partial), pool, metric, rebuild_every=2) for cls in (policy_cls, ref_cls)]
    n0 = n // 2
    built = np.arange(n0)
    next_row = n0
    for p in pols:
        p.build(built, id_of_row[built])
    live = dict(zip(id_of_row[built].tolist(), built.tolist(), strict=True))
    queries = np.concatenate([rng.normal(size=(6, dim)), pool[[n // 3, n // 2, 1, n0 + 3]]]).astype(np.float32)
    if metric is Metric.COSINE:
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    queries = np.ascontiguousarray(queries)
    cluster = id_of_row[n // 3: n // 3 + 30]
    for day in range(1, days + 1):
        # deletes: a few random live ids, and on day 1 the whole duplicate cluster (all its candidates dead)
        alive = np.fromiter(live, np.int64)
        dels = rng.choice(alive, size=min(len(alive) - 1, 8), replace=False)
        if day == 1:
            dels = np.union1d(dels, cluster[np.isin(cluster, alive)])
        # inserts: new rows under new ids; updates: live ids get another row (some of them buffered)
        fresh_rows = np.arange(next_row, min(next_row + 15, n))
        next_row += len(fresh_rows)
        ins_ids = id_of_row[fresh_rows]
        rest = np.setdiff1d(alive, dels)
        upd_ids = rng.choice(rest, size=min(len(rest), 6), replace=False)
        upd_rows = rng.integers(0, n, len(upd_ids))
        for p in pols:
            p.delete(dels)
            if len(fresh_rows):
                p.insert(fresh_rows, ins_ids)
            p.update(upd_rows, upd_ids)
        for i in dels.tolist():
            live.pop(i, None)
        live.update(zip(ins_ids.tolist(), fresh_rows.tolist(), strict=True))
        live.update(zip(upd_ids.tolist(), upd_rows.tolist(), strict=True))
        # the live set's own contract, against a dict
        want_ids = np.sort(np.fromiter(live, np.int64))
        rows, ids = pols[0].live.arrays()
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_array_equal(rows, [live[i] for i in want_ids.tolist()])
        assert pols[0].live.row_of == live
        check_same(pols[0], pols[1], queries, ks)
        for p in pols:
            p.maintain(day)
        check_same(pols[0], pols[1], queries, ks)
    # k above the live set: everything live comes back, then −1
    big = len(live) + 7
    check_same(pols[0], pols[1], queries[:3], (big,))


@pytest.mark.parametrize("metric", [Metric.L2, Metric.COSINE])
@pytest.mark.parametrize("partial", [False, True])
@pytest.mark.parametrize("id_kind", ["range", "offset", "sparse"])
@pytest.mark.parametrize("policy", ["tombstone", "rebuild"])
def test_search_matches_the_plain_implementation(policy: str, metric: Metric, partial: bool, id_kind: str) -> None:
    new, ref = (TombstonePolicy, RefTombstone) if policy == "tombstone" else (RebuildPolicy, RefRebuild)
    for seed in range(3):
        replay(new, ref, metric, partial, id_kind, seed)


@pytest.mark.parametrize("policy", ["tombstone", "rebuild"])
def test_k_above_a_tiny_live_set_and_everything_dead(policy: str) -> None:
    """40 items, 35 deleted: k = 50 returns the 5 live ones (and the buffer's) then −1 padding."""
    new, ref = (TombstonePolicy, RefTombstone) if policy == "tombstone" else (RebuildPolicy, RefRebuild)
    rng = np.random.default_rng(5)
    metric = Metric.L2
    pool = rng.normal(size=(50, 4)).astype(np.float32)
    ids = np.arange(40, dtype=np.int64) * 3
    pols = [cls(lambda: FakeIndex(metric, False), pool, metric, rebuild_every=100) for cls in (new, ref)]
    q = rng.normal(size=(4, 4)).astype(np.float32)
    for p in pols:
        p.build(np.arange(40), ids)
        p.delete(ids[:35])
    check_same(pols[0], pols[1], q, (1, 5, 6, 50))
    for p in pols:
        p.delete(ids[35:])  # every id in the index dead
    check_same(pols[0], pols[1], q, (1, 10))
    for p in pols:
        p.insert(np.arange(40, 43), np.array([500, 501, 502]))
    check_same(pols[0], pols[1], q, (1, 2, 10))


def test_filtered_search_refetches_a_query_left_short() -> None:
    """A query whose first page is all dead is searched deeper; one with enough valid answers is not."""
    metric = Metric.L2
    calls: list[tuple[int, int]] = []
    index = FakeIndex(metric, False)
    vecs = np.zeros((100, 2), np.float32)
    vecs[:, 0] = np.arange(100)
    index.build(vecs, np.arange(100, dtype=np.int64))
    search = index.search

    def counting(queries: np.ndarray, k: int) -> np.ndarray:
        calls.append((len(queries), k))
        return search(queries, k)

    index.search = counting  # type: ignore[method-assign]
    dead = Tombstones()
    dead.reserve(np.arange(100))
    dead.add(np.arange(20))  # the 20 nearest to the first query
    q = np.array([[0.0, 0.0], [90.0, 0.0]], np.float32)
    out = filtered_search(index, q, 5, dead, 100)
    np.testing.assert_array_equal(out, [[20, 21, 22, 23, 24], [90, 89, 91, 88, 92]])
    assert calls[0] == (2, 10) and all(n == 1 for n, _ in calls[1:]) and calls[-1][1] > 20
    np.testing.assert_array_equal(ref_filtered_search(index, q, 5, np.arange(20), 100), out)


class Scripted:
    """An index whose deeper fetch finds fewer valid answers than the first one (dead ids come closer)."""

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        out = np.empty((len(queries), k), np.int64)
        for i, q in enumerate(queries[:, 0].astype(int).tolist()):
            # query 0: the first page has 3 valid (10, 11, 12), deeper pages only 1 (10); query 1 never short
            valid = [10, 11, 12] if (q == 0 and k < 12) else [10] if q == 0 else [20, 21, 22, 23, 24, 25]
            row = valid + [100 + j % 100 for j in range(k)]
            out[i] = row[:k] if q == 0 else (valid + list(range(30, 30 + k)))[:k]
        return out


@pytest.mark.parametrize("rows", [[0], [0, 1], [1, 0]])
def test_a_refetch_overwrites_only_what_it_found(rows: list[int]) -> None:
    """Semantics kept from the per-query loop: a deeper page writes its valid answers over the first ones
    and leaves later positions as the earlier page filled them."""
    dead = Tombstones()
    dead.reserve(np.arange(200))
    dead.add(np.arange(100, 200))
    q = np.array(rows, np.float32)[:, None]
    want = ref_filtered_search(Scripted(), q, 5, dead.sorted_ids(), 1000)
    np.testing.assert_array_equal(filtered_search(Scripted(), q, 5, dead, 1000), want)
    assert want[rows.index(0)].tolist() == [10, 11, 12, -1, -1]  # 11 and 12 are the first page's


def test_id_table_dense_sparse_and_padding() -> None:
    t = IdTable(np.int64, missing=-1, pad=-1)
    t.put(np.array([3, 5, 3]), np.array([10, 20, 30]))  # the last value of an id given twice wins
    assert t._dense is not None
    np.testing.assert_array_equal(t.get(np.array([[3, 5], [4, -1]])), [[30, 20], [-1, -1]])
    np.testing.assert_array_equal(t.get(np.array([10**6])), [-1])  # above capacity: missing, no error
    t.put(np.array([2**50]), 7)  # a huge id: the table goes sparse and keeps what it held
    assert t._dense is None
    np.testing.assert_array_equal(t.get(np.array([3, 5, 2**50, 4, -1, 2**51])), [30, 20, 7, -1, -1, -1])
    ids, vals = t.keys_where(lambda v: v >= 0)
    np.testing.assert_array_equal(ids, [3, 5, 2**50])
    np.testing.assert_array_equal(vals, [30, 20, 7])
    with pytest.raises(ValueError):
        t.put(np.array([-2]), 1)

    flags = IdTable(np.bool_, missing=False, pad=True)
    flags.reserve(np.arange(DENSE_FLOOR + 10))
    flags.put(np.array([1, 7]), True)
    got = flags.get(np.array([[1, 2, -1, 7, DENSE_FLOOR + 9]]))
    np.testing.assert_array_equal(got, [[True, False, True, True, False]])


def test_id_table_offset_ids_stay_dense_and_rebase() -> None:
    """Ids in an offset range (the catalog's start at 1,000,000) get a dense table over their span; an id
    below the span moves it down, keeping what was written."""
    t = IdTable(np.int64, missing=-1, pad=-1)
    t.put(np.arange(1_000_000, 1_000_100), np.arange(100))
    assert t._dense is not None and len(t._dense[0]) < 1000
    t.put(np.array([999_000]), 5)
    assert t._dense is not None
    np.testing.assert_array_equal(t.get(np.array([999_000, 1_000_050, -1, 2_000_000])), [5, 50, -1, -1])
    np.testing.assert_array_equal(t.lookup(np.array([0, 998_999, 999_000, -7])), [-1, -1, 5, -1])
    flags = IdTable(np.bool_, missing=False, pad=True)
    flags.reserve(np.array([500, 900]))
    flags.put(np.array([600]), True)
    # `get` is exact at or above the smallest id reserved; `lookup` everywhere
    np.testing.assert_array_equal(flags.get(np.array([-1, 500, 600, 10**9])), [True, False, True, False])
    np.testing.assert_array_equal(flags.lookup(np.array([-1, 3, 600])), [True, False, True])


def test_tombstones_count_distinct_ids() -> None:
    dead = Tombstones()
    dead.add(np.array([4, 4, 9]))
    dead.add(np.array([9, 11]))
    assert dead.count == 3
    np.testing.assert_array_equal(dead.sorted_ids(), [4, 9, 11])


def test_live_set_rows_for_contract() -> None:
    live = LiveSet()
    live.add(np.array([0, 1, 2]), np.array([10, 11, 12]))
    live.remove(np.array([11, 99]))
    live.add(np.array([7]), np.array([12]))
    np.testing.assert_array_equal(live.rows_for(np.array([[10, 11, 12], [-1, -5, 13]])), [[0, -1, 7], [-1, -1, -1]])
    assert live.row_of == {10: 0, 12: 7} and live.deleted == {11, 99}
    rows, ids = live.arrays()
    np.testing.assert_array_equal(ids, [10, 12])
    np.testing.assert_array_equal(rows, [0, 7])


@pytest.mark.parametrize("family,build,search", [("faiss-ivf", {"nlist": 8, "encoding": "Flat"}, {"nprobe": 2}),
                                                 ("hnswlib", {"M": 8, "ef_construction": 40}, {"ef": 16})])
@pytest.mark.parametrize("metric", [Metric.L2, Metric.COSINE])
def test_real_indexes_match_the_plain_implementation(family: str, build: dict, search: dict, metric: Metric) -> None:
    """On a real library's answers: the policies' search equals the reference run on the same state."""
    from annbench import adapters
    from annbench.adapters.base import prepare_vectors
    from annbench.policies import make_policy

    cls = adapters.get(family)
    cls.load_library()
    rng = np.random.default_rng(1)
    pool = prepare_vectors(rng.normal(size=(3000, 16)).astype(np.float32), metric)
    queries = prepare_vectors(rng.normal(size=(25, 16)).astype(np.float32), metric)
    ids = rng.permutation(3000).astype(np.int64) * 5
    for name in ("tombstone", "rebuild"):
        p = make_policy(name, cls, metric, 16, 1, build, pool, 3)
        live = RefLiveSet()
        try:
            p.build(np.arange(2000), ids[:2000])
            live.add(np.arange(2000), ids[:2000])
            p.set_search_params(**search)
            p.delete(ids[:600])
            live.remove(ids[:600])
            p.insert(np.arange(2000, 2100), ids[2000:2100])
            live.add(np.arange(2000, 2100), ids[2000:2100])
            p.update(np.arange(2100, 2150), ids[700:750])
            live.add(np.arange(2100, 2150), ids[700:750])
            tomb = p.dead.sorted_ids()
            for k in (1, 10, 30):
                main = ref_filtered_search(p.adapter, queries, k, tomb, p.in_index)
                want = main if name == "tombstone" else ref_merge(queries, k, main, pool, live, p.buf_ids,
                                                                  p.buf_vecs, metric)
                np.testing.assert_array_equal(p.search(queries, k), want)
                for i in range(len(queries)):
                    q1 = queries[i:i + 1]
                    main1 = ref_filtered_search(p.adapter, q1, k, tomb, p.in_index)
                    want1 = main1 if name == "tombstone" else ref_merge(q1, k, main1, pool, live, p.buf_ids,
                                                                        p.buf_vecs, metric)
                    np.testing.assert_array_equal(p.search(q1, k), want1)
        finally:
            p.close()
