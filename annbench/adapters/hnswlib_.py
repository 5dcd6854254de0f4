"""hnswlib adapter: an HNSW graph with labels, tombstone deletes and in-place updates.

Owns capacity management, the deleted-label bookkeeping hnswlib does not expose, and a search that
always returns a q×k answer. Library traps handled here:

- `add_items` raises once `max_elements` is reached: capacity is grown geometrically with
  `resize_index` *before* adding, so a stream of small inserts costs amortised O(1) resizes.
- `mark_deleted` is a tombstone (the vector stays in the graph); it raises on an unknown or
  already-deleted label, so delete tolerates both. `add_items` with an existing label replaces the
  vector in place, and revives it if it was deleted.
- `knn_query` raises "Cannot return the results in a contiguous 2D array" whenever it finds fewer
  than k live items (few live items, or ef < k with many tombstones): k is capped at the live count,
  ef is raised to ≥ k, and the rare remaining failure falls back per query to the largest k that
  works, padded with -1.
- The query `ef` is a property of the index, not of a call: every search compares it with the depth it
  needs and sets it on change.
- hnswlib labels are unsigned: ids must be non-negative (they are, by annbench's contract).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

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

_GROWTH = 1.5  # resize factor; hnswlib reallocates the whole level-0 block on resize_index


class Hnswlib(Adapter):
    """hnswlib HNSW graph; delete is a tombstone (mark_deleted), update replaces the vector in place."""

    distributions = ("hnswlib",)

    name = "hnswlib"
    capabilities = Capabilities(add=Support.NATIVE, delete=Support.TOMBSTONE, update=Support.NATIVE)
    # The hnswlib README (0.8.0) says add_items is 'thread-safe with other add_items calls, but not with
    # knn_query', knn_query 'thread-safe with other knn_query calls, but not with add_items', and resize_index
    # 'not thread safe with add_items and knn_query'; mark_deleted is not documented as safe beside knn_query.
    concurrency = Safety(True, False, "hnswlib README (0.8.0): knn_query is safe with other knn_query calls but not "
                         "with add_items (inserts and updates); resize_index with neither; mark_deleted undocumented.")
    build_params = (
        Param("M", int, 16, "graph neighbours per node (layer 0 has 2·M)", min=2, max=512),
        Param("ef_construction", int, 200, "candidate list size while inserting", min=1),
        Param("capacity", int, 0, "initial max_elements; 0 = the build size (grows by 1.5× when full)", min=0),
        Param("seed", int, 100, "random seed of the level generator", min=0),
    )
    search_params = (Param("ef", int, 50, "candidate list size at search (raised to k if lower)", min=1),)

    def __init__(self, metric: Metric | str, dim: int, threads: int = 1, **build_params: Any) -> None:
        self.index: hnswlib.Index | None = None
        self._deleted: set[int] = set()  # labels currently marked deleted; hnswlib has no count of them
        super().__init__(metric, dim, threads, **build_params)

    def _apply_threads(self) -> None:
        if self.index is not None:
            self.index.set_num_threads(self.threads)

    def _require_built(self) -> hnswlib.Index:
        if self.index is None:
            raise ConfigError(f"{self.name}: build() must be called first")
        return self.index

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        ids = as_ids(ids, self.name, len(x))
        # Cosine arrives L2-normalised, so inner product ('ip' = 1 - dot) ranks like cosine.
        space = "ip" if self.metric is Metric.COSINE else "l2"
        index = hnswlib.Index(space=space, dim=self.dim)
        self._capacity = max(1, self.params["capacity"] or len(x))  # what the build used; resizes come later
        index.init_index(
            max_elements=self._capacity,
            M=self.params["M"],
            ef_construction=self.params["ef_construction"],
            random_seed=self.params["seed"],
        )
        self.index = index
        self._ef = -1  # the ef last given to this index (hnswlib's own default until the first search)
        self._deleted = set()
        self._apply_threads()
        self._insert(x, ids)

    def _insert(self, x: np.ndarray, ids: np.ndarray) -> None:
        if len(x) == 0:
            return
        index = self._require_built()
        # Upper bound on new slots (ids already present reuse theirs); growing a bit early is harmless.
        need = index.get_current_count() + len(x)
        if need > index.get_max_elements():
            index.resize_index(max(need, int(index.get_max_elements() * _GROWTH) + 1))
        index.add_items(x, ids, num_threads=self.threads)
        if self._deleted:
            self._deleted.difference_update(ids.tolist())  # add_items un-deletes a replaced label

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
            except RuntimeError:  # unknown label: nothing to delete
                continue
            self._deleted.add(label)

    @property
    def n_live(self) -> int:
        index = self._require_built()
        return index.get_current_count() - len(self._deleted)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.prepare_search(k)(as_vectors(queries, self.dim, self.name))

    def prepare_search(self, k: int) -> Callable[[np.ndarray], np.ndarray]:
        index = self._require_built()
        k = check_k(k, self.name)
        k_eff = min(k, self.n_live)
        if k_eff == 0:
            return lambda q: np.full((len(q), k), -1, dtype=np.int64)
        ef = max(self.search_settings["ef"], k_eff)
        knn_query, threads = index.knn_query, self.threads

        def call(q: np.ndarray) -> np.ndarray:
            # ef is the index's, not the call's: a search at another depth in between (a policy's refetch)
            # moves it, so it is compared here (one attribute read) and set only on change
            if self._ef != ef:
                index.set_ef(ef)
                self._ef = ef
            try:
                labels, _ = knn_query(q, k=k_eff, num_threads=threads)
            except RuntimeError:
                return pad_ids([self._one(q[i : i + 1], k_eff) for i in range(len(q))], k)
            return widen(labels, k)  # a full answer needs no padding

        return call

    def _one(self, query: np.ndarray, k: int) -> np.ndarray:
        """Largest answer (≤ k) hnswlib can give for one query; it raises rather than return fewer."""
        assert self.index is not None
        lo, hi, best = 0, k, np.empty(0, dtype=np.int64)
        while lo < hi:  # invariant: lo results are known to work, hi+1 known (or assumed) to fail
            mid = (lo + hi + 1) // 2
            try:
                labels, _ = self.index.knn_query(query, k=mid, num_threads=1)
            except RuntimeError:
                hi = mid - 1
            else:
                lo, best = mid, labels[0].astype(np.int64)
        return best

    def resolved_params(self) -> dict[str, Any]:
        # capacity: 0 means "the build size"; report the max_elements the build gave, not later resizes
        return {**self.params, "capacity": self._capacity} if self.index is not None else dict(self.params)

    def library_bytes(self) -> dict[str, Any] | None:
        index = self.index
        if index is None:
            return None
        # hnswalg.h (0.8.0): every slot up to max_elements holds, in one level-0 block, its link list
        # (maxM0 = 2·M ids of 4 bytes + a 4-byte count), its float32 vector and its 8-byte label;
        # index_file_size() counts that block for the current elements plus every upper-layer link list.
        per_slot = (2 * index.M) * 4 + 4 + self.dim * 4 + 8
        unused = (index.get_max_elements() - index.get_current_count()) * per_slot
        return {"bytes": int(index.index_file_size() + unused),
                "what": "hnswlib index_file_size() (level-0 block of the elements, upper-layer links, header) + "
                        "unused level-0 slots up to max_elements × ((2M)·4+4 + d·4 + 8); locks, label map and "
                        "visited lists not counted"}

    def save(self, path: Path) -> int:
        index = self._require_built()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        file = folder / "index.hnswlib"
        index.save_index(str(file))  # deleted marks are part of the file
        return os.path.getsize(file)
