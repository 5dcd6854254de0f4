"""faiss adapters: exact Flat, IVF (Flat / PQ / SQ encodings) and HNSW.

Owns the translation from annbench's declared parameters to faiss indexes, and the id bookkeeping each
faiss index needs. Library traps handled here:

- IVF indexes store ids in their inverted lists, so they take `add_with_ids` / `remove_ids` directly.
  Wrapping an IVF in `IndexIDMap2` (the obvious move) makes `remove_ids` abort the process on an
  assertion or silently return wrong ids afterwards: `FaissIVF` never wraps.
- IVF training needs enough points per list (faiss wants ≥ 39 per centroid and prints a warning to
  stderr otherwise): the automatic `nlist` is clamped to that, training uses a bounded sample, and the
  clustering warnings are kept off stderr because adapters never print.
- `IndexHNSWFlat` has no `remove_ids` ("not implemented") and labels its vectors by insertion
  position. `FaissHNSW` keeps its own position → id table and tombstones deletes: a search passes an
  `IDSelectorNot(IDSelectorBatch(dead positions))`, whose Python objects are kept alive here because
  faiss holds only raw pointers to them.
- `index_factory` enables polysemous training for IVF-PQ, slow and useless without polysemous search:
  it is switched off so build time measures the index, not an unused extra.
- `faiss.downcast_index` returns a proxy that does not own the index: the owning proxy from
  `index_factory` is the one kept.
- faiss threads are a process-wide OpenMP setting (`omp_set_num_threads`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
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
)
from annbench.errors import ConfigError

# faiss's own rule of thumb (Clustering.min_points_per_centroid) for a well-trained centroid.
_POINTS_PER_LIST = 39
# faiss subsamples k-means input above this many points per centroid anyway; sampling first saves copying.
_SAMPLE_PER_LIST = 256
_ENCODING = re.compile(r"^(Flat|PQ(?P<m>[1-9]\d*)(x(?P<nbits>[1-9]\d*))?|SQ(4|6|8|fp16))$")


_FAISS = ("faiss wiki, 'Threads and asynchronous calls': CPU indexes are thread-safe for concurrent searches and "
          "other calls that do not change the index; calls that change it need mutual exclusion. The SWIG "
          "wrappers release the GIL.")


def _flat_bytes(index: faiss.Index) -> int:
    """Bytes of a flat (or any `IndexFlatCodes`) index's code array: ntotal · code_size."""
    return int(faiss.downcast_index(index).codes.size())


def _selector(ids: np.ndarray) -> faiss.IDSelectorBatch:
    # IDSelectorBatch copies the ids into its own hash set, so `ids` need not outlive it.
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    return faiss.IDSelectorBatch(len(ids), faiss.swig_ptr(ids))


def _faiss_metric(metric: Metric) -> int:
    # Cosine arrives L2-normalised, so inner product ranks exactly like cosine.
    return faiss.METRIC_INNER_PRODUCT if metric is Metric.COSINE else faiss.METRIC_L2


def _write(index: faiss.Index, folder: Path, extra: dict[str, np.ndarray] | None = None) -> int:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "index.faiss"]
    faiss.write_index(index, str(files[0]))
    for name, arr in (extra or {}).items():
        files.append(folder / f"{name}.npy")
        np.save(files[-1], arr)
    return sum(os.path.getsize(f) for f in files)


class _FaissBase(Adapter):
    """Shared faiss plumbing: threads, input checks, search result conversion."""

    distributions = ("faiss-cpu",)

    def _apply_threads(self) -> None:
        faiss.omp_set_num_threads(self.threads)

    def _require_built(self) -> None:
        if getattr(self, "index", None) is None:
            raise ConfigError(f"{self.name}: build() must be called first")


class _FaissIdIndex(_FaissBase):
    """A faiss index that stores the caller's ids itself (`add_with_ids` / `remove_ids`).

    Subclasses set `self.index` in build; add, delete, update (delete + add), search and save are
    shared. An update is not atomic: the ids are removed, then added again with their new vectors.
    """

    index: faiss.Index | None

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self._require_built()
        x = as_vectors(vectors, self.dim, self.name)
        self.index.add_with_ids(x, as_ids(ids, self.name, len(x)))

    def delete(self, ids: np.ndarray) -> None:
        self._require_built()
        ids = as_ids(ids, self.name)
        if len(ids):
            self.index.remove_ids(_selector(ids))

    def update(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        ids = as_ids(ids, self.name, len(x))
        self.delete(ids)
        self.add(x, ids)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.prepare_search(k)(as_vectors(queries, self.dim, self.name))

    def prepare_search(self, k: int) -> Callable[[np.ndarray], np.ndarray]:
        self._require_built()
        k = check_k(k, self.name)
        search = self.index.search  # the ids are the caller's, int64, -1 padded: faiss's answer is ours

        def call(q: np.ndarray) -> np.ndarray:
            return search(q, k)[1]

        return call

    def save(self, path: Path) -> int:
        self._require_built()
        return _write(self.index, Path(path))


class FaissFlat(_FaissIdIndex):
    """Exact search: IndexIDMap2(IndexFlatL2 / IndexFlatIP). The recall = 1 reference."""

    name = "faiss-flat"
    capabilities = Capabilities(add=Support.NATIVE, delete=Support.NATIVE, update=Support.NATIVE)
    concurrency = Safety(True, False, _FAISS)

    def __init__(self, metric: Metric | str, dim: int, threads: int = 1, **build_params: Any) -> None:
        self.index: faiss.Index | None = None
        super().__init__(metric, dim, threads, **build_params)

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        ids = as_ids(ids, self.name, len(x))
        flat = faiss.IndexFlat(self.dim, _faiss_metric(self.metric))
        self.index = faiss.IndexIDMap2(flat)
        # The IDMap holds a raw pointer to `flat`; this keeps the Python proxy (and the C++ object) alive.
        self._flat = flat
        self.index.add_with_ids(x, ids)

    def library_bytes(self) -> dict[str, Any] | None:
        if self.index is None:
            return None
        n = int(self.index.ntotal)
        # IndexIDMap2 keeps the ids twice: id_map (a vector of int64) and rev_map (an unordered_map
        # id → position, 16 bytes of payload per entry; its buckets and nodes are not counted).
        return {"bytes": _flat_bytes(self._flat) + n * 8 + n * 16,
                "what": "faiss: flat codes (ntotal·d·4) + IndexIDMap2 id_map (ntotal·8) + rev_map payload "
                        "(ntotal·16; hash-table overhead not counted)"}


class FaissIVF(_FaissIdIndex):
    """Inverted file index (`IVF{nlist},{encoding}`), ids stored in the lists; never wrapped in an IDMap."""

    name = "faiss-ivf"
    capabilities = Capabilities(add=Support.NATIVE, delete=Support.NATIVE, update=Support.NATIVE)
    concurrency = Safety(True, False, _FAISS + " (add_with_ids/remove_ids resize the inverted lists a search scans)")
    build_params = (
        Param("nlist", int, 0, "number of inverted lists; 0 = 4·sqrt(n) at build, capped at n/39", min=0),
        Param("encoding", str, "Flat", "vector codec in the lists: Flat, PQ{m}, PQ{m}x{nbits}, SQ4/6/8/fp16"),
        Param("seed", int, 1234, "seed of the training sample and k-means", min=0),
    )
    precisions = {"float16": {"encoding": "SQfp16"}, "int8": {"encoding": "SQ8"}}
    search_params = (Param("nprobe", int, 8, "inverted lists visited per query", min=1),)

    def __init__(self, metric: Metric | str, dim: int, threads: int = 1, **build_params: Any) -> None:
        self.index: faiss.IndexIVF | None = None
        super().__init__(metric, dim, threads, **build_params)
        enc = _ENCODING.match(self.params["encoding"])
        if enc is None:
            raise ConfigError(
                f"{self.name}: parameter 'encoding' is {self.params['encoding']!r}; "
                "allowed: Flat, PQ{m}, PQ{m}x{nbits}, SQ4, SQ6, SQ8, SQfp16"
            )
        if enc["m"] is not None:
            m, nbits = int(enc["m"]), int(enc["nbits"] or 8)
            if self.dim % m:
                raise ConfigError(f"{self.name}: encoding {self.params['encoding']}: m={m} must divide dim={dim}")
            if not 1 <= nbits <= 16:
                raise ConfigError(f"{self.name}: encoding {self.params['encoding']}: nbits must be in 1..16")
            self._pq_centroids = 1 << nbits
        else:
            self._pq_centroids = 0
        self.nlist = 0  # the value actually used, known after build

    def _choose_nlist(self, n: int) -> int:
        nlist = self.params["nlist"]
        if nlist == 0:
            nlist = min(int(round(4 * np.sqrt(n))), n // _POINTS_PER_LIST)
            return max(1, nlist)
        if nlist > n:
            raise ConfigError(f"{self.name}: nlist={nlist} needs at least that many build vectors, got {n}")
        return nlist

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        ids = as_ids(ids, self.name, len(x))
        if len(x) == 0:
            raise ConfigError(f"{self.name}: an IVF index must be trained; build needs at least one vector")
        if len(x) < self._pq_centroids:
            raise ConfigError(
                f"{self.name}: encoding {self.params['encoding']} trains {self._pq_centroids} centroids "
                f"per sub-quantizer; build needs at least that many vectors, got {len(x)}"
            )
        self.nlist = self._choose_nlist(len(x))
        index = faiss.index_factory(
            self.dim, f"IVF{self.nlist},{self.params['encoding']}", _faiss_metric(self.metric)
        )
        # index_factory already returns the concrete IndexIVF* proxy, which owns the C++ object. Never
        # replace it by faiss.downcast_index(): that proxy does not own, and once the factory's proxy
        # is collected the index is freed under it (garbage `d`, then assertion failures or crashes).
        # Fewer points than faiss's per-centroid rule is a deliberate choice here (small n, explicit
        # nlist, PQ codebooks); faiss would print a warning to stderr, and adapters never print.
        index.cp.min_points_per_centroid = 1
        index.cp.seed = self.params["seed"]
        if hasattr(index, "pq"):
            index.pq.cp.min_points_per_centroid = 1
            index.pq.cp.seed = self.params["seed"]
            # index_factory turns on polysemous training for IVF-PQ: a simulated annealing that only
            # serves polysemous filtering at search (polysemous_ht, unused here) and made training
            # 30× slower on 2 k vectors (×300 with 2 busy OpenMP threads), inflating build time.
            index.do_polysemous_training = False
        limit = _SAMPLE_PER_LIST * max(self.nlist, self._pq_centroids)
        if len(x) > limit:
            rng = np.random.default_rng(self.params["seed"])
            sample = x[np.sort(rng.choice(len(x), limit, replace=False))]
        else:
            sample = x
        index.train(sample)
        _add_to_reserved_lists(index, x, ids)
        self.index = index
        self._apply_search_params()

    def _apply_search_params(self) -> None:
        if self.index is not None:
            self.index.nprobe = min(self.search_settings["nprobe"], self.index.nlist)

    def resolved_params(self) -> dict[str, Any]:
        # nlist: 0 is a size rule; the build recorded the number it gave (self.nlist, fixed until the next build)
        return {**self.params, "nlist": self.nlist} if self.index is not None else dict(self.params)

    def library_bytes(self) -> dict[str, Any] | None:
        index = self.index
        if index is None:
            return None
        invlists = index.invlists
        # Each stored vector costs its code plus its int64 id in the inverted lists (ArrayInvertedLists).
        entries = sum(invlists.list_size(i) for i in range(index.nlist))
        listed = entries * (index.code_size + 8)
        centroids = _flat_bytes(index.quantizer)  # nlist · d · 4
        parts = [f"inverted lists Σ list_size·(code_size {index.code_size} + 8-byte id)",
                 "coarse centroids nlist·d·4"]
        extra = 0
        if hasattr(index, "pq"):
            pq = index.pq
            extra += pq.M * pq.ksub * pq.dsub * 4  # the product quantizer's codebooks
            parts.append("PQ codebooks M·ksub·dsub·4")
            table = index.precomputed_table.size() * 4
            if table:
                # faiss precomputes, per list, the query-independent term of the L2 distance (nlist·M·ksub
                # floats) when use_precomputed_table is on, as it is by default for IVF-PQ under L2.
                extra += table
                parts.append(f"precomputed L2 table nlist·M·ksub·4 = {table} bytes")
        elif hasattr(index, "sq"):
            extra += index.sq.trained.size() * 4  # the scalar quantizer's ranges
            parts.append("SQ ranges")
        return {"bytes": int(listed + centroids + extra), "what": "faiss: " + " + ".join(parts)}


def _add_to_reserved_lists(index: Any, x: np.ndarray, ids: np.ndarray) -> None:
    """`add_with_ids` for a fresh IVF index, with each inverted list's storage reserved at its final size.

    Adding entry by entry grows each list's std::vector by doubling: measured at 100k × 128, IVF1265,Flat
    held 61.7 MiB for 50.2 MiB of codes, ids and centroids (+23 % of slack), where the same index loaded
    from disk holds 50. A production build that knows its lists reserves them; this does so by assigning
    once, resizing each list to its count and back to 0 (a vector keeps its capacity when it shrinks),
    then adding with the assignment faiss would compute itself. Same lists in the same order, so the
    same answers. Later inserts grow the lists as faiss does; the last day's memory shows that slack.
    """
    _, assign = index.quantizer.search(x, 1)
    assign = np.ascontiguousarray(assign.ravel(), dtype=np.int64)
    counts = np.bincount(assign, minlength=index.nlist)
    invlists = index.invlists
    for list_no in np.flatnonzero(counts):
        invlists.resize(int(list_no), int(counts[list_no]))
        invlists.resize(int(list_no), 0)
    index.add_core(len(x), faiss.swig_ptr(x), faiss.swig_ptr(ids), faiss.swig_ptr(assign))


class FaissHNSW(_FaissBase):
    """IndexHNSWFlat; deletes and updates are tombstones filtered at search (faiss HNSW cannot remove)."""

    name = "faiss-hnsw"
    capabilities = Capabilities(add=Support.NATIVE, delete=Support.TOMBSTONE, update=Support.TOMBSTONE)
    concurrency = Safety(True, False, _FAISS + " The adapter's tombstone set, read by every search, is Python state "
                         "that a delete changes.")
    build_params = (
        Param("M", int, 32, "graph neighbours per node (layer 0 has 2·M)", min=2, max=512),
        Param("efConstruction", int, 40, "candidate list size while inserting", min=1),
    )
    search_params = (Param("efSearch", int, 64, "candidate list size at search (raised to k if lower)", min=1),)

    def __init__(self, metric: Metric | str, dim: int, threads: int = 1, **build_params: Any) -> None:
        self.index: faiss.IndexHNSWFlat | None = None
        super().__init__(metric, dim, threads, **build_params)
        # HNSW label (insertion position) → external id, and one slot more holding -1 (see prepare_search)
        self._pos_ids = np.full(1, -1, dtype=np.int64)
        self._size = 0
        self._pos_of: dict[int, int] = {}  # live external id → position
        self._dead: set[int] = set()  # tombstoned positions
        self._filter: tuple[Any, Any] | None = None  # (IDSelectorBatch, IDSelectorNot), rebuilt lazily

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        ids = as_ids(ids, self.name, len(x))
        self.index = faiss.IndexHNSWFlat(self.dim, self.params["M"], _faiss_metric(self.metric))
        self.index.hnsw.efConstruction = self.params["efConstruction"]
        self._pos_ids = np.full(max(16, len(x) + 1), -1, dtype=np.int64)
        self._size = 0
        self._pos_of = {}
        self._dead = set()
        self._filter = None
        self._append(x, ids)

    def _append(self, x: np.ndarray, ids: np.ndarray) -> None:
        n = len(x)
        if self._size + n + 1 > len(self._pos_ids):  # + 1: the slot after the last position holds -1
            grown = np.empty(max(self._size + n + 1, 2 * len(self._pos_ids)), dtype=np.int64)
            grown[: self._size] = self._pos_ids[: self._size]
            self._pos_ids = grown
        start = self._size
        self.index.add(x)
        self._pos_ids[start : start + n] = ids
        self._size += n
        self._pos_ids[self._size] = -1
        for pos, i in enumerate(ids.tolist(), start):
            old = self._pos_of.get(i)
            if old is not None:  # the id had a vector already: its old position becomes a tombstone
                self._kill(old)
            self._pos_of[i] = pos

    def _kill(self, pos: int) -> None:
        self._dead.add(pos)
        self._filter = None

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self._require_built()
        x = as_vectors(vectors, self.dim, self.name)
        self._append(x, as_ids(ids, self.name, len(x)))

    def delete(self, ids: np.ndarray) -> None:
        self._require_built()
        ids = as_ids(ids, self.name)
        for i in ids.tolist():
            pos = self._pos_of.pop(i, None)
            if pos is not None:
                self._kill(pos)

    def update(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        # Insert at a new position, tombstone the old one (done by _append when the id is known).
        self.add(vectors, ids)

    @property
    def n_tombstones(self) -> int:
        """Dead vectors still stored in the graph (reclaimed only by a rebuild)."""
        return len(self._dead)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.prepare_search(k)(as_vectors(queries, self.dim, self.name))

    def prepare_search(self, k: int) -> Callable[[np.ndarray], np.ndarray]:
        self._require_built()
        k = check_k(k, self.name)
        ef = max(self.search_settings["efSearch"], k)
        selector = None
        if self._dead:
            if self._filter is None:
                batch = _selector(np.fromiter(self._dead, dtype=np.int64, count=len(self._dead)))
                self._filter = (batch, faiss.IDSelectorNot(batch))
            selector = self._filter
            params = faiss.SearchParametersHNSW(efSearch=ef, sel=selector[1])
        else:
            params = faiss.SearchParametersHNSW(efSearch=ef)
        search = self.index.search
        # Position → id, ending with the slot after the last position, which holds -1: faiss's padding (-1)
        # indexes that last slot, so one gather maps answers and padding alike.
        table = self._pos_ids[: self._size + 1]

        def call(q: np.ndarray) -> np.ndarray:
            _, pos = search(q, k, params=params)
            return table[pos]

        call.selector = selector  # faiss holds raw pointers to the selector: it lives as long as the call
        return call

    def library_bytes(self) -> dict[str, Any] | None:
        if self.index is None:
            return None
        hnsw = self.index.hnsw
        graph = hnsw.neighbors.size() * 4 + hnsw.levels.size() * 4 + hnsw.offsets.size() * 8
        return {"bytes": int(_flat_bytes(self.index.storage) + graph),
                "what": "faiss: flat storage ntotal·d·4 + HNSW neighbors·4 + levels·4 + offsets·8 "
                        "(tombstoned vectors included; the adapter's id table not counted)"}

    def save(self, path: Path) -> int:
        self._require_built()
        dead = np.fromiter(sorted(self._dead), dtype=np.int64, count=len(self._dead))
        return _write(self.index, Path(path), {"position_ids": self._pos_ids[: self._size], "dead": dead})
