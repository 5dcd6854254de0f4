"""Tests of annbench/export.py: results written as ann-benchmarks' per-run HDF5 files.

Every file is read back with h5py and checked field by field against the result JSON it came from,
its distances are recomputed from the vectors here, the ground truth of a static run is recomputed by
brute force here, and recall is recomputed with ann-benchmarks' own rule (its `get_recall_values`:
a returned item counts when its distance is ≤ the k-th true distance + 1e-3) and must equal annbench's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from annbench.cli import main

N, DIM, NQ, K = 1500, 16, 40, 10
ATTRS = ("algo", "name", "build_time", "index_size", "best_search_time", "count", "distance")


def _ann_benchmarks_recall(true_distances: np.ndarray, run_distances: np.ndarray, count: int) -> float:
    """ann-benchmarks' plotting/metrics.py get_recall_values with knn_threshold, written out as it is there."""
    recalls = np.zeros(len(run_distances))
    for i in range(len(run_distances)):
        t = true_distances[i][count - 1] + 1e-3
        actual = 0
        for d in run_distances[i][:count]:
            if d <= t:
                actual += 1
        recalls[i] = actual
    return float(np.mean(recalls) / float(count))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(30, DIM)) * 2
    base = (centres[rng.integers(30, size=N)] + rng.normal(size=(N, DIM))).astype(np.float32)
    np.save(root / "emb.npy", base)
    queries = centres[rng.integers(30, size=NQ)] + rng.normal(size=(NQ, DIM))
    np.save(root / "emb.queries.npy", queries.astype(np.float32))
    np.save(root / "emb.ids.npy", 7 + 5 * np.arange(N, dtype=np.int64))  # ids are not rows
    sparse = {"M": 4, "ef_construction": 8}  # a weak graph, so recall is below 1 and the check means something
    (root / "static.yaml").write_text(yaml.safe_dump({
        "name": "static", "dataset": {"path": "emb.npy"}, "metric": "l2", "k": K, "keep_answers": True,
        "indexes": [{"family": "hnswlib", "build": sparse, "search": {"ef": [4, 40]}}, {"family": "faiss-flat"}],
    }))
    (root / "daily.yaml").write_text(yaml.safe_dump({
        "name": "daily", "dataset": {"name": "catalog", "params": {"n": 1500, "dim": DIM, "n_queries": NQ}},
        "metric": "cosine", "k": K, "keep_answers": True, "rebuild_every": 1,
        "timeline": {"kind": "daily", "days": 2, "initial_fraction": 0.8, "insert_fraction": 0.05,
                     "delete_fraction": 0.05, "update_fraction": 0.02, "delete_rule": "product"},
        "indexes": [{"family": "usearch", "build": sparse, "search": {"ef": 8}, "policies": ["native", "rebuild"]}],
    }))
    (root / "forgot.yaml").write_text(yaml.safe_dump({
        "name": "forgot", "dataset": {"path": "emb.npy"}, "metric": "l2", "k": K, "indexes": [{"family": "voyager"}],
    }))
    out = root / "results"
    runner = CliRunner()
    for scen in ("static", "daily", "forgot"):
        res = runner.invoke(main, ["run", "--scenario", str(root / f"{scen}.yaml"), "--out", str(out)],
                            catch_exceptions=False)
        assert res.exit_code == 0, res.output
    abx = root / "abx"
    res = runner.invoke(main, ["results", "export-ann-benchmarks", str(out), "--out", str(abx)],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    docs = {json.loads(p.read_text())["run_id"]: json.loads(p.read_text()) for p in out.glob("*/*.json")}
    return {"root": root, "out": out, "abx": abx, "output": res.output, "base": base, "docs": docs,
            "files": sorted((abx / "results").rglob("*.hdf5"))}


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        return attrs, {k: f[k][()] for k in f}


def _setting(doc: dict[str, Any], day: int, params: dict[str, Any]) -> dict[str, Any]:
    step = next(s for s in doc["steps"] if s["op"] == "search" and s["day"] == day)
    return next(st for st in step["settings"] if st["params"] == params)


def test_one_file_per_run_step_and_setting_and_skips_said(exported: dict[str, Any]) -> None:
    # static: hnswlib 2 settings + flat 1; daily: usearch native + rebuild, 3 search steps each
    assert len(exported["files"]) == 3 + 2 * 3
    assert "skipped forgot/" in exported["output"] and "keep_answers: true" in exported["output"]
    assert sorted(p.name for p in (exported["abx"] / "data").iterdir()) == [
        "daily_catalog_day0.hdf5", "daily_catalog_day1.hdf5", "daily_catalog_day2.hdf5", "static_emb.hdf5"]
    for path in exported["files"]:  # ann-benchmarks' layout: results/<dataset>/<count>/<algo>/<params>.hdf5
        rel = path.relative_to(exported["abx"] / "results").parts
        assert len(rel) == 4 and rel[1] == str(K)


def test_every_field_matches_the_result_it_came_from(exported: dict[str, Any]) -> None:
    base = exported["base"]
    for path in exported["files"]:
        attrs, data = _read(path)
        assert set(ATTRS) <= set(attrs)
        doc = exported["docs"][attrs["annbench_run_id"]]
        st = _setting(doc, int(attrs["annbench_day"]), json.loads(attrs["annbench_search_params"]))
        n = len(st["query_indices"])
        assert attrs["count"] == K and attrs["algo"] == path.parent.name
        assert attrs["distance"] == {"l2": "euclidean", "cosine": "angular"}[doc["dataset"]["metric"]]
        assert attrs["name"].startswith(doc["index"]["family"] + "(")
        assert attrs["build_time"] == next(s for s in doc["steps"] if s["op"] == "build")["seconds"]
        assert attrs["index_size"] == pytest.approx(max(0, doc["memory"]["index_bytes"]) / 1024)
        per_query = np.median(np.asarray(st["latency_ns"]).reshape(st["rounds"], n), axis=0) / 1e9  # over rounds
        assert attrs["best_search_time"] == pytest.approx(per_query.mean())
        assert data["times"].shape == (n,) and data["times"].dtype == np.float32
        np.testing.assert_allclose(data["times"], per_query, rtol=1e-6)
        assert data["neighbors"].shape == (n, K) and data["neighbors"].dtype == np.int32
        assert data["distances"].shape == (n, K) and data["distances"].dtype == np.float32
        real = data["neighbors"] >= 0
        assert (np.isinf(data["distances"]) == ~real).all()
        if doc["scenario"]["name"] == "static":
            # neighbors are base rows: the row of id 7 + 5·r is r, and the distance is recomputed here
            ids = np.asarray(st["answers"])
            np.testing.assert_array_equal(np.where(real, 7 + 5 * data["neighbors"], -1), ids)
            queries = np.load(exported["root"] / "emb.queries.npy")[st["query_indices"]]
            rows = np.maximum(data["neighbors"], 0)
            d = np.sqrt(((queries[:, None, :].astype(np.float64) - base[rows]) ** 2).sum(-1))
            np.testing.assert_allclose(data["distances"][real], d[real], rtol=1e-5, atol=1e-5)


def test_ground_truth_file_is_exact(exported: dict[str, Any]) -> None:
    attrs, gt = _read(exported["abx"] / "data" / "static_emb.hdf5")
    queries = np.load(exported["root"] / "emb.queries.npy").astype(np.float64)
    d = np.sqrt(((queries[:, None, :] - exported["base"].astype(np.float64)[None]) ** 2).sum(-1))
    assert attrs["distance"] == "euclidean" and gt["test"].shape == (NQ, DIM)
    np.testing.assert_allclose(gt["distances"], np.sort(d, axis=1)[:, :K], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d[np.arange(NQ)[:, None], gt["neighbors"]], gt["distances"], rtol=1e-5, atol=1e-5)


def test_recall_recomputed_the_ann_benchmarks_way_equals_annbench(exported: dict[str, Any]) -> None:
    below_one = 0
    for path in exported["files"]:
        attrs, data = _read(path)
        _, gt = _read(exported["abx"] / "data" / f"{attrs['dataset']}.hdf5")
        doc = exported["docs"][attrs["annbench_run_id"]]
        st = _setting(doc, int(attrs["annbench_day"]), json.loads(attrs["annbench_search_params"]))
        theirs = _ann_benchmarks_recall(gt["distances"], data["distances"], int(attrs["count"]))
        assert theirs == pytest.approx(st["recall"], abs=1e-12), path
        assert attrs["annbench_recall"] == st["recall"]
        below_one += st["recall"] < 1.0
    assert below_one >= 3  # the weak graphs really miss neighbours: equality is not 1.0 == 1.0


def test_nothing_to_export_is_refused(tmp_path: Path, exported: dict[str, Any]) -> None:
    only = tmp_path / "only"
    only.mkdir()
    forgot = next(p for p in exported["out"].glob("forgot/*.json"))
    (only / "forgot").mkdir()
    (only / "forgot" / forgot.name).write_bytes(forgot.read_bytes())
    res = CliRunner().invoke(main, ["results", "export-ann-benchmarks", str(only), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "keep_answers: true" in res.output
