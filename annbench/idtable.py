"""A value per id, read for a whole array of ids at once: the table policies and transforms keep per id.

Owns `IdTable`: dense over the ids' span while the ids are close together (the catalog's ids run from
1,000,000), sorted keys and values for large sparse ids (hashes, database keys), so a lookup of a query's
answers is one array operation either way and memory stays O(ids).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

# A dense table is used while the span of the ids (largest − smallest + 1) stays below DENSE_FACTOR × the
# ids written plus DENSE_FLOOR: for ids that are a range, even offset (the catalog's run from 1,000,000),
# that is about one slot per id. For large sparse ids (hashes, database keys) a sorted array answers by
# binary search instead, so memory stays O(ids) whatever the ids are.
DENSE_FACTOR = 8
DENSE_FLOOR = 1 << 16


class IdTable:
    """A value per id, looked up for a whole array of ids at once (no Python per id on the search path).

    Written at write time (build / insert / delete / update), read at search time. Dense: an array over
    the id span [lo, lo + capacity) with one slot before it holding `pad` and one after it holding
    `missing`, read with `take(ids − (lo − 1), mode="clip")`: the −1 padding of an answer clips onto the
    `pad` slot and an id above the span onto the `missing` one, so one lookup needs no masks (≈ 1 µs for a
    query's candidates). Sparse: sorted keys and their values, looked up with np.searchsorted. The state
    is one tuple replaced as a whole, so a search running beside a write (annbench.concurrency) never sees
    an array with another version's offset; in-place writes to the dense array only flip single entries.
    """

    def __init__(self, dtype: Any, missing: Any, pad: Any) -> None:
        self.dtype = np.dtype(dtype)
        self.missing = missing
        self.pad = pad
        self.written = 0  # ids written or reserved so far (with repeats): the density rule's denominator
        # dense: (array of capacity + 2, shift = lo − 1); sparse: (sorted keys, values)
        self._dense: tuple[np.ndarray, int] | None = None
        self._sparse: tuple[np.ndarray, np.ndarray] = (np.empty(0, np.int64), np.empty(0, self.dtype))

    def _span_ok(self, lo: int, top: int) -> bool:
        return top - lo < DENSE_FACTOR * self.written + DENSE_FLOOR

    def _cover(self, lo: int, top: int) -> None:
        """Make ids lo…top addressable: grow the dense span (with slack above, as ids tend to rise day by
        day), or go sparse when the span would be too wide for the ids written."""
        dense = self._dense
        if dense is not None:
            arr, shift = dense
            cur_lo, cur_top = shift + 1, shift + len(arr) - 2
            if cur_lo <= lo and top <= cur_top:
                return
            lo, top = min(lo, cur_lo), max(top, cur_top)
        elif len(self._sparse[0]):
            lo, top = min(lo, int(self._sparse[0][0])), max(top, int(self._sparse[0][-1]))
        if not self._span_ok(lo, top):
            if dense is not None:  # too wide now: keep what is written, sorted, and go sparse
                arr, shift = dense
                pos = np.flatnonzero(arr[1:-1] != self.missing)
                self._sparse = (pos.astype(np.int64) + shift + 1, arr[1:-1][pos].copy())
                self._dense = None
            return
        slack = (top - lo + 1) // 4
        top = min(top + slack, lo + DENSE_FACTOR * self.written + DENSE_FLOOR - 1)
        grown = np.full(top - lo + 3, self.missing, self.dtype)
        grown[0] = self.pad
        shift = lo - 1
        if dense is not None:
            arr, old_shift = dense
            start = old_shift - shift
            grown[start + 1: start + len(arr) - 1] = arr[1:-1]
        else:
            keys, vals = self._sparse
            grown[keys - shift] = vals
        self._dense = (grown, shift)  # one reference swap: a reader holds the old state or the new one

    def reserve(self, ids: np.ndarray) -> None:
        """Make every id of `ids` addressable without writing it: the ids an index holds, so that `get` on
        its answers is exact (see `get`)."""
        ids = np.asarray(ids, np.int64)
        if len(ids):
            self.written += len(ids)
            self._check(int(ids.min()))
            self._cover(int(ids.min()), int(ids.max()))

    @staticmethod
    def _check(lo: int) -> None:
        if lo < 0:
            raise ValueError(f"ids must be non-negative, got {lo}")

    def put(self, ids: np.ndarray, values: Any) -> None:
        """Set ids → values (a scalar or one value per id); for an id given twice the last value wins."""
        ids = np.asarray(ids, np.int64).ravel()
        if len(ids) == 0:
            return
        vals = np.broadcast_to(np.asarray(values, self.dtype), ids.shape)
        uniq, last = np.unique(ids[::-1], return_index=True)  # last occurrence wins, as dict.update
        vals = vals[::-1][last]
        self._check(int(uniq[0]))
        self.written += len(uniq)
        self._cover(int(uniq[0]), int(uniq[-1]))
        dense = self._dense
        if dense is not None:
            arr, shift = dense
            arr[uniq - shift] = vals
            return
        keys, old = self._sparse
        pos = np.searchsorted(keys, uniq)
        found = pos < len(keys)
        found[found] = keys[pos[found]] == uniq[found]
        merged = old.copy()
        merged[pos[found]] = vals[found]
        new = ~found
        self._sparse = (np.insert(keys, pos[new], uniq[new]), np.insert(merged, pos[new], vals[new]))

    def get(self, ids: np.ndarray) -> np.ndarray:
        """Values for an array of ids (any shape), on the search path: `pad` for −1, `missing` for ids
        never written. Exact for −1 and for ids at or above the smallest id written or reserved (every
        answer of an index whose ids were reserved); below it, dense reads `pad` — use `lookup` there."""
        dense = self._dense
        if dense is not None:
            arr, shift = dense
            return arr.take(ids - shift, mode="clip")
        keys, vals = self._sparse
        ids = np.asarray(ids)
        if len(keys) == 0:
            return np.where(ids < 0, self.pad, self.missing).astype(self.dtype)
        pos = np.minimum(np.searchsorted(keys, ids), len(keys) - 1)
        out = np.where(keys[pos] == ids, vals[pos], self.missing).astype(self.dtype)
        out[ids < 0] = self.pad
        return out

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """`get` for any ids (off the search path): `pad` for negative ones, `missing` for unknown ones."""
        ids = np.asarray(ids, np.int64)
        out = self.get(ids)
        dense = self._dense
        if dense is not None:
            out = np.where((ids >= 0) & (ids <= dense[1]), self.missing, out).astype(self.dtype)
            out[ids < 0] = self.pad
        return out

    def keys_where(self, pred: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, values) whose value satisfies `pred`, in id order."""
        dense = self._dense
        if dense is not None:
            arr, shift = dense
            body = arr[1:-1]
            pos = np.flatnonzero(pred(body))
            return pos.astype(np.int64) + shift + 1, body[pos]
        keys, vals = self._sparse
        sel = pred(vals)
        return keys[sel], vals[sel]


    def nbytes(self) -> int:
        """Bytes of the table's arrays (dense or sparse)."""
        if self._dense is not None:
            return int(self._dense[0].nbytes)
        return int(sum(a.nbytes for a in self._sparse))
