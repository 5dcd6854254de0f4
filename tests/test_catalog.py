"""Tests of annbench.catalog (determinism, labels, query provenance, hardness calibration against
hnswlib and faiss) and of annbench.hardness (LID and relative contrast on data of known shape)."""

from __future__ import annotations

import warnings

import faiss
import hnswlib
import numpy as np
import pytest

from annbench import catalog, hardness
from annbench.adapters.base import Metric
from annbench.dataset import Dataset
from annbench.datasets import open_dataset
from annbench.errors import ConfigError

SMALL = dict(n=3000, n_queries=200)


def test_same_seed_same_catalog_other_seed_other_catalog() -> None:
    a, b, c = catalog.generate(**SMALL, seed=1), catalog.generate(**SMALL, seed=1), catalog.generate(**SMALL, seed=2)
    for key in ("base", "queries", "base_labels", "query_labels", "ids", "query_sources"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    assert a.content_hash() == b.content_hash()
    assert a.content_hash() != c.content_hash()
    assert not np.array_equal(a.base, c.base) and not np.array_equal(a.queries, c.queries)
    assert a.source == "catalog(seed=1, n=3000, dim=128, n_queries=200)"


def test_catalog_does_not_depend_on_the_number_of_queries() -> None:
    few, many = catalog.generate(n=2000, n_queries=10), catalog.generate(n=2000, n_queries=300)
    np.testing.assert_array_equal(few.base, many.base)
    np.testing.assert_array_equal(few.base_labels, many.base_labels)


def test_tiny_dimensions_work() -> None:
    ds = catalog.generate(n=50, dim=2, n_queries=5)  # more scribbles than dims: capped at dim
    assert ds.base.shape == (50, 2) and np.isfinite(ds.queries).all()


def test_vectors_ids_and_metric() -> None:
    ds = catalog.generate(**SMALL, dim=64)
    assert ds.base.dtype == np.float32 and ds.queries.dtype == np.float32
    assert ds.base.shape == (3000, 64) and ds.queries.shape == (200, 64)
    np.testing.assert_allclose(np.linalg.norm(ds.base, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ds.queries, axis=1), 1.0, atol=1e-5)
    assert ds.metric is Metric.COSINE
    assert ds.ids.dtype == np.int64 and len(np.unique(ds.ids)) == ds.n
    assert ds.ids[0] == 1_000_000  # ids are not positions
    assert not ds.base.flags.writeable  # the cached content hash relies on it


def test_products_have_one_to_four_images_and_queries_keep_their_product() -> None:
    ds = catalog.generate(**SMALL)
    per_product = np.bincount(ds.base_labels)
    assert per_product.min() >= 1 and per_product.max() <= 4
    assert set(np.unique(per_product)) == {1, 2, 3, 4}
    np.testing.assert_array_equal(ds.query_labels, ds.base_labels[ds.query_sources])
    # a reseller photo is far closer to its source image than to a typical catalog image
    sim_source = np.einsum("ij,ij->i", ds.queries, ds.base[ds.query_sources])
    sim_random = ds.queries @ ds.base[:500].T
    assert np.median(sim_source) > 0.8 > np.median(sim_random)


def test_query_kinds_replay_the_generator() -> None:
    # with no noise and zero-strength scribbles, only crops change a query
    ds = catalog.generate(**SMALL, seed=5, compression_noise=0.0, scribble_strength=0.0)
    kinds = np.array(catalog.query_kinds(200, seed=5))
    same = np.isclose(ds.queries, ds.base[ds.query_sources], atol=1e-6).all(axis=1)
    assert set(kinds) == set(catalog.KINDS)
    np.testing.assert_array_equal(same, kinds != "crop")


def test_bad_knobs_are_config_errors() -> None:
    for kwargs in ({"n": 0}, {"n": "many"}, {"perturbation_mix": (1, -1, 0)}, {"perturbation_mix": "x"},
                   {"crop_fraction": 0.0}, {"spectrum_decay": float("nan")}, {"scribble_count": -1},
                   {"image_scale": True}):
        with pytest.raises(ConfigError, match="catalog: parameter"):
            catalog.generate(**{**SMALL, **kwargs})
    with pytest.raises(ConfigError, match="unknown parameter 'colour'"):
        open_dataset("catalog", colour=3)


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)]))


def test_default_catalog_is_hard_for_cheap_settings_and_solvable_by_expensive_ones() -> None:
    """The calibration promise of the module docstring, at the default size (≈ 10–15 s on 2 cores)."""
    ds = catalog.generate()
    x, q, k = np.ascontiguousarray(ds.base), np.ascontiguousarray(ds.queries), 10
    exact = faiss.IndexFlatIP(ds.dim)
    exact.add(x)
    _, truth = exact.search(q, k)

    graph = hnswlib.Index(space="ip", dim=ds.dim)
    graph.init_index(max_elements=ds.n, M=16, ef_construction=200, random_seed=100)
    graph.set_num_threads(2)
    graph.add_items(x, np.arange(ds.n))
    recall = {}
    for ef in (16, 128):
        graph.set_ef(ef)
        recall[f"hnsw ef{ef}"] = _recall(graph.knn_query(q, k=k)[0], truth)

    nlist = int(4 * np.sqrt(ds.n))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(ds.dim), ds.dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(x)
    ivf.add(x)
    for nprobe in (2, 32):
        ivf.nprobe = nprobe
        recall[f"ivf nprobe{nprobe}"] = _recall(ivf.search(q, k)[1], truth)

    assert 0.6 <= recall["hnsw ef16"] <= 0.95, recall
    assert 0.6 <= recall["ivf nprobe2"] <= 0.95, recall
    assert recall["hnsw ef128"] >= 0.97, recall
    assert recall["ivf nprobe32"] >= 0.97, recall


# -- hardness ------------------------------------------------------------------------------------------


def test_lid_of_data_on_a_low_dimensional_subspace() -> None:
    rng = np.random.default_rng(0)
    for true_dim in (3, 8):
        x = (rng.standard_normal((20000, true_dim)) @ rng.standard_normal((true_dim, 64))).astype(np.float32)
        lid = hardness.lid_mle(x, k=20, sample=500)
        assert abs(lid - true_dim) <= 0.3 * true_dim + 0.5, (true_dim, lid)


def test_relative_contrast_of_noise_is_near_one_and_of_clusters_high() -> None:
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((10000, 256)).astype(np.float32)
    centres = rng.standard_normal((40, 256))
    blobs = (centres[rng.integers(0, 40, 10000)] + 0.05 * rng.standard_normal((10000, 256))).astype(np.float32)
    rc_noise = hardness.relative_contrast(noise, sample=300)
    rc_blobs = hardness.relative_contrast(blobs, sample=300)
    assert 1.0 < rc_noise < 1.3
    assert rc_blobs > 3 * rc_noise


def test_hardness_is_blockwise_and_excludes_self(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    whole = hardness.lid_mle(x, sample=200)
    monkeypatch.setattr(hardness, "BLOCK", 97)
    assert hardness.lid_mle(x, sample=200) == pytest.approx(whole, rel=1e-4)
    # sampled base rows do not count themselves (distance 0 would make the estimates degenerate)
    assert np.isfinite(whole) and np.isfinite(hardness.relative_contrast(x, sample=200))
    q = x[:50] + 0.01
    assert hardness.lid_mle((x, q), sample=50) > 0


def test_describe_catalog() -> None:
    ds = catalog.generate(n=5000, n_queries=300)
    info = hardness.describe(ds, sample=300)
    assert (info["n"], info["dim"], info["nq"], info["metric"]) == (5000, 128, 300, "cosine")
    assert info["memory_bytes"] == 4 * 128 * (5000 + 300)
    assert info["base_labels"] and info["query_labels"] and info["ids"]
    assert 5 < info["lid"] < 60 and info["relative_contrast"] > 1


# -- issue 16: no empty query set, memory before generating, degenerate sets, reference figures ---------------
def test_a_catalog_without_queries_is_refused() -> None:
    with pytest.raises(ConfigError, match="'n_queries' is 0; must be ≥ 1"):
        catalog.generate(n=100, n_queries=0)
    with pytest.raises(ConfigError, match="'n_queries' is 0"):
        open_dataset("catalog", n=100, n_queries=0)


def test_generate_checks_memory_before_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []

    def shortfall(need: int) -> str:
        asked.append(need)
        return "needs a lot of memory, but this machine has little available"

    monkeypatch.setattr(catalog, "memory_shortfall", shortfall)
    monkeypatch.setattr(np.random, "default_rng", None)  # nothing may be drawn before the check
    with pytest.raises(ConfigError, match=r"catalog: generating n=100,000,000,000 × dim=128 \(float32 vectors of "
                                          r"46.6 TiB\) needs a lot"):
        catalog.generate(n=10**11)
    assert asked == [catalog.memory_needed(10**11, 128, 1000)] and asked[0] > 4 * 128 * 10**11


def test_identical_vectors_are_degenerate_not_minus_infinity() -> None:
    rng = np.random.default_rng(5)
    for dim, scale in ((8, 1.0), (128, 3.7), (8, 0.1)):  # rounding made some of these -inf, others nan
        same = np.tile((rng.standard_normal((1, dim)) * scale).astype(np.float32), (400, 1))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy's all-NaN warning was a second line on stderr
            info = hardness.describe(Dataset("same", same))
        assert info["lid"] is None and info["relative_contrast"] is None, (dim, scale, info)
        assert info["hardness_undefined"] == info["hardness_at_zero"] == 400
        shown = hardness.info(Dataset("same", same))
        assert shown["lid"] == "undefined" and shown["degenerate"].startswith("yes: 400 of the 400 sampled")
        assert not {"-inf", "inf", "nan"} & {str(v) for v in shown.values()}
    # equidistant neighbours (all k distances tie) have no LID either: NaN, never -inf
    assert np.isnan(hardness._lid_from(np.ones((3, 20), np.float32))).all()


def test_a_few_duplicates_are_left_out_and_counted() -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    x[1000:1100] = x[:100]  # 100 exact copies
    info = hardness.describe(Dataset("dups", x), sample=2000)
    assert info["lid"] is not None and 0 < info["hardness_at_zero"] <= 200
    assert "left out of the medians" in hardness.info(Dataset("dups", x), sample=2000)["hardness_undefined"]


def test_info_puts_the_reference_figures_beside_with_their_source() -> None:
    shown = hardness.info(catalog.generate(n=2000, n_queries=100), sample=100)
    assert shown["vs catalog"].startswith("LID 18.24, relative contrast 3.592: annbench's built-in catalog")
    assert shown["vs MNIST test"].startswith("LID 13.5, relative contrast 2.1: MNIST's 10,000 test images")
    assert "degenerate" not in shown


def test_the_catalog_reference_is_what_datasets_info_measures() -> None:
    # REFERENCES quotes `annbench datasets info catalog`; a generator or estimator change must update it
    ref = next(r for r in hardness.REFERENCES if r.name == "catalog")
    info = hardness.describe(catalog.generate())
    assert (info["lid"], info["relative_contrast"]) == (ref.lid, ref.relative_contrast)
