"""Conformance suite of the built-in adapters (annbench/adapters/*.py).

Every registered library family runs the same checks on both metrics, on 2,000 clustered 32-d vectors
whose ids are not positions: recall at default parameters, add / delete / update exactly as each
adapter's capability declaration says, parameter validation, purity towards the caller's arrays,
save and threads. The trap tests at the end fail if a library trap the adapters work around returns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from annbench import adapters
from annbench.adapters.base import Adapter, Metric, Safety, Support, declared_safety, prepare_vectors
from annbench.errors import AnnbenchError, CapabilityError, ConfigError
from tests.conftest import two_clients_answer_as_one

N, DIM, N_CENTRES, SEED = 2_000, 32, 40, 20240611
N_ADD, N_DELETE, N_UPDATE = 200, 200, 50


@dataclass(frozen=True)
class Family:
    """One adapter configuration family under test, with the recall@10 it must reach at defaults."""

    key: str  # pytest id
    name: str  # registry name
    min_recall: float
    build: dict[str, Any] = field(default_factory=dict)


# Thresholds sit a few points below the recall@10 measured at default search parameters on this data
# (faiss 1.15.1, hnswlib 0.8.0, annoy 1.17.3, scann 1.4.2, usearch 2.26.6, voyager 2.2.3), l2 / cosine:
# flat 1.000 / 1.000, IVF-Flat (nprobe 8 of 51 lists) .978 / .977, IVF-PQ16x4 (no re-ranking) .731 / .586,
# faiss HNSW 1.000 / 1.000, hnswlib 1.000 / .999, annoy (50 trees) .973 / .971, scann (10 of 40 leaves)
# .916 / .919, usearch (f32) 1.000 / .999, voyager .999 / .996.
FAMILIES = [
    Family("faiss-flat", "faiss-flat", 0.99),
    Family("faiss-ivf-flat", "faiss-ivf", 0.9, {"encoding": "Flat"}),
    Family("faiss-ivf-pq", "faiss-ivf", 0.45, {"encoding": "PQ16x4"}),
    Family("faiss-hnsw", "faiss-hnsw", 0.95),
    Family("hnswlib", "hnswlib", 0.95),
    Family("annoy", "annoy", 0.9),
    Family("scann", "scann", 0.85),
    Family("usearch", "usearch", 0.95),
    Family("voyager", "voyager", 0.95),
    # lancedb 0.40.0 IVF_PQ at defaults (45 partitions, 4 sub-vectors × 8 bits, nprobes 20, no refine): .558 / .561
    Family("lancedb", "lancedb", 0.5),
    # pgvector 0.8.5 HNSW (m 16, ef_construction 64, ef_search 40), in its own PostgreSQL 18.4 server:
    # .997 / .998 (l2 / cosine)
    Family("pgvector", "pgvector", 0.95),
]
# An adapter's author runs this suite on a plugin without editing this file (CONTRIBUTING.md):
#   ANNBENCH_EXTRA_FAMILIES="my-exact:0.99,other" pytest tests/test_adapters.py -k "my-exact or other"
for _spec in filter(None, os.environ.get("ANNBENCH_EXTRA_FAMILIES", "").split(",")):
    _name, _, _min = _spec.strip().partition(":")
    FAMILIES.append(Family(_name, _name, float(_min or 0.9)))
METRICS = [Metric.L2, Metric.COSINE]


def _make_data(metric: Metric) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    # Offset centres keep the clusters away from the origin, so a negated vector is far in L2 too.
    centres = rng.normal(size=(N_CENTRES, DIM)) + 2.0

    def draw(n: int) -> np.ndarray:
        return centres[rng.integers(N_CENTRES, size=n)] + 1.0 * rng.normal(size=(n, DIM))

    base, extra, queries = draw(N), draw(N_ADD), draw(100)
    return {
        "base": prepare_vectors(base, metric),
        "ids": 10_000_000 + 7 * np.arange(N, dtype=np.int64),
        "extra": prepare_vectors(extra, metric),
        "extra_ids": 50_000_000 + 11 * np.arange(N_ADD, dtype=np.int64),
        "queries": prepare_vectors(queries, metric),
    }


_DATA = {m: _make_data(m) for m in METRICS}


def _exact(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int, metric: Metric) -> np.ndarray:
    vectors, queries = vectors.astype(np.float64), queries.astype(np.float64)
    if metric is Metric.COSINE:
        dist = -queries @ vectors.T
    else:
        dist = (queries**2).sum(1)[:, None] - 2 * queries @ vectors.T + (vectors**2).sum(1)[None, :]
    return ids[np.argsort(dist, axis=1, kind="stable")[:, :k]]


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k].tolist()) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)]))


def _fresh(family: Family, metric: Metric, **extra: Any) -> Adapter:
    data = _DATA[metric]
    index = adapters.get(family.name)(metric, DIM, **{**family.build, **extra})
    index.build(data["base"], data["ids"])
    return index


_BUILT: dict[tuple[str, Metric], Adapter] = {}


def _shared(family: Family, metric: Metric) -> Adapter:
    """A built index for read-only tests (recall, save, params, threads); never mutate it."""
    if (family.key, metric) not in _BUILT:
        _BUILT[family.key, metric] = _fresh(family, metric)
    return _BUILT[family.key, metric]


def _rank_of(result: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per row: the position of ids[row] in result[row], or -1 when absent."""
    hit = result == ids[:, None]
    return np.where(hit.any(1), hit.argmax(1), -1)


family_param = pytest.mark.parametrize("family", FAMILIES, ids=[f.key for f in FAMILIES])
metric_param = pytest.mark.parametrize("metric", METRICS, ids=[m.value for m in METRICS])


def test_registry_names_match_classes() -> None:
    for name in adapters.names():
        cls = adapters.get(name)
        assert cls.name == name
        for p in (*cls.build_params, *cls.search_params):
            assert p.help, f"{name}: parameter {p.name} has no help"
            assert p.coerce(p.default, name) == p.default


def check_declares_concurrency(cls: type[Adapter]) -> None:
    """The conformance rule: an adapter class declares which calls may overlap (`concurrency`, a Safety),
    in itself or a base below `Adapter`, with the source of the claim."""
    safety = declared_safety(cls)
    assert isinstance(safety, Safety), (
        f"{cls.__name__} ({getattr(cls, 'name', '?')}) declares no `concurrency = Safety(...)`: say whether "
        "searches may overlap each other and writes, and on what authority (annbench/adapters/base.py)")
    assert safety.source.strip(), f"{cls.__name__}: its Safety gives no source"


def test_every_registered_adapter_declares_its_concurrency() -> None:
    for name in adapters.names():
        check_declares_concurrency(adapters.get(name))


def test_an_adapter_without_a_concurrency_declaration_fails_the_check() -> None:
    from tests.fake_adapters import _Exact

    class Undeclared(Adapter):  # a plugin written without the declaration
        name = "test-undeclared"
        capabilities = _Exact.capabilities
        build = _Exact.build
        search = _Exact.search
        save = _Exact.save

    with pytest.raises(AssertionError, match="declares no `concurrency"):
        check_declares_concurrency(Undeclared)
    assert not hasattr(Adapter, "concurrency"), "the base class must give no default"

    class Inherits(_Exact):  # a base other than Adapter declares it: that counts
        name = "test-inherits"

    check_declares_concurrency(Inherits)


# -- 1. recall at default parameters ---------------------------------------------------------------
@family_param
@metric_param
def test_recall_at_defaults(family: Family, metric: Metric) -> None:
    data = _DATA[metric]
    index = _shared(family, metric)
    found = index.search(data["queries"], 10)
    assert found.shape == (len(data["queries"]), 10) and found.dtype == np.int64
    assert set(found.ravel().tolist()) <= set(data["ids"].tolist())
    truth = _exact(data["base"], data["ids"], data["queries"], 10, metric)
    recall = _recall(found, truth)
    assert recall >= family.min_recall, f"{family.key}/{metric.value}: recall@10 {recall:.3f}"


# -- 2. add ----------------------------------------------------------------------------------------
@family_param
@metric_param
def test_add(family: Family, metric: Metric) -> None:
    data = _DATA[metric]
    index = _fresh(family, metric)
    support = type(index).capabilities.add
    if support is Support.UNSUPPORTED:
        before = index.search(data["queries"], 10)
        with pytest.raises(CapabilityError):
            index.add(data["extra"], data["extra_ids"])
        np.testing.assert_array_equal(index.search(data["queries"], 10), before)
        return
    index.add(data["extra"], data["extra_ids"])
    rank = _rank_of(index.search(data["extra"], 10), data["extra_ids"])
    assert (rank >= 0).all(), f"{(rank < 0).sum()} added ids not found in their own top-10"
    if family.key != "faiss-ivf-pq":  # PQ codes are lossy: a vector's own code need not score best
        assert (rank == 0).mean() >= 0.95
    # The old items are still there.
    truth = _exact(
        np.vstack([data["base"], data["extra"]]), np.concatenate([data["ids"], data["extra_ids"]]),
        data["queries"], 10, metric,
    )
    assert _recall(index.search(data["queries"], 10), truth) >= family.min_recall - 0.05


# -- 3. delete -------------------------------------------------------------------------------------
@family_param
@metric_param
def test_delete(family: Family, metric: Metric) -> None:
    data = _DATA[metric]
    index = _fresh(family, metric)
    rng = np.random.default_rng(1)
    victims = np.sort(rng.choice(N, N_DELETE, replace=False))
    if type(index).capabilities.delete is Support.UNSUPPORTED:
        before = index.search(data["queries"], 10)
        with pytest.raises(CapabilityError):
            index.delete(data["ids"][victims])
        np.testing.assert_array_equal(index.search(data["queries"], 10), before)
        return
    gone = data["ids"][victims]
    index.delete(gone)
    random_queries = prepare_vectors(rng.normal(size=(100, DIM)) + 2.0, metric)
    for queries in (data["base"][victims], random_queries, data["queries"]):
        found = index.search(queries, 50)
        assert not np.isin(found, gone).any(), "a deleted id came back"
    # Survivors are unaffected: each still finds itself (scann moves datapoints around on delete).
    alive = np.setdiff1d(np.arange(N), victims)[::7]
    rank = _rank_of(index.search(data["base"][alive], 10), data["ids"][alive])
    assert (rank >= 0).mean() >= 0.98
    # A deleted id can come back with a new vector (a relisted product).
    back = slice(0, 20)
    index.add(data["extra"][back], gone[back])
    rank = _rank_of(index.search(data["extra"][back], 10), gone[back])
    assert (rank >= 0).all()
    assert not np.isin(index.search(data["base"][victims[20:]], 50), gone[20:]).any()


# -- 4. update -------------------------------------------------------------------------------------
@family_param
@metric_param
def test_update(family: Family, metric: Metric) -> None:
    data = _DATA[metric]
    index = _fresh(family, metric)
    rng = np.random.default_rng(2)
    which = np.sort(rng.choice(N, N_UPDATE, replace=False))
    ids, old = data["ids"][which], data["base"][which]
    # Far from the old vector under both metrics (negative dot product, large L2 distance).
    new = prepare_vectors(-old + 0.05 * rng.normal(size=old.shape), metric)
    if type(index).capabilities.update is Support.UNSUPPORTED:
        with pytest.raises(CapabilityError):
            index.update(new, ids)
        return
    index.update(new, ids)
    assert (_rank_of(index.search(new, 10), ids) >= 0).all(), "an updated id is not found at its new vector"
    assert (_rank_of(index.search(old, 10), ids) < 0).all(), "an updated id is still found at its old vector"


# -- 5. declarations against the index's own bytes ------------------------------------------------
@family_param
def test_declared_delete_and_update_match_saved_bytes(family: Family, tmp_path: Path) -> None:
    """A true delete shrinks what is saved, a tombstone does not; a tombstoned update grows it, a native one not.

    Measured with the versions above (saved bytes after deleting half of 2,000): faiss flat / IVF 0.50–0.61,
    scann 0.52; faiss HNSW 1.01, hnswlib, usearch and voyager 1.00. After updating 300 ids: faiss HNSW 1.15,
    every native update 1.000.
    """
    data = _DATA[Metric.L2]
    index = _fresh(family, Metric.L2)
    caps = type(index).capabilities
    before = index.save(tmp_path / "before")
    if caps.update is not Support.UNSUPPORTED:
        for start in range(0, 300, 100):  # several calls: slot reuse must hold call after call
            index.update(prepare_vectors(-data["base"][start:start + 100], Metric.L2), data["ids"][start:start + 100])
        updated = index.save(tmp_path / "updated")
        if caps.update is Support.TOMBSTONE:
            assert updated > before, "a tombstoned update should keep the old vector"
        else:
            assert updated <= before * 1.01, f"a native update grew the index {updated / before:.3f}×"
        before = updated
    if caps.delete is Support.UNSUPPORTED:
        return
    index.delete(data["ids"][N // 2:])
    after = index.save(tmp_path / "deleted")
    if caps.delete is Support.NATIVE:
        assert after <= before * 0.75, f"a native delete of half left {after / before:.2f} of the bytes"
    else:
        assert after >= before * 0.95, f"a tombstone delete of half freed {1 - after / before:.2f} of the bytes"


# -- parameters ------------------------------------------------------------------------------------
@family_param
def test_unknown_params_are_named(family: Family) -> None:
    cls = adapters.get(family.name)
    with pytest.raises(ConfigError) as err:
        cls(Metric.L2, DIM, no_such_param=1)
    msg = str(err.value)
    assert family.name in msg and "no_such_param" in msg
    assert all(p.name in msg for p in cls.build_params) and "valid" in msg
    index = _shared(family, Metric.L2)
    with pytest.raises(ConfigError) as err:
        index.set_search_params(no_such_param=1)
    msg = str(err.value)
    assert family.name in msg and all(p.name in msg for p in cls.search_params)


@family_param
def test_wrong_type_or_range_is_refused(family: Family) -> None:
    cls = adapters.get(family.name)
    for p in cls.build_params:
        with pytest.raises(ConfigError, match=p.name):
            cls(Metric.L2, DIM, **{p.name: "nonsense" if p.type is not str else 3})
        if p.min is not None:
            with pytest.raises(ConfigError, match=p.name):
                cls(Metric.L2, DIM, **{p.name: p.type(p.min) - 1})
    index = _shared(family, Metric.L2)
    try:
        for p in cls.search_params:
            with pytest.raises(ConfigError, match=p.name):
                index.set_search_params(**{p.name: "nonsense"})
            if p.min is not None:
                with pytest.raises(ConfigError, match=p.name):
                    index.set_search_params(**{p.name: p.type(p.min) - 1})
    finally:
        index.set_search_params()


def test_ivf_encoding_is_validated() -> None:
    cls = adapters.get("faiss-ivf")
    for bad in ("PQ", "PQ0", "IVF,Flat", "flat", "PQ7", "PQ8x40", "SQ3"):  # PQ7: 7 does not divide 32
        with pytest.raises(ConfigError, match="encoding"):
            cls(Metric.L2, DIM, encoding=bad)
    for good in ("Flat", "PQ8", "PQ16x4", "SQ8", "SQfp16"):
        cls(Metric.L2, DIM, encoding=good)


@family_param
def test_search_params_change_results_not_errors(family: Family) -> None:
    cls = adapters.get(family.name)
    index = _shared(family, Metric.L2)
    try:
        for p in cls.search_params:
            value = p.default if p.min is None else max(p.default, p.min) * 2 + 1
            index.set_search_params(**{p.name: value})
            assert index.search(_DATA[Metric.L2]["queries"][:5], 10).shape == (5, 10)
    finally:
        index.set_search_params()


# -- purity, padding, save, threads ----------------------------------------------------------------
@family_param
@metric_param
def test_callers_arrays_untouched(family: Family, metric: Metric) -> None:
    data = _DATA[metric]
    base, ids = data["base"].copy(), data["ids"].copy()
    index = adapters.get(family.name)(metric, DIM, **family.build)
    index.build(base, ids)
    queries = data["queries"].copy()
    before = index.search(queries, 10)
    caps = type(index).capabilities
    extra, extra_ids = data["extra"].copy(), data["extra_ids"].copy()
    if caps.add is not Support.UNSUPPORTED:
        index.add(extra, extra_ids)
    if caps.update is not Support.UNSUPPORTED:
        index.update(extra[:10] * 0.5, extra_ids[:10] if caps.add is not Support.UNSUPPORTED else ids[:10])
    for mine, theirs in ((base, "base"), (ids, "ids"), (queries, "queries"), (extra, "extra"),
                         (extra_ids, "extra_ids")):
        np.testing.assert_array_equal(mine, data[theirs])
    # No reference kept: scribbling over the caller's arrays does not change the index.
    base2, ids2 = data["base"].copy(), data["ids"].copy()
    index2 = adapters.get(family.name)(metric, DIM, **family.build)
    index2.build(base2, ids2)
    expect = index2.search(queries, 10)
    base2[:] = base2[::-1]
    ids2[:] = 0
    np.testing.assert_array_equal(index2.search(queries, 10), expect)
    assert before.shape == expect.shape


@family_param
def test_padding_when_k_exceeds_index(family: Family) -> None:
    data = _DATA[Metric.L2]
    index = adapters.get(family.name)(Metric.L2, DIM, **family.build)
    n = 300  # enough to train every family; fewer than k
    index.build(data["base"][:n], data["ids"][:n])
    k = 400
    found = index.search(data["queries"][:5], k)
    assert found.shape == (5, k) and found.dtype == np.int64
    for row in found:
        real = row[row >= 0]
        assert len(real) == len(set(real.tolist())), "duplicate ids in one answer"
        assert np.isin(real, data["ids"][:n]).all()
        assert (row[len(real):] == -1).all(), "-1 padding must come last"


@family_param
def test_save_reports_bytes_written(family: Family, tmp_path: Path) -> None:
    index = _shared(family, Metric.COSINE)
    target = tmp_path / "index"
    written = index.save(target)
    on_disk = sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) if target.is_dir() \
        else os.path.getsize(target)
    assert written > 0 and written == on_disk
    assert index.search(_DATA[Metric.COSINE]["queries"][:3], 5).shape == (3, 5)  # still usable


@family_param
def test_set_threads(family: Family) -> None:
    index = _shared(family, Metric.L2)
    queries = _DATA[Metric.L2]["queries"]
    one = index.search(queries, 10)
    try:
        index.set_threads(2)
        assert index.threads == 2
        two = index.search(queries, 10)
        assert _recall(two, one) >= 0.95  # same index, same answers up to ties
        with pytest.raises(ConfigError):
            index.set_threads(0)
    finally:
        index.set_threads(1)


@family_param
def test_rebuild_replaces_the_index(family: Family) -> None:
    data = _DATA[Metric.L2]
    index = adapters.get(family.name)(Metric.L2, DIM, **family.build)
    index.build(data["base"][:1000], data["ids"][:1000])
    if type(index).capabilities.delete is not Support.UNSUPPORTED:
        index.delete(data["ids"][1000:1010])  # unknown ids: nothing to do, no error
        index.delete(data["ids"][:10])
    index.build(data["base"][1000:], data["ids"][1000:])  # the harness's rebuild policy does this
    found = index.search(data["base"][:1000:10], 20)
    assert not np.isin(found, data["ids"][:1000]).any(), "ids of the previous build survived a rebuild"
    rank = _rank_of(index.search(data["base"][1000::10], 10), data["ids"][1000::10])
    assert (rank >= 0).mean() >= 0.95


@family_param
def test_bad_inputs_are_refused(family: Family) -> None:
    index = _shared(family, Metric.L2)
    queries = _DATA[Metric.L2]["queries"][:2]
    for k in (0, -1, 2.5, True):
        with pytest.raises(ConfigError):
            index.search(queries, k)
    with pytest.raises(AnnbenchError):
        index.search(queries[:, :5], 10)
    fresh = adapters.get(family.name)(Metric.L2, DIM, **family.build)
    with pytest.raises(AnnbenchError):
        fresh.build(_DATA[Metric.L2]["base"][:300], _DATA[Metric.L2]["ids"][:299])


# -- traps: each fails if the library trap an adapter works around comes back -----------------------
def test_trap_faiss_ivf_is_not_wrapped_in_idmap() -> None:
    import faiss

    for enc in ("Flat", "PQ16x4"):
        index = _fresh(Family("x", "faiss-ivf", 0, {"encoding": enc}), Metric.L2)
        raw = faiss.downcast_index(index.index)
        assert not isinstance(raw, (faiss.IndexIDMap, faiss.IndexIDMap2))
        assert isinstance(raw, faiss.IndexIVF)
        if enc != "Flat":  # slow and unused: it would inflate the measured build time
            assert not raw.do_polysemous_training
        ids = _DATA[Metric.L2]["ids"]
        index.delete(ids[:100])
        assert raw.ntotal == N - 100  # a true delete
        found = index.search(_DATA[Metric.L2]["base"][100:200], 10)
        assert not np.isin(found, ids[:100]).any()
        assert (found[:, 0] == ids[100:200]).mean() >= (0.9 if enc == "Flat" else 0.5)


def test_faiss_ivf_build_reserves_lists_and_answers_as_add_with_ids() -> None:
    """The build reserves each inverted list at its final size; the lists, and so every answer and
    distance, are those of faiss's own `add_with_ids` on the same trained index."""
    import faiss

    data = _DATA[Metric.L2]
    for enc in ("Flat", "PQ16x4", "SQ8"):
        index = _fresh(Family("x", "faiss-ivf", 0, {"encoding": enc}), Metric.L2)
        raw = faiss.downcast_index(index.index)
        plain = faiss.clone_index(raw)
        plain.reset()  # same training, empty lists
        plain.add_with_ids(data["base"], data["ids"])
        assert plain.ntotal == raw.ntotal == N
        for list_no in range(raw.nlist):
            assert raw.invlists.list_size(list_no) == plain.invlists.list_size(list_no)
            got = faiss.rev_swig_ptr(raw.invlists.get_ids(list_no), raw.invlists.list_size(list_no))
            want = faiss.rev_swig_ptr(plain.invlists.get_ids(list_no), plain.invlists.list_size(list_no))
            assert np.array_equal(got, want), f"{enc}: list {list_no} holds other ids or another order"
        plain.nprobe = raw.nprobe
        queries = data["queries"]
        got, want = raw.search(queries, 10), plain.search(queries, 10)
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))  # distances and ids


def test_trap_faiss_hnsw_deletes_are_tombstones() -> None:
    data = _DATA[Metric.COSINE]
    index = _fresh(FAMILIES[3], Metric.COSINE)
    assert type(index).capabilities.delete is Support.TOMBSTONE
    index.delete(data["ids"][:300])
    index.update(data["extra"][:10], data["ids"][500:510])
    assert index.index.ntotal == N + 10  # nothing removed from the graph: tombstones
    found = index.search(data["base"][:300], 20)
    assert not np.isin(found, data["ids"][:300]).any()
    assert (found[:, 0] >= 0).all()
    assert (index.search(data["extra"][:10], 1)[:, 0] == data["ids"][500:510]).all()


def test_trap_hnswlib_grows_past_capacity() -> None:
    data = _DATA[Metric.L2]
    index = adapters.get("hnswlib")(Metric.L2, DIM, capacity=10)
    index.build(data["base"][:5], data["ids"][:5])
    for start in range(5, N, 37):  # many small inserts, far past the initial capacity
        stop = min(start + 37, N)
        index.add(data["base"][start:stop], data["ids"][start:stop])
    assert index.index.get_current_count() == N
    assert index.index.get_max_elements() < 4 * N  # grown geometrically, not one huge jump
    assert (index.search(data["base"][::50], 1)[:, 0] == data["ids"][::50]).mean() >= 0.95


def test_trap_hnswlib_search_never_raises_with_few_live_items() -> None:
    data = _DATA[Metric.L2]
    index = adapters.get("hnswlib")(Metric.L2, DIM)
    index.build(data["base"][:100], data["ids"][:100])
    index.delete(data["ids"][:95])
    found = index.search(data["queries"][:4], 10)
    assert (found[:, 5:] == -1).all() and np.isin(found[:, :5], data["ids"][95:100]).all()


def test_trap_hnswlib_search_never_raises_with_unreachable_live_items() -> None:
    # Tombstones cut a sparse graph: hnswlib finds fewer live items than k and raises, unless handled.
    data = _DATA[Metric.L2]
    index = adapters.get("hnswlib")(Metric.L2, DIM, M=4, ef_construction=10)
    index.build(data["base"], data["ids"])
    index.delete(data["ids"][:1985])
    index.set_search_params(ef=1)
    found = index.search(data["queries"][:20], 15)
    real = found[found >= 0]
    assert len(real) > 0 and np.isin(real, data["ids"][1985:]).all()


def test_scann_tiny_index_is_brute_force_and_mutable() -> None:
    data = _DATA[Metric.COSINE]
    index = adapters.get("scann")(Metric.COSINE, DIM)
    index.build(data["base"][:100], data["ids"][:100])
    assert index.num_leaves == 0
    index.delete(data["ids"][:50])
    index.add(data["base"][100:300], data["ids"][100:300])
    found = index.search(data["base"][:300], 5)
    assert not np.isin(found, data["ids"][:50]).any()
    assert (found[50:, 0] == data["ids"][50:300]).all()


def test_trap_annoy_is_static_because_late_items_are_invisible() -> None:
    from annoy import AnnoyIndex

    assert adapters.get("annoy").capabilities.as_dict() == {
        "add": "unsupported", "delete": "unsupported", "update": "unsupported"}
    base = _DATA[Metric.L2]["base"]
    raw = AnnoyIndex(DIM, "euclidean")
    raw.set_seed(1)
    for i in range(1000):
        raw.add_item(i, base[i])
    raw.build(5)
    late = range(1000, 1050)
    try:  # the reality the declaration encodes: annoy accepts items after build...
        for i in late:
            raw.add_item(i, base[i])
    except Exception:  # noqa: BLE001 - a refusal would also justify UNSUPPORTED
        return
    assert raw.get_n_items() == 1050
    # ...but does not index them: even an exhaustive search does not find them by their own vector.
    # (They also overwrite split nodes of the forest, changing answers for old items: see annoy_.py.)
    found = sum(i in raw.get_nns_by_vector(base[i], 10, search_k=-1) for i in late)
    assert found <= len(late) // 10


def test_trap_scann_is_built_with_docids() -> None:
    data = _DATA[Metric.COSINE]
    index = _fresh(FAMILIES[6], Metric.COSINE)
    assert index.searcher.docids is not None, "scann searcher built without docids cannot upsert/delete"

    def mirror_ok() -> None:
        assert [int(d) for d in index.searcher.docids] == index.docids().tolist()

    mirror_ok()
    index.delete(data["ids"][:150:3])
    mirror_ok()
    index.add(data["extra"], data["extra_ids"])
    index.update(data["extra"][:5] * -1, data["ids"][1000:1005])
    index.delete(data["extra_ids"][::2])
    mirror_ok()
    assert index.searcher.size() == N - 50 + N_ADD // 2
    live_ids = index.docids()
    found = index.search(data["extra"][1::2], 1)[:, 0]
    assert (found == data["extra_ids"][1::2]).mean() >= 0.95
    assert np.isin(index.search(data["queries"], 50), np.append(live_ids, -1)).all()


def test_trap_usearch_dtype_is_explicit() -> None:
    # usearch picks its storage type itself when none is given (bf16 on the machine this was written on)
    from usearch.index import ScalarKind

    data = _DATA[Metric.L2]
    cls = adapters.get("usearch")
    for dtype, kind in (("f32", ScalarKind.F32), ("bf16", ScalarKind.BF16), ("i8", ScalarKind.I8)):
        index = cls(Metric.COSINE, DIM, dtype=dtype)
        index.build(_DATA[Metric.COSINE]["base"][:300], data["ids"][:300])
        assert index.index.dtype == kind
    index = cls(Metric.L2, DIM)
    index.build(data["base"][:300], data["ids"][:300])
    assert index.index.dtype == ScalarKind.F32, "the default must be f32, not usearch's own choice"


def test_trap_usearch_remove_is_logical_and_reported_honestly(tmp_path: Path) -> None:
    """After removing 90 %, the index keeps its memory (declared tombstone) and recall is over the live set."""
    data = _DATA[Metric.L2]
    index = _fresh(Family("usearch", "usearch", 0), Metric.L2)
    assert type(index).capabilities.delete is Support.TOMBSTONE
    raw = index.index
    memory, capacity, saved = raw.memory_usage, raw.capacity, index.save(tmp_path / "full")
    gone, kept = data["ids"][: N - 200], slice(N - 200, N)
    index.delete(gone)
    assert raw.size == 200  # usearch counts only live keys...
    assert raw.memory_usage == memory and raw.capacity == capacity  # ...but frees nothing
    assert index.save(tmp_path / "after") == saved  # and saves the removed vectors too
    # Recall is scored against the exact answer over the 200 live items, not over the whole build.
    found = index.search(data["queries"], 10)
    assert not np.isin(found, gone).any()
    truth = _exact(data["base"][kept], data["ids"][kept], data["queries"], 10, Metric.L2)
    assert _recall(found, truth) >= 0.9
    # Later adds reuse the removed slots: the memory does not grow back beyond the first build's.
    index.add(data["extra"], data["extra_ids"])
    index.add(data["base"][: N - 400] * 1.01, data["ids"][: N - 400])
    assert raw.capacity == capacity and raw.memory_usage == memory
    live_v = np.vstack([data["base"][kept], data["extra"], data["base"][: N - 400] * 1.01])
    live_i = np.concatenate([data["ids"][kept], data["extra_ids"], data["ids"][: N - 400]])
    truth = _exact(prepare_vectors(live_v, Metric.L2), live_i, data["queries"], 10, Metric.L2)
    assert _recall(index.search(data["queries"], 10), truth) >= 0.95


def test_trap_usearch_padding_is_not_key_zero() -> None:
    # usearch pads short batch rows with key 0, a valid id; one-row queries come back as another type
    data = _DATA[Metric.L2]
    index = adapters.get("usearch")(Metric.L2, DIM)
    ids = np.arange(5, dtype=np.int64)  # id 0 is real here
    index.build(data["base"][:5], ids)
    many, one = index.search(data["queries"][:4], 8), index.search(data["queries"][:1], 8)
    for found in (many, one):
        assert (found[:, :5] >= 0).all() and (found[:, 5:] == -1).all()
        assert all(sorted(row[:5].tolist()) == list(range(5)) for row in found)
    index.delete(ids[:3])
    assert (index.search(data["queries"][:2], 8)[:, 2:] == -1).all()


def test_trap_voyager_deletes_are_tombstones_and_updates_in_place() -> None:
    data = _DATA[Metric.COSINE]
    index = _fresh(Family("voyager", "voyager", 0), Metric.COSINE)
    index.delete(data["ids"][:300])
    index.delete(data["ids"][:10])  # already deleted: voyager raises, the adapter must not
    assert index.index.num_elements == N  # tombstones keep their slots and are still counted
    assert index.n_live == N - 300
    index.update(data["extra"][:10], data["ids"][500:510])
    assert index.index.num_elements == N  # replaced in place
    assert (index.search(data["extra"][:10], 1)[:, 0] == data["ids"][500:510]).all()
    index.add(data["extra"][10:20], data["ids"][:10])  # a deleted id comes back in its old slot
    assert index.index.num_elements == N and index.n_live == N - 290
    assert not np.isin(index.search(data["base"][10:300], 20), data["ids"][10:300]).any()


def test_trap_voyager_search_never_raises_with_few_or_unreachable_live_items() -> None:
    # voyager raises RecallError whenever it finds fewer than k live items
    data = _DATA[Metric.L2]
    index = adapters.get("voyager")(Metric.L2, DIM)
    index.build(data["base"][:100], data["ids"][:100])
    index.delete(data["ids"][:95])
    found = index.search(data["queries"][:4], 10)
    assert (found[:, 5:] == -1).all() and np.isin(found[:, :5], data["ids"][95:100]).all()
    index = adapters.get("voyager")(Metric.L2, DIM, M=4, ef_construction=10)
    index.build(data["base"], data["ids"])
    index.delete(data["ids"][:1985])
    index.set_search_params(ef=1)
    found = index.search(data["queries"][:20], 15)
    real = found[found >= 0]
    assert len(real) > 0 and np.isin(real, data["ids"][1985:]).all()


def test_trap_voyager_index_ef_is_not_the_search_depth() -> None:
    # voyager searches at its index-wide ef (10) unless each query passes query_ef: measured on a sparse
    # graph (M=4), recall@10 .58 at the index default and .96 with query_ef=200
    data = _DATA[Metric.L2]
    index = adapters.get("voyager")(Metric.L2, DIM, M=4, ef_construction=10)
    index.build(data["base"], data["ids"])
    assert index.index.ef == 10
    truth = _exact(data["base"], data["ids"], data["queries"], 10, Metric.L2)
    raw, _ = index.index.query(data["queries"], 10)
    index.set_search_params(ef=200)
    deep = _recall(index.search(data["queries"], 10), truth)
    assert deep >= 0.9 and deep > _recall(raw.astype(np.int64), truth) + 0.2


def test_trap_usearch_first_does_not_crash_faiss() -> None:
    # usearch's static libstdc++, loaded first, made every later faiss.index_factory segfault; a run's
    # process imports every family of its scenario, in the scenario's order
    import subprocess
    import sys

    code = ("from annbench import adapters; import numpy as np; adapters.get('usearch'); "
            "ix = adapters.get('faiss-ivf')('l2', 8, encoding='Flat'); "
            "ix.build(np.random.default_rng(0).random((500, 8), dtype=np.float32), np.arange(500)); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-500:]


# -- concurrent searches, where an adapter declares them safe on the strength of a check run here --------------
@pytest.mark.parametrize("name", ["usearch", "voyager"])
def test_concurrent_searches_answer_as_one_thread_does(name: str) -> None:
    # what Usearch.concurrency and Voyager.concurrency rest on (measured there at 20k × 64, 5,000 queries):
    # two client threads sending the same single queries get exactly the one-thread answers
    (family,) = [f for f in FAMILIES if f.key == name]
    index = _shared(family, Metric.COSINE)
    assert type(index).concurrency.concurrent_search
    queries = np.vstack([_DATA[Metric.COSINE]["queries"], _DATA[Metric.COSINE]["extra"]])  # 300 queries
    assert two_clients_answer_as_one(index.search, queries)


def test_usearch_search_sets_nothing_on_the_index() -> None:
    # a search only reads: the depth is pushed by set_search_params, so client threads never write
    index = adapters.get("usearch")(Metric.L2, DIM)
    index.build(_DATA[Metric.L2]["base"][:500], _DATA[Metric.L2]["ids"][:500])
    index.set_search_params(ef=7)
    assert index.index.expansion_search == 7
    found = index.search(_DATA[Metric.L2]["queries"], 50)  # k above ef: usearch widens to k by itself
    assert index.index.expansion_search == 7 and (found >= 0).all()


# -- build parameters as used ------------------------------------------------------------------------------
# Build parameters whose 0 is a size rule the adapter resolves at build (at the families' defaults here).
SIZE_RULES = {"faiss-ivf": ("nlist",), "scann": ("num_leaves",), "hnswlib": ("capacity",),
              "lancedb": ("num_partitions", "num_sub_vectors")}


@family_param
def test_resolved_params_are_what_the_build_used(family: Family) -> None:
    index = _fresh(family, Metric.L2)
    before = index.resolved_params()
    assert set(before) == set(index.params)
    for key in SIZE_RULES.get(family.name, ()):
        assert index.params[key] == 0 and isinstance(before[key], int) and before[key] > 0, (key, before)
    assert index.resolved_params() == before  # deterministic
    if type(index).capabilities.add is not Support.UNSUPPORTED:
        index.add(_DATA[Metric.L2]["extra"], _DATA[Metric.L2]["extra_ids"])
        assert index.resolved_params() == before, "resolved_params reports the build, not later growth"
    if hasattr(index, "close"):
        index.close()


def test_faiss_ivf_nlist_rule_resolves_to_the_number_used() -> None:
    rng = np.random.default_rng(3)
    cls = adapters.get("faiss-ivf")
    # 4·√10,000 = 400, capped at n/39 = 256 so every list has enough training points
    index = cls(Metric.L2, 8)
    index.build(rng.random((10_000, 8), dtype=np.float32), np.arange(10_000))
    assert index.resolved_params()["nlist"] == index.index.nlist == min(400, 10_000 // 39) == 256
    # where the cap does not bind the rule itself shows: 4·√40,000 = 800
    index = cls(Metric.L2, 8)
    index.build(rng.random((40_000, 8), dtype=np.float32), np.arange(40_000))
    assert index.resolved_params()["nlist"] == index.index.nlist == 800
    assert cls(Metric.L2, 8).resolved_params()["nlist"] == 0  # before build: as given


def test_hnswlib_capacity_rule_reports_the_build_not_the_growth() -> None:
    index = adapters.get("hnswlib")(Metric.L2, DIM)
    index.build(_DATA[Metric.L2]["base"][:300], _DATA[Metric.L2]["ids"][:300])
    index.add(_DATA[Metric.L2]["extra"], _DATA[Metric.L2]["extra_ids"])  # grows max_elements past 300
    assert index.index.get_max_elements() > 300 and index.resolved_params()["capacity"] == 300


# -- the library's own size ---------------------------------------------------------------------------------
@family_param
def test_library_bytes_is_labelled_or_none(family: Family) -> None:
    got = _shared(family, Metric.L2).library_bytes()
    if got is None:
        return
    assert set(got) == {"bytes", "what"} and isinstance(got["bytes"], int) and got["bytes"] > 0
    assert isinstance(got["what"], str) and got["what"].strip()


def test_faiss_library_bytes_at_20k() -> None:
    n, d = 20_000, 64
    x = np.random.default_rng(4).random((n, d), dtype=np.float32)
    ids = np.arange(n, dtype=np.int64) * 3
    flat = adapters.get("faiss-flat")(Metric.L2, d)
    flat.build(x, ids)
    # the vectors, plus IndexIDMap2's two id tables (id_map: 8 bytes an id; rev_map: 16 bytes of payload)
    assert flat.library_bytes()["bytes"] == n * d * 4 + n * 8 + n * 16
    for metric in (Metric.L2, Metric.COSINE):
        ivf = adapters.get("faiss-ivf")(metric, d, encoding="PQ16", nlist=100)
        ivf.build(prepare_vectors(x, metric), ids)
        got = ivf.library_bytes()
        codes = n * (16 + 8) + 100 * d * 4 + 16 * 256 * (d // 16) * 4  # lists + centroids + codebooks
        table = 100 * 16 * 256 * 4  # faiss's precomputed L2 term, nlist·M·ksub floats
        if metric is Metric.L2:
            assert got["bytes"] == codes + table and "precomputed" in got["what"]
        else:  # inner product has no such table
            assert got["bytes"] == codes and "precomputed" not in got["what"]
