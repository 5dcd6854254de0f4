"""P1: what annbench's timed search adds to the library call it times.

For each library of the main job (`configs/scenarios/reseller_daily_updates.yaml`: hnswlib, faiss IVF and
HNSW, usearch, voyager, annoy, scann) one index is built through annbench — the adapter behind
`policies.make_policy(..., "native")`, exactly what a run's process builds (with 2 build threads, to keep
the benchmark short; searches use 1) — and then searched two ways on the same object with the same queries:

- annbench: the call `policy.prepare_search(k)` returns, made once after the search parameters are set
  (as `replay._timed_rounds` does per setting and round), with `perf_counter_ns` around each call: one
  call per query on one-row views of a C-contiguous float32 array validated outside the timed loop, then
  one batch call with all queries — the library call and the id mapping it needs, nothing else;
- bare: the library's own call on the adapter's underlying index (`hnswlib.Index.knn_query`,
  `faiss.Index.search`, `usearch.Index.search`, `voyager.Index.query`, annoy's `get_nns_by_vector` (a loop
  over rows for the batch: annoy has no batch call), scann's pybind `search` / `search_batched`), its
  search depth set once as a user of the library would, same arrays, same timer. The bare call returns
  the library's labels (positions for faiss HNSW and annoy, datapoint indices for scann); mapping them to
  the caller's ids is part of annbench's figure.

Repeats alternate the order (A B, B A, A B, …) so slow drift of a shared machine hits both alike.
Single-query figure: Σ over queries of the median (over repeats) latency, annbench ÷ bare — a median
per query is robust to a scheduler hiccup, and the sum weights every query as a run's mean would.
Batch figure: the median over repeats of (annbench batch time ÷ the bare batch time measured next to
it). Both ratios come from one process, so the machine's speed cancels.

Cross-checks that void a line: the prepared call's answers equal `policy.search`'s (the checked path),
and the bare call's labels, mapped to ids, equal them too (else the two sides did different searches).
The JSON also holds `policy.search(q, k)` timed per query (`search_checked_median_us`: the checks on
every call, what the timed loop did before it was prepared) and, for scann, the pybind batch entry point
called with one row, so a gap splits into layers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from common import Case, Line, median, profile_text

K = 10  # the shipped scenarios' k
WARMUP_SINGLES = 20  # as replay.WARMUP_SINGLES
BUILD_THREADS = 2  # builds only; searches use `threads`


CASES = (
    Case("hnswlib", "hnswlib ef=64", {"M": 16, "ef_construction": 100}, {"ef": 64}),
    Case("faiss-ivf", "faiss IVF nprobe=16", {"encoding": "Flat"}, {"nprobe": 16}),
    Case("faiss-hnsw", "faiss HNSW efSearch=64", {"M": 16, "efConstruction": 100}, {"efSearch": 64}),
    Case("usearch", "usearch ef=64", {"M": 16, "ef_construction": 100, "dtype": "f32"}, {"ef": 64}),
    Case("voyager", "voyager ef=64", {"M": 16, "ef_construction": 100}, {"ef": 64}),
    Case("annoy", "annoy search_k=500", {"n_trees": 32}, {"search_k": 500}),
    Case("scann", "scann (defaults)", {}, {}),
)


@dataclass
class Bare:
    """The library's own calls on an adapter's index, and how to read ids from their answers."""

    single: Callable[[np.ndarray], Any]
    batch: Callable[[np.ndarray], Any]
    takes_1d: bool  # the single call takes a 1-d row (the library's one-vector entry point)
    to_ids: Callable[[Any], np.ndarray]  # an answer → the caller's ids, one row per query (cross-check only)


def _bare_calls(case: Case, adapter: Any, k: int, ids: np.ndarray) -> Bare:
    """The bare calls of `case`'s library on `adapter`'s index; `ids` are the build's ids in build order."""
    threads = adapter.threads
    if case.family == "hnswlib":
        index = adapter.index
        index.set_ef(max(case.search["ef"], k))  # once: a user of hnswlib sets ef once, not per call

        def knn(q: np.ndarray) -> Any:
            return index.knn_query(q, k=k, num_threads=threads)

        return Bare(knn, knn, False, lambda ans: np.asarray(ans[0], dtype=np.int64))
    if case.family in ("faiss-ivf", "faiss-hnsw"):
        index = adapter.index  # IVF: nprobe was set on it by the adapter
        hnsw = case.family == "faiss-hnsw"
        if hnsw:
            index.hnsw.efSearch = max(case.search["efSearch"], k)  # once, as a faiss user would

        def search(q: np.ndarray) -> Any:
            return index.search(q, k)

        # IVF stores the caller's ids; HNSW labels are insertion positions, i.e. the build's order
        return Bare(search, search, False, (lambda ans: ids[ans[1]]) if hnsw else (lambda ans: ans[1]))
    if case.family == "usearch":
        index = adapter.index  # expansion_search was set on it by the adapter

        def find(q: np.ndarray) -> Any:
            return index.search(q, k, threads=threads)

        return Bare(find, find, False, lambda ans: np.asarray(ans.keys, dtype=np.int64).reshape(-1, k))
    if case.family == "voyager":
        index = adapter.index
        ef = max(case.search["ef"], k)

        def query(q: np.ndarray) -> Any:
            return index.query(q, k=k, num_threads=threads, query_ef=ef)

        return Bare(query, query, False, lambda ans: np.asarray(ans[0], dtype=np.int64).reshape(-1, k))
    if case.family == "annoy":
        nns, search_k = adapter.index.get_nns_by_vector, case.search["search_k"]

        def one(row: np.ndarray) -> Any:
            return nns(row, k, search_k)

        def loop(q: np.ndarray) -> Any:  # annoy has no batch call: a user loops over rows
            return [nns(row, k, search_k) for row in q]

        # items are build positions; full answers at this size (the cross-check fails otherwise)
        return Bare(one, loop, True, lambda ans: ids[np.asarray(ans, dtype=np.int64)].reshape(-1, k))
    if case.family == "scann":
        raw = adapter.searcher.searcher  # the pybind searcher, below scann's docid-mapping Python wrapper
        pre = max(adapter.search_settings["reorder"], k) if adapter.num_leaves else -1
        leaves = min(adapter.search_settings["leaves_to_search"], adapter.num_leaves) if adapter.num_leaves else -1
        parallel = threads > 1
        pos_ids = adapter.docids()

        def single(q: np.ndarray) -> Any:
            return raw.search(q, k, pre, leaves)

        def batch(q: np.ndarray) -> Any:
            return raw.search_batched(q, k, pre, leaves, parallel, 256 if parallel else 0)

        return Bare(single, batch, True, lambda ans: pos_ids[np.asarray(ans[0], dtype=np.int64)].reshape(-1, k))
    raise ValueError(case.family)


def _time_singles(call: Callable[[np.ndarray], Any], singles: list[np.ndarray]) -> np.ndarray:
    lat = np.empty(len(singles), dtype=np.int64)
    clock = time.perf_counter_ns
    for i, q in enumerate(singles):
        t0 = clock()
        call(q)
        lat[i] = clock() - t0
    return lat


def _time_batch(call: Callable[[np.ndarray], Any], queries: np.ndarray) -> int:
    t0 = time.perf_counter_ns()
    call(queries)
    return time.perf_counter_ns() - t0


def measure(n: int, n_queries: int, repeats: int, threads: int = 1, want_profile: bool = False) -> list[Line]:
    """Build each case on the catalog (n × 128, cosine) and return its single-query and batch lines."""
    from threadpoolctl import threadpool_limits

    from annbench import catalog
    from annbench.adapters.base import Metric, as_vectors, prepare_vectors

    metric = Metric.COSINE
    ds = catalog.generate(n=n, n_queries=n_queries, seed=0)
    pool = prepare_vectors(ds.base, metric)
    # What replay hands the timed call: the step's queries validated once, and one-row views of them.
    queries = as_vectors(prepare_vectors(ds.queries, metric), pool.shape[1], "P1 queries")
    ids = np.asarray(ds.base_ids(), dtype=np.int64)
    singles = [queries[i:i + 1] for i in range(len(queries))]
    rows1d = [queries[i] for i in range(len(queries))]
    assert queries.flags.c_contiguous and queries.dtype == np.float32
    assert all(s.flags.c_contiguous for s in singles) and all(r.flags.c_contiguous for r in rows1d)

    lines: list[Line] = []
    with threadpool_limits(limits=threads):
        for case in CASES:
            lines += _measure_case(case, pool, ids, queries, singles, rows1d, threads, repeats, want_profile)
    return lines


def _measure_case(case: Case, pool: np.ndarray, ids: np.ndarray, queries: np.ndarray, singles: list[np.ndarray],
                  rows1d: list[np.ndarray], threads: int, repeats: int, want_profile: bool) -> list[Line]:
    """Build one index through annbench, then time annbench's prepared search and the bare library call on it."""
    from annbench import adapters
    from annbench.adapters.base import Metric
    from annbench.policies import make_policy

    metric = Metric.COSINE
    cls = adapters.get(case.family)
    cls.load_library()
    # static: this index is only built and searched (annoy, static, could not take writes under "native")
    policy = make_policy("native", cls, metric, pool.shape[1], BUILD_THREADS, case.build, pool, 1, static=True)
    policy.build(np.arange(len(pool), dtype=np.int64), ids)
    policy.adapter.set_threads(threads)  # searches with the run's threads
    policy.set_search_params(**case.search)
    search = policy.prepare_search(K)  # what replay times: made once per setting, outside the clock
    bare = _bare_calls(case, policy.adapter, K, ids)
    bare_singles = rows1d if bare.takes_1d else singles

    # The prepared call answers as the checked search, and both paths do the same work: same answers, or
    # the ratio compares different searches.
    ours = search(queries)
    checked = policy.search(queries, K)
    same_checked = float((ours == checked).all(axis=1).mean())
    same_batch = float((ours == bare.to_ids(bare.batch(queries))).all(axis=1).mean())
    ours_1 = np.vstack([search(s) for s in singles[:50]])
    checked_1 = np.vstack([policy.search(s, K) for s in singles[:50]])
    theirs_1 = np.vstack([bare.to_ids(bare.single(r)) for r in bare_singles[:50]])
    same_checked_single = float((ours_1 == checked_1).all(axis=1).mean())
    same_single = float((ours_1 == theirs_1).all(axis=1).mean())

    # Warm-up of both paths, as replay does before timing (batch and one-query code differ).
    for _ in range(2):
        search(queries)
        bare.batch(queries)
        for s, r in zip(singles[:WARMUP_SINGLES], bare_singles[:WARMUP_SINGLES], strict=True):
            search(s)
            bare.single(r)

    a_lat, b_lat, c_lat, a_batch, b_batch = [], [], [], [], []
    policy_search = policy.search
    for r in range(repeats):
        order = ("a", "b") if r % 2 == 0 else ("b", "a")
        for who in order:
            if who == "a":
                a_lat.append(_time_singles(search, singles))
            else:
                b_lat.append(_time_singles(bare.single, bare_singles))
        # the checked search (every check on every call): what the prepared call saves
        c_lat.append(_time_singles(lambda q: policy_search(q, K), singles))
    # One batch call is short: a scheduler hiccup on a shared machine moves it a lot, so twice the repeats.
    for r in range(2 * repeats):
        for who in (("a", "b") if r % 2 == 0 else ("b", "a")):
            if who == "a":
                a_batch.append(_time_batch(search, queries))
            else:
                b_batch.append(_time_batch(bare.batch, queries))

    a_med = np.median(np.vstack(a_lat), axis=0)  # per query, over repeats
    b_med = np.median(np.vstack(b_lat), axis=0)
    c_med = np.median(np.vstack(c_lat), axis=0)
    single_ratio = float(a_med.sum() / b_med.sum())
    # Each annbench call is paired with the bare call next to it in time: a burst of load from other
    # processes (they last longer than one call) then hits both sides of a pair, and cancels in its ratio.
    batch_ratio = median([a / b for a, b in zip(a_batch, b_batch, strict=True)])
    extra = {}
    if case.family == "scann":
        # Diagnostic: the library's batch entry point called with one row, so a gap can be split into the
        # entry point chosen and the adapter's own Python.
        b1 = np.median(np.vstack([_time_singles(bare.batch, singles) for _ in range(max(3, repeats // 3))]), axis=0)
        extra["bare_batch_call_one_row_median_us"] = float(np.median(b1) / 1e3)
        extra["bare_batch_call_one_row_sum_ratio_to_bare"] = float(b1.sum() / b_med.sum())
    common_raw = {"family": case.family, "build": case.build, "search": case.search, "n": len(pool),
                  "queries": len(queries), "k": K, "threads": threads, "build_threads": BUILD_THREADS,
                  "repeats": repeats, "timed": "policy.prepare_search(k)",
                  "same_answers_batch": same_batch, "same_answers_single_first50": same_single,
                  "prepared_equals_search_batch": same_checked,
                  "prepared_equals_search_single_first50": same_checked_single,
                  "queries_c_contiguous_float32": True}
    prof = ""
    if want_profile or single_ratio > 1.05:
        prof = (f"cProfile of {len(singles)} annbench single-query searches ({case.label}):\n"
                + profile_text(lambda: [search(s) for s in singles]))
    single = Line(
        "P1", f"{case.label}: single-query, annbench ÷ bare", single_ratio, "×", "<=", 1.05,
        raw={**common_raw,
             "annbench_median_us": float(np.median(a_med) / 1e3),
             "bare_median_us": float(np.median(b_med) / 1e3),
             "search_checked_median_us": float(np.median(c_med) / 1e3),
             "search_checked_sum_ratio_to_bare": float(c_med.sum() / b_med.sum()),
             "overhead_us_per_query": float((a_med.sum() - b_med.sum()) / len(singles) / 1e3),
             "annbench_sum_of_medians_ms": float(a_med.sum() / 1e6),
             "bare_sum_of_medians_ms": float(b_med.sum() / 1e6),
             "annbench_repeat_totals_ms": [float(x.sum() / 1e6) for x in a_lat],
             "bare_repeat_totals_ms": [float(x.sum() / 1e6) for x in b_lat],
             **extra},
        profile=prof, sound=same_single == 1.0 and same_checked_single == 1.0)
    bprof = ""
    if want_profile or batch_ratio > 1.03:
        bprof = (f"cProfile of 5 annbench batch searches of {len(queries)} queries ({case.label}):\n"
                 + profile_text(lambda: [search(queries) for _ in range(5)]))
    batched = Line(
        "P1", f"{case.label}: batch of {len(queries)}, annbench ÷ bare", batch_ratio, "×", "<=", 1.03,
        raw={**common_raw,
             "ratio_of_medians": median([float(x) for x in a_batch]) / median([float(x) for x in b_batch]),
             "annbench_batch_ms": [x / 1e6 for x in a_batch],
             "bare_batch_ms": [x / 1e6 for x in b_batch]},
        profile=bprof, sound=same_batch == 1.0 and same_checked == 1.0)
    policy.close()
    return [single, batched]
