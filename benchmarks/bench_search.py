"""P1: what annbench's timed search adds to the library call it times.

For each index (hnswlib ef=64, faiss IVF nprobe=16, scann) one index is built through annbench — the
adapter behind `policies.make_policy(..., "native")`, exactly what a run's process builds — and then
searched two ways on the same object with the same queries:

- annbench: `perf_counter_ns` around `policy.search(q, k)`, one call per query on one-row views of a
  C-contiguous float32 array prepared outside the timed loop, then one batch call with all queries —
  the loop of `replay._search_step`;
- bare: the library's own call on the adapter's underlying index (`hnswlib.Index.knn_query`,
  `faiss.Index.search`, scann's pybind `search` / `search_batched`), same arrays, same timer.

Repeats alternate the order (A B, B A, A B, …) so slow drift of a shared machine hits both alike.
Single-query figure: Σ over queries of the median (over repeats) latency, annbench ÷ bare — a median
per query is robust to a scheduler hiccup, and the sum weights every query as a run's mean would.
Batch figure: the median over repeats of (annbench batch time ÷ the bare batch time measured next to
it). Both ratios come from one process, so the machine's speed cancels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from common import Case, Line, median, profile_text

K = 10  # the shipped scenarios' k
WARMUP_SINGLES = 20  # as replay.WARMUP_SINGLES


CASES = (
    Case("hnswlib", "hnswlib ef=64", {"M": 16, "ef_construction": 100}, {"ef": 64}),
    Case("faiss-ivf", "faiss IVF nprobe=16", {"encoding": "Flat"}, {"nprobe": 16}),
    Case("scann", "scann (defaults)", {}, {}),
)


def _bare_calls(case: Case, adapter: Any, k: int) -> tuple[Callable[[np.ndarray], Any],
                                                            Callable[[np.ndarray], Any], bool,
                                                            Callable[[Any], np.ndarray]]:
    """(single call, batch call, whether single takes a 1-d row, answer → ids) on the adapter's own index."""
    if case.family == "hnswlib":
        index = adapter.index
        index.set_ef(max(case.search["ef"], k))  # once: a user of hnswlib sets ef once, not per call
        threads = adapter.threads

        def one(q: np.ndarray) -> Any:
            return index.knn_query(q, k=k, num_threads=threads)

        return one, one, False, lambda ans: np.asarray(ans[0], dtype=np.int64)
    if case.family == "faiss-ivf":
        index = adapter.index  # nprobe was set on it by the adapter

        def search(q: np.ndarray) -> Any:
            return index.search(q, k)

        return search, search, False, lambda ans: ans[1]
    if case.family == "scann":
        raw = adapter.searcher.searcher  # the pybind searcher, below scann's docid-mapping Python wrapper
        pre = max(adapter.search_settings["reorder"], k) if adapter.num_leaves else -1
        leaves = min(adapter.search_settings["leaves_to_search"], adapter.num_leaves) if adapter.num_leaves else -1
        parallel = adapter.threads > 1
        pos_ids = adapter.docids()

        def single(q: np.ndarray) -> Any:
            return raw.search(q, k, pre, leaves)

        def batch(q: np.ndarray) -> Any:
            return raw.search_batched(q, k, pre, leaves, parallel, 256 if parallel else 0)

        def to_ids(ans: Any) -> np.ndarray:
            return pos_ids[np.asarray(ans[0], dtype=np.int64)]

        return single, batch, True, to_ids
    raise ValueError(case.family)


def _time_singles(call: Callable[[np.ndarray], Any], singles: list[np.ndarray]) -> np.ndarray:
    import time

    lat = np.empty(len(singles), dtype=np.int64)
    clock = time.perf_counter_ns
    for i, q in enumerate(singles):
        t0 = clock()
        call(q)
        lat[i] = clock() - t0
    return lat


def _time_batch(call: Callable[[np.ndarray], Any], queries: np.ndarray) -> int:
    import time

    t0 = time.perf_counter_ns()
    call(queries)
    return time.perf_counter_ns() - t0


def measure(n: int, n_queries: int, repeats: int, threads: int = 1, want_profile: bool = False) -> list[Line]:
    """Build each case on the catalog (n × 128, cosine) and return its single-query and batch lines."""
    from threadpoolctl import threadpool_limits

    from annbench import catalog
    from annbench.adapters.base import Metric, prepare_vectors

    metric = Metric.COSINE
    ds = catalog.generate(n=n, n_queries=n_queries, seed=0)
    pool = prepare_vectors(ds.base, metric)
    queries = prepare_vectors(ds.queries, metric)
    ids = np.asarray(ds.base_ids(), dtype=np.int64)
    # What replay hands the policy: one-row views of a C-contiguous float32 array, made before timing.
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
    """Build one index through annbench, then time annbench's search and the bare library call on it."""
    from annbench import adapters
    from annbench.adapters.base import Metric
    from annbench.policies import make_policy

    metric = Metric.COSINE
    cls = adapters.get(case.family)
    policy = make_policy("native", cls, metric, pool.shape[1], threads, case.build, pool, 1)
    policy.build(np.arange(len(pool), dtype=np.int64), ids)
    policy.set_search_params(**case.search)
    adapter = policy.adapter
    one, batch, takes_1d, to_ids = _bare_calls(case, adapter, K)
    bare_singles = rows1d if takes_1d else singles

    # Both paths must do the same work: same answers, or the ratio compares different searches.
    ours = policy.search(queries, K)
    theirs = to_ids(batch(queries))
    same_batch = float((ours == theirs).all(axis=1).mean())
    ours_1 = np.vstack([policy.search(s, K) for s in singles[:50]])
    theirs_1 = np.vstack([to_ids(one(r)).reshape(1, -1) for r in bare_singles[:50]])
    same_single = float((ours_1 == theirs_1).all(axis=1).mean())

    def annbench_single() -> np.ndarray:
        return _time_singles(lambda q: policy.search(q, K), singles)

    def bare_single() -> np.ndarray:
        return _time_singles(one, bare_singles)

    # Warm-up of both paths, as replay does before timing (batch and one-query code differ).
    for _ in range(2):
        policy.search(queries, K)
        batch(queries)
        for s, r in zip(singles[:WARMUP_SINGLES], bare_singles[:WARMUP_SINGLES], strict=True):
            policy.search(s, K)
            one(r)

    a_lat, b_lat, c_lat, a_batch, b_batch = [], [], [], [], []
    adapter_search = adapter.search
    for r in range(repeats):
        order = ("a", "b") if r % 2 == 0 else ("b", "a")
        for who in order:
            if who == "a":
                a_lat.append(annbench_single())
            else:
                b_lat.append(bare_single())
        # the adapter called directly, without the policy: splits annbench's overhead into its two layers
        c_lat.append(_time_singles(lambda q: adapter_search(q, K), singles))
    # One batch call is short: a scheduler hiccup on a shared machine moves it a lot, so twice the repeats.
    for r in range(2 * repeats):
        for who in (("a", "b") if r % 2 == 0 else ("b", "a")):
            if who == "a":
                a_batch.append(_time_batch(lambda q: policy.search(q, K), queries))
            else:
                b_batch.append(_time_batch(batch, queries))

    a_med = np.median(np.vstack(a_lat), axis=0)  # per query, over repeats
    b_med = np.median(np.vstack(b_lat), axis=0)
    single_ratio = float(a_med.sum() / b_med.sum())
    # Each annbench call is paired with the bare call next to it in time: a burst of load from other
    # processes (they last longer than one call) then hits both sides of a pair, and cancels in its ratio.
    batch_ratio = median([a / b for a, b in zip(a_batch, b_batch, strict=True)])
    extra = {}
    if takes_1d:
        # Diagnostic: the library's batch entry point called with one row (what the adapter calls), so a
        # gap can be split into the entry point chosen and the adapter's own Python.
        b1 = np.median(np.vstack([_time_singles(batch, singles) for _ in range(max(3, repeats // 3))]), axis=0)
        extra["bare_batch_call_one_row_median_us"] = float(np.median(b1) / 1e3)
        extra["bare_batch_call_one_row_sum_ratio_to_bare"] = float(b1.sum() / b_med.sum())
    common_raw = {"family": case.family, "build": case.build, "search": case.search, "n": len(pool),
                  "queries": len(queries), "k": K, "threads": threads, "repeats": repeats,
                  "same_answers_batch": same_batch, "same_answers_single_first50": same_single,
                  "queries_c_contiguous_float32": True}
    prof = ""
    if want_profile or single_ratio > 1.05:
        prof = (f"cProfile of {len(singles)} annbench single-query searches ({case.label}):\n"
                + profile_text(lambda: [policy.search(s, K) for s in singles]))
    single = Line(
        "P1", f"{case.label}: single-query, annbench ÷ bare", single_ratio, "×", "<=", 1.05,
        raw={**common_raw,
             "annbench_median_us": float(np.median(a_med) / 1e3),
             "bare_median_us": float(np.median(b_med) / 1e3),
             "adapter_direct_median_us": float(np.median(np.median(np.vstack(c_lat), axis=0)) / 1e3),
             "overhead_us_per_query": float((a_med.sum() - b_med.sum()) / len(singles) / 1e3),
             "annbench_sum_of_medians_ms": float(a_med.sum() / 1e6),
             "bare_sum_of_medians_ms": float(b_med.sum() / 1e6),
             "annbench_repeat_totals_ms": [float(x.sum() / 1e6) for x in a_lat],
             "bare_repeat_totals_ms": [float(x.sum() / 1e6) for x in b_lat],
             **extra},
        profile=prof, sound=same_single == 1.0)
    bprof = ""
    if want_profile or batch_ratio > 1.03:
        bprof = (f"cProfile of 5 annbench batch searches of {len(queries)} queries ({case.label}):\n"
                 + profile_text(lambda: [policy.search(queries, K) for _ in range(5)]))
    batched = Line(
        "P1", f"{case.label}: batch of {len(queries)}, annbench ÷ bare", batch_ratio, "×", "<=", 1.03,
        raw={**common_raw,
             "ratio_of_medians": median([float(x) for x in a_batch]) / median([float(x) for x in b_batch]),
             "annbench_batch_ms": [x / 1e6 for x in a_batch],
             "bare_batch_ms": [x / 1e6 for x in b_batch]},
        profile=bprof, sound=same_batch == 1.0)
    return [single, batched]
