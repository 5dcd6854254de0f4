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

A policy's `search` is what the harness times, so the filtering and merging a policy needs are part of
its measured cost. Policies never time or print; they track the live set (id → pool row) because the
rebuild policy and the fresh buffer need the vectors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from annbench.adapters.base import Adapter, Metric
from annbench.scenarios import check_policy

# A dense table indexed by id is used while the largest id stays below DENSE_FACTOR × the ids written
# plus DENSE_FLOOR: for the catalogs annbench ships (ids 0…n) that is one slot per id; for large sparse
# ids (hashes, database keys) a sorted array answers by binary search instead, so memory stays O(ids).
DENSE_FACTOR = 8
DENSE_FLOOR = 1 << 16


class IdTable:
    """A value per id, looked up for a whole array of ids at once (no Python per id on the search path).

    Written at write time (build / insert / delete / update), read at search time. Dense: an array indexed
    by id with one extra last slot holding `pad`, so the −1 padding of an answer reads `pad` through plain
    fancy indexing (≈ 0.1 µs for a query's candidates). Sparse: sorted keys and their values, looked up with
    np.searchsorted. Ids never written read `missing`. The state is one tuple replaced as a whole, so a
    search running beside a write (annbench.concurrency) never sees keys of one version with values of
    another; in-place writes to the dense array only flip single entries.
    """

    def __init__(self, dtype: Any, missing: Any, pad: Any) -> None:
        self.dtype = np.dtype(dtype)
        self.missing = missing
        self.pad = pad
        self.written = 0  # ids written so far (with repeats across calls): the density rule's denominator
        self._dense: np.ndarray | None = None  # len = capacity + 1; the last slot is the padding slot
        self._sparse: tuple[np.ndarray, np.ndarray] = (np.empty(0, np.int64), np.empty(0, self.dtype))

    def _dense_ok(self, top: int) -> bool:
        return top < DENSE_FACTOR * self.written + DENSE_FLOOR

    def _grow(self, top: int) -> None:
        """Make `top` addressable: grow the dense array (with slack, ids tend to rise day by day) or go sparse."""
        dense = self._dense
        if dense is not None and top < len(dense) - 1:
            return
        if not self._dense_ok(top):
            if dense is not None:  # a large id arrived: keep what is written, sorted, and go sparse
                keys = np.flatnonzero(dense[:-1] != self.missing).astype(np.int64)
                self._sparse = (keys, dense[keys].copy())
                self._dense = None
            return
        cap = max(top + 1, int((len(dense) - 1) * 1.25) if dense is not None else 0)
        cap = min(cap, max(top + 1, DENSE_FACTOR * self.written + DENSE_FLOOR))
        grown = np.full(cap + 1, self.missing, self.dtype)
        if dense is not None:
            grown[: len(dense) - 1] = dense[:-1]
        else:
            keys, vals = self._sparse
            grown[keys] = vals
        grown[-1] = self.pad
        self._dense = grown  # one reference swap: a reader holds the old array or the new one

    def reserve(self, ids: np.ndarray) -> None:
        """Make every id of `ids` addressable without writing it: the ids an index holds, so that looking up
        its answers in the dense array never falls off its end."""
        ids = np.asarray(ids, np.int64)
        if len(ids):
            self.written += len(ids)
            self._grow(int(ids.max()))

    def put(self, ids: np.ndarray, values: Any) -> None:
        """Set ids → values (a scalar or one value per id); for an id given twice the last value wins."""
        ids = np.asarray(ids, np.int64).ravel()
        if len(ids) == 0:
            return
        vals = np.broadcast_to(np.asarray(values, self.dtype), ids.shape)
        uniq, last = np.unique(ids[::-1], return_index=True)  # last occurrence wins, as dict.update
        vals = vals[::-1][last]
        if uniq[0] < 0:
            raise ValueError(f"ids must be non-negative, got {int(uniq[0])}")
        self.written += len(uniq)
        self._grow(int(uniq[-1]))
        if self._dense is not None:
            self._dense[uniq] = vals
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
        """Values for an array of ids (any shape): `pad` for −1, `missing` for ids never written."""
        dense = self._dense
        if dense is not None:
            try:
                return dense[ids]  # −1 reads the padding slot; ids ≥ 0 are below capacity by construction
            except IndexError:  # an id above every id written (never returned by an index it was not given)
                ids = np.asarray(ids)
                inside = ids < len(dense) - 1
                return np.where(inside, dense[np.where(inside, ids, -1)], self.missing).astype(self.dtype)
        keys, vals = self._sparse
        ids = np.asarray(ids)
        if len(keys) == 0:
            return np.where(ids == -1, self.pad, self.missing).astype(self.dtype)
        pos = np.minimum(np.searchsorted(keys, ids), len(keys) - 1)
        out = np.where(keys[pos] == ids, vals[pos], self.missing).astype(self.dtype)
        out[ids == -1] = self.pad
        return out

    def keys_where(self, pred: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, values) whose value satisfies `pred`, in id order."""
        dense = self._dense
        if dense is not None:
            body = dense[:-1]
            ids = np.flatnonzero(pred(body)).astype(np.int64)
            return ids, body[ids]
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
        # −1 reads −1 from the table; any other negative number is not an id, and reads −1 too
        return np.where(ids < 0, -1, self._rows.get(np.maximum(ids, -1)))


def distances(queries: np.ndarray, pool: np.ndarray, rows: np.ndarray, metric: Metric) -> np.ndarray:
    """Distance of query i to each pool row in rows[i] (q×m; −1 → +inf). Used to merge answers."""
    safe = np.where(rows < 0, 0, rows)
    vecs = np.asarray(pool[safe.ravel()], dtype=np.float32).reshape(*rows.shape, -1)
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

    def _vectors(self, rows: np.ndarray) -> np.ndarray:
        # A gathered copy is C-contiguous float32, so no library copies it again.
        return np.ascontiguousarray(self.pool[np.asarray(rows)], dtype=np.float32)

    def build(self, rows: np.ndarray, ids: np.ndarray) -> None:
        self.close()  # a rebuild replaces the index: release what the old one holds outside the process
        self.adapter = self.make_adapter()
        self.adapter.build(self._vectors(rows), ids)
        if self.search_params:
            self.adapter.set_search_params(**self.search_params)
        self.live = LiveSet()
        self.live.add(rows, ids)
        self.fresh_ids.clear()

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
        self.count += int((~self.table.get(uniq)).sum())
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


def filtered_search(adapter: Adapter, queries: np.ndarray, k: int, dead: Tombstones, in_index: int) -> np.ndarray:
    """Search, dropping tombstoned ids; over-fetch by the dead share and refetch queries left short.

    A query left with fewer than k valid answers while the index returned a full page (it had more to
    give) is searched again twice as deep, until the index is exhausted. A refetch overwrites only the
    first answers it found valid, as a per-query loop would. No Python runs per query or per id.
    """
    if dead.count == 0:
        return adapter.search(queries, k)
    dead_share = min(dead.count / max(in_index, 1), 0.95)
    fetch = min(in_index, math.ceil(k / (1.0 - dead_share) * 1.2) + 2)
    is_dead = dead.is_dead
    if len(queries) == 1:  # the harness times one-row searches: 1-d operations, fewest calls
        out = np.full((1, k), -1, dtype=np.int64)
        while True:
            got = adapter.search(queries, fetch)[0]
            valid = got[~is_dead(got)][:k]  # the −1 padding reads dead too
            out[0, : len(valid)] = valid
            if len(valid) == k or fetch >= in_index or not (got >= 0).all():
                return out
            fetch = min(in_index, fetch * 2)
    nq = len(queries)
    out = np.full((nq, k), -1, dtype=np.int64)
    todo = np.arange(nq)
    while True:
        got = adapter.search(queries[todo] if len(todo) < nq else queries, fetch)
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
        if len(queries) == 1:  # one-row searches (what the harness times): 1-d, fewest calls
            row = buf_d[0]
            top = np.argpartition(row, kb - 1)[:kb]
            cand_d = np.concatenate([main_d[0], row[top].astype(np.float32)])
            cand_i = np.concatenate([main[0], buf_ids[top]])
            order = np.argsort(cand_d, kind="stable")[:k]
            out = cand_i[order]
            out[cand_d[order] == np.inf] = -1
            return out[None, :]
        top = np.argpartition(buf_d, kb - 1, axis=1)[:, :kb]
        cand_d = np.concatenate([main_d, np.take_along_axis(buf_d, top, 1).astype(np.float32)], axis=1)
        cand_i = np.concatenate([main, buf_ids[top]], axis=1)
        order = np.argsort(cand_d, axis=1, kind="stable")[:, :k]
        out = np.take_along_axis(cand_i, order, 1)
        out[np.take_along_axis(cand_d, order, 1) == np.inf] = -1
        return out


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
