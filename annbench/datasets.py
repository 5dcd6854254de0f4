"""Datasets: the file loaders (`open_dataset`), validation of the values, and `save_dataset`.

This module owns everything between a user's embedding files (or the name of the built-in catalog
generator) and the in-memory `Dataset` (annbench.dataset) every other part of annbench reads. It never
times, prints or normalises: vectors are handed over as stored (float32), and `prepare_vectors`
(annbench.vectors) normalises them for the cosine metric.

Formats (chosen by extension, see datasets/README.md):

========================  ====================================================  ======================
extension                 layout                                                memory
========================  ====================================================  ======================
.npy                      one 2-D array; queries/labels/ids from arguments or   memory-mapped (float32)
                          siblings ``<stem>.queries.npy`` … (see below)
.npz                      written by `save_dataset`: base, queries,             memory-mapped when
                          base_labels, query_labels, ids, metric (+ optional     stored uncompressed
                          query_sources, neighbors)
.h5 / .hdf5               ann-benchmarks: train, test, neighbors, distances,    memory-mapped when the
                          attribute ``distance`` (euclidean|angular); extra      dataset is contiguous
                          train_labels, test_labels, ids, query_sources          and uncompressed
.fvecs / .bvecs / .ivecs  per row: int32 d, then d float32 / uint8 / int32      fvecs: strided memmap
.fbin / .u8bin / .i8bin   big-ann: uint32 n, uint32 d, then n·d values          fbin: memmap
/ .ibin
========================  ====================================================  ======================

Memory: float32 files (npy, npz stored, contiguous HDF5, fvecs, fbin) are memory-mapped read-only, so
opening a 10 GB file costs nothing until rows are touched. Byte formats (bvecs, u8bin, i8bin) and
float16/float64 arrays are converted to an in-memory float32 array, block by block, so the peak is the
float32 result (n·d·4 bytes) plus one block, never a second full copy. An fvecs memmap is a strided
view (it skips each row's dim int): an adapter receives a contiguous copy via `prepare_vectors`.

Sibling convention for files that hold only vectors (.npy, .fvecs/.bvecs, .fbin/.u8bin/.i8bin): for a
base file ``emb.EXT`` annbench also looks for ``emb.queries.EXT`` and for ``emb.labels``,
``emb.query_labels`` and ``emb.ids`` with extension .npy, .ibin or .ivecs, unless the caller passes
them explicitly.

Queries from the base itself: a vectors-only file often comes without queries. `open_dataset(path,
queries=Holdout(n))` takes n base rows, chosen at random with a fixed seed (0), out of the base and makes
them the queries (their labels become the query labels; the remaining rows keep their ids, by default
their row numbers in the file). Random rather than the last n rows: embedding files are often written in
an order (by category, by product, by date added), and the last rows would then be one category or the
newest products, not a sample of the catalog. A fixed seed: the same file and n give the same split, so
the same dataset hash and cached ground truth. The held-out rows leave the base: a query left in the base
would find itself at distance 0 and make every index's recall look perfect.

Every problem with a user's file raises `DataError` with one line naming the file, what is wrong and
what is allowed; library exceptions (OSError, ValueError, KeyError from numpy/h5py) are caught at this
boundary.
"""

from __future__ import annotations

import math
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annbench import catalog
from annbench.atomic import atomic_path
from annbench.dataset import BLOCK_ROWS, Dataset, data_error, drop_pages, memory_shortfall
from annbench.errors import AnnbenchError, ConfigError
from annbench.params import check_value, shown
from annbench.vectors import Metric

VECTOR_EXTS = (".npy", ".fvecs", ".bvecs", ".fbin", ".u8bin", ".i8bin")
INT_EXTS = (".npy", ".ibin", ".ivecs")
CONTAINER_EXTS = (".npz", ".h5", ".hdf5")
ALL_EXTS = VECTOR_EXTS + CONTAINER_EXTS + (".ibin", ".ivecs")

# the float kinds a vector file may hold; anything else (complex, object, string, bool) is refused
_VECTOR_DTYPES = "float16, float32, float64 or an integer type"


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------


def _check_vectors(arr: np.ndarray, path: str | Path, what: str, zero_rows_bad: bool = False) -> None:
    """Reject empty sets, NaN/inf and (for cosine) all-zero rows, scanning block by block."""
    if arr.ndim != 2:
        raise data_error(path, f"{what} must be a 2-D array (rows × dims), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise data_error(path, f"{what} is empty (shape {arr.shape}); at least 1 row and 1 dim are required")
    for start in range(0, arr.shape[0], BLOCK_ROWS):
        block = np.asarray(arr[start : start + BLOCK_ROWS])
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            row = start + int(np.argmin(finite))
            bad = "NaN" if np.isnan(block[row - start]).any() else "inf"
            raise data_error(path, f"{what} row {row} holds {bad}; all values must be finite")
        if zero_rows_bad:
            zero = ~block.any(axis=1)
            if zero.any():
                row = start + int(np.argmax(zero))
                raise data_error(path, f"{what} row {row} is all zeros; its cosine similarity is undefined "
                                  "(drop the row, or score with metric l2)")


def _as_labels(arr: np.ndarray, path: str | Path, what: str, rows: int, rows_of: str) -> np.ndarray:
    """1-D int64 labels or ids (an n×1 ivecs/ibin is flattened); integers only."""
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise data_error(path, f"{what} must be 1-D (one integer per row), got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise data_error(path, f"{what} have dtype {arr.dtype}; only integer labels/ids are allowed")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise data_error(path, f"{what} hold values above the int64 range")
    if len(arr) != rows:
        raise data_error(path, f"{what} have {len(arr)} entries but {rows_of} has {rows} rows; they must match")
    out = np.ascontiguousarray(arr, dtype=np.int64)
    out.setflags(write=False)
    return out


def _check_ids(ids: np.ndarray, where: str | Path) -> None:
    srt = np.sort(ids)
    dup = srt[1:][srt[1:] == srt[:-1]]
    if dup.size:
        raise data_error(where, f"ids are not unique (id {int(dup[0])} repeats); every row needs its own id")


def validate_dataset(ds: Dataset, metric: Metric | str | None = None) -> None:
    """Full check of a dataset's values in one blockwise pass: non-empty finite vectors, unique ids.

    All-zero rows are refused when the metric (the argument, else the dataset's own) is cosine.
    `open_dataset` already does all of this; call it on datasets built by hand.
    """
    m = Metric.parse(metric) if metric is not None else ds.metric
    where = ds.source or ds.name
    _check_vectors(ds.base, where, "base", zero_rows_bad=m is Metric.COSINE)
    if ds.queries is not None:
        _check_vectors(ds.queries, where, "queries", zero_rows_bad=m is Metric.COSINE)
    if ds.ids is not None:
        _check_ids(ds.ids, where)
    if ds.query_sources is not None and ds.query_sources.size:
        if int(ds.query_sources.min()) < 0 or int(ds.query_sources.max()) >= ds.n:
            raise data_error(where, "query_sources must be base positions in 0..n-1")


# ------------------------------------------------------------------------------------------------
# Format readers: each returns an array (memory-mapped where it can) or raises DataError
# ------------------------------------------------------------------------------------------------


def _file_size(path: Path) -> int:
    try:
        if not path.is_file():
            raise data_error(path, "no such file; give the path of an existing embeddings file, or 'catalog'"
                        if not path.exists() else "is not a regular file; give the path of an embeddings file")
        return path.stat().st_size
    except OSError as exc:
        raise data_error(path, f"cannot read ({exc.strerror or exc})") from None


def _readonly(arr: np.ndarray) -> np.ndarray:
    if arr.flags.writeable:
        arr.setflags(write=False)
    return arr


def _to_float32(arr: np.ndarray, path: Path, what: str) -> np.ndarray:
    """float32 as is (keeps a memmap); other allowed kinds converted block by block into memory."""
    if arr.dtype == np.float32:
        return arr
    if arr.dtype.kind not in "fiu" or arr.dtype.kind == "f" and arr.dtype.itemsize > 8:
        raise data_error(path, f"{what} have dtype {arr.dtype}; allowed: {_VECTOR_DTYPES}")
    short = memory_shortfall(math.prod(arr.shape) * 4)
    if short:
        raise data_error(path, f"{what} are stored as {arr.dtype}; converting them to float32 {short} "
                          "(convert a slice to float32 yourself, or use a machine with more memory)")
    out = np.empty(arr.shape, dtype=np.float32)
    with np.errstate(over="ignore"):  # float64 beyond float32 range becomes inf, reported by validation
        for start in range(0, arr.shape[0], BLOCK_ROWS):
            out[start : start + BLOCK_ROWS] = arr[start : start + BLOCK_ROWS]
    return out


def _npy_header(fh: Any, path: Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            return fmt.read_array_header_1_0(fh)
        return fmt.read_array_header_2_0(fh)
    except (ValueError, OSError, SyntaxError, struct.error, EOFError) as exc:
        raise data_error(path, f"not a valid .npy file ({exc})") from None


def _check_npy_dtype(dtype: np.dtype, path: Path, what: str, integer: bool) -> None:
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise data_error(path, f"{what} hold Python objects or records; save a plain numeric array")
    if integer:
        if dtype.kind not in "iu":
            raise data_error(path, f"{what} have dtype {dtype}; only integer labels/ids are allowed")
    elif dtype.kind not in "fiu" or (dtype.kind == "f" and dtype.itemsize > 8):
        raise data_error(path, f"{what} have dtype {dtype}; allowed: {_VECTOR_DTYPES}")


def _npy_layout(path: Path, what: str, integer: bool = False) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran order, dtype, data offset) of a .npy file, its header checked against its size."""
    size = _file_size(path)
    try:
        with open(path, "rb") as fh:
            shape, fortran, dtype = _npy_header(fh, path)
            offset = fh.tell()
    except OSError as exc:
        raise data_error(path, f"cannot read ({exc.strerror or exc})") from None
    _check_npy_dtype(dtype, path, what, integer)
    need = offset + math.prod(shape) * dtype.itemsize
    if size < need:
        raise data_error(path, f"truncated: header promises shape {shape} ({need} bytes) but the file has {size}")
    if not integer and len(shape) != 2:
        raise data_error(path, f"{what} must be a 2-D array (rows × dims), got shape {shape}")
    return shape, fortran, dtype, offset


def _read_npy(path: Path, what: str, integer: bool = False) -> np.ndarray:
    shape, fortran, dtype, offset = _npy_layout(path, what, integer)
    if 0 in shape:
        try:
            return np.zeros(shape, dtype=dtype)
        except ValueError:  # e.g. (0, 2**61): no values, yet a shape numpy refuses to describe
            raise data_error(path, f"{what} are empty (shape {shape}); at least 1 row and 1 dim are required") from None
    arr = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
    return arr if integer else _to_float32(arr, path, what)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Members of an .npz; uncompressed members are memory-mapped at their offset inside the zip."""
    _file_size(path)
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as raw:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                key = info.filename[: -len(".npy")]
                if info.compress_type == zipfile.ZIP_STORED:
                    raw.seek(info.header_offset)
                    local = raw.read(30)
                    if local[:4] != b"PK\x03\x04":
                        raise data_error(path, f"member {shown(key)} has a corrupt zip header")
                    name_len, extra_len = struct.unpack("<HH", local[26:30])
                    raw.seek(info.header_offset + 30 + name_len + extra_len)
                    shape, fortran, dtype = _npy_header(raw, path)
                    if dtype.hasobject or dtype.fields is not None:
                        raise data_error(path, f"member {shown(key)} holds Python objects or records; not allowed")
                    if dtype.kind == "U" or 0 in shape or not shape:
                        with zf.open(info) as member:
                            out[key] = np.lib.format.read_array(member, allow_pickle=False)
                        continue
                    out[key] = np.memmap(path, dtype=dtype, mode="r", offset=raw.tell(), shape=shape,
                                         order="F" if fortran else "C")
                else:
                    with zf.open(info) as member:
                        out[key] = np.lib.format.read_array(member, allow_pickle=False)
    except zipfile.BadZipFile as exc:
        raise data_error(path, f"not a valid .npz archive ({exc})") from None
    except (OSError, ValueError, EOFError, struct.error) as exc:
        raise data_error(path, f"cannot read .npz ({exc})") from None
    return out


def _vecs_layout(path: Path, kind: str) -> tuple[int, int, int]:
    """(rows, dim, bytes per row) of an fvecs/ivecs/bvecs file, from its first row's dim and its size."""
    size = _file_size(path)
    item = {"fvecs": 4, "ivecs": 4, "bvecs": 1}[kind]
    if size < 4:
        raise data_error(path, f"too short for .{kind} ({size} bytes); each row starts with an int32 dim")
    with open(path, "rb") as fh:
        d = struct.unpack("<i", fh.read(4))[0]
    row_bytes = 4 + d * item
    if d <= 0:
        raise data_error(path, f"first row declares dim {d}; .{kind} rows need a positive int32 dim")
    if size % row_bytes:
        raise data_error(path, f"size {size} bytes is not a multiple of the row size {row_bytes} (4 + {d}·{item}); "
                          "truncated or rows of different dims")
    return size // row_bytes, d, row_bytes


def _read_vecs(path: Path, kind: str) -> np.ndarray:
    """fvecs/ivecs/bvecs: every row is int32 d followed by d values; all rows must have the same d."""
    n, d, row_bytes = _vecs_layout(path, kind)
    if kind == "bvecs":
        raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, row_bytes))
        dims = lambda blk: np.ascontiguousarray(blk[:, :4]).view("<i4")[:, 0]  # noqa: E731
        values = raw[:, 4:]
    else:
        raw = np.memmap(path, dtype="<i4", mode="r", shape=(n, d + 1))
        dims = lambda blk: blk[:, 0]  # noqa: E731
        values = raw[:, 1:].view("<f4" if kind == "fvecs" else "<i4")
    for start in range(0, n, BLOCK_ROWS):
        got = dims(raw[start : start + BLOCK_ROWS])
        bad = np.nonzero(got != d)[0]
        if bad.size:
            row = start + int(bad[0])
            raise data_error(path, f"row {row} declares dim {int(got[bad[0]])} but row 0 declares {d}; "
                              f".{kind} rows must all have the same dim")
    if kind == "bvecs":
        return _to_float32(values, path, "vectors")
    return values


_BIN_DTYPES = {".fbin": np.dtype("<f4"), ".u8bin": np.dtype("u1"), ".i8bin": np.dtype("i1"),
               ".ibin": np.dtype("<i4")}


def _bin_layout(path: Path) -> tuple[int, int, np.dtype]:
    """(rows, dim, dtype) of a big-ann .fbin/.u8bin/.i8bin/.ibin file, its header checked against its size."""
    size = _file_size(path)
    dtype = _BIN_DTYPES[path.suffix.lower()]
    if size < 8:
        raise data_error(path, f"too short ({size} bytes); a {path.suffix} file starts with uint32 n, uint32 d")
    with open(path, "rb") as fh:
        n, d = struct.unpack("<II", fh.read(8))
    expect = 8 + n * d * dtype.itemsize
    if size != expect:
        raise data_error(path, f"header says {n} rows × {d} dims, so the size must be 8 + {n}·{d}·{dtype.itemsize}"
                          f" = {expect} bytes, but the file has {size}")
    return n, d, dtype


def _read_bin(path: Path) -> np.ndarray:
    """big-ann .fbin/.u8bin/.i8bin/.ibin: uint32 n, uint32 d, then n·d little-endian values."""
    n, d, dtype = _bin_layout(path)
    if n == 0 or d == 0:
        return np.zeros((n, d), dtype=dtype)
    arr = np.memmap(path, dtype=dtype, mode="r", offset=8, shape=(n, d))
    if dtype.kind == "i" and dtype.itemsize == 4:
        return arr
    return _to_float32(arr, path, "vectors")


def _h5_array(path: Path, ds: Any, key: str) -> np.ndarray:
    """An HDF5 dataset as an array: a memmap when it is contiguous and uncompressed, else read in."""
    shape = tuple(int(s) for s in ds.shape)
    dtype = ds.dtype
    if dtype.kind not in "fiu":
        raise data_error(path, f"dataset {key!r} has dtype {dtype}; allowed: {_VECTOR_DTYPES} or integers")
    if 0 in shape:
        return np.zeros(shape, dtype=dtype)
    offset = None
    if ds.chunks is None and ds.compression is None and not ds.external:
        try:
            offset = ds.id.get_offset()
        except (OSError, ValueError, RuntimeError):
            offset = None
    if offset is not None:
        nbytes = math.prod(shape) * dtype.itemsize
        if offset + nbytes > _file_size(path):
            raise data_error(path, f"dataset {key!r} runs past the end of the file (truncated HDF5)")
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    return ds[()]


def _read_hdf5(path: Path) -> dict[str, Any]:
    import h5py  # deferred: only HDF5 users pay the import

    _file_size(path)
    out: dict[str, Any] = {}
    try:
        with h5py.File(path, "r") as f:
            if "train" not in f:
                present = ", ".join(sorted(f.keys())) or "nothing"
                raise data_error(path, f"no dataset 'train' (found: {present}); an ann-benchmarks file holds "
                                  "train, test, neighbors, distances")
            for key in ("train", "test", "neighbors", "train_labels", "test_labels", "ids", "query_sources"):
                if key in f:
                    if not isinstance(f[key], h5py.Dataset):
                        raise data_error(path, f"{key!r} is a group, expected a dataset")
                    out[key] = _h5_array(path, f[key], key)
            dist = f.attrs.get("distance")
            if isinstance(dist, bytes):
                dist = dist.decode()
            out["distance"] = dist
    except AnnbenchError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise data_error(path, f"not a readable HDF5 file, or truncated ({exc})") from None
    return out


def _parse_metric(value: Any, path: Path, attr: str) -> Metric | None:
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    try:
        return Metric.parse(text)
    except ConfigError:
        raise data_error(path, f"{attr} {shown(text)} is not supported; "
                               "allowed: euclidean/l2, angular/cosine") from None


# ------------------------------------------------------------------------------------------------
# Public entry points
# ------------------------------------------------------------------------------------------------


def _read_vectors(path: Path, what: str) -> np.ndarray:
    ext = path.suffix.lower()
    if ext == ".npy":
        return _read_npy(path, what)
    if ext in (".fvecs", ".bvecs"):
        return _read_vecs(path, ext[1:])
    if ext in (".fbin", ".u8bin", ".i8bin"):
        return _read_bin(path)
    if ext in (".ibin", ".ivecs"):
        raise data_error(path, f"{ext} holds integer vectors (labels, ids or ground truth), not embeddings; "
                          "pass it as labels=, query_labels= or ids=")
    _file_size(path)  # a missing file is reported as missing, not as a bad extension
    raise data_error(path, f"unknown extension {ext or '(none)'!r} for {what}; allowed: "
                      f"{', '.join(VECTOR_EXTS)} (vectors), .npz, .h5, .hdf5 (whole datasets)")


def _read_ints(path: Path, what: str) -> np.ndarray:
    ext = path.suffix.lower()
    if ext == ".npy":
        return _read_npy(path, what, integer=True)
    if ext == ".ivecs":
        return _read_vecs(path, "ivecs")
    if ext == ".ibin":
        return _read_bin(path)
    _file_size(path)
    raise data_error(path, f"unknown extension {ext or '(none)'!r} for {what}; allowed: {', '.join(INT_EXTS)}")


def _sibling(base: Path, role: str, exts: tuple[str, ...]) -> Path | None:
    stem = base.name[: -len(base.suffix)] if base.suffix else base.name
    for ext in exts:
        cand = base.with_name(f"{stem}.{role}{ext}")
        if cand.is_file():
            return cand
    return None


PathLike = str | Path


@dataclass(frozen=True)
class Holdout:
    """Queries taken out of the base: `n` base rows, chosen at random with `seed`, leave it and become the queries.

    Pass it as `open_dataset(path, queries=Holdout(n))` for a file that has no queries (see the module
    docstring for why random rows and a fixed seed). A scenario's `dataset.holdout_queries: N` and
    `annbench run --holdout-queries N` make one.
    """

    n: int
    seed: int = 0


def has_queries(path: Path) -> bool | None:
    """Whether the dataset file at `path` comes with queries, told cheaply (a folder listing, a zip's member
    names, an HDF5 file's keys); None when that cannot be told (a missing or unreadable file, an unknown
    extension): opening it says what is wrong then. A vectors-only file without a companion queries file
    has its header checked too (DataError when it is truncated or malformed).

    A scenario asks this when it is loaded, so that a file without queries is one line naming the ways to
    give them before anything is read, rather than after the base was scanned.
    """
    ext = path.suffix.lower()
    try:
        if not path.is_file():
            return None
        if ext in VECTOR_EXTS:
            if _sibling(path, "queries", (ext,)) is not None:
                return True
            # a file that is itself broken (truncated, a bad header) is reported as such first: what is
            # wrong with the file matters before what is missing beside it. Headers and sizes only.
            if ext == ".npy":
                _npy_layout(path, "base vectors")
            elif ext in (".fvecs", ".bvecs"):
                _vecs_layout(path, ext[1:])
            else:
                _bin_layout(path)
            return False
        if ext == ".npz":
            with zipfile.ZipFile(path) as zf:
                return "queries.npy" in zf.namelist()
        if ext in (".h5", ".hdf5"):
            import h5py  # deferred: only HDF5 users pay the import

            with h5py.File(path, "r") as f:
                return "test" in f
    except (OSError, ValueError, RuntimeError, KeyError, zipfile.BadZipFile):
        return None
    return None


def _hold_out(ds: Dataset, holdout: Holdout, path: Path) -> Dataset:
    """`ds` with `holdout.n` random base rows moved out of the base into the queries (see `Holdout`)."""
    n_out = check_value(holdout.n, int, f"{path}: holding out queries: the count", lo=1)
    seed = check_value(holdout.seed, int, f"{path}: holding out queries: the seed", lo=0)
    if n_out >= ds.n:
        raise data_error(path, f"holds {ds.n} vectors, so {n_out} cannot be held out as queries with any left "
                          f"in the base; hold out at most {ds.n - 1} (--holdout-queries, dataset.holdout_queries)")
    # the base becomes an in-memory copy without the held-out rows (a memory map cannot skip rows)
    short = memory_shortfall(ds.n * ds.dim * 4)
    if short:
        raise data_error(path, f"holding out {n_out} queries copies the base, which {short}; give a queries "
                          "file instead (--queries, dataset.queries)")
    picked = np.sort(np.random.default_rng(seed).choice(ds.n, size=n_out, replace=False))
    keep = np.ones(ds.n, dtype=bool)
    keep[picked] = False
    base = np.empty((ds.n - n_out, ds.dim), dtype=np.float32)
    at = 0
    for start in range(0, ds.n, BLOCK_ROWS):  # block by block: one pass over a memory-mapped file
        block = ds.base[start : start + BLOCK_ROWS]
        rows = block[keep[start : start + BLOCK_ROWS]]
        base[at : at + len(rows)] = rows
        at += len(rows)
        drop_pages(block)
    queries = np.ascontiguousarray(ds.base[picked], dtype=np.float32)
    labels = ds.base_labels
    # the remaining rows keep the ids they had in the file (row numbers when it has none), so an id
    # still names the same vector whether or not queries were held out
    ids = ds.base_ids()[keep]
    return Dataset(name=ds.name, base=_readonly(base), queries=_readonly(queries),
                   base_labels=None if labels is None else _readonly(labels[keep]),
                   query_labels=None if labels is None else _readonly(np.ascontiguousarray(labels[picked])),
                   ids=_readonly(np.ascontiguousarray(ids)), metric=ds.metric,
                   source=f"{ds.source} (holdout {n_out} queries, seed {seed})")


def open_dataset(
    spec: PathLike,
    *,
    queries: PathLike | Holdout | None = None,
    labels: PathLike | None = None,
    query_labels: PathLike | None = None,
    ids: PathLike | None = None,
    **generator_params: Any,
) -> Dataset:
    """Open a dataset: ``"catalog"`` runs the built-in generator with `generator_params`; anything else
    is a path whose extension picks the format. Validated on load; problems raise one-line DataError.

    `queries` is a file of query vectors, or a `Holdout`: base rows taken out of the base as the queries
    (instead of the queries a container holds or a companion file; their labels are the query labels).
    """
    holdout = queries if isinstance(queries, Holdout) else None
    if holdout is not None:
        if query_labels is not None:
            raise ConfigError(f"{spec}: held-out queries take their labels from the base labels; "
                              "pass labels=, not query_labels=")
        queries = None
    if str(spec) == "catalog":
        if any(x is not None for x in (queries, labels, query_labels, ids)):
            raise ConfigError("the catalog generator makes its own queries, labels and ids; "
                              "pass only generator parameters with 'catalog'")
        return catalog.generate_from(generator_params)
    if generator_params:
        raise ConfigError(f"{spec}: generator parameters ({', '.join(sorted(generator_params))}) "
                          "apply only to 'catalog'")
    path = Path(spec)
    ext = path.suffix.lower()
    name = path.name[: -len(path.suffix)] if path.suffix else path.name
    metric: Metric | None = None
    q_sources = neighbors = None
    parts: dict[str, Any]

    def extra(arg: PathLike | None, role: str, exts: tuple[str, ...]) -> Path | None:
        if arg is not None:
            return Path(arg)
        return _sibling(path, role, exts) if ext in VECTOR_EXTS else None

    if ext in (".h5", ".hdf5"):
        parts = _read_hdf5(path)
        base = _to_float32(parts["train"], path, "train")
        q = _to_float32(parts["test"], path, "test") if "test" in parts else None
        b_lab, q_lab, id_arr = parts.get("train_labels"), parts.get("test_labels"), parts.get("ids")
        q_sources, neighbors = parts.get("query_sources"), parts.get("neighbors")
        metric = _parse_metric(parts["distance"], path, "attribute 'distance'")
    elif ext == ".npz":
        parts = _read_npz(path)
        if "base" not in parts:
            raise data_error(path, f"no array 'base' (found: {', '.join(sorted(parts)) or 'nothing'}); "
                              "an annbench .npz holds base, queries, base_labels, query_labels, ids")
        base = _to_float32(parts["base"], path, "base")
        q = _to_float32(parts["queries"], path, "queries") if "queries" in parts else None
        b_lab, q_lab, id_arr = parts.get("base_labels"), parts.get("query_labels"), parts.get("ids")
        q_sources, neighbors = parts.get("query_sources"), parts.get("neighbors")
        if "metric" in parts:
            metric = _parse_metric(str(parts["metric"]), path, "metric")
    else:
        base = _read_vectors(path, "base vectors")
        b_lab = q_lab = id_arr = q = None

    # explicit arguments win over what a container holds; siblings only fill gaps of vector files
    q_path = None if holdout is not None else extra(queries, "queries", (ext,) if ext in VECTOR_EXTS else ())
    if q_path is not None:
        q = _read_vectors(q_path, "queries")
    if holdout is not None:  # what a container says about its own queries does not apply to held-out ones
        q = q_lab = q_sources = neighbors = None
    cosine = metric is Metric.COSINE
    _check_vectors(base, path, "base", zero_rows_bad=cosine)
    if q is not None:
        _check_vectors(q, q_path or path, "queries", zero_rows_bad=cosine)
        if q.shape[1] != base.shape[1]:
            raise data_error(q_path or path, f"queries have {q.shape[1]} dims but the base vectors in {path.name} "
                                        f"have {base.shape[1]}; they must match")

    def ints(arg: PathLike | None, role: str, held: np.ndarray | None, rows: int, rows_of: str,
             what: str) -> np.ndarray | None:
        p = extra(arg, role, INT_EXTS)
        if p is not None:
            return _as_labels(_read_ints(p, what), p, what, rows, rows_of)
        if held is not None:
            return _as_labels(held, path, what, rows, rows_of)
        return None

    b_lab = ints(labels, "labels", b_lab, base.shape[0], "base", "base labels")
    if (query_labels is not None or q_lab is not None) and q is None:
        raise data_error(path, "query labels given but the dataset has no queries")
    q_lab = ints(query_labels, "query_labels", q_lab, 0 if q is None else q.shape[0], "queries",
                 "query labels") if q is not None else None
    id_path = extra(ids, "ids", INT_EXTS)
    id_arr = ints(ids, "ids", id_arr, base.shape[0], "base", "ids")
    if q_sources is not None:
        q_sources = _as_labels(q_sources, path, "query_sources", 0 if q is None else q.shape[0], "queries")
    if neighbors is not None:
        neighbors = _readonly(np.asarray(neighbors, dtype=np.int64))

    ds = Dataset(name=name, base=_readonly(base), queries=None if q is None else _readonly(q),
                 base_labels=b_lab, query_labels=q_lab, ids=id_arr, metric=metric, source=str(path),
                 query_sources=q_sources, neighbors=neighbors)
    if id_arr is not None:
        _check_ids(id_arr, id_path or path)
    return ds if holdout is None else _hold_out(ds, holdout, path)


_H5_KEYS = {"base": "train", "queries": "test", "base_labels": "train_labels", "query_labels": "test_labels",
            "ids": "ids", "query_sources": "query_sources", "neighbors": "neighbors"}


def save_dataset(ds: Dataset, path: Path | str) -> None:
    """Write `ds` as .npz (uncompressed, so it memory-maps on load) or ann-benchmarks .h5/.hdf5, atomically."""
    path = Path(path)
    ext = path.suffix.lower()
    arrays = ds.arrays()
    if ext == ".npz":
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            extra = {"metric": np.array(ds.metric.value)} if ds.metric is not None else {}
            np.savez(fh, **arrays, **extra)
    elif ext in (".h5", ".hdf5"):
        import h5py

        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            for key, arr in arrays.items():
                # contiguous (unchunked, uncompressed) so the loader can memory-map it
                dset = f.create_dataset(_H5_KEYS[key], shape=arr.shape, dtype=arr.dtype)
                for start in range(0, max(len(arr), 1), BLOCK_ROWS):
                    dset[start : start + BLOCK_ROWS] = arr[start : start + BLOCK_ROWS]
            if ds.metric is not None:
                f.attrs["distance"] = "angular" if ds.metric is Metric.COSINE else "euclidean"
    else:
        raise data_error(path, f"cannot save with extension {ext or '(none)'!r}; allowed: .npz, .h5, .hdf5")
