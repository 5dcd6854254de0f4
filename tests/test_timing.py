"""annbench.timing: figures over rounds, their intervals, and the noisy verdict."""

from __future__ import annotations

import numpy as np
import pytest

from annbench import timing


def _rounds(rng: np.random.Generator, r: int, q: int, scale_ns: float = 50_000.0) -> np.ndarray:
    return (scale_ns * (1 + rng.exponential(0.2, size=(r, q)))).astype(np.int64)


def test_figures_are_medians_over_rounds_and_lie_inside_their_intervals() -> None:
    rng = np.random.default_rng(1)
    lat = _rounds(rng, 5, 400)
    out = timing.summarise_rounds(lat, [0.02, 0.021, 0.019, 0.02, 0.05], 400)
    per_round_p99 = np.percentile(lat / 1e6, 99, axis=1)
    assert out["latency_ms"]["p99"] == pytest.approx(float(np.median(per_round_p99)))
    assert out["latency_ms"]["p50"] == pytest.approx(float(np.median(np.percentile(lat / 1e6, 50, axis=1))))
    for name in ("p50", "p95", "p99", "mean"):
        lo, hi = out["latency_ms_ci95"][name]
        assert lo <= out["latency_ms"][name] <= hi
        assert lo < hi
    # one slow batch round (0.05 s) does not move the median QPS
    assert out["qps"] == pytest.approx(400 / 0.02)
    lo, hi = out["qps_ci95"]
    assert lo <= out["qps"] <= hi
    assert len(out["per_round"]) == 5 and out["latency_ms"]["n"] == 2000


def test_the_bootstrap_is_seeded_and_narrows_with_more_queries() -> None:
    rng = np.random.default_rng(2)
    small, big = _rounds(rng, 3, 100), _rounds(rng, 3, 3000)
    a = timing.summarise_rounds(small, [0.01] * 3, 100, seed=7)
    b = timing.summarise_rounds(small, [0.01] * 3, 100, seed=7)
    assert a == b
    width = lambda o: o["latency_ms_ci95"]["p99"][1] - o["latency_ms_ci95"]["p99"][0]  # noqa: E731
    assert width(timing.summarise_rounds(big, [0.01] * 3, 3000)) < width(a)


def test_a_disturbed_round_or_a_thread_without_its_core_is_noisy_and_says_why() -> None:
    quiet = [{"p50_ms": 0.05, "qps": 1000.0}, {"p50_ms": 0.052, "qps": 980.0}, {"p50_ms": 0.051, "qps": 1010.0}]
    assert not timing.noise_verdict(quiet, [0.99, 1.0, 0.98])["noisy"]
    burst = [*quiet[:2], {"p50_ms": 0.09, "qps": 990.0}]
    v = timing.noise_verdict(burst, [0.99, 1.0, 0.98])
    assert v["noisy"] and "p50" in v["reasons"][0] and v["thresholds"]["round_spread"] == timing.ROUND_SPREAD
    shared = timing.noise_verdict(quiet, [0.99, 0.52, 0.98])
    assert shared["noisy"] and "core" in shared["reasons"][0]
    # a loop too short to judge by its CPU share is not judged
    assert timing.cpu_share(0.0001, 0.0002) is None
    assert not timing.noise_verdict(quiet, [timing.cpu_share(0.0001, 0.0002)])["noisy"]


def test_overlapping_intervals_are_a_tie() -> None:
    assert timing.overlap((1.0, 2.0), (1.9, 3.0))
    assert not timing.overlap((1.0, 2.0), (2.1, 3.0))


def test_rounds_must_be_a_matrix() -> None:
    with pytest.raises(ValueError):
        timing.summarise_rounds(np.zeros(10, np.int64), [0.1], 10)
