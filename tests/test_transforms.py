"""annbench.transforms: PCA, precision and re-ranking, scored against the original space, on real indexes.

PCA to the full dimension is a rotation: an exact index answers as without it and an HNSW graph keeps its
recall; PCA to a quarter of the dimensions loses recall against the original-space truth and re-ranking with
the kept original vectors wins part of it back. The PCA is the day-0 fit until the index is rebuilt. Each
part's memory is counted, a precision is the library's own codec or refused, and a scenario sweeps
transforms like build parameters and records their parts.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from annbench import adapters, catalog, transforms
from annbench.cli import main
from annbench.errors import ConfigError
from annbench.groundtruth import exact_knn
from annbench.metrics import recall_at_k
from annbench.policies import distances, make_policy
from annbench.vectors import Metric, prepare_vectors
from tests.conftest import small_scenario

K = 10


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ds = catalog.generate(n=4000, dim=64, n_queries=200, seed=5)
    base = prepare_vectors(ds.base, Metric.COSINE)
    queries = prepare_vectors(ds.queries, Metric.COSINE)
    return base, queries, np.arange(1000, 1000 + len(base), dtype=np.int64)


def _recall(base: np.ndarray, queries: np.ndarray, ids: np.ndarray, got: np.ndarray) -> float:
    """Mean recall@K of `got` (ids) against the exact neighbours of the untransformed vectors."""
    true_d, _ = exact_knn(base, queries, K, Metric.COSINE, ids=ids)
    rows = np.where(got >= 0, got - ids[0], -1)
    d = distances(queries, base, rows, Metric.COSINE)
    return float(recall_at_k(got, d, true_d[:, -1]).mean())


def _index(family: str, build: dict, spec: dict | None, base: np.ndarray, ids: np.ndarray,
           search: dict | None = None) -> adapters.base.Adapter:
    cls = adapters.get(family)
    params = dict(build)
    if spec is not None:
        params[transforms.KEY] = transforms.check(spec, cls, build, "test")
    adapter = transforms.adapter_factory(cls, Metric.COSINE, base.shape[1], 1, params)()
    adapter.build(base, ids)
    if search:
        adapter.set_search_params(**search)
    return adapter


def test_pca_to_the_full_dimension_changes_nothing(data) -> None:  # noqa: ANN001
    base, queries, ids = data
    plain = _index("faiss-flat", {}, None, base, ids).search(queries, K)
    rotated = _index("faiss-flat", {}, {"pca": 64}, base, ids).search(queries, K)
    assert (plain == rotated).mean() > 0.995  # a rotation: the same answers (float rounding may swap a near-tie)
    assert _recall(base, queries, ids, rotated) == pytest.approx(_recall(base, queries, ids, plain), abs=1e-3)
    h_plain = _index("hnswlib", {"M": 12, "ef_construction": 80}, None, base, ids, {"ef": 32}).search(queries, K)
    h_rot = _index("hnswlib", {"M": 12, "ef_construction": 80}, {"pca": 64}, base, ids, {"ef": 32}).search(queries, K)
    assert _recall(base, queries, ids, h_rot) == pytest.approx(_recall(base, queries, ids, h_plain), abs=0.01)


def test_pca_to_a_quarter_loses_recall_and_reranking_wins_part_back(data) -> None:  # noqa: ANN001
    base, queries, ids = data
    full = _recall(base, queries, ids, _index("faiss-flat", {}, None, base, ids).search(queries, K))
    small = _recall(base, queries, ids, _index("faiss-flat", {}, {"pca": 16}, base, ids).search(queries, K))
    reranked = _recall(base, queries, ids,
                       _index("faiss-flat", {}, {"pca": 16, "rerank": 50}, base, ids).search(queries, K))
    assert full == pytest.approx(1.0)
    assert small < full - 0.05  # measured against the original-space truth, the projection loses neighbours
    assert reranked > small + 0.5 * (full - small)  # re-ranking with the original vectors wins most of it back


def test_the_pca_is_the_day0_fit_until_a_rebuild(data) -> None:  # noqa: ANN001
    base, queries, ids = data
    day0, later = base[:2000], base[2000:]
    policy = make_policy("native", adapters.get("hnswlib"), Metric.COSINE, base.shape[1], 1,
                         {"M": 8, transforms.KEY: transforms.check({"pca": 16}, adapters.get("hnswlib"), {}, "t")},
                         base, 1)
    policy.build(np.arange(2000), ids[:2000])
    fitted = policy.adapter.proj.components.copy()
    # vectors of another distribution arrive: a day-0 fit does not move
    shifted = np.ascontiguousarray(np.roll(later, 7, axis=1))
    policy.adapter.add(shifted, ids[2000:])
    policy.adapter.update(shifted[:100], ids[:100])
    assert np.array_equal(policy.adapter.proj.components, fitted)
    assert policy.adapter.proj.fitted_on == len(day0)
    # a rebuild refits on what it is built from
    rebuilt = make_policy("rebuild", adapters.get("hnswlib"), Metric.COSINE, base.shape[1], 1,
                          {"M": 8, transforms.KEY: transforms.check({"pca": 16}, adapters.get("hnswlib"), {}, "t")},
                          base, 1)
    rebuilt.build(np.arange(2000), ids[:2000])
    assert np.array_equal(rebuilt.adapter.proj.components, fitted)  # the same sample, the same fit
    rebuilt.build(np.arange(len(base)), ids)
    assert not np.allclose(rebuilt.adapter.proj.components, fitted)


def test_each_part_of_the_memory_is_counted(data) -> None:  # noqa: ANN001
    base, _queries, ids = data
    a = _index("faiss-flat", {}, {"pca": 16, "rerank": 40}, base, ids)
    parts = a.parts_bytes()
    assert parts["transform_bytes"] == 64 * 16 * 4 + 64 * 4  # components and mean
    assert len(base) * 64 * 4 <= parts["kept_vectors_bytes"] <= 2 * len(base) * 64 * 4 + 8 * (len(base) + 2)
    lib = a.library_bytes()
    assert lib is None or lib["bytes"] < len(base) * 64 * 4  # the index itself holds 16-dim vectors
    no_rerank = _index("faiss-flat", {}, {"pca": 16}, base, ids).parts_bytes()
    assert no_rerank["kept_vectors_bytes"] == 0


def test_reranking_never_returns_a_deleted_id_and_pads_short_answers(data) -> None:  # noqa: ANN001
    base, queries, ids = data
    a = _index("hnswlib", {"M": 8}, {"pca": 32, "rerank": 30}, base[:40], ids[:40], {"ef": 40})
    a.delete(ids[:10])
    got = a.search(queries[:20], K)
    assert not np.isin(got, ids[:10]).any()
    assert np.array_equal(a.prepare_search(K)(np.ascontiguousarray(queries[:20])), got)  # what the harness times
    assert np.array_equal(a.prepare_search(K)(queries[3:4]), got[3:4])
    small = _index("faiss-flat", {}, {"pca": 8, "rerank": 30}, base[:6], ids[:6])
    got = small.search(queries[:5], K)
    assert got.shape == (5, K) and (got[:, 6:] == -1).all() and (got[:, :6] >= 0).all()


def test_a_precision_is_the_librarys_codec_or_refused() -> None:
    ivf = adapters.get("faiss-ivf")
    spec = transforms.check({"precision": "float16"}, ivf, {}, "t")
    params = {transforms.KEY: spec}
    adapter = transforms.adapter_factory(ivf, Metric.L2, 32, 1, params)()
    assert adapter.params["encoding"] == "SQfp16"
    with pytest.raises(ConfigError, match="hnswlib has no such storage codec"):
        transforms.check({"precision": "int8"}, adapters.get("hnswlib"), {}, "t")
    with pytest.raises(ConfigError, match="set one of the two"):
        transforms.check({"precision": "int8"}, ivf, {"encoding": "PQ8"}, "t")
    with pytest.raises(ConfigError, match="pca"):
        transforms.check({"pca": -1}, ivf, {}, "t")
    with pytest.raises(ConfigError, match="unknown|valid"):
        transforms.check({"pcaa": 4}, ivf, {}, "t")


def test_a_scenario_sweeps_transforms_and_records_their_parts(tmp_path: Path) -> None:
    path = small_scenario(tmp_path, [
        {"name": "flat", "family": "faiss-flat", "transform": [{}, {"pca": [8], "rerank": [0, 20]}]},
    ], k=4)
    res = CliRunner().invoke(main, ["run", "--scenario", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    files = sorted((tmp_path / "out" / "small").glob("*.json"))
    recs = [json.loads(f.read_text()) for f in files]
    by_label = {r["index"]["label"]: r for r in recs}
    assert set(by_label) == {"flat", "flat[pca=8,rerank=0]", "flat[pca=8,rerank=20]"}
    base = by_label["flat"]
    assert base["memory"].get("transform_bytes") is None
    projected, reranked = by_label["flat[pca=8,rerank=0]"], by_label["flat[pca=8,rerank=20]"]
    assert projected["memory"]["transform_bytes"] == 16 * 8 * 4 + 16 * 4
    assert projected["memory"]["kept_vectors_bytes"] == 0 and reranked["memory"]["kept_vectors_bytes"] > 0

    def worst(r: dict) -> float:
        return min(s["recall"] for st in r["steps"] for s in st.get("settings", []))

    assert worst(base) == pytest.approx(1.0) and worst(projected) < 1.0 and worst(reranked) > worst(projected)
    assert projected["index"]["build_params"][transforms.KEY]["pca"] == 8
    # the report draws the transform figure: one point group per (index, transform)
    res = CliRunner().invoke(main, ["plot", str(tmp_path / "out"), "--out", str(tmp_path / "report")])
    assert res.exit_code == 0, res.output
    svg = (tmp_path / "report" / "small-transforms.svg").read_text()
    assert svg.count('id="transform0-') == 3 and "PCA 8 + re-rank 20" in svg
    # the CSV export carries each part of the memory
    res = CliRunner().invoke(main, ["results", "export", str(tmp_path / "out"), "--csv", str(tmp_path / "r.csv")])
    assert res.exit_code == 0, res.output
    rows = [r for r in csv.DictReader((tmp_path / "r.csv").open()) if r["label"] == "flat[pca=8,rerank=20]"]
    assert rows and all(int(r["kept_vectors_bytes"]) > 0 and int(r["transform_bytes"]) == 576 for r in rows)
    # recommend can ask for product precision: P@k is recorded for every transform
    res = CliRunner().invoke(main, ["recommend", str(tmp_path / "out"), "--min-recall", "0.5", "--min-p-at-k", "0.01"])
    assert res.exit_code == 0 and "Winner:" in res.output, res.output


@pytest.mark.parametrize("transform, said", [
    ({"pca": 99}, "more than the dataset's 16 dimensions"),
    ({"precision": "int8"}, "hnswlib has no such storage codec"),
    ({"rerank": "many"}, "rerank"),
])
def test_a_bad_transform_is_one_line(tmp_path: Path, transform: dict, said: str) -> None:
    path = small_scenario(tmp_path, [{"name": "h", "family": "hnswlib", "transform": transform}])
    res = CliRunner().invoke(main, ["run", "--scenario", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and said in res.output and "Traceback" not in res.output, res.output
