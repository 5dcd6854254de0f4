"""concurrency: client-thread levels, search while updating, the locks, and what the report and recommend make of them.

The scaling test needs two free cores: it measures a GIL-free control first and skips, saying so, when
other processes leave this one less than that (QPS cannot double on a core that is not there). The GIL
test holds on a busy machine too, and is validated by a negative control.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from annbench import concurrency, recommend, report, results
from annbench.adapters import get
from annbench.adapters.base import Metric, validate_params
from annbench.cli import main
from annbench.errors import ConfigError
from annbench.oplog import op_log
from annbench.policies import make_policy
from annbench.recommend import LevelFigures, StepFigures
from annbench.scenarios import load_scenario
from tests.conftest import small_scenario
from tests.test_report import _svg_points

LEVELS = [1, 2]
INGEST_DAYS = [1, 3]
CONC_DAYS = [0, 3]
RATE = 3000.0


def _policy(family: str, build: dict, search: dict, n: int = 20_000, dim: int = 64, policy: str = "native"):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((n, dim)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    cls = get(family)
    pol = make_policy(policy, cls, Metric.COSINE, dim, 1, validate_params(cls.build_params, build, family, "build"),
                      base, 3)
    ids = np.arange(n, dtype=np.int64)
    pol.build(ids, ids)
    pol.set_search_params(**search)
    return pol, base


# --- scenario keys ------------------------------------------------------------------------------------------
def test_keys_parse_and_bad_values_are_one_line_errors(tmp_path: Path) -> None:
    tl = {"kind": "daily", "days": 3, "concurrent_updates": {"rate": 500, "days": [2]}}
    path = small_scenario(tmp_path, [{"family": "hnswlib"}], timeline=tl,
                          search={"concurrency": [1, 2, 4], "concurrency_seconds": 0.5})
    sc = load_scenario(path)
    assert sc.concurrency is not None and sc.concurrency.levels == (1, 2, 4) and sc.concurrency.days is None
    cu = sc.timeline.concurrent_updates
    assert cu is not None and (cu.rate, cu.threads, cu.batch, cu.snapshots, cu.days) == (500.0, 2, 10, 2, (2,))
    assert cu.applies(2) and not cu.applies(1)
    bad = [
        ({"search": {"concurrency": [0]}}, "search.concurrency must list integers from 1 to 256"),
        ({"search": {"concurrency": [1], "concurrency_days": [4]}}, "search.concurrency_days must list integers"),
        ({"search": {"concurrency_seconds": 1}}, "search.concurrency is required"),
        ({"search": {"concurrency": [2, 2]}}, "lists a value twice"),
        ({"timeline": {"kind": "daily", "concurrent_updates": {"threads": 2}}},
         "timeline.concurrent_updates.rate is required"),
        ({"timeline": {"kind": "static", "concurrent_updates": {"rate": 5}}}, "needs timeline.kind: daily"),
        ({"timeline": {"kind": "daily", "days": 2, "concurrent_updates": {"rate": 5, "days": [3]}}},
         "concurrent_updates.days must list integers from 1 to 2"),
    ]
    for override, message in bad:
        path = small_scenario(tmp_path, [{"family": "hnswlib"}], **override)
        with pytest.raises(ConfigError, match=message):
            load_scenario(path)


# --- locks -----------------------------------------------------------------------------------------------------
def test_a_writer_waits_for_readers_and_stops_new_ones() -> None:
    lock = concurrency.RWLock()
    events: list[str] = []
    reader_in, release_reader = threading.Event(), threading.Event()

    def reader(name: str, hold: threading.Event | None) -> None:
        with lock.shared():
            events.append(f"{name} in")
            if hold is not None:
                reader_in.set()
                hold.wait()
            events.append(f"{name} out")

    def writer() -> None:
        with lock.exclusive():
            events.append("writer in")
            time.sleep(0.05)
            events.append("writer out")

    first = threading.Thread(target=reader, args=("r1", release_reader))
    first.start()
    reader_in.wait()
    w = threading.Thread(target=writer)
    w.start()
    time.sleep(0.05)  # the writer is now waiting for r1
    late = threading.Thread(target=reader, args=("r2", None))
    late.start()
    time.sleep(0.05)
    assert events == ["r1 in"], "a waiting writer must keep new readers out, and wait for the one inside"
    release_reader.set()
    for t in (first, w, late):
        t.join(5)
    assert events == ["r1 in", "r1 out", "writer in", "writer out", "r2 in", "r2 out"]


def test_safety_rules() -> None:
    from annbench import adapters
    from annbench.adapters.base import Adapter

    for family in ("hnswlib", "faiss-ivf", "faiss-flat", "faiss-hnsw", "scann", "annoy", "usearch", "voyager"):
        s = concurrency.safety_of(adapters.get(family), "native")
        assert s.concurrent_search and not s.concurrent_write, family  # no built-in library allows read+write
        assert s.source
    pg_cls = adapters.get("pgvector")
    pg = concurrency.safety_of(pg_cls, "vacuum")
    assert pg.concurrent_search and pg.concurrent_write  # a database server: MVCC, a connection per thread
    assert pg is pg_cls.concurrency
    rebuilt = concurrency.safety_of(pg_cls, "rebuild")  # the rebuild policy's buffer swap is always exclusive
    assert rebuilt.concurrent_search and not rebuilt.concurrent_write
    ldb = concurrency.safety_of(adapters.get("lancedb"), "optimize")  # searches checked (tests/test_lancedb.py)
    assert ldb.concurrent_search and not ldb.concurrent_write
    # an instance reads its class's declaration
    assert concurrency.safety_of(adapters.get("annoy")("l2", 4), "rebuild") is adapters.get("annoy").concurrency

    class Undeclared(Adapter):  # someone else's adapter, written without the declaration
        name = "someone-elses-index"

    for unknown in (concurrency.safety_of(Undeclared, "native"), concurrency.safety_of(None, "native")):
        assert unknown is concurrency.UNKNOWN
        assert not unknown.concurrent_search and not unknown.concurrent_write


# --- GIL and scaling -------------------------------------------------------------------------------------------
def test_hnswlib_releases_the_gil_and_the_method_tells() -> None:
    pol, base = _policy("hnswlib", {"M": 16, "ef_construction": 64}, {"ef": 200}, n=10_000)
    queries = np.ascontiguousarray(base[:2000])
    released = concurrency.gil_share(lambda: pol.search(queries, 10), seconds=0.3)
    held = concurrency.gil_share(lambda: sum(range(10**7)), seconds=0.3)  # a C builtin that keeps the GIL
    assert held < 0.2, f"negative control: a GIL-holding call left the other thread {held:.2f} of its speed"
    assert released > 0.3, (f"a Python thread progressed at only {released:.2f} of its speed during hnswlib "
                            f"searches (GIL-holding control: {held:.2f}): knn_query no longer releases the GIL")


def test_qps_at_two_client_threads_beats_one_for_hnswlib() -> None:
    """hnswlib releases the GIL in knn_query; with ef=128 the C++ part dominates a query, so two client
    threads on two cores should serve well over 1.2× the QPS of one. Best of up to 4 short trials."""
    pol, base = _policy("hnswlib", {"M": 16, "ef_construction": 64}, {"ef": 128})
    queries = np.ascontiguousarray(base[:500])
    singles = [queries[i:i + 1] for i in range(len(queries))]
    for q in singles[:50]:
        pol.search(q, 10)
    trials = []
    for _ in range(4):
        one = concurrency.measure_level(pol, singles, 10, 1, 0.3)
        two = concurrency.measure_level(pol, singles, 10, 2, 0.3)
        trials.append((two["qps"] / one["qps"], two["free_cores"], two["cpu_utilisation"]))
        if trials[-1][0] > 1.2:
            break
    best = max(trials)
    if best[0] <= 1.2 and max(t[1] for t in trials) < 1.5:
        pytest.skip("scaling cannot be judged now: GIL-free control work in 2 threads got only "
                    f"{max(t[1] for t in trials):.2f} cores (other processes are using the rest); trials "
                    f"(ratio, free cores, cores busy): {[tuple(round(x, 2) for x in t) for t in trials]}")
    assert best[0] > 1.2, (
        "hnswlib QPS with 2 client threads should exceed 1.2× the QPS with 1 on a 2-core machine (it releases the "
        "GIL in knn_query); got (ratio, free cores, cores busy) per trial "
        f"{[tuple(round(x, 2) for x in t) for t in trials]}. Cores busy near 1 means the searches took turns.")


def test_serving_qps_takes_the_best_level_within_the_latency_limit() -> None:
    lv = (LevelFigures(1, 1000.0, 0.5, 0.8, 1.0, 1.0, 1200.0), LevelFigures(2, 1800.0, 0.6, 1.5, 3.0, 2.0, 2000.0))
    step = StepFigures(0, 10, 10, 0.9, None, None, 0.5, 1.0, 5000.0, 0, mean_ms=1.0, concurrency=lv)
    assert step.serving_qps() == (1800.0, 2)
    assert step.serving_qps(max_p99_ms=2.0) == (1000.0, 1)
    assert step.serving_qps(max_p99_ms=0.5) == (0.0, 0)
    plain = StepFigures(0, 10, 10, 0.9, None, None, 0.5, 1.0, 5000.0, 0, mean_ms=0.5)
    assert plain.serving_qps() == (2000.0, 1)  # one client: 1000 / mean ms, never the batch QPS


# --- a whole scenario: levels at search steps, and search while updating --------------------------------------
@pytest.fixture(scope="module")
def swu(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 3-day scenario, concurrency levels on days 0 and 3, concurrent updates on days 1 and 3."""
    tmp = tmp_path_factory.mktemp("swu")
    path = small_scenario(
        tmp,
        [{"name": "exact", "family": "faiss-flat"},
         {"name": "ivf", "family": "faiss-ivf", "build": {"nlist": 16}, "search": {"nprobe": [1, 4]}},
         {"name": "hnsw", "family": "hnswlib", "build": {"M": 8, "ef_construction": 40}, "search": {"ef": [10, 40]}},
         {"name": "scann", "family": "scann", "build": {"num_leaves": 16}, "search": {"leaves_to_search": [2, 8]}},
         {"name": "annoy", "family": "annoy", "build": {"n_trees": 8}, "search": {"search_k": [200]},
          "policies": ["rebuild"]},
         # declares nothing safe to overlap: every search and write takes one lock. Its search
         # iterates a dict its add changes, so without the lock it would fail.
         {"name": "fake", "family": "test-exact"},
         # a database: its writes run beside the searches, with no lock at all
         {"name": "pg", "family": "pgvector", "build": {"m": 8, "ef_construction": 40}, "search": {"ef_search": 40}}],
        timeline={"kind": "daily", "initial_fraction": 0.7, "days": 3, "insert_fraction": 0.05,
                  "delete_fraction": 0.04, "delete_rule": "random", "update_fraction": 0.03,
                  "concurrent_updates": {"rate": RATE, "threads": 2, "snapshots": 2, "at_rest_seconds": 0.1,
                                         "days": INGEST_DAYS}},
        search={"concurrency": LEVELS, "concurrency_seconds": 0.1, "concurrency_days": CONC_DAYS})
    out = tmp / "res"
    res = CliRunner().invoke(main, ["run", "--scenario", str(path), "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return path, out


def _docs(out: Path) -> dict[str, dict]:
    """The run files as JSON documents (checked by `results.load`): these tests read what a run wrote."""
    docs = [results.dump(results.load(p)) for p in sorted((out / "small").glob("*.json"))]
    return {d["index"]["label"]: d for d in docs}


def test_search_while_updating_runs_for_hnswlib_faiss_ivf_and_scann(swu) -> None:
    path, out = swu
    docs = _docs(out)
    assert set(docs) == {"exact", "ivf", "hnsw", "scann", "annoy", "fake", "pg"}
    from annbench.datasets import open_dataset

    ds = open_dataset("catalog", seed=3, n=3000, dim=16, n_queries=60)
    ops = op_log(load_scenario(path), ds.base_ids(), ds.base_labels, ds.query_labels, ds.nq)
    for name, doc in docs.items():
        assert doc["status"] == "ok", (name, doc["error"])
        kinds = [(s["op"], s["day"]) for s in doc["steps"]]
        for day in INGEST_DAYS:  # the day's writes went through the concurrent writer, not the at-rest steps
            assert ("ingest", day) in kinds and not {("insert", day), ("delete", day), ("update", day)} & set(kinds)
        assert ("insert", 2) in kinds
        for st in (s for s in doc["steps"] if s["op"] == "ingest"):
            expected = {k: sum(len(o.ids) for o in ops if o.day == st["day"] and o.kind == k)
                        for k in ("delete", "insert", "update")}
            assert st["ops"] == expected and st["count"] == sum(expected.values())
            # a writer that keeps up achieves the target; the window ends with the schedule, so never above it
            assert 0 < st["achieved_rate"] <= RATE * 1.02, (name, st["achieved_rate"])
            assert st["under_ingest"]["queries"] > 0 and st["at_rest"]["queries"] > 0
            for fig in (st["under_ingest"], st["at_rest"]):
                assert len(fig["latency_ns"]) == fig["queries"] == sum(fig["per_thread_queries"])
                assert fig["threads"] == 2 and fig["latency_ms"]["p99"] > 0 and fig["qps"] > 0
            assert len(st["snapshots"]) == 2
            assert [sn["applied"] for sn in st["snapshots"]] == sorted(sn["applied"] for sn in st["snapshots"])
            for sn in st["snapshots"]:
                assert 0 < sn["applied"] < st["count"]
                assert [s["params"] for s in sn["settings"]] == doc["index"]["search_grid"]
                assert all(0.0 <= s["recall"] <= 1.0 for s in sn["settings"])
            if name == "pg":  # no lock: nobody waited, and no snapshot saw a deleted row
                assert st["guard"]["writes"] == "beside searches" and st["lock_wait_seconds"] == 0
                assert all(s["leaks"] == 0 and s["recall"] > 0.8 for sn in st["snapshots"] for s in sn["settings"])
            else:
                assert st["guard"]["writes"].startswith("exclusive")
        for st in (s for s in doc["steps"] if s["op"] == "search"):
            assert min(s["recall"] for s in st["settings"]) > 0.3, (name, st["day"])
    # exact search is exact on every snapshot, and the live set after concurrent writes is the op log's
    for name in ("exact", "fake"):
        for st in docs[name]["steps"]:
            if st["op"] == "ingest":
                assert all(s["recall"] == 1.0 and s["leaks"] == 0 for sn in st["snapshots"] for s in sn["settings"])
            if st["op"] == "search":
                assert all(s["recall"] == 1.0 for s in st["settings"]), (name, st["day"])
    assert docs["fake"]["steps"][2]["guard"]["searches"].startswith("one at a time")
    assert docs["hnsw"]["steps"][2]["guard"]["searches"] == "concurrent"
    assert docs["pg"]["steps"][2]["guard"]["searches"] == "concurrent"


def test_concurrency_levels_are_recorded_at_the_chosen_search_steps(swu) -> None:
    _path, out = swu
    for name, doc in _docs(out).items():
        for st in (s for s in doc["steps"] if s["op"] == "search"):
            for s in st["settings"]:
                if st["day"] not in CONC_DAYS:
                    assert "concurrency" not in s
                    continue
                levels = s["concurrency"]
                assert [lv["threads"] for lv in levels] == LEVELS, name
                for lv in levels:
                    assert lv["queries"] == len(lv["latency_ns"]) > 0
                    assert len(lv["per_thread_queries"]) == lv["threads"]
                    assert lv["qps"] > 0 and lv["cpu_utilisation"] > 0 and lv["free_cores"] > 0
                    assert lv["batch"]["library_threads"] == lv["threads"] and lv["batch"]["qps"] > 0
                    assert set(lv["latency_ms"]) >= {"p50", "p95", "p99"}
                assert "latency_ns" in s and "qps" in s  # the existing figures are still there


def test_the_report_plots_qps_against_p99_per_level_and_search_while_updating(swu, tmp_path: Path) -> None:
    _path, out = swu
    rep = report.plot(out, tmp_path / "report", only=["concurrency", "ingest"], write_index=True)
    assert {f.key for f in rep.figures} == {"small-concurrency", "small-ingest"}
    configs, _ = recommend.configurations(results.load_dir(out).runs)
    assert len(configs) == 10  # exact 1 + ivf 2 + hnsw 2 + scann 2 + annoy 1 + fake 1 + pg 1
    pts = _svg_points(tmp_path / "report" / "small-concurrency.svg", r"conc-\d+-\d+")
    assert len(pts) == len(configs) and set(pts.values()) == {len(LEVELS)}, pts  # one line per index setting
    ing = _svg_points(tmp_path / "report" / "small-ingest.svg", r"ingest\d-.*")
    n_runs, n_days = 7, len(INGEST_DAYS)
    assert sum(v for k, v in ing.items() if k.startswith("ingest0-")) == 2 * n_runs * n_days  # rest + under
    assert sum(v for k, v in ing.items() if k.startswith("ingest1-")) == n_runs * n_days  # achieved rate
    assert sum(v for k, v in ing.items() if k.startswith("ingest2-snap")) == 2 * n_runs * n_days  # 2 snapshots
    html = (tmp_path / "report" / "index.html").read_text()
    assert "Throughput under concurrency" in html and "Search while updating" in html
    assert "batch QPS (T library threads)" in html


def test_recommend_min_qps(swu) -> None:
    _path, out = swu
    runner = CliRunner()
    ok = runner.invoke(main, ["recommend", str(out), "--min-recall", "0.5", "--min-qps", "10"])
    assert ok.exit_code == 0, ok.output
    assert "QPS from single-query client threads" in ok.output
    none = runner.invoke(main, ["recommend", str(out), "--min-recall", "0.5", "--min-qps", "1e12"])
    assert none.exit_code == 1, none.output
    assert "QPS" in none.output and "best of 2 concurrency level(s)" in none.output
    tight = runner.invoke(main, ["recommend", str(out), "--min-recall", "0.5", "--min-qps", "10",
                                 "--max-p99-ms", "1e-6"])
    assert tight.exit_code == 1
    bad = runner.invoke(main, ["recommend", str(out), "--min-qps", "-3"])
    assert bad.exit_code == 2 and "--min-qps must be a positive number" in bad.output
    runs = results.load_dir(out).runs
    exact = [r for r in runs if r.index.label == "exact"]
    recs, _ = recommend.recommend(exact, recommend.Constraints(min_recall=0.5, min_qps=1.0))
    c = recs[0].ranked[0]
    measured = [s for s in c.steps if s.concurrency]
    assert [s.day for s in measured] == CONC_DAYS and c.qps_steps() == tuple(measured)
    best = min(s.serving_qps()[0] for s in measured)
    recs, _ = recommend.recommend(exact, recommend.Constraints(min_recall=0.5, min_qps=best * 1.01))
    assert not recs[0].ranked and "QPS" in recs[0].rejected[0][1]
    json.dumps(c.concurrency_levels)
