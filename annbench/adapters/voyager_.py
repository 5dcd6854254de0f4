"""voyager adapter (Spotify): an HNSW graph with integer ids, tombstone deletes and in-place replaces.

Owns the deleted-id bookkeeping voyager does not expose, the per-query search depth, and a search
that always returns a q×k answer. Library facts handled here (voyager 2.2):

- `add_items` grows `max_elements` by itself.
- `mark_deleted` is a tombstone: the vector keeps its slot and `num_elements` / `len` still count
  it; it raises RuntimeError on an unknown or already-deleted id, so delete tolerates both.
- `add_items` with an id that is present replaces its vector in place (the old vector is no longer
  found), and revives an id that was deleted: update is NATIVE.
- `query` raises `RecallError` whenever it finds fewer than k live items (few live items, or a graph
  cut by tombstones): k is capped at the live count, and the rare remaining failure falls back per
  query to the largest k that works, padded with -1.
- The index-wide `ef` defaults to 10; the search depth is passed per call (`query_ef`), raised to k.
- `num_threads=-1` means every core: the adapter always passes its own thread count.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import voyager

from annbench.adapters.base import (
    Adapter,
    Capabilities,
    Metric,
    Param,
    Safety,
    Support,
    as_ids,
    as_vectors,
    check_k,
    pad_ids,
    widen,
)
from annbench.errors import ConfigError

_STORAGE = {"float32": voyager.StorageDataType.Float32, "float8": voyager.StorageDataType.Float8,
            "e4m3": voyager.StorageDataType.E4M3}


class Voyager(Adapter):
    """voyager HNSW graph; delete is a tombstone (mark_deleted), update replaces the vector in place."""

    distributions = ("voyager",)

    name = "voyager"
    capabilities = Capabilities(add=Support.NATIVE, delete=Support.TOMBSTONE, update=Support.NATIVE)
    # Searches: voyager's v2.0.6 release notes (spotify/voyager#61, a shared lock around searchKnn): "Makes
    # query thread-safe with addItems and addItems thread-safe when adding to the same index from multiple
    # external threads". The search depth goes with each call (query_ef), so a search sets nothing on the
    # index. Checked here (voyager 2.2.3; tests/test_adapters.py repeats it, smaller): 2 threads each
    # sending the same 5,000 single queries to a 20k × 64 index got every answer identical to one thread,
    # no crash. query keeps the GIL (gil_share 0.15), so client threads take turns rather than scale.
    # Writes: add_items beside query is documented, mark_deleted (delete) is not, and one flag covers
    # every write, so writes stay exclusive.
    concurrency = Safety(True, False, "voyager v2.0.6 release notes (#61): 'Makes query thread-safe with addItems'; "
                         "checked here (voyager 2.2.3): 2 threads × the same 5,000 single queries on a 20k × 64 "
                         "index, answers identical to one thread, no crash (query holds the GIL: no scaling). "
                         "mark_deleted beside query undocumented, so writes are treated as unsafe.")
    build_params = (
        Param("M", int, 12, "graph neighbours per node (layer 0 has 2·M)", min=2, max=512),
        Param("ef_construction", int, 200, "candidate list size while inserting", min=1),
        Param("storage", str, "float32", "vector storage type", choices=tuple(_STORAGE)),
        Param("seed", int, 1, "random seed of the level generator", min=0),
    )
    precisions = {"int8": {"storage": "float8"}}  # voyager's Float8: 8-bit fixed point in [-1, 1]
    search_params = (Param("ef", int, 50, "candidate list size at search (query_ef; raised to k if lower)", min=1),)

    def __init__(self, metric: Metric | str, dim: int, threads: int = 1, **build_params: Any) -> None:
        self.index: voyager.Index | None = None
        self._deleted: set[int] = set()  # ids currently marked deleted; voyager counts them as elements
        super().__init__(metric, dim, threads, **build_params)

    def _require_built(self) -> voyager.Index:
        if self.index is None:
            raise ConfigError(f"{self.name}: build() must be called first")
        return self.index

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        ids = as_ids(ids, self.name, len(x))
        # Cosine arrives L2-normalised: inner product ranks like cosine, with no second normalisation.
        space = voyager.Space.InnerProduct if self.metric is Metric.COSINE else voyager.Space.Euclidean
        self.index = voyager.Index(space, num_dimensions=self.dim, M=self.params["M"],
                                   ef_construction=self.params["ef_construction"], random_seed=self.params["seed"],
                                   max_elements=max(1, len(x)), storage_data_type=_STORAGE[self.params["storage"]])
        self._deleted = set()
        self._insert(x, ids)

    def _insert(self, x: np.ndarray, ids: np.ndarray) -> None:
        if len(x) == 0:
            return
        self._require_built().add_items(x, ids.tolist(), num_threads=self.threads)
        if self._deleted:
            self._deleted.difference_update(ids.tolist())  # add_items revives a deleted id

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        self._insert(x, as_ids(ids, self.name, len(x)))

    def update(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        self._insert(x, as_ids(ids, self.name, len(x)))

    def delete(self, ids: np.ndarray) -> None:
        index = self._require_built()
        for label in as_ids(ids, self.name).tolist():
            if label in self._deleted:
                continue
            try:
                index.mark_deleted(label)
            except RuntimeError:  # unknown id: nothing to delete
                continue
            self._deleted.add(label)

    @property
    def n_live(self) -> int:
        return self._require_built().num_elements - len(self._deleted)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.prepare_search(k)(as_vectors(queries, self.dim, self.name))

    def prepare_search(self, k: int) -> Callable[[np.ndarray], np.ndarray]:
        index = self._require_built()
        k = check_k(k, self.name)
        k_eff = min(k, self.n_live)
        if k_eff == 0:
            return lambda q: np.full((len(q), k), -1, dtype=np.int64)
        ef = max(self.search_settings["ef"], k_eff)
        query, threads = index.query, self.threads

        def call(q: np.ndarray) -> np.ndarray:
            try:
                labels, _ = query(q, k=k_eff, num_threads=threads, query_ef=ef)
            except voyager.RecallError:
                return pad_ids([self._one(row, k_eff, ef) for row in q], k)
            return widen(labels, k)  # a full answer needs no padding

        return call

    def _one(self, query: np.ndarray, k: int, ef: int) -> np.ndarray:
        """Largest answer (≤ k) voyager can give for one query; it raises rather than return fewer."""
        assert self.index is not None
        lo, hi, best = 0, k, np.empty(0, dtype=np.int64)
        while lo < hi:  # invariant: lo results are known to work, hi+1 known (or assumed) to fail
            mid = (lo + hi + 1) // 2
            try:
                labels, _ = self.index.query(query, k=mid, num_threads=1, query_ef=max(ef, mid))
            except voyager.RecallError:
                hi = mid - 1
            else:
                lo, best = mid, np.asarray(labels, dtype=np.int64).reshape(-1)
        return best

    def save(self, path: Path) -> int:
        index = self._require_built()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        file = folder / "index.voyager"
        index.save(str(file))  # deleted marks are part of the file
        return os.path.getsize(file)
