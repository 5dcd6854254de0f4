"""Update policies: how a run keeps one index fresh, so every index can be compared under each.

- `native`    : the adapter's own add / delete / update (which may itself tombstone, as hnswlib does).
- `tombstone` : deletes never reach the index; the policy remembers them and over-fetches at search,
                filtering them out. Adds and updates use the adapter's own calls.
- `rebuild`   : the index is rebuilt from the live set every N days. Between rebuilds new and updated
                items live in an exact "fresh buffer" whose answers are merged with the index's by true
                distance, and deleted or superseded index entries are tombstoned. This is how teams run
                static indexes (annoy) in production.
- a maintenance call the adapter declares (`optimize`, `reindex`, `vacuum` of a database): native writes,
                then that call every `maintain_every` days before the day's search, timed as its own step.

A policy's `prepare_search(k)` returns the call the harness times (annbench.replay; its answers are
`search(queries, k)`'s, with the adapter's checks done once, before timing), so the filtering and merging
a policy needs are part of its measured cost — and are written as production code would write them, so
that cost is the policy's, not this implementation's: whatever a search needs is prepared when the writes
happen. Deleted ids are an `IdTable` (a dense boolean mask over the id span, or a sorted array for large
sparse ids), so a query's candidates are filtered with one lookup, never a search through every dead id;
`filtered_search` handles a batch without a Python loop per query and one row with a few 1-d calls. The
rebuild policy keeps its fresh buffer contiguous with its L2 norms precomputed, and finds the pool rows of
the index's answers in the live set's id table rather than a dict per id. The answers are those of the
plain implementation (same ids, order, ties and −1 padding; tests/test_policies.py compares them), and
benchmarks P7 measures what the policies' own code costs per query.

Policies never time or print; they track the live set (id → pool row) because the rebuild policy and
the fresh buffer need the vectors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from annbench.adapters.base import Adapter, check_policy
from annbench.vectors import Metric

# A dense table is used while the span of the ids (largest − smallest + 1) stays below DENSE_FACTOR × the
# ids written plus DENSE_FLOOR: for ids that are a range, even offset (the catalog's run from 1,000,000),
# that is about one slot per id. For large sparse ids (hashes, database keys) a sorted array answers by
# binary search instead, so memory stays O(ids) whatever the ids are.
DENSE_FACTOR = 8
DENSE_FLOOR = 1 << 16


class IdTable:
    """A value per id, looked up for a whole array of ids at once (no Python per id on the search path).

    Written at write time (build / insert / delete / update), read at search time. Dense: an array over
    the id span [lo, lo + capacity) with one slot before it holding `pad` and one after it holding
    `missing`, read with `take(ids − (lo − 1), mode="clip")`: the −1 padding of an answer clips onto the
    `pad` slot and an id above the span onto the `missing` one, so one lookup needs no masks (≈ 1 µs for a
    query's candidates). Sparse: sorted keys and their values, looked up with np.searchsorted. The state
    is one tuple replaced as a whole, so a search running beside a write (annbench.concurrency) never sees
    an array with another version's offset; in-place writes to the dense array only flip single entries.
    """

    def __init__(self, dtype: Any, missing: Any, pad: Any) -> None:
        self.dtype = np.dtype(dtype)
        self.missing = missing
        self.pad = pad
        self.written = 0  # ids written or reserved so far (with repeats): the density rule's denominator
        # dense: (array of capacity + 2, shift = lo − 1); sparse: (sorted keys, values)
        self._dense: tuple[np.ndarray, int] | None = None
        self._sparse: tuple[np.ndarray, np.ndarray] = (np.empty(0, np.int64), np.empty(0, self.dtype))

    def _span_ok(self, lo: int, top: int) -> bool:
        return top - lo < DENSE_FACTOR * self.written + DENSE_FLOOR

    def _cover(self, lo: int, top: int) -> None:
        """Make ids lo…top addressable: grow the dense span (with slack above, as ids tend to rise day by
        day), or go sparse when the span would be too wide for the ids written."""
        dense = self._dense
        if dense is not None:
            arr, shift = dense
            cur_lo, cur_top = shift + 1, shift + len(arr) - 2
            if cur_lo <= lo and top <= cur_top:
                return
            lo, top = min(lo, cur_lo), max(top, cur_top)
        elif len(self._sparse[0]):
            lo, top = min(lo, int(self._sparse[0][0])), max(top, int(self._sparse[0][-1]))
        if not self._span_ok(lo, top):
            if dense is not None:  # too wide now: keep what is written, sorted, and go sparse
                arr, shift = dense
                pos = np.flatnonzero(arr[1:-1] != self.missing)
                self._sparse = (pos.astype(np.int64) + shift + 1, arr[1:-1][pos].copy())
                self._dense = None
            return
        slack = (top - lo + 1) // 4
        top = min(top + slack, lo + DENSE_FACTOR * self.written + DENSE_FLOOR - 1)
        grown = np.full(top - lo + 3, self.missing, self.dtype)
        grown[0] = self.pad
        shift = lo - 1
        if dense is not None:
            arr, old_shift = dense
            start = old_shift - shift
            grown[start + 1: start + len(arr) - 1] = arr[1:-1]
        else:
            keys, vals = self._sparse
            grown[keys - shift] = vals
        self._dense = (grown, shift)  # one reference swap: a reader holds the old state or the new one

    def reserve(self, ids: np.ndarray) -> None:
        """Make every id of `ids` addressable without writing it: the ids an index holds, so that `get` on
        its answers is exact (see `get`)."""
        ids = np.asarray(ids, np.int64)
        if len(ids):
            self.written += len(ids)
            self._check(int(ids.min()))
            self._cover(int(ids.min()), int(ids.max()))

    @staticmethod
    def _check(lo: int) -> None:
        if lo < 0:
            raise ValueError(f"ids must be non-negative, got {lo}")

    def put(self, ids: np.ndarray, values: Any) -> None:
        """Set ids → values (a scalar or one value per id); for an id given twice the last value wins."""
        ids = np.asarray(ids, np.int64).ravel()
        if len(ids) == 0:
            return
        vals = np.broadcast_to(np.asarray(values, self.dtype), ids.shape)
        uniq, last = np.unique(ids[::-1], return_index=True)  # last occurrence wins, as dict.update
        vals = vals[::-1][last]
        self._check(int(uniq[0]))
        self.written += len(uniq)
        self._cover(int(uniq[0]), int(uniq[-1]))
        dense = self._dense
        if dense is not None:
            arr, shift = dense
            arr[uniq - shift] = vals
            return
        keys, old = self._sparse
        pos = np.searchsorted(keys, uniq)
        found = pos < len(keys)
        found[found] = keys[pos[found]] == uniq[found]
        merged = old.copy()
        merged[pos[found]] = vals[found]
        new = ~found
        self._sparse = (np.insert(keys, pos[new], uniq[new]), np.insert(merged, pos[new], vals[new]))

    def get(self, ids: np.ndarray) -> np.ndarray:
        """Values for an array of ids (any shape), on the search path: `pad` for −1, `missing` for ids
        never written. Exact for −1 and for ids at or above the smallest id written or reserved (every
        answer of an index whose ids were reserved); below it, dense reads `pad` — use `lookup` there."""
        dense = self._dense
        if dense is not None:
            arr, shift = dense
            return arr.take(ids - shift, mode="clip")
        keys, vals = self._sparse
        ids = np.asarray(ids)
        if len(keys) == 0:
            return np.where(ids < 0, self.pad, self.missing).astype(self.dtype)
        pos = np.minimum(np.searchsorted(keys, ids), len(keys) - 1)
        out = np.where(keys[pos] == ids, vals[pos], self.missing).astype(self.dtype)
        out[ids < 0] = self.pad
        return out

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """`get` for any ids (off the search path): `pad` for negative ones, `missing` for unknown ones."""
        ids = np.asarray(ids, np.int64)
        out = self.get(ids)
        dense = self._dense
        if dense is not None:
            out = np.where((ids >= 0) & (ids <= dense[1]), self.missing, out).astype(self.dtype)
            out[ids < 0] = self.pad
        return out

    def keys_where(self, pred: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, values) whose value satisfies `pred`, in id order."""
        dense = self._dense
        if dense is not None:
            arr, shift = dense
            body = arr[1:-1]
            pos = np.flatnonzero(pred(body))
            return pos.astype(np.int64) + shift + 1, body[pos]
        keys, vals = self._sparse
        sel = pred(vals)
        return keys[sel], vals[sel]


class LiveSet:
    """The ids live in the catalog and the pool row holding each one's current vector.

    `row_of` (a dict) and `deleted` stay the public view the harness reads; `rows_for` answers from an
    `IdTable` kept beside them, so mapping a search's answers to pool rows costs no Python per id.
    """

    def __init__(self) -> None:
        self.row_of: dict[int, int] = {}
        self.deleted: set[int] = set()
        self._rows = IdTable(np.int64, missing=-1, pad=-1)

    def add(self, rows: np.ndarray, ids: np.ndarray) -> None:
        self.row_of.update(zip(ids.tolist(), rows.tolist(), strict=True))
        self._rows.put(ids, rows)

    def remove(self, ids: np.ndarray) -> None:
        for i in ids.tolist():
            self.row_of.pop(i, None)
            self.deleted.add(i)
        self._rows.put(ids, -1)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, ids) of the live set, in id order (deterministic rebuilds)."""
        ids, rows = self._rows.keys_where(lambda v: v >= 0)
        return rows.astype(np.int64, copy=False), ids

    def rows_of_answers(self, answers: np.ndarray) -> np.ndarray:
        """`rows_for` for a search's answers (ids the index was given, or −1): the search-path lookup."""
        return self._rows.get(answers)

    def rows_for(self, ids: np.ndarray) -> np.ndarray:
        """Pool rows for an id array (−1 for padding and for ids that are not live)."""
        ids = np.asarray(ids, dtype=np.int64)
        return self._rows.lookup(ids)


def distances(queries: np.ndarray, pool: np.ndarray, rows: np.ndarray, metric: Metric) -> np.ndarray:
    """Distance of query i to each pool row in rows[i] (q×m; −1 → +inf). Used to merge answers."""
    safe = np.where(rows < 0, 0, rows)
    vecs = np.asarray(pool[safe.ravel()], dtype=np.float32).reshape(*rows.shape, pool.shape[1])  # no rows: (0, m, d)
    if metric is Metric.COSINE:
        d = 1.0 - np.einsum("qd,qmd->qm", queries, vecs)
    else:
        diff = vecs - queries[:, None, :]
        d = np.sqrt(np.einsum("qmd,qmd->qm", diff, diff))
    return np.where(rows < 0, np.inf, d).astype(np.float32)


class Policy:
    """Native policy, and the base of the others: every operation goes to the adapter."""

    name = "native"

    def __init__(self, make_adapter: Callable[[], Adapter], pool: np.ndarray, metric: Metric, **_: Any) -> None:
        self.make_adapter = make_adapter
        self.pool = pool
        self.metric = metric
        self.live = LiveSet()
        self.adapter: Adapter | None = None
        self.search_params: dict[str, Any] = {}
        self.fresh_ids: set[int] = set()  # inserted or updated since the last (re)build
        self.before_index_build: Callable[[], None] | None = None  # called by build() just before the index

    def _vectors(self, rows: np.ndarray) -> np.ndarray:
        # A gathered copy is C-contiguous float32, so no library copies it again.
        return np.ascontiguousarray(self.pool[np.asarray(rows)], dtype=np.float32)

    def build(self, rows: np.ndarray, ids: np.ndarray) -> None:
        self.close()  # a rebuild replaces the index: release what the old one holds outside the process
        self.live = LiveSet()
        self.live.add(rows, ids)
        self.fresh_ids.clear()
        if self.before_index_build is not None:
            # the harness's memory reading: the policy's bookkeeping is in place, the index not yet begun
            self.before_index_build()
        self.adapter = self.make_adapter()
        self.adapter.build(self._vectors(rows), ids)
        if self.search_params:
            self.adapter.set_search_params(**self.search_params)

    def insert(self, rows: np.ndarray, ids: np.ndarray) -> None:
        self.adapter.add(self._vectors(rows), ids)
        self.live.add(rows, ids)
        self.fresh_ids.update(ids.tolist())

    def delete(self, ids: np.ndarray) -> None:
        self.adapter.delete(ids)
        self.live.remove(ids)
        self.fresh_ids.difference_update(ids.tolist())

    def update(self, rows: np.ndarray, ids: np.ndarray) -> None:
        self.adapter.update(self._vectors(rows), ids)
        self.live.add(rows, ids)
        self.fresh_ids.update(ids.tolist())

    def maintain(self, day: int) -> str | None:
        """End-of-day upkeep before the day's search: the name of what it did ("rebuild", "optimize"), or None."""
        return None

    def close(self) -> None:
        if self.adapter is not None:
            self.adapter.close()

    def set_search_params(self, **params: Any) -> None:
        self.search_params = params
        self.adapter.set_search_params(**params)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.adapter.search(queries, k)

    def prepare_search(self, k: int) -> Callable[[np.ndarray], np.ndarray]:
        """`search` at depth `k` as a call on validated queries (`Adapter.prepare_search`): what the harness
        times. Valid until the next write, maintenance or `set_search_params`."""
        return self.adapter.prepare_search(k)

    def save(self, path: Any) -> int:
        return self.adapter.save(path)


class Tombstones:
    """Ids deleted from an index's point of view since its build, prepared at write time for search.

    `is_dead(answers)` marks dead ids and the −1 padding alike (the table's padding slot reads True), so
    a search keeps `~is_dead(got)` with one fancy-index on the dense path: no per-query set search.
    """

    def __init__(self) -> None:
        self.table = IdTable(np.bool_, missing=False, pad=True)
        self.count = 0  # distinct ids tombstoned: the over-fetch's dead share

    def reserve(self, ids: np.ndarray) -> None:
        """The ids the index may return (build, insert, update): keeps lookups of its answers on the fast path."""
        self.table.reserve(ids)

    def add(self, ids: np.ndarray) -> None:
        uniq = np.unique(np.asarray(ids, np.int64))
        if len(uniq) == 0:
            return
        self.count += int((~self.table.lookup(uniq)).sum())
        self.table.put(uniq, True)

    def is_dead(self, ids: np.ndarray) -> np.ndarray:
        return self.table.get(ids)

    def sorted_ids(self) -> np.ndarray:
        """The tombstoned ids, sorted (for inspection and tests; never on the search path)."""
        return self.table.keys_where(lambda v: v)[0]


class TombstonePolicy(Policy):
    """Deletes are remembered and filtered at search, with over-fetch; the index keeps the vectors."""

    name = "tombstone"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dead = Tombstones()
        self.in_index = 0

    @property
    def tomb(self) -> np.ndarray:
        return self.dead.sorted_ids()

    def build(self, rows: np.ndarray, ids: np.ndarray) -> None:
        super().build(rows, ids)
        dead = Tombstones()
        dead.reserve(ids)
        self.dead = dead
        self.in_index = len(ids)

    def insert(self, rows: np.ndarray, ids: np.ndarray) -> None:
        super().insert(rows, ids)
        self.dead.reserve(ids)
        self.in_index += len(ids)

    def delete(self, ids: np.ndarray) -> None:
        self.live.remove(ids)
        self.fresh_ids.difference_update(ids.tolist())
        self.dead.add(ids)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return filtered_search(self.adapter, queries, k, self.dead, self.in_index)

    def prepare_search(self, k: int) -> Callable[[np.ndarray], np.ndarray]:
        return prepare_filtered_search(self.adapter, k, self.dead, self.in_index)


def _first_fetch(k: int, dead: Tombstones, in_index: int) -> int:
    """How deep the first search of a filtered search goes: k over-fetched by the dead share, + 20 %."""
    dead_share = min(dead.count / max(in_index, 1), 0.95)
    return min(in_index, math.ceil(k / (1.0 - dead_share) * 1.2) + 2)


def filtered_search(adapter: Adapter, queries: np.ndarray, k: int, dead: Tombstones, in_index: int) -> np.ndarray:
    """Search, dropping tombstoned ids; over-fetch by the dead share and refetch queries left short.

    A query left with fewer than k valid answers while the index returned a full page (it had more to
    give) is searched again twice as deep, until the index is exhausted. A refetch overwrites only the
    first answers it found valid, as a per-query loop would. No Python runs per query or per id.
    """
    if dead.count == 0:
        return adapter.search(queries, k)
    fetch = _first_fetch(k, dead, in_index)
    return _filtered(adapter, lambda q: adapter.search(q, fetch), queries, k, fetch, dead.table.get, in_index)


def prepare_filtered_search(adapter: Adapter, k: int, dead: Tombstones,
                            in_index: int) -> Callable[[np.ndarray], np.ndarray]:
    """`filtered_search` at depth `k` as a call on validated queries: its first search is the adapter's
    prepared call at the over-fetch depth (refetches, rare, go through `adapter.search`)."""
    if dead.count == 0:
        return adapter.prepare_search(k)
    fetch = _first_fetch(k, dead, in_index)
    first = adapter.prepare_search(fetch)
    is_dead = dead.table.get

    def call(queries: np.ndarray) -> np.ndarray:
        return _filtered(adapter, first, queries, k, fetch, is_dead, in_index)

    return call


def _filtered(adapter: Adapter, first: Callable[[np.ndarray], np.ndarray], queries: np.ndarray, k: int,
              fetch: int, is_dead: Callable[[np.ndarray], np.ndarray], in_index: int) -> np.ndarray:
    """`filtered_search`'s body: `first(queries)` is the search at depth `fetch`, `is_dead` the tombstone
    table's lookup (`Tombstones.is_dead`, one call less per lookup)."""
    if len(queries) == 1:  # the harness times one-row searches: 1-d operations, fewest calls
        got = first(queries)[0]
        valid = got[~is_dead(got)][:k]  # the −1 padding reads dead too
        if len(valid) == k and valid.dtype == np.int64:
            return valid[None, :]  # the common case: a full first page (a fresh array, owned by the caller)
        out = np.full((1, k), -1, dtype=np.int64)
        while True:
            out[0, : len(valid)] = valid
            if len(valid) == k or fetch >= in_index or not (got >= 0).all():
                return out
            fetch = min(in_index, fetch * 2)
            got = adapter.search(queries, fetch)[0]
            valid = got[~is_dead(got)][:k]
    nq = len(queries)
    out = np.full((nq, k), -1, dtype=np.int64)
    todo = np.arange(nq)
    got = first(queries)
    while True:
        keep = ~is_dead(got)
        rank = np.cumsum(keep, axis=1)  # 1-based position of each kept answer among its query's kept ones
        r, c = np.nonzero(keep & (rank <= k))
        out[todo[r], rank[r, c] - 1] = got[r, c]
        if fetch >= in_index or got.shape[1] == 0:
            return out
        short = (rank[:, -1] < k) & (got >= 0).all(axis=1)
        if not short.any():
            return out
        todo = todo[short]
        fetch = min(in_index, fetch * 2)
        got = adapter.search(queries[todo] if len(todo) < nq else queries, fetch)


class RebuildPolicy(Policy):
    """Rebuild from the live set every N days; an exact fresh buffer serves what came since.

    The buffer is one tuple (ids, C-contiguous float32 vectors, squared norms for L2), replaced as a
    whole at write time; search reads it once. The index's answers get their true distances through the
    live set's id → row table, so merging costs no Python per id.
    """

    name = "rebuild"

    def __init__(self, *args: Any, rebuild_every: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.every = rebuild_every
        self.last_build_day = 0
        # a plain ndarray view of the pool: gathering rows from it skips np.memmap's subclass wrapping
        self._pool_rows = np.asarray(self.pool)
        self._reset_buffer()

    def _reset_buffer(self) -> None:
        dim = self.pool.shape[1]
        self._buf: tuple[np.ndarray, np.ndarray, np.ndarray | None] = (
            np.empty(0, np.int64), np.empty((0, dim), np.float32),
            None if self.metric is Metric.COSINE else np.empty(0, np.float32))
        self.dead = Tombstones()
        self.in_index = 0

    @property
    def buf_ids(self) -> np.ndarray:
        return self._buf[0]

    @property
    def buf_vecs(self) -> np.ndarray:
        return self._buf[1]

    @property
    def tomb(self) -> np.ndarray:
        return self.dead.sorted_ids()

    def build(self, rows: np.ndarray, ids: np.ndarray) -> None:
        super().build(rows, ids)
        self._reset_buffer()
        self.dead.reserve(ids)
        self.in_index = len(ids)

    def _set_buffer(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        # squared norms of the buffer rows for L2, computed once per write rather than per query
        sq = None if self.metric is Metric.COSINE else (vecs * vecs).sum(1)
        self._buf = (ids, vecs, sq)

    def _to_buffer(self, rows: np.ndarray, ids: np.ndarray) -> None:
        buf_ids, buf_vecs, _ = self._buf
        keep = ~np.isin(buf_ids, ids)
        self._set_buffer(np.concatenate([buf_ids[keep], ids]), np.concatenate([buf_vecs[keep], self._vectors(rows)]))

    def insert(self, rows: np.ndarray, ids: np.ndarray) -> None:
        self._to_buffer(rows, ids)
        self.live.add(rows, ids)
        self.fresh_ids.update(ids.tolist())

    def update(self, rows: np.ndarray, ids: np.ndarray) -> None:
        # The index still holds the old photo: tombstone it there, serve the new one from the buffer.
        self.dead.add(ids)
        self._to_buffer(rows, ids)
        self.live.add(rows, ids)
        self.fresh_ids.update(ids.tolist())

    def delete(self, ids: np.ndarray) -> None:
        self.dead.add(ids)
        buf_ids, buf_vecs, _ = self._buf
        keep = ~np.isin(buf_ids, ids)
        self._set_buffer(buf_ids[keep], buf_vecs[keep])
        self.live.remove(ids)
        self.fresh_ids.difference_update(ids.tolist())

    def maintain(self, day: int) -> str | None:
        if day - self.last_build_day < self.every:
            return None
        rows, ids = self.live.arrays()
        self.build(rows, ids)
        self.last_build_day = day
        return "rebuild"

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        main = filtered_search(self.adapter, queries, k, self.dead, self.in_index)
        buf_ids, buf_vecs, buf_sq = self._buf
        if len(buf_ids) == 0:
            return main
        if len(queries) == 1:  # one-row searches (what the harness times): 1-d, fewest calls
            return self._merge_one(queries, k, main[0], buf_ids, buf_vecs, buf_sq)
        return self._merge(queries, k, main, buf_ids, buf_vecs, buf_sq)

    def prepare_search(self, k: int) -> Callable[[np.ndarray], np.ndarray]:
        main = prepare_filtered_search(self.adapter, k, self.dead, self.in_index)
        buf_ids, buf_vecs, buf_sq = self._buf  # replaced as a whole by a write, after which one prepares again
        if len(buf_ids) == 0:
            return main
        merge_one, merge = self._merge_one, self._merge

        def call(queries: np.ndarray) -> np.ndarray:
            if len(queries) == 1:
                return merge_one(queries, k, main(queries)[0], buf_ids, buf_vecs, buf_sq)
            return merge(queries, k, main(queries), buf_ids, buf_vecs, buf_sq)

        return call

    def _merge(self, queries: np.ndarray, k: int, main: np.ndarray, buf_ids: np.ndarray, buf_vecs: np.ndarray,
               buf_sq: np.ndarray | None) -> np.ndarray:
        """The index's answers `main` merged with the fresh buffer's exact top k, by true distance."""
        # Merge by true distance: the index's answers (their rows from the live set's table: the −1
        # padding reads −1, hence +inf) with the exact buffer's top k. Same float32 arithmetic as
        # `distances`, so ties and order are those of a plain implementation.
        main_d = distances(queries, self._pool_rows, self.live.rows_of_answers(main), self.metric)
        prod = queries @ buf_vecs.T
        if buf_sq is None:
            buf_d = 1.0 - prod
        else:
            buf_d = np.sqrt(np.maximum((queries * queries).sum(1)[:, None] + buf_sq[None, :] - 2.0 * prod, 0.0))
        kb = min(k, len(buf_ids))
        top = np.argpartition(buf_d, kb - 1, axis=1)[:, :kb]
        cand_d = np.concatenate([main_d, np.take_along_axis(buf_d, top, 1).astype(np.float32)], axis=1)
        cand_i = np.concatenate([main, buf_ids[top]], axis=1)
        order = np.argsort(cand_d, axis=1, kind="stable")[:, :k]
        out = np.take_along_axis(cand_i, order, 1)
        out[np.take_along_axis(cand_d, order, 1) == np.inf] = -1
        return out


    def _merge_one(self, query: np.ndarray, k: int, ans: np.ndarray, buf_ids: np.ndarray, buf_vecs: np.ndarray,
                   buf_sq: np.ndarray | None) -> np.ndarray:
        """`search`'s merge for one query row: the operations of the batch path (and of `distances`) on
        the same shapes, so the floats, and with them ties and order, are the same; fewer calls."""
        rows = self.live._rows.get(ans)  # the answers' pool rows (−1 for padding), one lookup
        gap = rows.min() < 0  # padding, or an answer no longer live: +inf, as in `distances`
        vecs = np.asarray(self._pool_rows.take(np.maximum(rows, 0) if gap else rows, axis=0), dtype=np.float32)
        if buf_sq is None:
            main_d = 1.0 - np.einsum("qd,qmd->qm", query, vecs[None])[0]
        else:
            diff = vecs[None] - query[:, None, :]
            main_d = np.sqrt(np.einsum("qmd,qmd->qm", diff, diff))[0]
        if gap:
            main_d = np.where(rows < 0, np.inf, main_d)
        main_d = main_d.astype(np.float32, copy=False)
        prod = query @ buf_vecs.T  # the exact search over the buffer: one contiguous matrix-vector product
        if buf_sq is None:
            row = (1.0 - prod)[0]
        else:
            row = np.sqrt(np.maximum((query * query).sum(1)[:, None] + buf_sq[None, :] - 2.0 * prod, 0.0))[0]
        kb = min(k, len(buf_ids))
        top = row.argpartition(kb - 1)[:kb]  # linear selection; only the 2k candidates get sorted
        top_d = row[top]
        cand_d = np.concatenate((main_d, top_d if top_d.dtype == np.float32 else top_d.astype(np.float32)))
        order = cand_d.argsort(kind="stable")[:k]
        out = np.concatenate((ans, buf_ids[top]))[order]
        kept_d = cand_d[order]
        if not kept_d[-1] < np.inf:  # sorted ascending: +inf (padding) can only be there if it is last
            out[kept_d == np.inf] = -1
        return out[None, :]


class MaintainPolicy(Policy):
    """Native writes, then the adapter's own upkeep call (`op`) every N days before the day's search."""

    def __init__(self, *args: Any, op: str, maintain_every: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name = op
        self.every = maintain_every
        self.last_day = 0

    def maintain(self, day: int) -> str | None:
        if day - self.last_day < self.every:
            return None
        self.adapter.maintain(self.name)
        self.last_day = day
        return self.name


POLICY_CLASSES: dict[str, type[Policy]] = {"native": Policy, "tombstone": TombstonePolicy, "rebuild": RebuildPolicy}


def make_policy(name: str, adapter_cls: type[Adapter], metric: Metric, dim: int, threads: int,
                build_params: dict[str, Any], pool: np.ndarray, rebuild_every: int, static: bool = False,
                maintain_every: int = 1) -> Policy:
    """The policy object for one run; refuses a policy the adapter cannot support."""
    check_policy(adapter_cls.capabilities, name, adapter_cls.name, static, adapter_cls.maintenance)

    def make_adapter() -> Adapter:
        return adapter_cls(metric, dim, threads=threads, **build_params)

    if name in POLICY_CLASSES:
        return POLICY_CLASSES[name](make_adapter, pool, metric, rebuild_every=rebuild_every)
    return MaintainPolicy(make_adapter, pool, metric, op=name, maintain_every=maintain_every)
