"""Tests of annbench/runbook.py: big-ann-benchmarks runbooks replayed as annbench's op log.

Every expectation comes from an independent replay written here from the format's description (tags
are base rows, half-open ranges, deletes of dead tags skipped, replace re-points tags to new rows)
and from brute-force k-NN over the live set that replay gives; none of it reuses annbench's code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from annbench import runbook
from annbench.cli import main
from annbench.errors import ConfigError
from annbench.oplog import op_log
from annbench.scenarios import load_scenario

N, DIM, NQ, K = 1000, 12, 30, 10
ID_BASE, ID_STRIDE = 1_000_000, 3  # the dataset's ids are not row numbers: tag t has id 1e6 + 3t

# Inserts, deletes (one overlapping an earlier one, one of replaced tags), replaces and five searches.
SMALL = {
    1: {"operation": "insert", "start": 0, "end": 500},
    2: {"operation": "search"},
    3: {"operation": "delete", "start": 100, "end": 200},
    4: {"operation": "insert", "start": 500, "end": 800},
    5: {"operation": "search"},
    6: {"operation": "replace", "tags_start": 0, "tags_end": 60, "ids_start": 800, "ids_end": 860},
    7: {"operation": "search"},
    8: {"operation": "delete", "start": 150, "end": 300},
    9: {"operation": "replace", "tags_start": 500, "tags_end": 520, "ids_start": 860, "ids_end": 880},
    10: {"operation": "insert", "start": 880, "end": 1000},
    11: {"operation": "search"},
    12: {"operation": "delete", "start": 0, "end": 30},
    13: {"operation": "search"},
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("runbook-data")
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(20, DIM)) * 3
    base = (centres[rng.integers(20, size=N)] + rng.normal(size=(N, DIM))).astype(np.float32)
    queries = (centres[rng.integers(20, size=NQ)] + rng.normal(size=(NQ, DIM))).astype(np.float32)
    np.save(d / "emb.npy", base)
    np.save(d / "emb.queries.npy", queries)
    np.save(d / "emb.ids.npy", ID_BASE + ID_STRIDE * np.arange(N, dtype=np.int64))
    return d


def _write_runbook(path: Path, steps: dict[int, Any], key: str = "tiny", max_pts: int | None = 1000,
                   others: dict[str, Any] | None = None) -> Path:
    body: dict[Any, Any] = dict(steps)
    if max_pts is not None:
        body["max_pts"] = max_pts
    body["gt_url"] = "https://example.invalid/gt"
    path.write_text(yaml.safe_dump({**(others or {}), key: body}))
    return path


def _scenario(path: Path, runbook_file: Path, data: Path, families: list[dict[str, Any]], key: str | None = "tiny",
              metric: str = "l2") -> Path:
    timeline: dict[str, Any] = {"kind": "runbook", "path": str(runbook_file)}
    if key:
        timeline["dataset"] = key
    path.write_text(yaml.safe_dump({
        "name": path.stem, "dataset": {"path": str(data / "emb.npy")}, "metric": metric, "k": K,
        "keep_answers": True, "timeline": timeline, "indexes": families,
    }))
    return path


def _independent_replay(steps: dict[int, Any]) -> dict[int, dict[int, int]]:
    """Per search step number: {tag: row} of the live points, straight from the format's definition."""
    live: dict[int, int] = {}
    out = {}
    for number in sorted(steps):
        e = steps[number]
        if e["operation"] == "insert":
            live.update({t: t for t in range(e["start"], e["end"])})
        elif e["operation"] == "delete":
            for t in range(e["start"], e["end"]):
                live.pop(t, None)
        elif e["operation"] == "replace":
            for t, r in zip(range(e["tags_start"], e["tags_end"]), range(e["ids_start"], e["ids_end"]), strict=True):
                assert t in live
                live[t] = r
        else:
            out[number] = dict(live)
    return out


def _brute_force(base: np.ndarray, queries: np.ndarray, live: dict[int, int], metric: str) -> np.ndarray:
    """k-th true distance per query over the live points (float64)."""
    rows = np.fromiter(live.values(), np.int64, len(live))
    x, q = base[rows].astype(np.float64), queries.astype(np.float64)
    if metric == "l2":
        d = np.sqrt(np.maximum(((q[:, None, :] - x[None]) ** 2).sum(-1), 0))
    else:
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        d = 1 - qn @ xn.T
    return np.sort(d, axis=1)[:, K - 1]


def test_op_log_matches_an_independent_replay(tmp_path: Path, data_dir: Path) -> None:
    rb = _write_runbook(tmp_path / "rb.yaml", SMALL, others={"other-dataset": {1: {"operation": "search"}}})
    sc = load_scenario(_scenario(tmp_path / "s.yaml", rb, data_dir, [{"family": "faiss-flat"}]))
    ids = np.load(data_dir / "emb.ids.npy")
    ops = op_log(sc, ids, None, None, NQ)
    expected = _independent_replay(SMALL)
    assert [op.kind for op in ops][:2] == ["build", "search"]  # the first insert is the build
    assert [op.day for op in ops if op.kind == "search"] == sorted(expected)  # days are step numbers
    live: dict[int, int] = {}  # id -> row, applying the op log
    for op in ops:
        if op.kind in ("build", "insert", "update"):
            live.update(zip(op.ids.tolist(), op.rows.tolist(), strict=True))
        elif op.kind == "delete":
            for i in op.ids.tolist():
                del live[i]  # annbench deletes only live ids
        else:
            want = {ID_BASE + ID_STRIDE * t: r for t, r in expected[op.day].items()}
            assert live == want, f"step {op.day}"
            assert len(op.queries) == NQ
    by_day = {op.day: op for op in ops}
    assert by_day[8].count == 100  # [150, 300) with [150, 200) already gone
    assert by_day[12].count == 30 and by_day[6].kind == "update"


def test_per_step_recall_equals_brute_force_replay(tmp_path: Path, data_dir: Path) -> None:
    """Replayed through `annbench run`: exact answers at every step, and recorded recall = recomputed recall."""
    rb = _write_runbook(tmp_path / "rb.yaml", SMALL)
    scen = _scenario(tmp_path / "small.yaml", rb, data_dir, [
        {"family": "faiss-flat"}, {"family": "hnswlib", "build": {"M": 4, "ef_construction": 8}, "search": {"ef": 10}},
        {"family": "usearch", "build": {"M": 4, "ef_construction": 8}, "search": {"ef": 10}},
    ])
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", "--scenario", str(scen), "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    base, queries = np.load(data_dir / "emb.npy"), np.load(data_dir / "emb.queries.npy")
    expected = _independent_replay(SMALL)
    kth = {day: _brute_force(base, queries, live, "l2") for day, live in expected.items()}
    docs = {json.loads(p.read_text())["index"]["family"]: json.loads(p.read_text())
            for p in (out / "small").glob("*.json")}
    assert set(docs) == {"faiss-flat", "hnswlib", "usearch"}
    for family, doc in docs.items():
        assert doc["status"] == "ok", doc["error"]
        searches = [s for s in doc["steps"] if s["op"] == "search"]
        assert [s["day"] for s in searches] == sorted(expected)
        for s in searches:
            live = expected[s["day"]]
            assert s["live"] == len(live)
            row_of = {ID_BASE + ID_STRIDE * t: r for t, r in live.items()}
            setting = s["settings"][0]
            found = np.asarray(setting["answers"])
            rows = np.array([[row_of.get(i, -1) for i in r] for r in found.tolist()], dtype=np.int64)
            assert setting["leaks"] == 0 and (rows[found >= 0] >= 0).all()
            d = np.where(rows >= 0, np.sqrt(((queries[:, None, :].astype(np.float64)
                                              - base[np.maximum(rows, 0)]) ** 2).sum(-1)), np.inf)
            recall = (d <= kth[s["day"]][:, None] + 1e-3).sum(1) / K
            assert setting["recall"] == pytest.approx(recall.mean(), abs=1e-9), (family, s["day"])
            if family == "faiss-flat":
                assert setting["recall"] == 1.0
    # the sparse graphs really are approximate on some step, so the comparison above was not trivial
    assert min(s["settings"][0]["recall"] for d in (docs["hnswlib"], docs["usearch"])
               for s in d["steps"] if s["op"] == "search") < 1.0


def test_a_long_runbook_runs_with_a_per_step_recall_curve(tmp_path: Path, data_dir: Path) -> None:
    """120 steps, written programmatically, through `annbench run --runbook --dataset` and `annbench plot`."""
    steps: dict[int, Any] = {}
    cursor, n = 0, 1
    for rnd in range(24):  # each round: insert, search, delete the oldest, replace, search
        steps[n] = {"operation": "insert", "start": cursor, "end": cursor + 30}
        cursor += 30
        steps[n + 1] = {"operation": "search"}
        steps[n + 2] = {"operation": "delete", "start": rnd * 12, "end": rnd * 12 + 12}
        old = rnd * 12 + 12  # still live: deletes trail inserts
        steps[n + 3] = {"operation": "replace", "tags_start": old, "tags_end": old + 3, "ids_start": 900 + rnd * 3,
                        "ids_end": 903 + rnd * 3}
        steps[n + 4] = {"operation": "search"}
        n += 5
    assert len(steps) == 120 and cursor <= 900
    rb = _write_runbook(tmp_path / "long.yaml", steps, key="long-data")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", "--runbook", str(rb), "--dataset", str(data_dir / "emb.npy"),
                                    "--indexes", "hnswlib", "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    (path,) = (out / "runbook.long-long-data").glob("*.json")
    doc = json.loads(path.read_text())
    searches = [s for s in doc["steps"] if s["op"] == "search"]
    assert doc["status"] == "ok" and len(searches) == 48
    assert all(0.9 <= s["settings"][0]["recall"] <= 1.0 and s["settings"][0]["leaks"] == 0 for s in searches)
    assert [s["live"] for s in searches][-1] == 24 * 30 - 24 * 12
    res = CliRunner().invoke(main, ["plot", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert (out / "report" / "runbook_long-long-data-days.png").stat().st_size > 10_000
    # the per-step curve is labelled by runbook step, not by day
    svg = (out / "report" / "runbook_long-long-data-days.svg").read_text()
    assert "runbook step" in svg and "Day 0 is the initial build" not in svg
    # rerunning the same command resumes: the written scenario and its workload hash are stable
    res = CliRunner().invoke(main, ["run", "--runbook", str(rb), "--dataset", str(data_dir / "emb.npy"),
                                    "--indexes", "hnswlib", "--out", str(out)], catch_exceptions=False)
    assert "1 skipped" in res.output


def test_scenario_with_runbook_keeps_its_indexes_and_the_hash_follows_the_content(tmp_path: Path,
                                                                                 data_dir: Path) -> None:
    rb = _write_runbook(tmp_path / "rb.yaml", SMALL)
    base = tmp_path / "mine.yaml"
    base.write_text(yaml.safe_dump({"name": "mine", "k": 5, "metric": "cosine", "timeline": {"kind": "static"},
                                    "indexes": [{"family": "voyager", "search": {"ef": [10, 40]}}]}))
    written = runbook.write_scenario(rb, tmp_path / "gen", dataset=str(data_dir / "emb.npy"), scenario=base)
    sc = load_scenario(written)
    assert sc.name == "mine.rb-tiny" and sc.k == 5 and sc.indexes[0].family == "voyager"
    assert len(sc.indexes[0].search) == 2 and sc.timeline.runbook.key == "tiny"
    moved = tmp_path / "elsewhere" / "rb.yaml"
    moved.parent.mkdir()
    moved.write_bytes(rb.read_bytes())
    same = load_scenario(runbook.write_scenario(moved, tmp_path / "gen2", dataset=str(data_dir / "emb.npy"),
                                                scenario=base))
    assert same.content_hash() == sc.content_hash()  # where the runbook lies is not the workload
    _write_runbook(moved, {**SMALL, 14: {"operation": "search"}})
    changed = load_scenario(runbook.write_scenario(moved, tmp_path / "gen3", dataset=str(data_dir / "emb.npy"),
                                                   scenario=base))
    assert changed.content_hash() != sc.content_hash()


@pytest.mark.parametrize("steps, key, match", [
    ({1: {"operation": "insert", "start": 0, "end": 10}, 3: {"operation": "search"}}, "tiny", "step 2 is missing"),
    ({1: {"operation": "upsert", "start": 0, "end": 10}}, "tiny", "allowed: insert, delete, search, replace"),
    ({1: {"operation": "insert", "start": 0}}, "tiny", "insert needs end"),
    ({1: {"operation": "insert", "start": 5, "end": 2}}, "tiny", r"ranges are \[start, end\)"),
    ({1: {"operation": "insert", "start": 0, "end": 10, "step": 3}}, "tiny", "has no key 'step'"),
    ({1: {"operation": "replace", "tags_start": 0, "tags_end": 5, "ids_start": 10, "ids_end": 11}}, "tiny",
     "same length"),
    ({1: {"operation": "search"}}, "nope", "has no dataset 'nope'"),
    ({1: {"operation": "insert", "start": -1, "end": 3}}, "tiny", "non-negative"),
])
def test_format_errors_are_one_line(tmp_path: Path, steps: dict[int, Any], key: str, match: str) -> None:
    rb = _write_runbook(tmp_path / "rb.yaml", steps)
    with pytest.raises(ConfigError, match=match):
        runbook.read_runbook(rb, key)


def test_several_datasets_need_a_key(tmp_path: Path) -> None:
    rb = _write_runbook(tmp_path / "rb.yaml", SMALL, others={"b": {1: {"operation": "search"}}})
    with pytest.raises(ConfigError, match="several datasets"):
        runbook.read_runbook(rb)
    assert len(runbook.read_runbook(rb, "tiny").steps) == len(SMALL)


@pytest.mark.parametrize("steps, max_pts, match", [
    ({1: {"operation": "insert", "start": 990, "end": 1010}, 2: {"operation": "search"}}, None,
     "go past the dataset's 1000 rows"),
    ({1: {"operation": "insert", "start": 0, "end": 50}, 2: {"operation": "insert", "start": 40, "end": 60}}, None,
     "tag 40, which is already live"),
    ({1: {"operation": "insert", "start": 0, "end": 50}, 2: {"operation": "delete", "start": 0, "end": 10},
      3: {"operation": "insert", "start": 5, "end": 8}}, None, "again after step 2 deleted it"),
    ({1: {"operation": "insert", "start": 0, "end": 50},
      2: {"operation": "replace", "tags_start": 45, "tags_end": 55, "ids_start": 100, "ids_end": 110}}, None,
     "replaces tag 50, which is not live"),
    ({1: {"operation": "search"}}, None, "searches before any point is live"),
    ({1: {"operation": "insert", "start": 0, "end": 5}, 2: {"operation": "search"}}, None, "k=10 is larger"),
    ({1: {"operation": "insert", "start": 0, "end": 50}}, None, "no search step"),
])
def test_dataset_errors_name_the_step(tmp_path: Path, data_dir: Path, steps: dict[int, Any], max_pts: int | None,
                                      match: str) -> None:
    rb = _write_runbook(tmp_path / "rb.yaml", steps, max_pts=max_pts)
    sc = load_scenario(_scenario(tmp_path / "s.yaml", rb, data_dir, [{"family": "faiss-flat"}], key=None))
    with pytest.raises(ConfigError, match=match):
        op_log(sc, np.load(data_dir / "emb.ids.npy"), None, None, NQ)


def test_max_pts_is_not_a_cap(tmp_path: Path, data_dir: Path) -> None:
    # published runbooks exceed their own max_pts (delete_runbook.yaml, random-xs-clustered: 6,051 > 6,000)
    rb = _write_runbook(tmp_path / "rb.yaml", {1: {"operation": "insert", "start": 0, "end": 50},
                                               2: {"operation": "search"}}, max_pts=40)
    sc = load_scenario(_scenario(tmp_path / "s.yaml", rb, data_dir, [{"family": "faiss-flat"}]))
    assert sc.timeline.runbook.max_pts == 40
    assert [op.kind for op in op_log(sc, np.load(data_dir / "emb.ids.npy"), None, None, NQ)] == ["build", "search"]
    with pytest.raises(ConfigError, match="max_pts must be a positive integer"):
        runbook.read_runbook(_write_runbook(tmp_path / "bad.yaml", {1: {"operation": "search"}}, max_pts=0))


def test_cli_refuses_missing_pieces(tmp_path: Path, data_dir: Path) -> None:
    rb = _write_runbook(tmp_path / "rb.yaml", SMALL)
    runner = CliRunner()
    for args, match in ((["run"], "--scenario NAME or --runbook"),
                        (["run", "--runbook", str(rb)], "needs --dataset"),
                        (["run", "--runbook", str(tmp_path / "none.yaml"), "--dataset", "x.npy"], "no such file"),
                        (["run", "--scenario", "ci_smoke", "--runbook-dataset", "x"], "needs --runbook")):
        res = runner.invoke(main, [*args, "--out", str(tmp_path / "out")])
        assert res.exit_code == 2 and match in res.output, (args, res.output)
