"""usearch adapter: an HNSW graph with uint64 keys, logical removes and a grow-on-add capacity.

Owns the storage dtype (set explicitly, never usearch's hardware-dependent default), the search
depth, and a search that always returns a q×k answer. Library facts handled here (usearch 2.26):

- The default storage dtype is bf16 (chosen from the metric and the CPU): the `dtype` build parameter
  defaults to f32 and is always passed, so a run measures what its parameters say.
- `remove` is logical: the key disappears from results and from `size`, but the node keeps its slot,
  `memory_usage` and the saved file do not shrink (*measured*: 1,383,028 bytes saved before and after
  removing 4,500 of 5,000). Later `add`s reuse freed slots (15 rounds of remove-1000/add-1000 on 5,000
  kept capacity 8,192). Delete is therefore declared TOMBSTONE.
- `add` of a key that is present raises "Duplicate keys not allowed": an update is remove + add. The
  add takes the slot the remove just freed, so an update does not grow the index (*measured*: 10
  rounds of updating 500 of 2,000 keys left capacity, `memory_usage` and the saved bytes unchanged):
  update is declared NATIVE. A removed key can be added again.
- `add` grows the capacity by itself; nothing to manage.
- Batch search pads short rows with key 0 (a valid id!) and NaN distances; `counts` says how many are
  real, so padding is rebuilt from `counts` as -1. A single-row query returns `Matches`, not
  `BatchMatches`, with only the real keys.
- `threads=0` means every core: the adapter always passes its own thread count.
- usearch's compiled module carries its own static copy of libstdc++. Imported before faiss, it wins
  the process-wide C++ locale ids, and every later `faiss.index_factory` (std::regex) crashes with a
  segmentation fault (*measured*, usearch 2.26.6 + faiss-cpu 1.15.1, even for "Flat"). faiss is
  therefore imported first: a run's process imports every family of its scenario, in any order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import faiss  # noqa: F401 - must be loaded before usearch, see the module docstring
import numpy as np
from usearch.index import Index, MetricKind

from annbench.adapters.base import Adapter, Capabilities, Metric, Param, Support, as_ids, as_vectors, check_k, pad_ids
from annbench.errors import ConfigError

DTYPES = ("f32", "f16", "bf16", "i8", "f64")


class Usearch(Adapter):
    """usearch HNSW graph; delete is a logical remove (a tombstone a later add reuses), update is remove + add."""

    name = "usearch"
    capabilities = Capabilities(add=Support.NATIVE, delete=Support.TOMBSTONE, update=Support.NATIVE)
    build_params = (
        Param("M", int, 16, "graph connections per node (usearch 'connectivity')", min=2, max=512),
        Param("ef_construction", int, 128, "search depth while inserting (usearch 'expansion_add')", min=1),
        Param("dtype", str, "f32", "storage scalar type; usearch's own default would be bf16", choices=DTYPES),
    )
    search_params = (
        Param("ef", int, 64, "search depth at query time (usearch 'expansion_search'; raised to k if lower)", min=1),
    )

    def __init__(self, metric: Metric | str, dim: int, threads: int = 1, **build_params: Any) -> None:
        self.index: Index | None = None
        super().__init__(metric, dim, threads, **build_params)

    def _require_built(self) -> Index:
        if self.index is None:
            raise ConfigError(f"{self.name}: build() must be called first")
        return self.index

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        ids = as_ids(ids, self.name, len(x))
        # Cosine arrives L2-normalised: inner product ranks like cosine without usearch re-normalising.
        metric = MetricKind.IP if self.metric is Metric.COSINE else MetricKind.L2sq
        self.index = Index(ndim=self.dim, metric=metric, dtype=self.params["dtype"],
                           connectivity=self.params["M"], expansion_add=self.params["ef_construction"],
                           expansion_search=self.search_settings["ef"], multi=False)
        if len(x):
            self.index.add(ids, x, threads=self.threads)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        index = self._require_built()
        x = as_vectors(vectors, self.dim, self.name)
        ids = as_ids(ids, self.name, len(x))
        if len(x):
            index.add(ids, x, threads=self.threads)

    def delete(self, ids: np.ndarray) -> None:
        index = self._require_built()
        ids = as_ids(ids, self.name)
        if len(ids):
            index.remove(ids, threads=self.threads)  # unknown keys count 0 removed; no error

    def update(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        index = self._require_built()
        x = as_vectors(vectors, self.dim, self.name)
        ids = as_ids(ids, self.name, len(x))
        if len(x):
            index.remove(ids, threads=self.threads)  # add refuses a present key: remove first
            index.add(ids, x, threads=self.threads)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        index = self._require_built()
        k = check_k(k, self.name)
        q = as_vectors(queries, self.dim, self.name)
        if len(q) == 0 or index.size == 0:
            return np.full((len(q), k), -1, dtype=np.int64)
        index.expansion_search = max(self.search_settings["ef"], k)
        found = index.search(q, k, threads=self.threads)
        if len(q) == 1:  # a single row comes back as Matches holding only the real keys
            return pad_ids([np.asarray(found.keys, dtype=np.int64)], k)
        keys = np.asarray(found.keys, dtype=np.int64)
        counts = np.asarray(found.counts)
        keys[np.arange(k)[None, :] >= counts[:, None]] = -1  # padding is key 0, a real id: use counts
        return keys

    def save(self, path: Path) -> int:
        index = self._require_built()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        file = folder / "index.usearch"
        index.save(str(file))  # removed nodes are saved too: the file does not shrink on delete
        return os.path.getsize(file)
