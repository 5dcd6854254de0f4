"""`prepare_search(k)`, the call the harness times, answers exactly as `search(queries, k)` does.

Adapters (annbench/adapters/*.py) and policies (annbench/policies.py) do the checks that do not depend on
the queries once, in `prepare_search`, and return a call that does only the library's search and the id
mapping, filtering or merging it needs (annbench.replay times it). Here, on real indexes of every
in-process library (faiss Flat / IVF / HNSW, hnswlib, annoy, scann, usearch, voyager) built on small
clustered data with ids that are not positions, every prepared call is compared with `search` on the same
state: a batch, every one-row view, no rows; full answers and short ones (k above the live count, a
search too narrow to fill k); after adds, deletes and updates as each adapter declares them; and under the
native, tombstone and rebuild policies, before and after a rebuild.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from annbench import adapters
from annbench.adapters.base import Adapter, Metric, Support, prepare_vectors
from annbench.errors import ConfigError
from annbench.policies import make_policy

N, DIM, N_CENTRES, SEED = 1_200, 16, 24, 7

# (pytest id, registry name, build params, search params that make a search narrow)
FAMILIES = [
    ("faiss-flat", "faiss-flat", {}, {}),
    ("faiss-ivf", "faiss-ivf", {"encoding": "Flat", "nlist": 16}, {"nprobe": 1}),
    ("faiss-hnsw", "faiss-hnsw", {"M": 8, "efConstruction": 40}, {"efSearch": 4}),
    ("hnswlib", "hnswlib", {"M": 8, "ef_construction": 40}, {"ef": 4}),
    ("annoy", "annoy", {"n_trees": 8}, {"search_k": 20}),
    ("scann", "scann", {"num_leaves": 20}, {"leaves_to_search": 1, "reorder": 10}),
    ("usearch", "usearch", {"M": 8, "ef_construction": 40}, {"ef": 4}),
    ("voyager", "voyager", {"M": 8, "ef_construction": 40}, {"ef": 4}),
]
family_param = pytest.mark.parametrize("key,name,build,narrow", FAMILIES, ids=[f[0] for f in FAMILIES])
metric_param = pytest.mark.parametrize("metric", [Metric.L2, Metric.COSINE], ids=["l2", "cosine"])


def _data(metric: Metric) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    centres = rng.normal(size=(N_CENTRES, DIM)) + 2.0

    def draw(n: int) -> np.ndarray:
        return prepare_vectors(centres[rng.integers(N_CENTRES, size=n)] + rng.normal(size=(n, DIM)), metric)

    return {"base": draw(N), "ids": 3_000_000 + 13 * np.arange(N, dtype=np.int64), "extra": draw(150),
            "extra_ids": 9_000_000 + 5 * np.arange(150, dtype=np.int64), "new": draw(40), "queries": draw(30)}


_DATA = {m: _data(m) for m in (Metric.L2, Metric.COSINE)}


def check_same(search: Any, k: int, queries: np.ndarray) -> None:
    """`search.prepare_search(k)` (an adapter's or a policy's) against `search.search(·, k)`: a batch, every
    one-row view (as replay hands them), no rows; and again after a search at another depth in between
    (a policy's refetch does that, and hnswlib keeps its depth on the index)."""
    call = search.prepare_search(k)
    want = search.search(queries, k)
    assert want.dtype == np.int64 and want.shape == (len(queries), k)
    got = call(queries)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want, err_msg=f"batch, k={k}")
    assert not np.shares_memory(got, call(queries)), "each call returns an array the caller owns"
    for i in range(len(queries)):
        one = queries[i:i + 1]
        want1 = search.search(one, k)
        np.testing.assert_array_equal(call(one), want1, err_msg=f"query {i}, k={k}")
        search.search(one, 3 * k + 7)  # another depth in between
        np.testing.assert_array_equal(call(one), want1, err_msg=f"query {i}, k={k}, after a deeper search")
    none = call(queries[:0])
    assert none.shape == (0, k) and none.dtype == np.int64
    np.testing.assert_array_equal(none, search.search(queries[:0], k))


def _make(name: str, build: dict[str, Any], metric: Metric) -> Adapter:
    cls = adapters.get(name)
    cls.load_library()
    return cls(metric, DIM, **build)


@family_param
@metric_param
def test_adapter_prepared_search_equals_search(key: str, name: str, build: dict, narrow: dict,
                                               metric: Metric) -> None:
    data = _DATA[metric]
    index = _make(name, build, metric)
    index.build(data["base"], data["ids"])
    queries = data["queries"]
    for search_params in ({}, narrow):  # defaults: full answers; narrow: scann and annoy may come up short
        index.set_search_params(**search_params)
        for k in (1, 10, 60):
            check_same(index, k, queries)
    caps = type(index).capabilities
    index.set_search_params()
    if caps.add is not Support.UNSUPPORTED:
        index.add(data["extra"], data["extra_ids"])
        check_same(index, 10, queries)
    if caps.delete is not Support.UNSUPPORTED:
        index.delete(data["ids"][::3])
        check_same(index, 10, queries)
        index.delete(data["extra_ids"][:50])
        check_same(index, 25, queries)
    if caps.update is not Support.UNSUPPORTED:
        index.update(data["new"], data["ids"][1:81:2])
        check_same(index, 10, queries)
        index.set_search_params(**narrow)
        check_same(index, 10, queries)


@family_param
def test_short_answers_are_padded_alike(key: str, name: str, build: dict, narrow: dict) -> None:
    """k above the live count: every live item, then −1, from both paths; after deletes as well."""
    data = _DATA[Metric.L2]
    index = _make(name, build, Metric.L2)
    n = 300  # enough for every family to train on
    index.build(data["base"][:n], data["ids"][:n])
    check_same(index, n + 20, data["queries"][:8])
    if type(index).capabilities.delete is not Support.UNSUPPORTED:
        index.delete(data["ids"][: n - 12])  # a few live items among many tombstones
        for k in (5, 12, 40):
            check_same(index, k, data["queries"][:8])


@family_param
def test_nothing_live_answers_padding_alike(key: str, name: str, build: dict, narrow: dict) -> None:
    data = _DATA[Metric.L2]
    index = _make(name, build, Metric.L2)
    index.build(data["base"][:300], data["ids"][:300])
    if type(index).capabilities.delete is Support.UNSUPPORTED:
        pytest.skip(f"{name} cannot delete")
    index.delete(data["ids"][:300])
    check_same(index, 10, data["queries"][:5])


@pytest.mark.parametrize("name", ["hnswlib", "voyager"])
def test_unreachable_live_items_take_the_fallback_alike(name: str) -> None:
    """Tombstones cut a sparse graph: the library finds fewer live items than asked and raises; both paths
    fall back per query to the largest answer that works."""
    rng = np.random.default_rng(SEED)  # unclustered: the clustered data's sparse graph stays connected
    base, queries = rng.normal(size=(N, DIM)).astype(np.float32), rng.normal(size=(12, DIM)).astype(np.float32)
    ids = _DATA[Metric.L2]["ids"]
    index = _make(name, {"M": 2, "ef_construction": 10}, Metric.L2)
    index.build(base, ids)
    index.delete(ids[:N - 15])
    index.set_search_params(ef=1)
    for k in (15, 20):  # every live item asked for: some are out of reach
        check_same(index, k, queries)


@family_param
def test_prepare_checks_once_and_refuses_what_search_refuses(key: str, name: str, build: dict, narrow: dict) -> None:
    index = _make(name, build, Metric.L2)
    with pytest.raises(ConfigError):
        index.prepare_search(10)  # not built
    data = _DATA[Metric.L2]
    index.build(data["base"][:300], data["ids"][:300])
    for k in (0, -1, 2.5, True):
        with pytest.raises(ConfigError):
            index.prepare_search(k)


POLICY_CASES = [
    ("hnswlib", {"M": 8, "ef_construction": 40}, {"ef": 8}),
    ("faiss-ivf", {"encoding": "Flat", "nlist": 16}, {"nprobe": 2}),
    ("faiss-hnsw", {"M": 8, "efConstruction": 40}, {"efSearch": 8}),
    ("scann", {"num_leaves": 20}, {"leaves_to_search": 3}),
    ("usearch", {"M": 8, "ef_construction": 40}, {"ef": 8}),
    ("voyager", {"M": 8, "ef_construction": 40}, {"ef": 8}),
    ("annoy", {"n_trees": 8}, {"search_k": 200}),
]


@pytest.mark.parametrize("family,build,search", POLICY_CASES, ids=[c[0] for c in POLICY_CASES])
@metric_param
def test_policy_prepared_search_equals_search(family: str, build: dict, search: dict, metric: Metric) -> None:
    """Native, tombstone and rebuild: the prepared call equals `policy.search` after every kind of write."""
    cls = adapters.get(family)
    cls.load_library()
    data = _DATA[metric]
    pool = np.concatenate([data["base"], data["extra"], data["new"]])
    n, n_extra = len(data["base"]), len(data["extra"])
    ids = np.concatenate([data["ids"], data["extra_ids"]])
    queries = data["queries"]
    for name in ("native", "tombstone", "rebuild"):
        try:
            policy = make_policy(name, cls, metric, DIM, 1, build, pool, 2)
        except ConfigError:  # a static index takes the rebuild policy only
            assert cls.capabilities.add is Support.UNSUPPORTED and name != "rebuild"
            continue
        try:
            policy.build(np.arange(n), ids[:n])
            policy.set_search_params(**search)
            check_same(policy, 10, queries)
            policy.delete(ids[:n:4])
            check_same(policy, 10, queries)
            policy.insert(np.arange(n, n + n_extra), ids[n:])
            check_same(policy, 10, queries)
            policy.update(np.arange(n + n_extra, len(pool)), ids[1:81:2])  # live ids (odd positions)
            for k in (1, 10, 30):
                check_same(policy, k, queries)
            if policy.maintain(2) is not None:  # the rebuild policy rebuilds from the live set
                policy.set_search_params(**search)
                check_same(policy, 10, queries)
        finally:
            policy.close()


def test_tombstone_policy_refetch_keeps_the_prepared_depth() -> None:
    """Most of a small hnswlib index dead: the tombstone policy's first page comes back short and it searches
    deeper through `adapter.search`, which moves hnswlib's index-wide ef; the prepared call still answers as
    `search` does, query after query."""
    cls = adapters.get("hnswlib")
    data = _DATA[Metric.L2]
    pool, ids = data["base"][:400], data["ids"][:400]
    policy = make_policy("tombstone", cls, Metric.L2, DIM, 1, {"M": 8, "ef_construction": 40}, pool, 1)
    policy.build(np.arange(400), ids)
    policy.set_search_params(ef=4)
    policy.delete(ids[:360])
    depths: list[int] = []
    plain = policy.adapter.search

    def counting(queries: np.ndarray, k: int) -> np.ndarray:
        depths.append(k)
        return plain(queries, k)

    policy.adapter.search = counting  # the prepared first page does not come here: a refetch does
    call = policy.prepare_search(10)
    for i in range(len(data["queries"])):
        call(data["queries"][i:i + 1])
    assert depths, "no query was refetched: the test does not reach the refetch path"
    for k in (5, 10, 50):
        check_same(policy, k, data["queries"])
