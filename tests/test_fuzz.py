"""Property tests (hypothesis) for the two places a user's files enter annbench: scenarios and loaders.

- The scenario parser: any YAML document — random nested mappings, lists and scalars; random mutations of
  a valid scenario (a key dropped, a value of another type, keys added, at any depth); random text —
  either validates (`load_scenario` returns) or raises an `AnnbenchError`, never anything else.
- The dataset loaders: random bytes behind valid-looking headers (.fbin/.u8bin/.i8bin with random n, d
  and payload length; .fvecs/.bvecs with random dims; .npy with a real header, random shapes and dtypes
  and a random cut; valid .npz/.h5 files cut anywhere; random bytes named .h5/.npz) — `open_dataset`
  either returns a valid Dataset or raises `DataError`, never anything else.

The example database is off (nothing is written into the checkout); a failure prints the example to
reproduce it. Example counts keep the module at a few seconds; set ANNBENCH_FUZZ_EXAMPLES for a longer
hunt. Escapes found so far are pinned with @example.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from annbench.datasets import open_dataset, validate_dataset
from annbench.errors import AnnbenchError, DataError
from annbench.oplog import op_log
from annbench.scenarios import load_scenario

# ANNBENCH_FUZZ_EXAMPLES=5000 for a longer hunt than the suite's few seconds
FUZZ = settings(max_examples=int(os.environ.get("ANNBENCH_FUZZ_EXAMPLES", "150")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

VALID: dict[str, Any] = {
    "name": "fuzz",
    "description": "a valid scenario the mutations start from",
    "dataset": {"name": "catalog", "params": {"seed": 1, "n": 400, "dim": 8, "n_queries": 20}},
    "metric": "cosine",
    "k": 5,
    "seed": 0,
    "threads": 1,
    "timeout_s": 60,
    "warmup": True,
    "queries": {"count": 20, "deleted_products": "keep"},
    "timeline": {"kind": "daily", "initial_fraction": 0.8, "days": 2, "insert_fraction": 0.02,
                 "delete_fraction": 0.02, "update_fraction": 0.01, "delete_rule": "random"},
    "rebuild_every": 2,
    "policies": ["native"],
    "indexes": [
        {"family": "faiss-ivf", "name": "ivf", "build": {"nlist": [4, 8]}, "search": {"nprobe": [1, 2]}},
        {"family": "hnswlib", "build": {"M": 8}, "search": {"ef": 10}, "policies": ["native", "tombstone"]},
        {"family": "annoy", "build": {"n_trees": 2}, "policies": ["rebuild"]},
    ],
}

# keys and values a scenario really uses, mixed with arbitrary ones, so mutations reach deep validation
KNOWN_KEYS = sorted({"name", "dataset", "params", "path", "queries", "labels", "dim", "metric", "k", "seed",
                     "threads", "timeout_s", "warmup", "keep_answers", "count", "deleted_products", "timeline",
                     "kind", "sizes", "days", "initial_fraction", "insert_fraction", "delete_fraction",
                     "update_fraction", "delete_rule", "rebuild_every", "policies", "indexes", "family",
                     "build", "search", "nlist", "nprobe", "encoding", "M", "ef", "n", "n_trees", "search_k"})
KNOWN_VALUES = ["catalog", "daily", "static", "native", "tombstone", "rebuild", "cosine", "l2", "faiss-flat",
                "faiss-ivf", "faiss-hnsw", "hnswlib", "annoy", "scann", "oldest", "product", "drop", "keep",
                "../etc", "Flat", "PQ4", ""]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.sampled_from(KNOWN_VALUES),
    st.integers(min_value=-3, max_value=5000),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=8), st.integers(-5, 5), st.booleans())
values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=12,
)


def _load(text: str) -> None:
    """Parse `text` as a scenario and simulate its timeline on a 400-row pool with 20 queries (what
    `harness.prepare` does before anything is built): anything but success or a one-line AnnbenchError
    fails the property."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            sc = load_scenario(path)
            for size in sc.sizes():
                op_log(sc, np.arange(1000, 1400, dtype=np.int64), None, None, 20, size)
        except AnnbenchError as e:
            assert "\n" not in str(e), str(e)


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def test_the_starting_scenario_is_valid() -> None:
    _load(_dump(VALID))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "s.yaml").write_text(_dump(VALID))
        assert len(load_scenario(Path(tmp) / "s.yaml").indexes) == 4


@FUZZ
@given(values)
def test_any_yaml_document_validates_or_raises_annbench_error(doc: Any) -> None:
    _load(_dump(doc))


@FUZZ
@given(st.text(max_size=200))
def test_any_text_validates_or_raises_annbench_error(text: str) -> None:
    _load(text)


# fragments of YAML syntax, so random text reaches tags, anchors, complex keys and flow collections
YAML_BITS = ["name: x\n", "k: 5\n", "indexes:\n", "- family: faiss-flat\n", "  ", "? ", ": ", "[", "]", "{", "}",
             ", ", "&a ", "*a", "!!set ", "!!binary ", "!!python/object:os.system ", "!!str ", "!!int ", "<<: ",
             "- ", "\n", "'", '"', "#", "|\n", ">\n", "---\n", "...\n", "%YAML 1.1\n", "\t", "1e400", ".nan",
             "~", "0x1F", "0o7", "2001-12-14", "yes", "null", "a", "ä", "\x00", "\ufeff"]


@FUZZ
@given(st.lists(st.sampled_from(YAML_BITS), max_size=30))
@example(["? ", "[", "a", "]", ": ", "a", "\n"])  # a list as a mapping key: was a TypeError
def test_yaml_syntax_soup_validates_or_raises_annbench_error(bits: list[str]) -> None:
    _load("".join(bits))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (a tuple of keys and list positions) to a node of the document, the root included."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    doc = yaml.safe_load(_dump(VALID))  # a deep copy
    for _ in range(draw(st.integers(1, 4))):
        targets = _paths(doc)
        where = draw(st.sampled_from(targets))
        parent = doc
        for step in where[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["drop", "retype", "add"]))
        if not where:  # the root: only keys can be added to it
            action = "add"
        node = parent[where[-1]] if where else doc
        if action == "drop":
            del parent[where[-1]]
        elif action == "retype":
            parent[where[-1]] = draw(values)
        elif isinstance(node, dict):
            node[draw(keys)] = draw(values)
        elif isinstance(node, list):
            node.insert(draw(st.integers(0, len(node))), draw(values))
        else:
            parent[where[-1]] = draw(values)
        if not isinstance(doc, dict):
            break
    return doc


@FUZZ
@given(mutated())
def test_mutated_scenarios_validate_or_raise_annbench_error(doc: dict[str, Any]) -> None:
    _load(_dump(doc))


# --- loaders ----------------------------------------------------------------------------------------------
def _open(name: str, data: bytes) -> None:
    """Open `data` saved as `name`: a valid Dataset or a one-line DataError, nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            ds = open_dataset(path)
        except DataError as e:
            assert "\n" not in str(e), str(e)
            return
        # what was returned must be usable as is: 2-D float32, finite, non-empty
        assert ds.base.ndim == 2 and ds.base.dtype == np.float32 and ds.n > 0 and ds.dim > 0
        validate_dataset(ds)
        del ds  # release the memory map before the folder goes


sizes = st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1))
payload = st.binary(max_size=600)


@FUZZ
@given(st.sampled_from([".fbin", ".u8bin", ".i8bin"]), sizes, sizes, payload, st.booleans())
def test_bin_headers_with_random_payloads(ext: str, n: int, d: int, body: bytes, exact: bool) -> None:
    item = {".fbin": 4, ".u8bin": 1, ".i8bin": 1}[ext]
    if exact and n * d * item <= 4096:  # a payload of exactly the promised size, random values
        body = (body * (n * d * item // max(len(body), 1) + 1))[: n * d * item] if body else bytes(n * d * item)
    _open("x" + ext, struct.pack("<II", n, d) + body)


def _fill(body: bytes, width: int) -> bytes:
    """`width` bytes cycled from `body` (zeros when it is empty)."""
    return (body * (width // len(body) + 1))[:width] if body else bytes(width)


@FUZZ
@given(st.sampled_from([".fvecs", ".bvecs"]), st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=4),
       st.integers(1, 8), st.integers(0, 64), payload, st.integers(0, 7))
def test_vecs_with_random_dims(ext: str, dims: list[int], rows: int, width: int, body: bytes, cut: int) -> None:
    # every row is written `width` values wide whatever dim it declares, so declared dims may lie
    item = 4 if ext == ".fvecs" else 1
    data = b"".join(struct.pack("<i", dims[r % len(dims)]) + _fill(body, width * item) for r in range(rows))
    _open("x" + ext, data[: len(data) - cut])


npy_dtypes = st.sampled_from(["<f4", "<f8", "<f2", ">f4", "<i4", "<u1", "|b1", "<c8", "<U3", "|S2", "<i8"])
# powers of two make rows × dims × itemsize wrap around int64, which a size check must not be fooled by
npy_shapes = st.lists(st.one_of(st.integers(0, 6), st.integers(0, 2**62), st.sampled_from([2**61, 2**62, 2**63 - 1])),
                      min_size=0, max_size=3)


@FUZZ
@given(npy_dtypes, npy_shapes, st.booleans(), payload, st.integers(0, 10_000))
@example("<f4", [2**61, 4], False, bytes(64), 0)  # the byte size wraps to 0: was a ValueError from np.memmap
def test_npy_headers_with_random_shapes_and_cuts(dtype: str, shape: list[int], fortran: bool, body: bytes,
                                                 cut: int) -> None:
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": dtype, "fortran_order": fortran, "shape": tuple(shape)})
    data = head.getvalue() + body
    _open("x.npy", data[: max(len(data) - cut, 0)] if cut % 3 == 0 else data)


@FUZZ
@given(st.integers(0, 1_000_000), st.booleans())
def test_valid_files_cut_anywhere(cut_per_million: int, as_h5: bool) -> None:
    rng = np.random.default_rng(0)
    base, queries = rng.standard_normal((40, 4)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)
    buf = io.BytesIO()
    if as_h5:
        with h5py.File(buf, "w") as f:
            f.create_dataset("train", data=base)
            f.create_dataset("test", data=queries)
            f.attrs["distance"] = "euclidean"
        name = "x.h5"
    else:
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for key, arr in (("base", base), ("queries", queries)):
                member = io.BytesIO()
                np.save(member, arr)
                zf.writestr(f"{key}.npy", member.getvalue())
        name = "x.npz"
    data = buf.getvalue()
    _open(name, data[: len(data) * cut_per_million // 1_000_000])


@FUZZ
@given(st.sampled_from(["x.h5", "x.hdf5", "x.npz", "x.npy"]), st.binary(max_size=2048),
       st.sampled_from([b"", b"\x89HDF\r\n\x1a\n", b"PK\x03\x04", b"\x93NUMPY\x01\x00"]))
def test_random_bytes_behind_magic_numbers(name: str, body: bytes, magic: bytes) -> None:
    _open(name, magic + body)
