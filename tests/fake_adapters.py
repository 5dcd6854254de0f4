"""Test-only adapters, registered when this module is imported (tests only, never in annbench).

They exist to test the harness's own handling of failure and measurement — a leak, an index that
silently loses inserts, a crash, a hang — never as stand-ins for a real library. The harness imports
this module in each run's subprocess because the adapters' classes live here.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from annbench.adapters import register
from annbench.adapters.base import Adapter, Capabilities, Param, Safety, Support

NATIVE = Capabilities(Support.NATIVE, Support.NATIVE, Support.NATIVE)


class _Exact(Adapter):
    """Brute force in numpy: an exact answer the failure adapters below then break on purpose."""

    name = "test-exact"
    capabilities = NATIVE
    # Its search iterates a dict its add changes, and nothing here is thread-safe: every call is exclusive.
    concurrency = Safety(False, False, "test adapter: plain Python dicts, nothing is safe to overlap; every search "
                         "and every write takes one lock.")
    search_params = (Param("unused", int, 0, "accepted so grids have a setting"),)

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self.vecs = {int(i): v.copy() for i, v in zip(ids, vectors, strict=True)}

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self.vecs.update({int(i): v.copy() for i, v in zip(ids, vectors, strict=True)})

    def delete(self, ids: np.ndarray) -> None:
        for i in ids.tolist():
            self.vecs.pop(i, None)

    def update(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self.add(vectors, ids)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        ids = np.fromiter(self.vecs, np.int64, len(self.vecs))
        mat = np.stack(list(self.vecs.values()))
        d = ((queries[:, None, :] - mat[None]) ** 2).sum(-1)
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        out = np.full((len(queries), k), -1, np.int64)
        out[:, : order.shape[1]] = ids[order]
        return out

    def save(self, path: Path) -> int:
        Path(path).write_bytes(b"x" * 16)
        return 16


@register
class Leaky(_Exact):
    """Claims native deletes but keeps the first id of every delete and ranks it first: a leak."""

    name = "test-leaky"

    def delete(self, ids: np.ndarray) -> None:
        super().delete(ids[1:])
        self.leaked = int(ids[0])

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        out = super().search(queries, k)
        if getattr(self, "leaked", None) is not None:
            out = np.concatenate([np.full((len(out), 1), self.leaked), out[:, :-1]], axis=1)
        return out


@register
class Frozen(_Exact):
    """Accepts add and update silently and never searches them (the annoy trap, declared as native)."""

    name = "test-frozen"

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        pass

    def update(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        pass


@register
class Aborting(_Exact):
    """Aborts the process in build, as a native library's failed assertion does."""

    name = "test-abort"

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        os.abort()


@register
class Segfaulting(_Exact):
    """Dereferences NULL in build."""

    name = "test-segfault"

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        ctypes.string_at(0)


@register
class Hanging(_Exact):
    """Never finishes its build."""

    name = "test-hang"

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        # a temp folder, as a database adapter makes one; the test reads where from the mark file
        folder = tempfile.mkdtemp(prefix="annbench-test-hang-")
        if os.environ.get("ANNBENCH_TEST_HANG_MARK"):
            Path(os.environ["ANNBENCH_TEST_HANG_MARK"]).write_text(folder)
        while True:
            time.sleep(1)


@register
class Raising(_Exact):
    """Raises a Python exception in search."""

    name = "test-raise"

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        raise RuntimeError("deliberate failure in search")


register(_Exact)


@register
class MemoryHog(_Exact):
    """Allocates (and touches) memory without bound in build, as a runaway index does."""

    name = "test-memhog"

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        hoard = []
        while True:
            hoard.append(np.ones(64 * 2**20 // 8))  # 64 MiB, written so it is resident
            time.sleep(0.01)


@register
class IVFInIDMap2(_Exact):
    """The real faiss trap: IVF wrapped in IndexIDMap2, then remove_ids — which aborts the process.

    annbench's own faiss adapter never does this; this adapter exists to prove the harness contains it.
    """

    name = "test-ivf-idmap2"

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        import faiss

        quantizer = faiss.IndexFlatL2(vectors.shape[1])
        self._q = quantizer
        ivf = faiss.IndexIVFFlat(quantizer, vectors.shape[1], 16)
        ivf.train(vectors)
        self._ivf = ivf
        self.index = faiss.IndexIDMap2(ivf)
        self.index.add_with_ids(vectors, ids)

    def delete(self, ids: np.ndarray) -> None:
        import faiss

        self.index.remove_ids(faiss.IDSelectorBatch(ids))

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self.index.add_with_ids(vectors, ids)

    def update(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self.delete(ids)
        self.add(vectors, ids)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.index.search(queries, k)[1]
