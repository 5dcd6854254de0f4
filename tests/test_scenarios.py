"""Scenario validation (one clear line per mistake) and the op log's invariants."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from annbench import scenarios
from annbench.datasets import Holdout
from annbench.errors import ConfigError
from annbench.oplog import op_log
from annbench.scenarios import load_scenario, resolve_scenario_path
from annbench.yamlfiles import MAX_EXPANDED_NODES, expanded_size, read_yaml
from tests.conftest import REPO, small_scenario

IVF = [{"family": "faiss-ivf", "build": {"nlist": [8, 16]}, "search": {"nprobe": [1, 2, 4]}}]


def _ops(path: Path, n: int = 3000, nq: int = 60, labels: bool = True):
    sc = load_scenario(path)
    ids = 10_000 + 3 * np.arange(n, dtype=np.int64)
    base_labels = np.arange(n, dtype=np.int64) // 3 if labels else None
    query_labels = np.arange(nq, dtype=np.int64) * 7 % (n // 3) if labels else None
    logs = [op_log(sc, ids, base_labels, query_labels, nq, size) for size in sc.sizes()]
    return sc, ids, logs[-1]


@pytest.mark.parametrize("rule", ["oldest", "random", "product"])
def test_op_log_invariants(tmp_path: Path, rule: str) -> None:
    path = small_scenario(tmp_path, IVF, timeline={"kind": "daily", "initial_fraction": 0.6, "days": 5,
                                                   "insert_fraction": 0.05, "delete_fraction": 0.04,
                                                   "delete_rule": rule, "update_fraction": 0.03})
    sc, ids, ops = _ops(path)
    live: dict[int, int] = {}
    used_rows: set[int] = set()
    ever: set[int] = set()
    kinds = [op.kind for op in ops]
    assert kinds[:2] == ["build", "search"] and kinds.count("search") == 6
    for op in ops:
        if op.kind in ("build", "insert"):
            assert not set(op.ids.tolist()) & ever, "ids are never reused"
            assert np.array_equal(op.ids, ids[op.rows])
        if op.kind in ("build", "insert", "update"):
            assert not set(op.rows.tolist()) & used_rows, "every new vector is a fresh reserve row"
            used_rows.update(op.rows.tolist())
        if op.kind == "update":
            assert set(op.ids.tolist()) <= set(live), "only live ids are updated"
        if op.kind == "delete":
            assert set(op.ids.tolist()) <= set(live), "only live ids are deleted"
            for i in op.ids.tolist():
                del live[i]
        elif op.kind in ("build", "insert", "update"):
            live.update(zip(op.ids.tolist(), op.rows.tolist(), strict=True))
            ever.update(op.ids.tolist())
    assert len(live) > 0
    # deterministic: the same scenario gives the same log
    _, _, again = _ops(path)
    assert all(a.kind == b.kind and all(np.array_equal(x, y) for x, y in
               ((a.rows, b.rows), (a.ids, b.ids), (a.queries, b.queries)) if x is not None)
               for a, b in zip(ops, again, strict=True))


def test_product_rule_deletes_whole_products(tmp_path: Path) -> None:
    path = small_scenario(tmp_path, IVF, timeline={"kind": "daily", "days": 2, "delete_rule": "product",
                                                   "delete_fraction": 0.05, "insert_fraction": 0.0,
                                                   "update_fraction": 0.0, "initial_fraction": 1.0})
    _, ids, ops = _ops(path)
    labels = (np.arange(3000) // 3)
    row_of = {int(i): r for r, i in enumerate(ids)}
    for op in ops:
        if op.kind == "delete":
            gone = {int(labels[row_of[i]]) for i in op.ids.tolist()}
            deleted_rows = {row_of[i] for i in op.ids.tolist()}
            for p in gone:  # every image of a sold-out product leaves with it
                assert {3 * p, 3 * p + 1, 3 * p + 2} <= deleted_rows


def test_dropped_queries_follow_live_products(tmp_path: Path) -> None:
    path = small_scenario(tmp_path, IVF, queries={"count": 60, "deleted_products": "drop"},
                          timeline={"kind": "daily", "days": 3, "delete_rule": "product", "delete_fraction": 0.3,
                                    "insert_fraction": 0.0, "update_fraction": 0.0, "initial_fraction": 1.0})
    _, _, ops = _ops(path)
    searched = [len(op.queries) for op in ops if op.kind == "search"]
    assert searched[0] == 60 and searched[-1] < searched[0]


def test_grid_expansion_and_runs(tmp_path: Path) -> None:
    sc = load_scenario(small_scenario(tmp_path, IVF, policies=["native", "tombstone"]))
    assert len(sc.indexes) == 2 and all(len(c.search) == 3 for c in sc.indexes)
    runs = list(sc.runs())
    assert len(runs) == 4 and len({r.run_id for r in runs}) == 4


def test_workload_hash_ignores_the_index_grid(tmp_path: Path) -> None:
    a = load_scenario(small_scenario(tmp_path, IVF)).content_hash()
    b = load_scenario(small_scenario(tmp_path, [{"family": "hnswlib"}])).content_hash()
    c = load_scenario(small_scenario(tmp_path, IVF, k=7)).content_hash()
    assert a == b != c


def test_shipped_scenarios_validate() -> None:
    for name in ("reseller_daily_updates", "catalog_size", "ci_smoke"):
        sc = load_scenario(resolve_scenario_path(name, REPO / "configs" / "scenarios"))
        assert sc.indexes and sc.name == name
    # the databases are the main job's workload with other indexes: same name, hash and results folder
    main = load_scenario(resolve_scenario_path("reseller_daily_updates", REPO / "configs" / "scenarios"))
    dbs = load_scenario(resolve_scenario_path("reseller_daily_databases", REPO / "configs" / "scenarios"))
    assert dbs.name == main.name and dbs.content_hash() == main.content_hash()
    assert {c.family for c in dbs.indexes} == {"lancedb", "pgvector"}
    assert not {c.family for c in main.indexes} & {"lancedb", "pgvector"}
    assert all(c.timeout_s and c.timeout_s > main.timeout_s for c in dbs.indexes)


def test_extends_takes_every_key_but_those_it_sets(tmp_path: Path) -> None:
    parent_dir = tmp_path / "team"
    parent_dir.mkdir()
    rng = np.random.default_rng(0)
    np.save(parent_dir / "emb.npy", rng.standard_normal((400, 8)).astype(np.float32))
    np.save(parent_dir / "emb.queries.npy", rng.standard_normal((20, 8)).astype(np.float32))
    parent = small_scenario(parent_dir, IVF, name="team_daily",
                            dataset={"path": "emb.npy", "queries": "emb.queries.npy"})
    child_dir = tmp_path / "mine"
    child_dir.mkdir()
    child = child_dir / "more.yaml"
    child.write_text("extends: ../team/team_daily.yaml\n"
                     "indexes: [{family: hnswlib, search: {ef: [8, 32]}, timeout_s: 900}]\n")
    p, c = load_scenario(parent), load_scenario(child)
    assert c.name == "team_daily" and c.content_hash() == p.content_hash()
    # the parent's relative dataset path still means the parent's file
    assert Path(c.dataset["path"]).resolve() == (parent_dir / "emb.npy").resolve()
    assert [x.family for x in c.indexes] == ["hnswlib"] and c.indexes[0].timeout_s == 900
    assert c.timeout_s == p.timeout_s == 120 and p.indexes[0].timeout_s is None
    # a key the child sets replaces the parent's, and a workload key changes the hash
    child.write_text("extends: ../team/team_daily\nk: 3\nname: mine\n")
    c = load_scenario(child)
    assert (c.name, c.k) == ("mine", 3) and c.content_hash() != p.content_hash()
    assert [x.family for x in c.indexes] == ["faiss-ivf", "faiss-ivf"]


@pytest.mark.parametrize("text, message", [
    ("extends: nowhere\n", "extends 'nowhere', but"),
    ("extends: [a]\n", "extends must name a scenario file"),
    ("extends: loop\n", "which extends it back (a loop)"),
    ("extends: list\n", "top level must be a mapping, got list"),
])
def test_extends_mistakes_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "loop.yaml").write_text("extends: child\n")
    (tmp_path / "list.yaml").write_text("- a\n")
    child = tmp_path / "child.yaml"
    child.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_scenario(child)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(bogus=1), "bogus is not a known key"),
    (lambda d: d.update(k="ten"), "k must be int"),
    (lambda d: d.update(timeout_s=float("nan")), "timeout_s must be a finite number, got nan"),
    (lambda d: d["indexes"][0].update(timeout_s=0.5), "indexes[0].timeout_s is 0.5; must be ≥ 1"),
    (lambda d: d.update(k=0), "k is 0; must be ≥ 1"),
    (lambda d: d.update(metric="hamming"), "unknown metric 'hamming'"),
    (lambda d: d["indexes"][0].update(family="nope"), "unknown index family 'nope'"),
    (lambda d: d["indexes"][0]["build"].update(nlistt=3), "unknown build parameter 'nlistt'"),
    (lambda d: d["indexes"][0]["search"].update(nprobe="x"), "parameter 'nprobe' must be an integer"),
    (lambda d: d["indexes"][0]["search"].update(nprobe=0), "must be ≥ 1"),
    (lambda d: d.update(policies=["sometimes"]), "allowed: native, tombstone, rebuild"),
    (lambda d: d["timeline"].update(delete_rule="youngest"), "allowed: oldest, random, product"),
    (lambda d: d.update(indexes=[]), "must list at least one index"),
    (lambda d: d.update(indexes=[{"family": "annoy", "policies": ["tombstone"]}]), "use policy 'rebuild'"),
])
def test_invalid_scenarios_are_one_line(tmp_path: Path, mutate, message: str) -> None:
    path = small_scenario(tmp_path, [{"family": "faiss-ivf", "build": {"nlist": 8}, "search": {"nprobe": 2}}])
    doc = yaml.safe_load(path.read_text())
    mutate(doc)
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as e:
        load_scenario(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_duplicate_and_malformed_yaml(tmp_path: Path) -> None:
    dup = tmp_path / "dup.yaml"
    dup.write_text("name: a\nk: 1\nk: 2\nindexes: []\n")
    with pytest.raises(ConfigError, match="duplicate key 'k' at line 3"):
        load_scenario(dup)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_scenario(bad)


@pytest.mark.parametrize("timeline, message", [
    ({"kind": "daily", "days": 40, "insert_fraction": 0.2, "initial_fraction": 0.5}, "reserve vectors"),
    ({"kind": "static", "sizes": [5000]}, "asks for 5000 vectors but the dataset has 3000"),
])
def test_timeline_checked_against_the_dataset(tmp_path: Path, timeline: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _ops(small_scenario(tmp_path, IVF, timeline=timeline))


def test_k_larger_than_live_set_is_caught_before_running(tmp_path: Path) -> None:
    path = small_scenario(tmp_path, IVF, k=50, timeline={
        "kind": "daily", "days": 3, "initial_fraction": 1.0, "insert_fraction": 0.0, "update_fraction": 0.0,
        "delete_fraction": 0.99})
    with pytest.raises(ConfigError, match="k=50 is larger than the"):
        _ops(path, n=200)


def test_scenario_names_cannot_escape(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a plain name"):
        resolve_scenario_path("..", REPO / "configs" / "scenarios")
    with pytest.raises(ConfigError, match="no scenario named 'nope'"):
        resolve_scenario_path("nope", REPO / "configs" / "scenarios")
    with pytest.raises(ConfigError, match="--scale must be a positive number"):
        load_scenario(REPO / "configs" / "scenarios" / "ci_smoke.yaml", scale=0)


# -- issue 16: sizes and where the queries come from ---------------------------------------------------------
def _file_scenario(tmp_path: Path, dataset: dict, queries: bool = False) -> Path:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "emb.npy", rng.standard_normal((200, 8)).astype(np.float32))
    if queries:
        np.save(tmp_path / "emb.queries.npy", rng.standard_normal((10, 8)).astype(np.float32))
    return small_scenario(tmp_path, [{"family": "faiss-flat"}], dataset=dataset, metric="l2",
                          timeline={"kind": "static"}, queries={})


def test_holdout_and_queries_options_reach_the_dataset(tmp_path: Path) -> None:
    path = _file_scenario(tmp_path, {"path": "emb.npy"})
    with pytest.raises(ConfigError, match=r"has no queries; .*--queries FILE.*--holdout-queries N"):
        load_scenario(path)
    np.save(tmp_path / "q.npy", np.zeros((3, 8), np.float32))
    by_file = load_scenario(path, queries_path=str(tmp_path / "q.npy"))
    assert by_file.dataset["queries"] == str(tmp_path / "q.npy") and "holdout_queries" not in by_file.dataset
    held = load_scenario(path, holdout_queries=20)
    assert held.dataset["queries"] == Holdout(20) and held.dataset["holdout_queries"] == 20
    # held-out queries are another workload; a queries file is not (its content is hashed with the dataset)
    assert held.content_hash() != by_file.content_hash()
    # the scenario key means the same; the command line wins over it, and --dataset keeps it
    keyed = load_scenario(_file_scenario(tmp_path, {"path": "emb.npy", "holdout_queries": 20}))
    assert keyed.dataset["queries"] == Holdout(20)
    assert "holdout_queries" not in load_scenario(keyed.path, queries_path="q.npy").dataset
    assert load_scenario(keyed.path, dataset_path=str(tmp_path / "emb.npy")).dataset["queries"] == Holdout(20)
    with pytest.raises(ConfigError, match="not both"):
        load_scenario(path, queries_path="q.npy", holdout_queries=3)
    with pytest.raises(ConfigError, match="--holdout-queries is 0; must be ≥ 1"):
        load_scenario(path, holdout_queries=0)


def test_holdout_with_the_catalog_is_refused(tmp_path: Path) -> None:
    path = small_scenario(tmp_path, [{"family": "faiss-flat"}],
                          dataset={"name": "catalog", "params": {"n": 500}, "holdout_queries": 5})
    with pytest.raises(ConfigError, match="dataset.holdout_queries needs dataset.path"):
        load_scenario(path)
    with pytest.raises(ConfigError, match="--holdout-queries needs a dataset file"):
        load_scenario(small_scenario(tmp_path, [{"family": "faiss-flat"}]), holdout_queries=5)


def test_a_scenario_that_does_not_hold_out_keeps_its_hash(tmp_path: Path) -> None:
    # the new optional keys enter the workload hash only when used (test_check pins ci_smoke's too)
    path = _file_scenario(tmp_path, {"path": "emb.npy"}, queries=True)
    sc = load_scenario(path)
    assert set(sc.dataset) == {"path", "scale"}


def test_grids_and_runs_are_capped_before_they_are_expanded(tmp_path: Path) -> None:
    many = list(range(1, 101))
    path = small_scenario(tmp_path, [{"family": "faiss-ivf", "search": {"nprobe": many, "x": many, "y": many}}])
    with pytest.raises(ConfigError, match=r"indexes\[0\]\.search expands to 1,000,000 combinations"):
        load_scenario(path)
    # each entry within its cap, together too many runs
    entries = [{"family": "faiss-ivf", "name": f"ivf{i}", "build": {"nlist": many * 20}} for i in range(6)]
    with pytest.raises(ConfigError, match="more than 10,000 build configurations"):
        load_scenario(small_scenario(tmp_path, entries))
    assert scenarios.MAX_GRID == scenarios.MAX_RUNS == 10_000


def test_a_yaml_alias_bomb_is_refused_before_it_is_built(tmp_path: Path) -> None:
    doc = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    doc += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    (tmp_path / "bomb.yaml").write_text("\n".join(doc) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than 1,000,000 nodes") as e:
        read_yaml(tmp_path / "bomb.yaml")
    assert time.perf_counter() - t0 < 2 and len(str(e.value)) < 300
    # shared nodes are sized once: the count is of the expansion, the cost of the document as written
    node = yaml.compose("a: &a [1, 2, 3]\nb: [*a, *a]\n")
    assert expanded_size(node) == 1 + 2 * 1 + 4 + 1 + 2 * 4  # root, 2 keys, a's list, b's list and 2 copies
    assert MAX_EXPANDED_NODES == 1_000_000
    # a document below the limit still loads, aliases and all
    (tmp_path / "ok.yaml").write_text("\n".join(doc[:4]) + "\n")
    assert len(read_yaml(tmp_path / "ok.yaml")["a3"]) == 10


def test_messages_quote_user_values_short(tmp_path: Path) -> None:
    long = "p" * 5000
    path = small_scenario(tmp_path, [{"family": "faiss-flat"}], policies=[long])
    with pytest.raises(ConfigError) as e:
        load_scenario(path)
    assert "policies has 'ppp" in str(e.value) and len(str(e.value)) < 400
    path = small_scenario(tmp_path, [{"family": "faiss-flat", "name": "x" * 3000, "build": {}}])
    with pytest.raises(ConfigError) as e:
        load_scenario(path, indexes=["nope"])
    assert "--indexes: 'nope' is not in" in str(e.value) and len(str(e.value)) < 500
