"""scann adapter: a partitioning tree + anisotropic hashing + exact reordering, mutable through docids.

Owns the scann config built from declared parameters, the int64 id ↔ docid mapping and the small-data
clamps. Library traps handled here:

- Only `scann_ops_pybind` is used, so TensorFlow is never imported.
- `upsert` and `delete` work only on a searcher built with `build(docids=[...])`; docids are strings.
  The adapter keeps an int64 array mirroring scann's datapoint order (scann's Python wrapper fills a
  hole left by `delete` with the *last* datapoint, and so does this mirror), so a search maps raw
  datapoint indices to ids in numpy instead of building q×k strings.
- When fewer than k neighbours exist, scann pads a row with datapoint index 0 and a NaN distance,
  i.e. a real, wrong id; padding is recognised by the NaN and turned into -1.
- Partitioning fails with fewer points than leaves, and asymmetric hashing with fewer than 16 points
  (its codebook size): the automatic leaf count is clamped to n/_MIN_LEAF_SIZE and tiny indexes
  are scored by brute force.
- The builder's default k-means initialisation (RANDOM_INITIALIZATION) ignores `clustering_seed`, so
  two builds of the same data differ; k-means++ is used instead. For cosine the partitioning is
  spherical, so leaf assignment (by L2) and leaf choice at query time (by dot product) agree.
- `pre_reorder_num_neighbors` below k silently truncates the answer: it is raised to k.
- scann's C++ code logs through absl to stderr (training notices); that is the library's output,
  not the adapter's, and is left alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scann.scann_ops.py import scann_ops_pybind

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
    folder_bytes,
)
from annbench.errors import ConfigError, DataError

_MIN_LEAF_SIZE = 50  # scann's default min_partition_size; smaller leaves give empty partitions
_MIN_AH_POINTS = 256  # below this, asymmetric hashing (16 centroids per block) is not worth training


def _answers(idx: np.ndarray, dist: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Ids of scann's answers (datapoint indices `idx`, q × ≤ k): padding (a NaN distance) and an index past
    the live datapoints read -1, and short rows are padded to k."""
    idx = np.asarray(idx, dtype=np.int64)
    if idx.shape[1] == k and idx.max() < len(ids) and not np.isnan(dist).any():
        return ids[idx]  # full, valid answers: one gather, no masking
    valid = ~np.isnan(np.asarray(dist)) & (idx < len(ids))
    out = np.full((len(idx), k), -1, dtype=np.int64)
    cols = min(k, idx.shape[1])
    out[:, :cols] = np.where(valid[:, :cols], ids[np.where(valid, idx, 0)][:, :cols], -1)
    return out


class Scann(Adapter):
    """scann tree-AH with reordering; built with docids so upsert and delete really change the index."""

    distributions = ("scann",)

    name = "scann"
    capabilities = Capabilities(add=Support.NATIVE, delete=Support.NATIVE, update=Support.NATIVE)
    # Not documented. Checked here (scann 1.4.2): 2 threads each sending the same 10k single queries twice
    # to a 20k × 64 tree-AH index got every answer identical to a one-thread run, no crash (hnswlib,
    # faiss-ivf and annoy passed the same check). upsert/delete beside a search: not verified, so unsafe.
    concurrency = Safety(True, False, "not documented; concurrent searches checked here (2 threads × 20k single "
                         "queries, answers identical to one thread); upsert and delete beside a search not "
                         "verified, so treated as unsafe.")
    build_params = (
        Param("num_leaves", int, 0, "partitions; 0 = sqrt(n) at build, capped at n/50", min=0),
        Param("dims_per_block", int, 2, "dimensions per asymmetric-hashing block (fewer = finer)", min=1),
        Param("anisotropic_threshold", float, 0.2,
              "anisotropic quantization threshold (cosine only; l2 uses plain quantization)", min=0.0),
        Param("training_sample", int, 100_000, "points sampled to train partitions and codebooks", min=1),
    )
    search_params = (
        Param("leaves_to_search", int, 10, "partitions scanned per query (capped at num_leaves)", min=1),
        Param("reorder", int, 100, "candidates re-scored exactly (pre_reorder_num_neighbors; ≥ k)", min=1),
    )

    def __init__(self, metric: Metric | str, dim: int, threads: int = 1, **build_params: Any) -> None:
        self.searcher: Any = None
        self.num_leaves = 0  # the value actually used, known after build (0 = brute force)
        self._sample = 0  # training sample the build used (min(training_sample, n))
        self._pos_ids = np.empty(0, dtype=np.int64)  # scann datapoint index → id
        self._size = 0
        super().__init__(metric, dim, threads, **build_params)

    def _apply_threads(self) -> None:
        if self.searcher is not None:
            self.searcher.set_num_threads(self.threads)

    def _require_built(self) -> Any:
        if self.searcher is None:
            raise ConfigError(f"{self.name}: build() must be called first")
        return self.searcher

    def _choose_leaves(self, n: int) -> int:
        leaves = self.params["num_leaves"]
        if leaves == 0:
            return max(1, min(round(math.sqrt(n)), n // _MIN_LEAF_SIZE))
        if leaves > n:
            raise ConfigError(f"{self.name}: num_leaves={leaves} needs at least that many build vectors, got {n}")
        return leaves

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        ids = as_ids(ids, self.name, len(x))
        if len(x) == 0:
            raise ConfigError(f"{self.name}: build needs at least one vector")
        cosine = self.metric is Metric.COSINE
        # Cosine arrives L2-normalised, so scann's dot product ranks like cosine.
        builder = scann_ops_pybind.builder(x, 10, "dot_product" if cosine else "squared_l2")
        builder.set_n_training_threads(self.threads)
        sample = min(self.params["training_sample"], len(x))
        self._sample = sample
        if len(x) >= _MIN_AH_POINTS:
            self.num_leaves = self._choose_leaves(len(x))
            builder = builder.tree(
                num_leaves=self.num_leaves,
                num_leaves_to_search=self._leaves_to_search(),
                training_sample_size=sample,
                # Unit-norm centroids: assigning by L2 (how scann files datapoints) and choosing leaves
                # by dot product (how it routes queries) then agree; otherwise some upserted vectors
                # land in leaves their own query never visits.
                spherical=cosine,
                # The builder's default random initialisation is unseeded: recall changed from build to
                # build (.86–.95 on the same data). k-means++ initialisation is deterministic.
                random_init=False,
            ).score_ah(
                self.params["dims_per_block"],
                anisotropic_quantization_threshold=self.params["anisotropic_threshold"] if cosine else float("nan"),
                training_sample_size=sample,
            ).reorder(self.search_settings["reorder"])
        else:
            self.num_leaves = 0
            builder = builder.score_brute_force()
        try:
            searcher = builder.build(docids=[str(i) for i in ids.tolist()])
        except (RuntimeError, ValueError) as e:
            raise ConfigError(f"{self.name}: scann rejected the configuration: {e}") from None
        self.searcher = searcher
        self._pos_ids = ids.copy()
        self._size = len(ids)
        self._apply_threads()

    def _leaves_to_search(self) -> int:
        if self.num_leaves == 0:
            return -1
        return min(self.search_settings["leaves_to_search"], self.num_leaves)

    def _grow(self, extra: int) -> None:
        if self._size + extra > len(self._pos_ids):
            grown = np.empty(max(self._size + extra, 2 * len(self._pos_ids)), dtype=np.int64)
            grown[: self._size] = self._pos_ids[: self._size]
            self._pos_ids = grown

    def _upsert(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        searcher = self._require_built()
        x = as_vectors(vectors, self.dim, self.name)
        ids = as_ids(ids, self.name, len(x))
        if len(ids) == 0:
            return
        if len(np.unique(ids)) != len(ids):
            raise DataError(f"{self.name}: duplicate ids in one add/update batch")
        docids = [str(i) for i in ids.tolist()]
        known = searcher.docid_to_id
        new = [int(d) for d in docids if d not in known]
        # Mirror the wrapper: known docids keep their datapoint index, new ones are appended in order.
        self._grow(len(new))
        self._pos_ids[self._size : self._size + len(new)] = new
        self._size += len(new)
        searcher.upsert(docids, x, batch_size=max(1, min(len(x), 256)))

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self._upsert(vectors, ids)

    def update(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self._upsert(vectors, ids)

    def delete(self, ids: np.ndarray) -> None:
        searcher = self._require_built()
        known = searcher.docid_to_id
        docids = [d for d in dict.fromkeys(str(i) for i in as_ids(ids, self.name).tolist()) if d in known]
        if not docids:
            return
        # The wrapper moves the last datapoint into each hole, one docid at a time; mirror that here.
        # `known` is only updated by the wrapper afterwards, so positions moved meanwhile are tracked.
        moved: dict[int, int] = {}
        for d in docids:
            i = int(d)
            hole, last = moved.get(i, known[d]), self._size - 1
            tail_id = int(self._pos_ids[last])
            self._pos_ids[hole] = tail_id
            moved[tail_id] = hole
            self._size -= 1
        searcher.delete(docids)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.prepare_search(k)(as_vectors(queries, self.dim, self.name))

    def prepare_search(self, k: int) -> Callable[[np.ndarray], np.ndarray]:
        searcher = self._require_built()
        k = check_k(k, self.name)
        size = self._size
        if size == 0:
            return lambda q: np.full((len(q), k), -1, dtype=np.int64)
        pre = max(self.search_settings["reorder"], k) if self.num_leaves else -1
        leaves, parallel = self._leaves_to_search(), self.threads > 1
        # The raw pybind searcher: the wrapper would turn every index into a docid string first.
        raw = searcher.searcher
        one, batched = raw.search, raw.search_batched
        ids = self._pos_ids[:size]  # datapoint index → id; `take` refuses an index past the live datapoints

        def call(q: np.ndarray) -> np.ndarray:
            if len(q) == 1:  # the one-query entry point: a timed single query pays no batch set-up
                idx, dist = one(q[0], k, pre, leaves)
                # scann pads a short answer at its end with NaN distances: a full, valid answer is one gather
                if len(idx) == k and dist[-1] == dist[-1]:
                    try:
                        return ids.take(idx)[None, :]
                    except IndexError:
                        pass
                return _answers(idx[None, :], dist[None, :], ids, k)
            if len(q) == 0:
                return np.full((0, k), -1, dtype=np.int64)
            idx, dist = batched(q, k, pre, leaves, parallel, 256)
            return _answers(idx, dist, ids, k)

        return call

    def resolved_params(self) -> dict[str, Any]:
        # num_leaves: 0 is a size rule (√n, capped at n/50); after build 0 means the index is scored by brute
        # force (too few points for a tree). training_sample is capped at the build size.
        if self.searcher is None:
            return dict(self.params)
        return {**self.params, "num_leaves": self.num_leaves, "training_sample": self._sample}

    def docids(self) -> np.ndarray:
        """Ids in scann's datapoint order, as the adapter believes them to be (for consistency checks)."""
        return self._pos_ids[: self._size].copy()

    def save(self, path: Path) -> int:
        searcher = self._require_built()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        searcher.serialize(str(folder))  # writes the assets and scann_docids.pkl
        return folder_bytes(folder)
