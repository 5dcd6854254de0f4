"""What is specific to the LanceDB adapter (annbench/adapters/lancedb_.py), beyond the conformance suite.

A real database folder every time: its on-disk footprint, the two upkeep calls (`optimize`, `reindex`)
with rows added before them found before and after, deletes that never come back, rows added after
indexing served by the table's flat scan, a quiet stderr while searching, a folder that `close` removes,
and a small daily scenario under policies native / optimize / reindex through `annbench run` and
`annbench plot`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from annbench import adapters
from annbench.adapters.base import Metric, prepare_vectors
from annbench.adapters.lancedb_ import LanceDB
from annbench.errors import CapabilityError
from tests.conftest import run_db_smoke, two_clients_answer_as_one

DIM = 32


def _data(n: int, seed: int, metric: Metric = Metric.L2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(40, DIM)) + 2.0
    return prepare_vectors(centres[rng.integers(40, size=n)] + rng.normal(size=(n, DIM)), metric)


BASE = _data(2000, 1)
IDS = 1_000_000 + 3 * np.arange(2000, dtype=np.int64)
NEW = _data(300, 2)
NEW_IDS = 9_000_000 + 5 * np.arange(300, dtype=np.int64)


def _found_self(index: LanceDB, vectors: np.ndarray, ids: np.ndarray, k: int = 10) -> float:
    got = index.search(vectors, k)
    return float((got == ids[:, None]).any(axis=1).mean())


@pytest.fixture
def index():
    # refine_factor re-ranks by exact distance, so "a row finds itself" does not depend on PQ codes
    built = adapters.get("lancedb")(Metric.L2, DIM)
    built.build(BASE, IDS)
    built.set_search_params(refine_factor=5)
    yield built
    built.close()


def test_rows_added_after_indexing_are_found_by_the_flat_scan(index: LanceDB) -> None:
    assert index.index_stats() == {"indexed_rows": 2000, "unindexed_rows": 0}
    index.add(NEW, NEW_IDS)
    # native writes: nothing re-indexes; the table scans the 300 new rows exactly
    assert index.index_stats() == {"indexed_rows": 2000, "unindexed_rows": 300}
    index.set_search_params()  # even without re-ranking: the unindexed rows are compared exactly
    assert _found_self(index, NEW, NEW_IDS, k=1) == 1.0


@pytest.mark.parametrize("op", ["optimize", "reindex"])
def test_maintenance_indexes_new_rows_and_keeps_them_found(index: LanceDB, op: str) -> None:
    index.add(NEW, NEW_IDS)
    gone = IDS[:100]
    index.delete(gone)
    before = _found_self(index, NEW, NEW_IDS)
    index.maintain(op)
    assert index.index_stats()["unindexed_rows"] == 0, f"{op} left rows to the flat scan"
    assert index.index_stats()["indexed_rows"] == 2200
    assert before == 1.0 and _found_self(index, NEW, NEW_IDS) >= 0.98
    assert _found_self(index, BASE[100::4], IDS[100::4]) >= 0.98
    assert not np.isin(index.search(BASE[:100], 50), gone).any(), f"a deleted id came back after {op}"


def test_unknown_maintenance_call_is_refused(index: LanceDB) -> None:
    with pytest.raises(CapabilityError, match="optimize, reindex"):
        index.maintain("vacuum")


def test_deleted_rows_never_return(index: LanceDB) -> None:
    gone = IDS[::4]
    index.delete(gone)
    index.add(NEW, NEW_IDS)
    index.update(NEW[:25] * 0.5 + 1.0, IDS[1:100:4])  # upserts next to the deleted rows
    for step in ("native", "optimize", "reindex"):
        if step != "native":
            index.maintain(step)
        for settings in ({}, {"refine_factor": 5}, {"nprobes": 200}):
            index.set_search_params(**settings)
            assert not np.isin(index.search(BASE[:800:4], 50), gone).any(), f"a deleted id came back ({step})"


def test_footprint_is_the_folder_and_grows_with_inserts(index: LanceDB) -> None:
    first = index.footprint()["disk_bytes"]
    on_disk = sum(p.stat().st_size for p in index._folder.rglob("*") if p.is_file())
    assert first == on_disk and first > BASE.nbytes // 2  # PQ codes + the raw vectors the table keeps
    index.add(NEW, NEW_IDS)
    grown = index.footprint()["disk_bytes"]
    assert grown >= first + NEW.nbytes, "300 new raw vectors should be on disk"
    index.delete(IDS[:1000])  # a deletion vector: the bytes stay until optimize compacts
    assert index.footprint()["disk_bytes"] >= grown


def test_search_keeps_stderr_quiet(index: LanceDB, capfd: pytest.CaptureFixture[str]) -> None:
    index.add(NEW, NEW_IDS)  # both the index and the flat scan answer
    capfd.readouterr()
    for settings in ({}, {"refine_factor": 3}):
        index.set_search_params(**settings)
        index.search(BASE[:20], 10)
        for q in BASE[:20]:
            index.search(q[None, :], 10)  # the one-query path the harness times
    out, err = capfd.readouterr()
    assert "deprecat" not in (out + err).lower() and err == "", err[:500]


def test_close_removes_the_folder_and_is_idempotent() -> None:
    index = LanceDB(Metric.COSINE, DIM)
    index.build(prepare_vectors(BASE, Metric.COSINE), IDS)
    folder = index._folder
    assert folder is not None and folder.is_dir()
    index.close()
    assert not folder.exists() and index.footprint() == {}
    index.close()  # a second close does nothing
    # a rebuild after close starts a new folder
    index.build(prepare_vectors(BASE[:500], Metric.COSINE), IDS[:500])
    assert index._folder is not None and index._folder != folder
    index.close()


def test_concurrent_searches_answer_as_one_thread_does(index: LanceDB) -> None:
    # what LanceDB.concurrency (annbench/adapters/lancedb_.py) rests on: two client threads sending single queries
    assert two_clients_answer_as_one(index.search, _data(300, 3))


def test_hnsw_index_type_builds_and_searches() -> None:
    index = LanceDB(Metric.COSINE, DIM, index_type="IVF_HNSW_SQ")
    try:
        x = prepare_vectors(BASE, Metric.COSINE)
        index.build(x, IDS)
        index.set_search_params(ef=64)
        truth = IDS[np.argsort(-(x[:100] @ x.T), axis=1)[:, :10]]
        got = index.search(x[:100], 10)
        recall = np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got.tolist(), truth.tolist(), strict=True)])
        assert recall >= 0.9  # measured .98 at ef 64 (lancedb 0.40.0)
        index.add(prepare_vectors(NEW, Metric.COSINE), NEW_IDS)
        index.maintain("optimize")
        assert index.index_stats()["unindexed_rows"] == 0
    finally:
        index.close()


def test_daily_scenario_with_maintenance_policies_runs_and_plots(tmp_path: Path) -> None:
    results = run_db_smoke(tmp_path, "lance_smoke", DIM, ["native", "optimize", "reindex"],
                           {"name": "lancedb", "family": "lancedb", "search": {"refine_factor": [1, 5]}})
    for policy, result in results.items():
        steps = result["steps"]
        searches = [s for s in steps if s["op"] == "search"]
        assert len(searches) == 3 and all(s["external_bytes"]["disk_bytes"] > 0 for s in searches)
        assert result["memory"]["external_bytes"]["disk_bytes"] > 0
        for s in searches[1:]:  # no deleted row leaks; new and updated rows are found under every policy
            assert all(setting["leaks"] == 0 for setting in s["settings"])
            # re-ranked: once indexed, a row's own PQ code (4 × 8 bits here) need not rank it first without it
            (refined,) = [x for x in s["settings"] if x["params"]["refine_factor"] == 5]
            assert refined["freshness"] >= 0.95, (policy, s["day"], refined["freshness"])
