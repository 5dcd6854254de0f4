"""annoy adapter: a forest of random-projection trees, static once built.

Owns the id ↔ item-position mapping (annoy items are dense positions 0..n-1) and the save format (the
annoy file plus the id table). Library traps handled here:

- `add_item` after `build` is accepted silently, but the item is in no tree, so it is (almost) never
  returned; worse, its storage slot is where `build` put the forest's split nodes, so a late item
  overwrites one and silently changes answers for items already indexed (*measured*, annoy 1.17.3:
  50 late adds to a 1,000-item, 5-tree index changed 29% of top-10 answers). There is no delete and no
  update. The adapter therefore declares add, delete and update UNSUPPORTED (the base class raises
  CapabilityError), and the harness keeps annoy fresh with a policy (rebuild + fresh buffer).
- Cosine is annoy's 'angular' metric (sqrt(2 - 2·cos)) on the vectors annbench already normalised,
  which ranks exactly like inner product; L2 is 'euclidean'.
- `save` unloads the in-memory index and mmaps the written file in its place, so the adapter keeps
  working after a save (pages come back in as queried).
- Results per query may be shorter than k (small search_k, small index): they are padded with -1.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from annoy import AnnoyIndex

from annbench.adapters.base import STATIC, Adapter, Metric, Param, Safety, as_ids, as_vectors, check_k, pad_ids
from annbench.errors import ConfigError


class Annoy(Adapter):
    """annoy random-projection forest; static (add/delete/update need a rebuild)."""

    distributions = ("annoy",)

    name = "annoy"
    capabilities = STATIC
    # The forest is immutable once built; annoy never changes after build (writes go to the rebuild
    # policy's buffer, which is the policy's own state).
    concurrency = Safety(True, False, "annoy: get_nns_by_vector only reads the built forest; the index never changes "
                         "after build (the rebuild policy's buffer is guarded instead).")
    build_params = (
        Param("n_trees", int, 50, "trees in the forest: more = better recall, bigger index", min=1),
        Param("seed", int, 42, "seed of the tree splits", min=0),
    )
    search_params = (
        Param("search_k", int, -1, "nodes inspected per query; -1 = annoy's default n_trees·k", min=-1),
    )

    def __init__(self, metric: Metric | str, dim: int, threads: int = 1, **build_params: Any) -> None:
        self.index: AnnoyIndex | None = None
        self._pos_ids = np.empty(0, dtype=np.int64)
        super().__init__(metric, dim, threads, **build_params)

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        # a private copy: it maps positions to ids
        ids = as_ids(np.array(ids, dtype=np.int64), self.name, len(x))
        index = AnnoyIndex(self.dim, "angular" if self.metric is Metric.COSINE else "euclidean")
        index.set_seed(self.params["seed"])
        for pos in range(len(x)):
            index.add_item(pos, x[pos])  # copies the row into annoy's own storage
        index.build(self.params["n_trees"], n_jobs=self.threads)
        self.index = index
        self._pos_ids = ids

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.prepare_search(k)(as_vectors(queries, self.dim, self.name))

    def prepare_search(self, k: int) -> Callable[[np.ndarray], np.ndarray]:
        if self.index is None:
            raise ConfigError(f"{self.name}: build() must be called first")
        k = check_k(k, self.name)
        nns, search_k, ids = self.index.get_nns_by_vector, self.search_settings["search_k"], self._pos_ids

        def call(q: np.ndarray) -> np.ndarray:
            if len(q) == 1:  # annoy answers one vector at a time: a single query is one call and one gather
                got = nns(q[0], k, search_k)
                if len(got) == k:
                    return ids.take(got)[None, :]
                return pad_ids([ids[np.asarray(got, dtype=np.int64)]], k)
            rows = [nns(row, k, search_k) for row in q]
            if all(len(r) == k for r in rows):  # full answers: one conversion and one gather for the batch
                return ids[np.asarray(rows, dtype=np.int64).reshape(len(q), k)]
            return pad_ids([ids[np.asarray(r, dtype=np.int64)] for r in rows], k)

        return call

    def save(self, path: Path) -> int:
        if self.index is None:
            raise ConfigError(f"{self.name}: build() must be called first")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        tree_file, ids_file = folder / "index.annoy", folder / "ids.npy"
        self.index.save(str(tree_file))
        np.save(ids_file, self._pos_ids)
        return os.path.getsize(tree_file) + os.path.getsize(ids_file)
