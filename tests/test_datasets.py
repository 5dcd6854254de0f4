"""Tests of annbench.datasets: every format read from files written by hand per its spec, save/load
round trips, memory mapping where promised, and one-line DataErrors for bad files."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from annbench import datasets
from annbench.adapters.base import Metric
from annbench.datasets import Dataset, Holdout, open_dataset, save_dataset, validate_dataset
from annbench.errors import ConfigError, DataError

RNG = np.random.default_rng(7)
BASE = RNG.standard_normal((50, 6)).astype(np.float32)
QUERIES = RNG.standard_normal((4, 6)).astype(np.float32)


# -- writers that follow each format's spec (deliberately not save_dataset) ---------------------------


def write_vecs(path: Path, x: np.ndarray, dims: list[int] | None = None) -> Path:
    """fvecs/ivecs/bvecs: per row an int32 dim then the values (dims overrides the per-row dim ints)."""
    with open(path, "wb") as fh:
        for i, row in enumerate(x):
            fh.write(struct.pack("<i", x.shape[1] if dims is None else dims[i]))
            fh.write(row.tobytes())
    return path


def write_bin(path: Path, x: np.ndarray, header: tuple[int, int] | None = None) -> Path:
    """big-ann bin: uint32 n, uint32 d, then the values row-major."""
    with open(path, "wb") as fh:
        fh.write(struct.pack("<II", *(header or x.shape)))
        fh.write(np.ascontiguousarray(x).tobytes())
    return path


def write_annb(path: Path, train: np.ndarray, test: np.ndarray | None, distance: str = "euclidean",
               **extra: np.ndarray) -> Path:
    """ann-benchmarks HDF5: train, test, neighbors, distances and the `distance` attribute."""
    with h5py.File(path, "w") as f:
        f.create_dataset("train", data=train)
        if test is not None:
            f.create_dataset("test", data=test)
            d = ((test[:, None, :] - train[None, :, :]) ** 2).sum(-1)
            nn = np.argsort(d, axis=1)[:, :10]
            f.create_dataset("neighbors", data=nn.astype(np.int32))
            f.create_dataset("distances", data=np.sqrt(np.take_along_axis(d, nn, 1)).astype(np.float32))
        for key, arr in extra.items():
            f.create_dataset(key, data=arr)
        f.attrs["distance"] = distance
    return path


def is_mapped(arr: np.ndarray) -> bool:
    return isinstance(arr, np.memmap) or isinstance(getattr(arr, "base", None), np.memmap)


# -- formats --------------------------------------------------------------------------------------------


def test_npy_is_memory_mapped_and_finds_siblings(tmp_path: Path) -> None:
    np.save(tmp_path / "emb.npy", BASE)
    np.save(tmp_path / "emb.queries.npy", QUERIES)
    np.save(tmp_path / "emb.labels.npy", np.arange(50) // 2)
    np.save(tmp_path / "emb.query_labels.npy", np.array([0, 1, 2, 3], dtype=np.int32))
    np.save(tmp_path / "emb.ids.npy", np.arange(50, dtype=np.uint32) + 1000)
    ds = open_dataset(tmp_path / "emb.npy")
    assert is_mapped(ds.base) and is_mapped(ds.queries)
    assert ds.name == "emb" and (ds.n, ds.dim, ds.nq) == (50, 6, 4)
    np.testing.assert_array_equal(ds.base, BASE)
    np.testing.assert_array_equal(ds.queries, QUERIES)
    assert ds.base_labels.dtype == np.int64 and ds.base_labels[3] == 1
    assert ds.query_labels.tolist() == [0, 1, 2, 3]
    assert ds.ids.dtype == np.int64 and ds.base_ids()[0] == 1000
    assert ds.metric is None  # .npy declares no metric


def test_npy_explicit_paths_win_over_siblings(tmp_path: Path) -> None:
    np.save(tmp_path / "emb.npy", BASE)
    np.save(tmp_path / "emb.queries.npy", QUERIES)
    np.save(tmp_path / "other_q.npy", QUERIES[:2])
    np.save(tmp_path / "lab.npy", np.zeros(50, dtype=np.int64))
    ds = open_dataset(tmp_path / "emb.npy", queries=tmp_path / "other_q.npy", labels=str(tmp_path / "lab.npy"))
    assert ds.nq == 2 and ds.base_labels.sum() == 0
    assert ds.ids is None and ds.base_ids().tolist() == list(range(50))


def test_npy_float64_converted_to_float32(tmp_path: Path) -> None:
    np.save(tmp_path / "f64.npy", BASE.astype(np.float64))
    ds = open_dataset(tmp_path / "f64.npy")
    assert ds.base.dtype == np.float32
    np.testing.assert_array_equal(ds.base, BASE)


def test_fvecs_is_a_strided_memmap(tmp_path: Path) -> None:
    write_vecs(tmp_path / "sift.fvecs", BASE)
    write_vecs(tmp_path / "sift.queries.fvecs", QUERIES)
    write_vecs(tmp_path / "gt.ivecs", np.arange(50, dtype=np.int32)[:, None] // 5)
    ds = open_dataset(tmp_path / "sift.fvecs", labels=tmp_path / "gt.ivecs")
    assert isinstance(ds.base, np.memmap) and ds.base.dtype == np.float32
    np.testing.assert_array_equal(ds.base, BASE)
    np.testing.assert_array_equal(ds.queries, QUERIES)
    assert ds.base_labels.tolist() == (np.arange(50) // 5).tolist()


def test_bvecs_converted_to_float32(tmp_path: Path) -> None:
    x = RNG.integers(0, 256, size=(20, 12), dtype=np.uint8)
    write_vecs(tmp_path / "b.bvecs", x)
    ds = open_dataset(tmp_path / "b.bvecs")
    assert ds.base.dtype == np.float32
    np.testing.assert_array_equal(ds.base, x.astype(np.float32))


def test_bin_formats(tmp_path: Path) -> None:
    write_bin(tmp_path / "base.fbin", BASE)
    write_bin(tmp_path / "base.queries.fbin", QUERIES)
    write_bin(tmp_path / "base.labels.ibin", (np.arange(50, dtype=np.int32) % 7)[:, None])
    ds = open_dataset(tmp_path / "base.fbin")
    assert isinstance(ds.base, np.memmap)
    np.testing.assert_array_equal(ds.base, BASE)
    np.testing.assert_array_equal(ds.queries, QUERIES)
    assert ds.base_labels.tolist() == (np.arange(50) % 7).tolist()
    u8 = RNG.integers(0, 256, size=(9, 5), dtype=np.uint8)
    i8 = RNG.integers(-128, 128, size=(9, 5), dtype=np.int8)
    np.testing.assert_array_equal(open_dataset(write_bin(tmp_path / "u.u8bin", u8)).base, u8.astype(np.float32))
    np.testing.assert_array_equal(open_dataset(write_bin(tmp_path / "i.i8bin", i8)).base, i8.astype(np.float32))


@pytest.mark.parametrize("distance, metric", [("angular", Metric.COSINE), ("euclidean", Metric.L2)])
def test_ann_benchmarks_hdf5(tmp_path: Path, distance: str, metric: Metric) -> None:
    path = write_annb(tmp_path / "glove-25-angular.hdf5", BASE, QUERIES, distance)
    ds = open_dataset(path)
    assert ds.metric is metric and ds.name == "glove-25-angular"
    assert is_mapped(ds.base)  # h5py writes contiguous datasets: mapped at their file offset
    np.testing.assert_array_equal(ds.base, BASE)
    np.testing.assert_array_equal(ds.queries, QUERIES)
    assert ds.neighbors.shape == (4, 10) and ds.neighbors.dtype == np.int64


def test_chunked_compressed_hdf5_is_read_into_memory(tmp_path: Path) -> None:
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("train", data=BASE, chunks=(10, 6), compression="gzip")
        f.create_dataset("test", data=QUERIES.astype(np.float64))
    ds = open_dataset(path)
    assert not is_mapped(ds.base) and ds.queries.dtype == np.float32
    np.testing.assert_array_equal(ds.base, BASE)
    assert ds.metric is None  # no `distance` attribute


def _full_dataset() -> Dataset:
    return Dataset(name="t", base=BASE, queries=QUERIES, base_labels=np.arange(50) // 3,
                   query_labels=np.array([0, 4, 9, 16]), ids=np.arange(50, dtype=np.int64) * 7 + 10**6,
                   metric=Metric.COSINE, source="memory", query_sources=np.array([0, 12, 27, 49]))


@pytest.mark.parametrize("ext", [".npz", ".h5", ".hdf5"])
def test_save_and_load_round_trip(tmp_path: Path, ext: str) -> None:
    ds = _full_dataset()
    path = tmp_path / f"sub/saved{ext}"
    save_dataset(ds, path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # the temp file was renamed away
    back = open_dataset(path)
    assert is_mapped(back.base) and is_mapped(back.queries)
    for key in ("base", "queries", "base_labels", "query_labels", "ids", "query_sources"):
        np.testing.assert_array_equal(getattr(back, key), getattr(ds, key), err_msg=key)
    assert back.metric is Metric.COSINE
    assert back.content_hash() == ds.content_hash()


def test_compressed_npz_is_read_into_memory(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "z.npz", base=BASE, queries=QUERIES, ids=np.arange(50) + 7)
    ds = open_dataset(tmp_path / "z.npz")
    assert not is_mapped(ds.base) and ds.metric is None
    np.testing.assert_array_equal(ds.base, BASE)
    assert ds.base_ids()[0] == 7


def test_save_overwrites_atomically_and_refuses_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    save_dataset(_full_dataset(), path)
    save_dataset(Dataset(name="small", base=BASE[:5]), path)
    assert open_dataset(path).n == 5
    with pytest.raises(DataError, match=r"d\.csv"):
        save_dataset(_full_dataset(), tmp_path / "d.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


def test_content_hash_is_format_independent_blockwise_and_sensitive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.save(tmp_path / "a.npy", BASE)
    write_bin(tmp_path / "a.fbin", BASE)
    write_vecs(tmp_path / "a.fvecs", BASE)
    hashes = {open_dataset(tmp_path / f"a.{e}").content_hash() for e in ("npy", "fbin", "fvecs")}
    assert len(hashes) == 1
    monkeypatch.setattr(datasets, "BLOCK_ROWS", 7)  # many blocks: same digest
    assert open_dataset(tmp_path / "a.fvecs").content_hash() in hashes
    changed = BASE.copy()
    changed[33, 2] += 1e-3
    assert Dataset(name="x", base=changed).content_hash() not in hashes
    assert Dataset(name="x", base=BASE, metric=Metric.L2).content_hash() not in hashes


def test_open_catalog_spec() -> None:
    ds = open_dataset("catalog", n=500, n_queries=20, seed=3)
    assert ds.name == "catalog" and ds.n == 500 and ds.nq == 20 and ds.metric is Metric.COSINE
    with pytest.raises(ConfigError):
        open_dataset("catalog", queries="q.npy")


def test_nan_found_in_a_later_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "BLOCK_ROWS", 8)
    x = BASE.copy()
    x[41, 0] = np.nan
    np.save(tmp_path / "late.npy", x)
    with pytest.raises(DataError, match=r"late\.npy: base row 41 holds NaN"):
        open_dataset(tmp_path / "late.npy")


def test_hand_built_dataset_checks() -> None:
    with pytest.raises(DataError, match="base_labels has 3 entries"):
        Dataset(name="m", base=BASE, base_labels=np.arange(3))
    bad = BASE.copy()
    bad[0] = 0.0
    validate_dataset(Dataset(name="m", base=bad))  # zero rows are fine for l2 …
    with pytest.raises(DataError, match="all zeros"):
        validate_dataset(Dataset(name="m", base=bad), metric="cosine")  # … not for cosine


# -- bad files: one line per case ------------------------------------------------------------------------
# each maker writes its bad file(s) under tmp and returns (spec, open_dataset kwargs, culprit file name)

Maker = Callable[[Path], tuple[Path, dict, str]]


def _npy(name: str, arr: np.ndarray, **kw: object) -> Maker:
    def make(tmp: Path) -> tuple[Path, dict, str]:
        np.save(tmp / name, arr, allow_pickle=True)
        return tmp / name, dict(kw), name
    return make


def _with_extra(main: tuple[str, np.ndarray], role: str, extra: tuple[str, np.ndarray], culprit: str) -> Maker:
    def make(tmp: Path) -> tuple[Path, dict, str]:
        np.save(tmp / main[0], main[1])
        np.save(tmp / extra[0], extra[1])
        return tmp / main[0], {role: tmp / extra[0]}, culprit
    return make


def _raw(name: str, write: Callable[[Path], object], culprit: str | None = None, **kw: object) -> Maker:
    def make(tmp: Path) -> tuple[Path, dict, str]:
        write(tmp / name)
        return tmp / name, {k: tmp / v for k, v in kw.items()}, culprit or name
    return make


def _truncated_h5(path: Path) -> None:
    write_annb(path, BASE, QUERIES)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _nan(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[3, 1] = np.nan
    return x


def _inf(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[7, 0] = -np.inf
    return x


BAD_FILES = [
    pytest.param(_raw("short.fbin", lambda p: write_bin(p, BASE, header=(51, 6))), "size", id="fbin-size"),
    pytest.param(_raw("tiny.fbin", lambda p: p.write_bytes(b"\x01\x00")), "too short", id="fbin-header"),
    pytest.param(_raw("dims.fvecs", lambda p: write_vecs(p, BASE[:4], dims=[6, 6, 5, 6])), "declares dim",
                 id="fvecs-row-dims"),
    pytest.param(_raw("cut.fvecs", lambda p: p.write_bytes(write_vecs(p, BASE).read_bytes()[:-3])),
                 "not a multiple", id="fvecs-size"),
    pytest.param(_npy("nan.npy", _nan(BASE)), "NaN", id="nan"),
    pytest.param(_raw("inf.fbin", lambda p: write_bin(p, _inf(BASE))), "inf", id="inf"),
    pytest.param(_with_extra(("b.npy", BASE), "queries", ("q.npy", QUERIES[:, :5]), "q.npy"), "dims",
                 id="dim-mismatch"),
    pytest.param(_npy("empty.npy", np.zeros((0, 6), np.float32)), "empty", id="empty-rows"),
    pytest.param(_npy("nodims.npy", np.zeros((5, 0), np.float32)), "empty", id="empty-dims"),
    pytest.param(_npy("flat.npy", BASE[0]), "2-D", id="one-dimensional"),
    pytest.param(_raw("trunc.hdf5", _truncated_h5), "truncated", id="truncated-hdf5"),
    pytest.param(_raw("nokey.h5", lambda p: h5py.File(p, "w").create_dataset("test", data=QUERIES).file.close()),
                 "'train'", id="missing-hdf5-key"),
    pytest.param(_raw("jac.hdf5", lambda p: write_annb(p, BASE, QUERIES, "jaccard")), "jaccard",
                 id="unsupported-distance"),
    pytest.param(_raw("zero.hdf5", lambda p: write_annb(p, np.vstack([BASE, np.zeros((1, 6), np.float32)]),
                                                        QUERIES, "angular")), "all zeros", id="zero-row-cosine"),
    pytest.param(_npy("cplx.npy", BASE.astype(np.complex64)), "complex64", id="complex-dtype"),
    pytest.param(_npy("obj.npy", np.array([[1, "a"]], dtype=object)), "objects", id="object-dtype"),
    pytest.param(_npy("str.npy", np.array([["a", "b"]])), "dtype", id="string-dtype"),
    pytest.param(_with_extra(("b.npy", BASE), "labels", ("lab.npy", np.arange(49)), "lab.npy"), "49 entries",
                 id="labels-length"),
    pytest.param(_with_extra(("b.npy", BASE), "labels", ("lab.npy", np.ones(50)), "lab.npy"), "integer",
                 id="float-labels"),
    pytest.param(_with_extra(("b.npy", BASE), "ids", ("ids.npy", np.r_[np.arange(49), 5]), "ids.npy"),
                 "not unique", id="duplicate-ids"),
    pytest.param(_raw("absent.npy", lambda p: None), "no such file", id="missing-file"),
    pytest.param(_raw("emb.csv", lambda p: p.write_text("1,2\n")), "unknown extension", id="unknown-extension"),
    pytest.param(_raw("gt.ivecs", lambda p: write_vecs(p, np.ones((3, 2), np.int32))), "integer vectors",
                 id="ivecs-as-base"),
    pytest.param(_raw("junk.npy", lambda p: p.write_bytes(b"not numpy at all")), "valid .npy", id="bad-npy-magic"),
    pytest.param(_raw("cut.npy", lambda p: p.write_bytes(np.save(p, BASE) or p.read_bytes()[:-40])), "truncated",
                 id="truncated-npy"),
    pytest.param(_raw("junk.npz", lambda p: p.write_bytes(b"PK but not a zip")), "npz", id="bad-npz"),
    pytest.param(_raw("dir.npy", lambda p: p.mkdir()), "not a regular file", id="directory"),
]


@pytest.mark.parametrize("make, expected", BAD_FILES)
def test_bad_files_raise_one_line_data_error(tmp_path: Path, make: Maker, expected: str) -> None:
    spec, kwargs, culprit = make(tmp_path)
    with pytest.raises(DataError) as info:
        open_dataset(spec, **kwargs)
    message = str(info.value)
    assert culprit in message, message
    assert expected in message, message
    assert "\n" not in message and "\r" not in message


def test_a_pass_over_a_memory_mapped_file_does_not_keep_it_in_rss(tmp_path: Path) -> None:
    """datasets._blocks drops each memory-mapped block's pages after use; data read and written stay right."""
    import psutil

    from annbench.dataset import _blocks, drop_pages

    src = np.random.default_rng(1).standard_normal((200_000, 64)).astype(np.float32)  # 51 MB
    np.save(tmp_path / "x.npy", src)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    proc = psutil.Process()
    before = proc.memory_info().rss
    sums = [float(b.sum(dtype=np.float64)) for b in _blocks(mapped)]
    grown = proc.memory_info().rss - before
    assert grown < 8 << 20, f"RSS grew {grown / 2**20:.1f} MiB over a pass of a 51 MB mapped file"
    assert sums == [float(b.sum(dtype=np.float64)) for b in _blocks(src)]
    # written pages survive being dropped (shared mapping: they are in the page cache and then the file)
    out = np.lib.format.open_memmap(tmp_path / "y.npy", mode="w+", dtype=np.float32, shape=src.shape)
    for i in range(0, len(src), 50_000):
        out[i:i + 50_000] = mapped[i:i + 50_000]
        drop_pages(out[i:i + 50_000])
    out.flush()
    del out
    assert np.array_equal(np.load(tmp_path / "y.npy"), src)
    drop_pages(src[:10])  # not memory-mapped: nothing to do


# -- issue 16: queries held out of the base, whether a file has queries, memory before converting ------------
def test_holdout_moves_random_rows_out_of_the_base(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1000, 6)).astype(np.float32)
    np.save(tmp_path / "emb.npy", x)
    np.save(tmp_path / "emb.queries.npy", x[:5])  # a companion the held-out queries replace
    np.save(tmp_path / "emb.labels.npy", np.arange(1000) // 4)
    ds = open_dataset(tmp_path / "emb.npy", queries=Holdout(50))
    assert (ds.n, ds.nq) == (950, 50)
    picked = np.setdiff1d(np.arange(1000), ds.ids)
    assert len(picked) == 50 and np.array_equal(ds.queries, x[picked])  # the rows the base lost …
    assert np.array_equal(ds.base, x[ds.ids])                           # … and the base keeps its ids
    assert np.array_equal(ds.query_labels, picked // 4) and np.array_equal(ds.base_labels, ds.ids // 4)
    assert picked.max() - picked.min() > 500  # a random sample of the file, not its last rows
    again = open_dataset(tmp_path / "emb.npy", queries=Holdout(50))
    assert again.content_hash() == ds.content_hash()  # fixed seed: the same split every time
    assert open_dataset(tmp_path / "emb.npy", queries=Holdout(50, seed=1)).content_hash() != ds.content_hash()
    with pytest.raises(DataError, match="hold out at most 999"):
        open_dataset(tmp_path / "emb.npy", queries=Holdout(1000))
    with pytest.raises(ConfigError, match="pass labels=, not query_labels="):
        open_dataset(tmp_path / "emb.npy", queries=Holdout(5), query_labels=tmp_path / "emb.labels.npy")


def test_holdout_replaces_a_containers_queries(tmp_path: Path) -> None:
    save_dataset(_full_dataset(), tmp_path / "d.npz")
    ds = open_dataset(tmp_path / "d.npz", queries=Holdout(3))
    assert ds.nq == 3 and ds.query_sources is None and ds.neighbors is None
    full = _full_dataset()
    rows = np.nonzero(~np.isin(full.ids, ds.ids))[0]  # the held-out rows, by their ids
    assert np.array_equal(ds.queries, full.base[rows]) and np.array_equal(ds.query_labels, full.base_labels[rows])


def test_has_queries_is_told_cheaply(tmp_path: Path) -> None:
    x = np.ones((10, 4), np.float32)
    np.save(tmp_path / "a.npy", x)
    assert datasets.has_queries(tmp_path / "a.npy") is False
    np.save(tmp_path / "a.queries.npy", x)
    assert datasets.has_queries(tmp_path / "a.npy") is True
    save_dataset(_full_dataset(), tmp_path / "d.npz")
    save_dataset(_full_dataset(), tmp_path / "d.h5")
    assert datasets.has_queries(tmp_path / "d.npz") is True and datasets.has_queries(tmp_path / "d.h5") is True
    write_annb(tmp_path / "noq.h5", x, None)
    assert datasets.has_queries(tmp_path / "noq.h5") is False
    assert datasets.has_queries(tmp_path / "missing.npy") is None
    write_bin(tmp_path / "t.fbin", x, header=(11, 4))  # truncated: the file's own fault is said first
    with pytest.raises(DataError, match="but the file has"):
        datasets.has_queries(tmp_path / "t.fbin")


def test_conversion_to_float32_checks_memory_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.save(tmp_path / "f64.npy", np.ones((100, 4)))
    monkeypatch.setattr(datasets, "memory_shortfall", lambda need: f"needs {need} B, has 10 B")
    with pytest.raises(DataError, match="converting them to float32 needs 1600 B, has 10 B"):
        open_dataset(tmp_path / "f64.npy")
