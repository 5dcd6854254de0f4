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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss  # noqa: F401 - must be loaded before usearch, see the module docstring
import numpy as np
from usearch.index import Index, MetricKind

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
)
from annbench.errors import ConfigError

DTYPES = ("f32", "f16", "bf16", "i8", "f64")


class Usearch(Adapter):
    """usearch HNSW graph; delete is a logical remove (a tombstone a later add reuses), update is remove + add."""

    distributions = ("usearch",)

    name = "usearch"
    capabilities = Capabilities(add=Support.NATIVE, delete=Support.TOMBSTONE, update=Support.NATIVE)
    # Searches: usearch 2.26.6's Index.search docstring says of `threads`: "Use 1 with an outer worker pool",
    # and the C++ README calls add and search thread-safe. Checked here (tests/test_adapters.py repeats
    # it, smaller): 2 threads each sending the same 5,000 single queries to a 20k × 64 index (f32, and
    # f16 and i8) got every answer identical to one thread, no crash. A search sets nothing on the index
    # (expansion_search is set by set_search_params). Writes: an add (and the update's remove + add) may
    # grow the index, and usearch's try_reserve says "No update or search operations should be running
    # during this operation"; remove beside a search is undocumented.
    concurrency = Safety(True, False, "usearch 2.26.6: Index.search docstring, threads 'Use 1 with an outer worker "
                         "pool'; checked here: 2 threads × the same 5,000 single queries on a 20k × 64 index "
                         "(f32, f16, i8), answers identical to one thread, no crash. Writes beside a search: an "
                         "add may grow the index (try_reserve: 'No update or search operations should be running "
                         "during this operation'), remove undocumented, so treated as unsafe.")
    build_params = (
        Param("M", int, 16, "graph connections per node (usearch 'connectivity')", min=2, max=512),
        Param("ef_construction", int, 128, "search depth while inserting (usearch 'expansion_add')", min=1),
        Param("dtype", str, "f32", "storage scalar type; usearch's own default would be bf16", choices=DTYPES),
    )
    precisions = {"float16": {"dtype": "f16"}, "int8": {"dtype": "i8"}}
    search_params = (
        Param("ef", int, 64, "search depth at query time (usearch 'expansion_search'; usearch raises it to k if lower)",
              min=1),
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

    def _apply_search_params(self) -> None:
        if self.index is not None:
            self.index.expansion_search = self.search_settings["ef"]

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
        return self.prepare_search(k)(as_vectors(queries, self.dim, self.name))

    def prepare_search(self, k: int) -> Callable[[np.ndarray], np.ndarray]:
        index = self._require_built()
        k = check_k(k, self.name)
        if index.size == 0:
            return lambda q: np.full((len(q), k), -1, dtype=np.int64)
        # expansion_search is set by _apply_search_params, never here: a search only reads the index, so
        # client threads can share it (usearch itself searches with max(expansion_search, k)).
        search, threads = index.search, self.threads
        columns = np.arange(k)[None, :]

        def call(q: np.ndarray) -> np.ndarray:
            found = search(q, k, threads=threads)
            if len(q) == 1:  # a single row comes back as Matches holding only the real keys
                keys = found.keys
                if len(keys) == k:
                    return keys.astype(np.int64).reshape(1, k)
                return pad_ids([keys.astype(np.int64)], k)
            keys = found.keys.astype(np.int64)
            keys[columns >= found.counts[:, None]] = -1  # padding is key 0, a real id: use counts
            return keys

        return call

    def library_bytes(self) -> dict[str, Any] | None:
        if self.index is None:
            return None
        # usearch's own count: its arenas for nodes (vectors + links, at capacity) and its lookup tables;
        # removed keys keep their slots, so it does not shrink on delete.
        return {"bytes": int(self.index.memory_usage),
                "what": "usearch Index.memory_usage (node arenas at capacity: vectors + graph links, "
                        "plus key lookup; removed nodes keep their slots)"}

    def save(self, path: Path) -> int:
        index = self._require_built()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        file = folder / "index.usearch"
        index.save(str(file))  # removed nodes are saved too: the file does not shrink on delete
        return os.path.getsize(file)
