"""The harness end to end: isolated runs, per-step metrics recomputed independently, leaks, crashes, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from annbench import harness, results
from annbench.cli import main
from annbench.datasets import open_dataset
from annbench.groundtruth import LiveGroundTruth
from annbench.oplog import ground_truth_steps, load_ops, op_log
from annbench.scenarios import load_scenario
from tests.conftest import REPO, small_scenario


def run_cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return res.exit_code, res.output


def load_runs(out: Path, scenario: str = "small") -> dict[str, dict]:
    docs = [results.dump(results.load(p)) for p in sorted((out / scenario).glob("*.json"))]  # checked, as plain dicts
    return {f"{d['index']['label']}/{d['index']['policy']}": d for d in docs}


def search_steps(doc: dict) -> list[dict]:
    return [s for s in doc["steps"] if s["op"] == "search"]


def test_recorded_recall_equals_independent_brute_force(tmp_path: Path, scenario_file) -> None:
    """Every step's recorded recall is recomputed here from the stored answers with a naive float64 replay."""
    path = scenario_file(
        [{"name": "hnsw", "family": "hnswlib", "build": {"M": 4, "ef_construction": 16},
          "search": {"ef": [5, 40]}, "policies": ["native", "tombstone", "rebuild"]}],
        keep_answers=True)
    code, out = run_cli("run", "--scenario", str(path), "--out", str(tmp_path / "res"))
    assert code == 0, out
    runs = load_runs(tmp_path / "res")
    assert set(runs) == {"hnsw/native", "hnsw/tombstone", "hnsw/rebuild"}

    sc = load_scenario(path)
    ds = open_dataset("catalog", seed=3, n=3000, dim=16, n_queries=60)
    base = np.asarray(ds.base, np.float64)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = np.asarray(ds.queries, np.float64)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ops = op_log(sc, ds.base_ids(), ds.base_labels, ds.query_labels, ds.nq)
    live: dict[int, np.ndarray] = {}
    expected = []  # per search step: (ids of live items, their vectors)
    for op in ops:
        if op.kind in ("build", "insert", "update"):
            live.update({int(i): base[r] for i, r in zip(op.ids, op.rows, strict=True)})
        elif op.kind == "delete":
            for i in op.ids.tolist():
                del live[i]
        else:
            expected.append(dict(live))
    recalls_seen = set()
    for name, doc in runs.items():
        assert doc["status"] == "ok", doc["error"]
        steps = search_steps(doc)
        assert len(steps) == len(expected) == 4
        for step, snapshot in zip(steps, expected, strict=True):
            ids = np.fromiter(snapshot, np.int64)
            vecs = np.stack(list(snapshot.values()))
            for setting in step["settings"]:
                q = queries[setting["query_indices"]]
                dist = 1.0 - q @ vecs.T
                kth = np.sort(dist, axis=1)[:, sc.k - 1]
                per_query = []
                for qi, answer in enumerate(setting["answers"]):
                    good = set()
                    for returned in answer:
                        if returned in snapshot:
                            if 1.0 - q[qi] @ snapshot[returned] <= kth[qi] + 1e-3:
                                good.add(returned)
                    per_query.append(len(good) / sc.k)
                assert setting["recall"] == pytest.approx(float(np.mean(per_query)), abs=1e-12), name
                recalls_seen.add(round(setting["recall"], 6))
                assert len(ids) == step["live"]
    assert len(recalls_seen) > 1  # the figures are not one value repeated


def test_each_step_has_its_own_metrics(tmp_path: Path, scenario_file) -> None:
    """An index that silently drops inserts and updates loses recall day after day: each step shows it."""
    path = scenario_file([{"name": "frozen", "family": "test-frozen"}, {"name": "exact", "family": "test-exact"}],
                         timeline={"kind": "daily", "initial_fraction": 0.4, "days": 3, "insert_fraction": 0.2,
                                   "delete_fraction": 0.0, "update_fraction": 0.05})
    code, out = run_cli("run", "--scenario", str(path), "--out", str(tmp_path / "res"))
    assert code == 0, out
    runs = load_runs(tmp_path / "res")
    frozen = [s["settings"][0]["recall"] for s in search_steps(runs["frozen/native"])]
    exact = [s["settings"][0]["recall"] for s in search_steps(runs["exact/native"])]
    assert exact == [1.0] * 4
    assert frozen[0] == 1.0
    assert all(b < a for a, b in zip(frozen, frozen[1:], strict=False)), frozen
    fresh = [s["settings"][0]["freshness"] for s in search_steps(runs["frozen/native"])[1:]]
    assert max(fresh) < 0.5  # what it silently lost is what it cannot find by its own vector


def test_leaks_are_reported_and_never_count_as_hits(tmp_path: Path, scenario_file) -> None:
    path = scenario_file([{"name": "leaky", "family": "test-leaky"}])
    code, out = run_cli("run", "--scenario", str(path), "--out", str(tmp_path / "res"))
    assert code == 0, out
    steps = search_steps(load_runs(tmp_path / "res")["leaky/native"])
    first = steps[0]["settings"][0]
    assert first["leaks"] == 0 and first["recall"] == 1.0
    for step in steps[1:]:
        s = step["settings"][0]
        assert s["leaks"] == step["count"]  # the leaked id is in every answer
        # it pushed the k-th true neighbour out and is not counted: exactly (k-1)/k
        assert s["recall"] == pytest.approx(4 / 5)


def test_crashes_and_hangs_are_recorded_and_the_sweep_goes_on(tmp_path: Path, scenario_file) -> None:
    # only the hanging index gets a short limit: under load the others may need more than a few seconds
    path = scenario_file([{"name": n, "family": n, **({"timeout_s": 3} if n == "test-hang" else {})} for n in
                          ("test-abort", "test-segfault", "test-hang", "test-raise", "test-exact")],
                         timeout_s=120)
    code, out = run_cli("run", "--scenario", str(path), "--out", str(tmp_path / "res"))
    assert code == 0, out
    runs = load_runs(tmp_path / "res")
    assert runs["test-abort/native"]["status"] == "failed"
    assert "SIGABRT" in runs["test-abort/native"]["error"]
    assert runs["test-segfault/native"]["status"] == "failed"
    assert "SIGSEGV" in runs["test-segfault/native"]["error"]
    assert runs["test-hang/native"]["status"] == "timeout"
    assert runs["test-raise/native"]["status"] == "failed"
    assert "deliberate failure in search" in runs["test-raise/native"]["error"]
    assert runs["test-exact/native"]["status"] == "ok"
    assert len(search_steps(runs["test-exact/native"])) == 4


def test_rerun_skips_finished_runs_until_the_scenario_changes(tmp_path: Path, scenario_file) -> None:
    indexes = [{"name": "exact", "family": "test-exact"}, {"name": "ivf", "family": "faiss-ivf",
                                                           "build": {"nlist": 16}, "search": {"nprobe": [1, 4]}}]
    path = scenario_file(indexes)
    out = tmp_path / "res"
    assert run_cli("run", "--scenario", str(path), "--out", str(out))[0] == 0
    files = sorted((out / "small").glob("*.json"))
    assert len(files) == 2
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    code, text = run_cli("run", "--scenario", str(path), "--out", str(out))
    assert code == 0 and "2 skipped" in text
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before
    # a changed workload reruns every run
    scenario_file(indexes, k=4)
    code, text = run_cli("run", "--scenario", str(path), "--out", str(out))
    assert code == 0 and "2 ok" in text
    assert all(json.loads(p.read_text())["scenario"]["k"] == 4 for p in files)
    # --force reruns too
    code, text = run_cli("run", "--scenario", str(path), "--out", str(out), "--force")
    assert code == 0 and "2 ok" in text


def test_an_extending_scenario_adds_runs_to_its_parents_results(tmp_path: Path, scenario_file) -> None:
    parent = scenario_file([{"name": "exact", "family": "test-exact"}])
    child = tmp_path / "more.yaml"
    child.write_text("extends: small\nindexes:\n  - {name: exact, family: test-exact}\n"
                     "  - {name: hnsw, family: hnswlib, build: {M: 8}, search: {ef: 20}, timeout_s: 300}\n")
    out = tmp_path / "res"
    assert run_cli("run", "--scenario", str(parent), "--out", str(out))[0] == 0
    first = {p: p.read_bytes() for p in (out / "small").glob("*.json")}
    code, text = run_cli("run", "--scenario", str(child), "--out", str(out))
    # the same workload: the parent's finished run is reused, the new index joins the parent's folder
    assert code == 0 and "1 skipped" in text and "1 ok" in text, text
    runs = load_runs(out)
    assert set(runs) == {"exact/native", "hnsw/native"} and not (out / "more").exists()
    assert all(p.read_bytes() == blob for p, blob in first.items())
    assert runs["exact/native"]["scenario"]["hash"] == runs["hnsw/native"]["scenario"]["hash"]


def test_a_policy_the_index_cannot_support_is_refused_before_running(tmp_path: Path, scenario_file) -> None:
    path = scenario_file([{"name": "annoy", "family": "annoy", "policies": ["native"]}])
    code, text = run_cli("run", "--scenario", str(path), "--out", str(tmp_path / "res"))
    assert code == 2
    assert "annoy cannot run policy 'native'" in text
    assert not (tmp_path / "res" / "small").exists()


def test_catalog_size_scaled_down(tmp_path: Path) -> None:
    out = tmp_path / "res"
    code, text = run_cli("run", "--scenario", "catalog_size", "--scale", "0.1", "--out", str(out),
                         "--configs", str(REPO / "configs" / "scenarios"))
    assert code == 0, text
    docs = [results.dump(results.load(p)) for p in (out / "catalog_size").glob("*.json")]
    sizes = {d["index"]["size"] for d in docs}
    assert sizes == {1000, 2500, 5000, 10000}
    assert all(d["status"] == "ok" for d in docs), [d["error"] for d in docs if d["status"] != "ok"]
    exact = [d for d in docs if d["index"]["family"] == "faiss-flat"]
    assert all(search_steps(d)[0]["settings"][0]["recall"] == 1.0 for d in exact)


@pytest.mark.parametrize("delete_rule", ["random", "product"])
def test_the_per_step_ground_truth_file_equals_a_live_replay(tmp_path: Path, delete_rule: str) -> None:
    """The cached per-step ground truth (computed over the whole op log at once) equals LiveGroundTruth's
    answer at each search, op by op, ids and distances, ties in the same order."""
    timeline = {"kind": "daily", "initial_fraction": 0.5, "days": 5, "insert_fraction": 0.06, "delete_fraction": 0.05,
                "delete_rule": delete_rule, "update_fraction": 0.04}
    sc = load_scenario(small_scenario(tmp_path, [{"family": "faiss-flat"}], timeline=timeline))
    prep = harness.prepare(sc, tmp_path / "cache")
    pool = np.load(prep.data_dir / "base.npy", mmap_mode="r")
    queries = np.load(prep.data_dir / "queries.npy")[: sc.n_queries]
    with np.load(prep.gt_paths[None]) as z:
        got_d, got_i = z["dists"], z["ids"]
    answers = LiveGroundTruth(pool, queries, sc.k, prep.metric).replay(
        ground_truth_steps(load_ops(prep.ops_paths[None])))
    for step, (want_d, want_i) in enumerate(answers):
        np.testing.assert_array_equal(got_i[step], want_i)
        np.testing.assert_array_equal(got_d[step], want_d)
    assert len(answers) == len(got_d) > 5
