"""annbench.forecast: growth models recovered, honest intervals, the self-check, and what is refused.

Series with a known law (and noise drawn with a fixed seed) are fitted: the model chosen is the law's, the
forecast at 3× the largest size is the law's value, and over many noisy series the 95 % prediction interval
covers the true value about 95 % of the time (a check that fails if the interval is too narrow or too wide).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from annbench import forecast as fc

SIZES = [10_000, 30_000, 100_000, 300_000, 1_000_000]


@pytest.mark.parametrize("figure, law, model", [
    ("index_bytes", lambda n: 512.0 * n + 4e6, "linear"),
    ("build_seconds", lambda n: 2e-6 * n * np.log(n) + 0.5, "n log n"),
    ("p99_ms", lambda n: 0.003 * n ** 0.4, "power law"),
    ("qps", lambda n: 3e6 * n ** -0.5, "power law"),
    ("recall", lambda n: 1.2 - 0.04 * np.log(n), "linear in log n"),
    ("recall", lambda n: 1.0 - 0.002 * n ** 0.3, "miss-rate power law"),
])
def test_a_known_law_is_recovered(figure: str, law, model: str) -> None:  # noqa: ANN001
    f = fc.forecast(figure, SIZES, [law(n) for n in SIZES], 3_000_000)
    assert f is not None and f.model == model
    want = min(max(law(3_000_000), 0.0), 1.0) if figure == "recall" else law(3_000_000)
    assert f.value == pytest.approx(want, rel=1e-6)
    assert f.lo <= f.value <= f.hi
    assert f.holdout_n == 1_000_000 and abs(f.holdout_error) < 1e-6


def test_the_interval_covers_the_truth_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    law = lambda n: 0.002 * n ** 0.45  # noqa: E731
    hits = total = 0
    for _ in range(400):
        values = [law(n) * math.exp(0.08 * rng.standard_normal()) for n in SIZES]
        f = fc.forecast("p99_ms", SIZES, values, 3_000_000)
        if f is None or f.model != "power law":
            continue
        truth = law(3_000_000) * math.exp(0.08 * rng.standard_normal())  # a new measurement at N
        total += 1
        hits += f.lo <= truth <= f.hi
    assert total > 300
    assert 0.88 <= hits / total <= 0.995, (hits, total)


def test_far_beyond_the_measured_sizes_is_wider_and_said() -> None:
    rng = np.random.default_rng(3)
    values = [1e-5 * n * (1 + 0.05 * rng.standard_normal()) for n in SIZES]
    near = fc.forecast("build_seconds", SIZES, values, 2_000_000)
    far = fc.forecast("build_seconds", SIZES, values, 50_000_000)
    assert near is not None and far is not None
    assert (far.hi - far.lo) / far.value > (near.hi - near.lo) / near.value
    assert far.beyond and not near.beyond and far.far == 50


def test_three_sizes_give_a_forecast_with_a_wide_interval_and_fewer_none() -> None:
    values = [2.0 * n ** 0.5 for n in SIZES[:3]]
    values[1] *= 1.05
    f = fc.forecast("p50_ms", SIZES[:3], values, 1_000_000)
    assert f is not None and f.hi / f.lo > 1.2  # t with one degree of freedom is 12.7
    assert fc.forecast("p50_ms", SIZES[:2], values[:2], 1_000_000) is None
    assert fc.forecast("p50_ms", [10, 10, 20], [1.0, 1.1, 2.0], 100) is None  # a size measured twice: refused


def test_recall_is_clipped_to_what_recall_can_be() -> None:
    f = fc.forecast("recall", SIZES, [0.9, 0.95, 0.98, 0.99, 0.999], 100_000_000)
    assert f is not None and 0.0 <= f.lo <= f.value <= f.hi <= 1.0


def test_a_power_law_is_not_fitted_to_non_positive_values() -> None:
    f = fc.forecast("p99_ms", SIZES, [0.0, 0.1, 0.2, 0.3, 0.4], 3_000_000)
    assert f is not None and f.model != "power law"


def test_t_table_matches_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 5, 8, 10, 20, 30, 120):
        assert fc.t975(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), abs=2e-3)
    for df in (11, 25, 500):  # between rows: never narrower than the true quantile
        assert fc.t975(df) >= scipy_stats.t.ppf(0.975, df) - 1e-9


def test_laws_the_sizes_cannot_rule_out_are_shown_and_covered_by_the_interval() -> None:
    # HNSW-like recall (measured shape, catalog_size_1m to 300k): a miss rate growing as a power of n and a
    # line in log n fit these four sizes about equally well and part ways at 1M
    f = fc.forecast("recall", SIZES[:4], [0.9984, 0.9956, 0.9766, 0.9548], 1_000_000)
    assert f is not None and f.model == "miss-rate power law"
    (name, other), = f.alternatives
    assert name == "linear in log n" and other > f.value
    assert f.lo <= f.value <= f.hi and f.lo <= other <= f.hi  # the interval covers both laws
    assert f.disagreement() == pytest.approx(other - f.value)
    # a law that holds exactly leaves no other law plausible
    exact = fc.forecast("index_bytes", SIZES, [512.0 * n + 4e6 for n in SIZES], 3_000_000)
    assert exact is not None and exact.alternatives == () and exact.disagreement() == 0.0


def test_a_miss_rate_interval_is_ordered_although_its_law_decreases() -> None:
    rng = np.random.default_rng(11)
    for _ in range(50):
        values = [1.0 - 0.002 * n ** 0.3 * math.exp(0.1 * rng.standard_normal()) for n in SIZES]
        f = fc.forecast("recall", SIZES, values, 3_000_000)
        assert f is not None and f.lo <= f.value <= f.hi
