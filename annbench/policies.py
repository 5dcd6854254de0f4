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

from annbench import transforms
from annbench.adapters.base import Adapter, check_policy
from annbench.idtable import IdTable
from annbench.vectors import Metric


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

    # the family's adapter, behind its embedding transform when the build parameters carry one
    make_adapter = transforms.adapter_factory(adapter_cls, metric, dim, threads, build_params)

    if name in POLICY_CLASSES:
        return POLICY_CLASSES[name](make_adapter, pool, metric, rebuild_every=rebuild_every)
    return MaintainPolicy(make_adapter, pool, metric, op=name, maintain_every=maintain_every)
