"""Scoring rules: tie-aware recall, leaks, hit@k / P@k, latency summary, QPS and the Pareto front."""

from __future__ import annotations

import numpy as np
import pytest

from annbench.metrics import (
    hit_at_k,
    latency_summary,
    leaks,
    pareto_front,
    precision_at_k,
    qps,
    recall_at_k,
)


# --- recall -------------------------------------------------------------------------------------------
def test_recall_counts_items_within_the_kth_distance_plus_eps() -> None:
    ids = np.array([[1, 2, 3, 4]])
    dists = np.array([[0.1, 0.2, 0.5, 0.9]], dtype=np.float32)
    np.testing.assert_allclose(recall_at_k(ids, dists, np.array([0.5])), [0.75])
    np.testing.assert_allclose(recall_at_k(ids, dists, np.array([0.8995]), eps=1e-3), [1.0])
    np.testing.assert_allclose(recall_at_k(ids, dists, np.array([0.8985]), eps=1e-3), [0.75])
    np.testing.assert_allclose(recall_at_k(ids, dists, np.array([0.05]), eps=0.0), [0.0])


def test_an_item_exactly_at_the_kth_distance_counts_even_with_eps_zero() -> None:
    kth = np.float32(0.7)  # float32 values, as groundtruth returns them
    ids = np.array([[5, 6]])
    dists = np.array([[0.1, kth]], dtype=np.float32)
    np.testing.assert_allclose(recall_at_k(ids, dists, np.array([kth]), eps=0.0), [1.0])


def test_an_alternative_id_tied_with_the_kth_neighbour_counts() -> None:
    # true top-2 = ids 1 (0.1) and 2 (0.3); id 9 is a duplicate vector of id 2 (also 0.3)
    got = recall_at_k(np.array([[1, 9]]), np.array([[0.1, 0.3]]), np.array([0.3]), eps=0.0)
    np.testing.assert_allclose(got, [1.0])


def test_duplicates_count_once_and_padding_never() -> None:
    ids = np.array([[3, 3, 3, -1], [-1, -1, -1, -1], [7, 8, 7, 9]])
    dists = np.array([[0.1, 0.1, 0.1, np.inf], [np.inf] * 4, [0.1, 0.2, 0.1, 0.3]])
    got = recall_at_k(ids, dists, np.array([1.0, 1.0, 1.0]))
    np.testing.assert_allclose(got, [0.25, 0.0, 0.75])
    # even a -1 carrying a small distance is not counted
    np.testing.assert_allclose(recall_at_k(np.array([[-1, 2]]), np.array([[0.0, 0.0]]), np.array([1.0])), [0.5])


def test_recall_denominator_with_fewer_live_items_than_k() -> None:
    ids = np.array([[4, 2, -1, -1]])
    dists = np.array([[0.2, 0.3, np.inf, np.inf]])
    kth = np.array([np.inf])  # ground truth padded: only two items live
    np.testing.assert_allclose(recall_at_k(ids, dists, kth), [0.5])
    np.testing.assert_allclose(recall_at_k(ids, dists, kth, n_true=np.array([2])), [1.0])


def test_recall_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        recall_at_k(np.zeros((2, 3), np.int64), np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(ValueError):
        recall_at_k(np.zeros((2, 3), np.int64), np.zeros((2, 3)), np.zeros(3))


# --- leaks, labels ---------------------------------------------------------------------------------------
def test_leaks_counts_distinct_deleted_ids_per_query() -> None:
    ids = np.array([[1, 2, 3], [4, 4, -1], [-1, -1, -1]])
    np.testing.assert_array_equal(leaks(ids, np.array([2, 3, 4, -1])), [2, 1, 0])
    np.testing.assert_array_equal(leaks(ids, np.array([], dtype=np.int64)), [0, 0, 0])


def test_hit_at_k() -> None:
    labels = np.array([[5, 6, 7], [1, 1, 1], [-1, -1, -1], [8, -1, -1]])
    np.testing.assert_array_equal(hit_at_k(labels, np.array([7, 2, -1, 8])), [1.0, 0.0, 0.0, 1.0])


def test_precision_at_k_counts_padding_as_miss() -> None:
    labels = np.array([[5, 5, 7, 5], [5, -1, -1, -1], [-1, -1, -1, -1]])
    q = np.array([5, 5, -1])
    np.testing.assert_allclose(precision_at_k(labels, q, 4), [0.75, 0.25, 0.0])
    np.testing.assert_allclose(precision_at_k(labels, q, 2), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(precision_at_k(labels[:, :2], q, 4), [0.5, 0.25, 0.0])  # missing slots


# --- speed ---------------------------------------------------------------------------------------------
def test_latency_summary_matches_numpy_percentiles() -> None:
    rng = np.random.default_rng(0)
    ns = rng.lognormal(13, 0.5, 1000).astype(np.int64)  # percentiles fall between samples
    s = latency_summary(ns)
    ms = ns / 1e6
    assert s["n"] == 1000
    for name, p in (("p50", 50), ("p95", 95), ("p99", 99)):
        assert s[name] == pytest.approx(np.percentile(ms, p), rel=1e-12)
    assert s["mean"] == pytest.approx(ms.mean())
    assert s["min"] == pytest.approx(ms.min()) and s["max"] == pytest.approx(ms.max())
    assert latency_summary(np.array([2_000_000]))["p99"] == pytest.approx(2.0)
    empty = latency_summary(np.array([], dtype=np.int64))
    assert empty["n"] == 0 and np.isnan(empty["p50"])


def test_qps() -> None:
    assert qps(1000, 0.5) == pytest.approx(2000.0)
    with pytest.raises(ValueError):
        qps(10, 0.0)


# --- Pareto front --------------------------------------------------------------------------------------
def test_pareto_front_excludes_dominated_points() -> None:
    # (recall, latency)
    pts = [(0.90, 1.0), (0.95, 2.0), (0.80, 1.5), (0.99, 5.0), (0.95, 3.0), (0.70, 0.5), (0.99, 6.0)]
    front = pareto_front(pts)
    np.testing.assert_array_equal(front, [5, 0, 1, 3])  # sorted by recall ascending


def test_pareto_front_keeps_exact_ties_and_handles_edges() -> None:
    pts = [(0.9, 1.0), (0.9, 1.0), (0.8, 0.5), (0.9, 1.2)]
    np.testing.assert_array_equal(pareto_front(pts), [2, 0, 1])
    np.testing.assert_array_equal(pareto_front([(0.5, 3.0)]), [0])
    np.testing.assert_array_equal(pareto_front([(0.5, 3.0)] * 4), [0, 1, 2, 3])
    assert pareto_front(np.empty((0, 2))).size == 0
    # same y, larger x dominates; same x, smaller y dominates
    np.testing.assert_array_equal(pareto_front(np.array([0.5, 0.6, 0.6]), np.array([1.0, 1.0, 0.9])), [2])


def test_pareto_front_two_arrays_and_nan() -> None:
    x = np.array([0.9, np.nan, 0.95, 0.5])
    y = np.array([1.0, 0.1, 2.0, 0.2])
    np.testing.assert_array_equal(pareto_front(x, y), [3, 0, 2])
    with pytest.raises(ValueError):
        pareto_front(np.array([1.0]), np.array([1.0, 2.0]))


def test_pareto_front_agrees_with_brute_force() -> None:
    rng = np.random.default_rng(4)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        x = rng.integers(0, 5, n) / 4.0
        y = rng.integers(0, 5, n).astype(float)
        want = [i for i in range(n)
                if not any(x[j] >= x[i] and y[j] <= y[i] and (x[j] > x[i] or y[j] < y[i]) for j in range(n))]
        want = sorted(want, key=lambda i: (x[i], i))
        np.testing.assert_array_equal(pareto_front(x, y), want)
