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

from collections.abc import Callable
from typing import Any

import numpy as np

from annbench.adapters.base import Adapter, Metric
from annbench.scenarios import check_policy


class LiveSet:
    """The ids live in the catalog and the pool row holding each one's current vector."""

    def __init__(self) -> None:
        self.row_of: dict[int, int] = {}
        self.deleted: set[int] = set()

    def add(self, rows: np.ndarray, ids: np.ndarray) -> None:
        self.row_of.update(zip(ids.tolist(), rows.tolist(), strict=True))

    def remove(self, ids: np.ndarray) -> None:
        for i in ids.tolist():
            self.row_of.pop(i, None)
            self.deleted.add(i)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, ids) of the live set, in id order (deterministic rebuilds)."""
        ids = np.fromiter(sorted(self.row_of), np.int64, len(self.row_of))
        rows = np.fromiter((self.row_of[i] for i in ids.tolist()), np.int64, len(ids))
        return rows, ids

    def rows_for(self, ids: np.ndarray) -> np.ndarray:
        """Pool rows for an id array (−1 for padding and for ids that are not live)."""
        get = self.row_of.get
        flat = [get(i, -1) for i in ids.ravel().tolist()]
        return np.asarray(flat, dtype=np.int64).reshape(ids.shape)


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


class TombstonePolicy(Policy):
    """Deletes are remembered and filtered at search, with over-fetch; the index keeps the vectors."""

    name = "tombstone"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tomb = np.empty(0, np.int64)  # sorted, for np.isin at search time
        self.in_index = 0

    def build(self, rows: np.ndarray, ids: np.ndarray) -> None:
        super().build(rows, ids)
        self.tomb = np.empty(0, np.int64)
        self.in_index = len(ids)

    def insert(self, rows: np.ndarray, ids: np.ndarray) -> None:
        super().insert(rows, ids)
        self.in_index += len(ids)

    def delete(self, ids: np.ndarray) -> None:
        self.live.remove(ids)
        self.fresh_ids.difference_update(ids.tolist())
        self.tomb = np.union1d(self.tomb, ids)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return filtered_search(self.adapter, queries, k, self.tomb, self.in_index)


def filtered_search(adapter: Adapter, queries: np.ndarray, k: int, tomb: np.ndarray, in_index: int) -> np.ndarray:
    """Search, dropping tombstoned ids; over-fetch by the dead share and refetch queries left short."""
    if len(tomb) == 0:
        return adapter.search(queries, k)
    dead_share = min(len(tomb) / max(in_index, 1), 0.95)
    fetch = min(in_index, int(np.ceil(k / (1.0 - dead_share) * 1.2)) + 2)
    out = np.full((len(queries), k), -1, dtype=np.int64)
    todo = np.arange(len(queries))
    while True:
        got = adapter.search(queries[todo] if len(todo) < len(queries) else queries, fetch)
        keep = (got >= 0) & ~np.isin(got, tomb)
        short = []
        for j, qi in enumerate(todo.tolist()):
            valid = got[j][keep[j]][:k]
            out[qi, : len(valid)] = valid
            # short and the index had more to give: fetch deeper for this query
            if len(valid) < k and (got[j] >= 0).all() and fetch < in_index:
                short.append(qi)
        if not short:
            return out
        todo = np.asarray(short)
        fetch = min(in_index, fetch * 2)


class RebuildPolicy(Policy):
    """Rebuild from the live set every N days; an exact fresh buffer serves what came since."""

    name = "rebuild"

    def __init__(self, *args: Any, rebuild_every: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.every = rebuild_every
        self.last_build_day = 0
        self._reset_buffer()

    def _reset_buffer(self) -> None:
        self.buf_ids = np.empty(0, np.int64)
        self.buf_vecs = np.empty((0, self.pool.shape[1]), np.float32)
        self.tomb = np.empty(0, np.int64)
        self.in_index = 0

    def build(self, rows: np.ndarray, ids: np.ndarray) -> None:
        super().build(rows, ids)
        self._reset_buffer()
        self.in_index = len(ids)

    def _to_buffer(self, rows: np.ndarray, ids: np.ndarray) -> None:
        keep = ~np.isin(self.buf_ids, ids)
        self.buf_ids = np.concatenate([self.buf_ids[keep], ids])
        self.buf_vecs = np.concatenate([self.buf_vecs[keep], self._vectors(rows)])

    def insert(self, rows: np.ndarray, ids: np.ndarray) -> None:
        self._to_buffer(rows, ids)
        self.live.add(rows, ids)
        self.fresh_ids.update(ids.tolist())

    def update(self, rows: np.ndarray, ids: np.ndarray) -> None:
        # The index still holds the old photo: tombstone it there, serve the new one from the buffer.
        self.tomb = np.union1d(self.tomb, ids)
        self._to_buffer(rows, ids)
        self.live.add(rows, ids)
        self.fresh_ids.update(ids.tolist())

    def delete(self, ids: np.ndarray) -> None:
        self.tomb = np.union1d(self.tomb, ids)
        keep = ~np.isin(self.buf_ids, ids)
        self.buf_ids, self.buf_vecs = self.buf_ids[keep], self.buf_vecs[keep]
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
        main = filtered_search(self.adapter, queries, k, self.tomb, self.in_index)
        if len(self.buf_ids) == 0:
            return main
        # Merge by true distance: the index's answers (looked up in the pool) with the exact buffer's.
        main_d = distances(queries, self.pool, self.live.rows_for(main), self.metric)
        if self.metric is Metric.COSINE:
            buf_d = 1.0 - queries @ self.buf_vecs.T
        else:
            buf_d = np.sqrt(np.maximum(
                (queries * queries).sum(1)[:, None] + (self.buf_vecs * self.buf_vecs).sum(1)[None, :]
                - 2.0 * queries @ self.buf_vecs.T, 0.0))
        kb = min(k, len(self.buf_ids))
        top = np.argpartition(buf_d, kb - 1, axis=1)[:, :kb]
        cand_d = np.concatenate([main_d, np.take_along_axis(buf_d, top, 1).astype(np.float32)], axis=1)
        cand_i = np.concatenate([main, self.buf_ids[top]], axis=1)
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
