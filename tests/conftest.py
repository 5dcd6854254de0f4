"""Shared fixtures: small scenario files written on the fly, and the test-only adapters."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import tests.fake_adapters  # noqa: F401  (registers the test-only adapters)

REPO = Path(__file__).resolve().parent.parent


def small_scenario(tmp_path: Path, indexes: list[dict[str, Any]], **overrides: Any) -> Path:
    """Write a tiny daily-update scenario (catalog 3,000 × 16) and return its path."""
    doc: dict[str, Any] = {
        "name": "small",
        "dataset": {"name": "catalog", "params": {"seed": 3, "n": 3000, "dim": 16, "n_queries": 60}},
        "metric": "cosine",
        "k": 5,
        "threads": 1,
        "timeout_s": 120,
        "queries": {"count": 60, "deleted_products": "keep"},
        "timeline": {"kind": "daily", "initial_fraction": 0.7, "days": 3, "insert_fraction": 0.05,
                     "delete_fraction": 0.04, "delete_rule": "random", "update_fraction": 0.03},
        "rebuild_every": 2,
        "policies": ["native"],
        "indexes": indexes,
    }
    for key, value in overrides.items():
        doc[key] = value
    path = tmp_path / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_db_smoke(tmp_path: Path, name: str, dim: int, policies: list[str],
                 index: dict[str, Any]) -> dict[str, dict]:
    """Run a tiny daily scenario (2,000 × dim catalog, 2 days, modelled on ci_smoke) of one database index
    under `policies` through `annbench run` and `annbench plot`; check that every run finished and that
    each maintenance policy called its upkeep on days 1 and 2 (native never); return the result documents
    by policy.

    The databases' tests (test_lancedb, test_pgvector) share it."""
    import json

    from click.testing import CliRunner

    from annbench.cli import main

    doc = {
        "name": name,
        "dataset": {"name": "catalog", "params": {"seed": 0, "n": 2000, "dim": dim, "n_queries": 50}},
        "metric": "cosine", "k": 10, "seed": 0, "threads": 1, "timeout_s": 120,
        "queries": {"count": 50, "deleted_products": "drop"},
        "timeline": {"kind": "daily", "initial_fraction": 0.8, "days": 2, "insert_fraction": 0.05,
                     "delete_fraction": 0.02, "delete_rule": "product", "update_fraction": 0.01},
        "policies": policies,
        "indexes": [index],
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp_path / "results"
    cli = CliRunner().invoke(main, ["run", "--scenario", str(path), "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    plot = CliRunner().invoke(main, ["plot", str(out)])
    assert plot.exit_code == 0, plot.output
    assert any((out / "report").glob("*.png")) and (out / "report" / "index.html").is_file()
    docs = {d["index"]["policy"]: d for d in (json.loads(p.read_text()) for p in (out / name).glob("*.json"))}
    assert set(docs) == set(policies)
    for policy, doc in docs.items():
        assert doc["status"] == "ok", doc.get("error")
        actions = [(s["day"], s.get("action")) for s in doc["steps"] if s["op"] == "maintain"]
        assert actions == ([] if policy == "native" else [(1, policy), (2, policy)])
    return docs


@pytest.fixture
def scenario_file(tmp_path: Path):
    def make(indexes: list[dict[str, Any]], **overrides: Any) -> Path:
        return small_scenario(tmp_path, indexes, **overrides)

    return make


def two_clients_answer_as_one(search: Callable[[np.ndarray, int], np.ndarray], queries: np.ndarray,
                              k: int = 10) -> bool:
    """Two client threads, started together, each send every query as a single search: do both get exactly
    the answers one thread gets? What an adapter's `concurrency` declaration of safe searches rests on."""
    alone = np.vstack([search(q[None], k) for q in queries])
    got: list[np.ndarray | None] = [None, None]
    start = threading.Barrier(2)

    def client(j: int) -> None:
        start.wait()
        got[j] = np.vstack([search(q[None], k) for q in queries])

    threads = [threading.Thread(target=client, args=(j,)) for j in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return all(g is not None and np.array_equal(g, alone) for g in got)


SIZE_SWEEP_SIZES = [1000, 2000, 4000, 8000]


@pytest.fixture(scope="session")
def size_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real static size sweep, run once per test session: faiss Flat and hnswlib (ef 16) at 1k, 2k, 4k and
    8k × 16 catalog vectors, 2 timing rounds, 1 and 2 client threads. Returns its results folder."""
    from click.testing import CliRunner

    from annbench.cli import main

    root = tmp_path_factory.mktemp("sizes")
    doc = {"name": "sizes_small", "dataset": {"name": "catalog", "params": {"seed": 0, "n": 8000, "dim": 16,
                                                                            "n_queries": 100}},
           "metric": "l2", "k": 10, "threads": 1, "timeout_s": 120,
           "queries": {"count": 100, "deleted_products": "keep"},
           "timeline": {"kind": "static", "sizes": SIZE_SWEEP_SIZES},
           "search": {"rounds": 2, "concurrency": [1, 2], "concurrency_seconds": 0.05},
           "indexes": [{"name": "exact", "family": "faiss-flat"},
                       {"name": "hnswlib", "family": "hnswlib", "build": {"M": 8, "ef_construction": 40},
                        "search": {"ef": [16]}}]}
    (root / "sizes.yaml").write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(main, ["run", "--scenario", str(root / "sizes.yaml"), "--out", str(root / "res")])
    assert res.exit_code == 0, res.output
    return root / "res"
