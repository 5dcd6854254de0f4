"""The policies' search path as it was before issue 14, kept as the reference its replacement must equal.

`tests/test_policies.py` compares every search of `annbench.policies` with it, and
`benchmarks/bench_policies.py` (P7) times it as the "before" figure and uses it as its cross-check: one copy
for both. Plain on purpose: np.isin per query, a Python loop over queries, a dict lookup per id.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from annbench.adapters.base import Metric


class RefLiveSet:
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
        ids = np.fromiter(sorted(self.row_of), np.int64, len(self.row_of))
        rows = np.fromiter((self.row_of[i] for i in ids.tolist()), np.int64, len(ids))
        return rows, ids

    def rows_for(self, ids: np.ndarray) -> np.ndarray:
        get = self.row_of.get
        flat = [get(i, -1) for i in ids.ravel().tolist()]
        return np.asarray(flat, dtype=np.int64).reshape(ids.shape)


def ref_distances(queries: np.ndarray, pool: np.ndarray, rows: np.ndarray, metric: Metric) -> np.ndarray:
    safe = np.where(rows < 0, 0, rows)
    vecs = np.asarray(pool[safe.ravel()], dtype=np.float32).reshape(*rows.shape, -1)
    if metric is Metric.COSINE:
        d = 1.0 - np.einsum("qd,qmd->qm", queries, vecs)
    else:
        diff = vecs - queries[:, None, :]
        d = np.sqrt(np.einsum("qmd,qmd->qm", diff, diff))
    return np.where(rows < 0, np.inf, d).astype(np.float32)


def ref_filtered_search(adapter: Any, queries: np.ndarray, k: int, tomb: np.ndarray, in_index: int) -> np.ndarray:
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
            if len(valid) < k and (got[j] >= 0).all() and fetch < in_index:
                short.append(qi)
        if not short:
            return out
        todo = np.asarray(short)
        fetch = min(in_index, fetch * 2)


def ref_merge(queries: np.ndarray, k: int, main: np.ndarray, pool: np.ndarray, live: Any, buf_ids: np.ndarray,
              buf_vecs: np.ndarray, metric: Metric) -> np.ndarray:
    if len(buf_ids) == 0:
        return main
    main_d = ref_distances(queries, pool, live.rows_for(main), metric)
    if metric is Metric.COSINE:
        buf_d = 1.0 - queries @ buf_vecs.T
    else:
        buf_d = np.sqrt(np.maximum(
            (queries * queries).sum(1)[:, None] + (buf_vecs * buf_vecs).sum(1)[None, :]
            - 2.0 * queries @ buf_vecs.T, 0.0))
    kb = min(k, len(buf_ids))
    top = np.argpartition(buf_d, kb - 1, axis=1)[:, :kb]
    cand_d = np.concatenate([main_d, np.take_along_axis(buf_d, top, 1).astype(np.float32)], axis=1)
    cand_i = np.concatenate([main, buf_ids[top]], axis=1)
    order = np.argsort(cand_d, axis=1, kind="stable")[:, :k]
    out = np.take_along_axis(cand_i, order, 1)
    out[np.take_along_axis(cand_d, order, 1) == np.inf] = -1
    return out
