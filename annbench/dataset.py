"""The `Dataset` type: vectors plus what is known about them, its content hash, and page dropping.

This module owns the in-memory shape every other part of annbench reads: the loaders (annbench.datasets)
and the built-in generator (annbench.catalog) both make a `Dataset`, and hardness, ground truth and the
harness read one. It sits below both, so that the generator and the loaders do not import each other
for it. Also here, because a dataset's content hash is one pass over its arrays: the block size of
every such pass (`BLOCK_ROWS`), and `drop_pages`, which keeps a pass over a memory-mapped file out of
the process's RSS.
"""

from __future__ import annotations

import hashlib
import mmap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from annbench.errors import DataError
from annbench.vectors import Metric

#: rows per block when scanning, hashing or converting (≈ 16 MB of float32 at d=128)
BLOCK_ROWS = 32768
#: memory-mapped files smaller than this keep their pages mapped after a pass (see drop_pages)
DROP_MIN_BYTES = 32 << 20


def format_bytes(n: float) -> str:
    """`n` bytes as a short figure with a binary unit: '512 MiB', '45.5 TiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" or abs(n) >= 100 else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def memory_shortfall(need: int) -> str | None:
    """None when `need` bytes fit in the memory available now (psutil), else 'needs X, has Y' words.

    Asked before a large allocation, so that a size typo (n = 10^11) is one line saying how much it needs
    and how much there is, instead of numpy's _ArrayMemoryError (or the kernel's OOM killer) later.
    Available memory, not total: it counts what can be had without swapping (free + reclaimable cache).
    """
    have = int(psutil.virtual_memory().available)
    if need <= have:
        return None
    return f"needs {format_bytes(need)} of memory, but this machine has {format_bytes(have)} available"


def data_error(path: str | Path, what: str) -> DataError:
    """A DataError whose single line names the file first (a library's multi-line text is folded in)."""
    return DataError(" ".join(f"{path}: {what}".split()))


@dataclass(frozen=True, eq=False)
class Dataset:
    """Vectors plus what is known about them. Arrays are treated as immutable (loaders make them read-only).

    `ids` are the user's int64 ids (None means 0..n-1), never positions. `query_sources` (catalog only)
    is the base position each query was perturbed from; `neighbors` is ground truth shipped with the
    file (ann-benchmarks ``neighbors``: base positions, nearest first), kept only for cross-checks.
    """

    name: str
    base: np.ndarray
    queries: np.ndarray | None = None
    base_labels: np.ndarray | None = None
    query_labels: np.ndarray | None = None
    ids: np.ndarray | None = None
    metric: Metric | None = None
    source: str = ""
    query_sources: np.ndarray | None = None
    neighbors: np.ndarray | None = None
    _hash: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # cheap structural checks only (no pass over the values): any constructor, not just the
        # loaders, gets a clear error for mismatched shapes
        where = self.source or self.name
        if self.base.ndim != 2:
            raise data_error(where, f"base must be 2-D (rows × dims), got shape {self.base.shape}")
        for key, arr in (("query_labels", self.query_labels), ("query_sources", self.query_sources)):
            if arr is not None and (self.queries is None or len(arr) != self.nq):
                raise data_error(where, f"{key} has {len(arr)} entries but there are {self.nq} queries")
        for key, arr in (("base_labels", self.base_labels), ("ids", self.ids)):
            if arr is not None and len(arr) != self.n:
                raise data_error(where, f"{key} has {len(arr)} entries but base has {self.n} rows")
        if self.queries is not None and (self.queries.ndim != 2 or self.queries.shape[1] != self.dim):
            raise data_error(where, f"queries have shape {self.queries.shape} but base vectors have {self.dim} dims")

    @property
    def n(self) -> int:
        return int(self.base.shape[0])

    @property
    def dim(self) -> int:
        return int(self.base.shape[1])

    @property
    def nq(self) -> int:
        return 0 if self.queries is None else int(self.queries.shape[0])

    def base_ids(self) -> np.ndarray:
        """The int64 id of each base row: `ids`, or 0..n-1 when the file has none."""
        return np.arange(self.n, dtype=np.int64) if self.ids is None else self.ids

    def arrays(self) -> dict[str, np.ndarray]:
        """The non-empty arrays by field name, in a fixed order (what the hash and save cover)."""
        keys = ("base", "queries", "base_labels", "query_labels", "ids", "query_sources", "neighbors")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def content_hash(self) -> str:
        """sha256 hex over every array's name, dtype, shape and values; computed blockwise, cached.

        The metric is included (the same vectors scored by another metric are another benchmark);
        name and source are not (a moved file keeps its hash).
        """
        if self._hash is None:
            h = hashlib.sha256()
            h.update(f"metric={self.metric.value if self.metric else None};".encode())
            for key, arr in self.arrays().items():
                h.update(f"{key}:{arr.dtype.str}:{arr.shape};".encode())
                for block in _blocks(arr):
                    h.update(np.ascontiguousarray(block).data)
            object.__setattr__(self, "_hash", h.hexdigest())
        return self._hash  # type: ignore[return-value]

    def memory_bytes(self) -> int:
        """Bytes of base + queries as float32 (what an adapter is handed), whether mapped or not."""
        return 4 * (self.n * self.dim + self.nq * self.dim)


def _blocks(arr: np.ndarray, rows: int = BLOCK_ROWS) -> Iterator[np.ndarray]:
    """Consecutive row blocks of `arr`; a memory-mapped block's pages are dropped once the caller is done."""
    if arr.ndim == 0 or len(arr) == 0:
        yield arr
        return
    for start in range(0, len(arr), rows):
        block = arr[start : start + rows]
        yield block
        drop_pages(block)


def drop_pages(view: np.ndarray) -> None:
    """Tell the kernel this process is done with the file pages under `view` (part of a np.memmap).

    Mapped file pages count in the process's RSS for as long as they stay mapped, so one pass over a
    memory-mapped catalog would leave all of it in the harness's RSS. madvise(DONTNEED) unmaps them:
    the data stay in the page cache and the file (written pages included: the mappings are shared), and
    a later read faults them back in. A no-op for arrays that are not memory-mapped, and for mappings
    under DROP_MIN_BYTES: they cannot crowd the machine, and the call costs ~1 ms (P3's small per-step
    ground truths paid 0.66 of a full ground truth for it).
    """
    mm = getattr(view, "_mmap", None)
    if (mm is None or view.size == 0 or min(view.strides, default=0) < 0 or not hasattr(mm, "madvise")
            or len(mm) < DROP_MIN_BYTES):
        return
    start = view.__array_interface__["data"][0] - np.frombuffer(mm, dtype=np.uint8).ctypes.data
    end = start + sum((n - 1) * s for n, s in zip(view.shape, view.strides, strict=True)) + view.itemsize
    start = max(0, start - start % mmap.PAGESIZE)
    end = min(len(mm), end)
    if end > start:
        mm.madvise(mmap.MADV_DONTNEED, start, end - start)
