"""Result files (annbench.results) and their integrity: recorded hashes, `annbench results verify`, atomic writes.

- Each result file records the sha256 of its dataset (over every array's bytes) and of its scenario's
  workload; checked on a real tiny run against hashes recomputed from the files it used, and on the
  committed fixtures (well-formed sha256 hex). The workload hash does not depend on how the scenario
  file was named, so a rerun by another path skips the finished runs.
- `annbench results verify DIR` re-reads and validates every file: the committed fixtures pass (exit 0);
  a corrupt JSON, a truncated file, an unknown schema version, a missing field, a wrong status, a hash
  missing are each listed by name (exit 1); temp files and dot-folders (caches) are not result files.
- Golden files written by main load and dump back equal (the typed run record); a NaN, a missing latency,
  a wrong type, a missing field are each one line naming the file and the field.
- `results.write` leaves neither a temp file nor a changed target when the record cannot be serialised.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from annbench import results
from annbench.cli import main
from annbench.datasets import open_dataset
from annbench.scenarios import load_scenario
from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures" / "results"
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def verify(folder: Path) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["results", "verify", str(folder)], catch_exceptions=False)
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `annbench run` of a 2-run scenario on a 300 × 8 file dataset; returns its folder."""
    root = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(1)
    np.save(root / "emb.npy", rng.standard_normal((300, 8)).astype(np.float32))
    np.save(root / "emb.queries.npy", rng.standard_normal((20, 8)).astype(np.float32))
    doc = {"name": "tiny", "dataset": {"path": "emb.npy"}, "metric": "l2", "k": 5, "timeout_s": 60,
           "timeline": {"kind": "static", "sizes": [200, 300]}, "indexes": [{"family": "faiss-flat"}]}
    (root / "tiny.yaml").write_text(yaml.safe_dump(doc))
    proc = subprocess.run([sys.executable, "-m", "annbench.cli", "run", "--scenario", "tiny.yaml", "--out", "out"],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return root


def test_results_record_the_sha256_of_dataset_and_scenario(tiny_run: Path) -> None:
    files = sorted((tiny_run / "out" / "tiny").glob("*.json"))
    assert len(files) == 2
    want_dataset = open_dataset(tiny_run / "emb.npy").content_hash()
    want_scenario = load_scenario(tiny_run / "tiny.yaml").content_hash()
    for f in files:
        run = results.load(f)
        assert run.status == "ok"
        assert run.dataset.hash == want_dataset
        assert run.scenario.hash == want_scenario
        assert SHA256.match(want_dataset) and SHA256.match(want_scenario)


def test_the_same_workload_named_another_way_is_not_rerun(tiny_run: Path) -> None:
    # the workload hash must not depend on how the scenario file was named (relative vs absolute):
    # a resumed sweep compares it to decide what is finished
    files = sorted((tiny_run / "out" / "tiny").glob("*.json"))
    before = {f: f.read_bytes() for f in files}
    proc = subprocess.run([sys.executable, "-m", "annbench.cli", "run", "--scenario", str(tiny_run / "tiny.yaml"),
                           "--out", "out"], cwd=tiny_run, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "0 ok, 2 skipped" in proc.stdout, proc.stdout
    assert {f: f.read_bytes() for f in files} == before


def test_fixtures_record_sha256_hashes() -> None:
    files = list(FIXTURES.rglob("*.json"))
    assert len(files) > 20
    for f in files:
        run = results.load(f)
        assert SHA256.match(run.dataset.hash), f
        assert SHA256.match(run.scenario.hash), f


@pytest.mark.parametrize("folder", [FIXTURES, REPO / "tests" / "fixtures" / "recommend"])
def test_verify_passes_on_the_committed_fixtures(folder: Path) -> None:
    code, out = verify(folder)
    n = len(list(folder.rglob("*.json")))
    assert code == 0, out
    assert f"{n} valid, 0 bad result file(s)" in out


# --- corruptions: each a function of a valid file's text ---------------------------------------------------
def _edit(change: Callable[[dict[str, Any]], Any]) -> Callable[[str], str]:
    def apply(text: str) -> str:
        doc = json.loads(text)
        change(doc)
        return json.dumps(doc)
    return apply


def _first_setting(d: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in d["steps"] if s["op"] == "search")["settings"][0]


CORRUPTIONS = [
    ("corrupt-json", lambda t: t[:200] + "}{" + t[200:], "corrupt JSON"),
    ("truncated", lambda t: t[: len(t) // 2], "corrupt JSON"),
    ("empty", lambda t: "", "corrupt JSON"),
    ("not-an-object", lambda t: "[1, 2]", "not a result object"),
    ("unknown-schema", _edit(lambda d: d.update(schema=99)), "unknown schema version 99"),
    ("schema-not-int", _edit(lambda d: d.update(schema="1")), "schema: missing or not an integer"),
    ("missing-field", _edit(lambda d: d.pop("dataset")), "dataset: missing field"),
    ("missing-steps", _edit(lambda d: d.pop("steps")), "steps: missing field"),
    ("wrong-status", _edit(lambda d: d.update(status="maybe")), "status: 'maybe' is not one of"),
    ("no-dataset-hash", _edit(lambda d: d["dataset"].pop("hash")), "dataset.hash: missing field"),
    ("no-scenario-hash", _edit(lambda d: d["scenario"].pop("hash")), "scenario.hash: missing field"),
    ("recall-not-a-number", _edit(lambda d: _first_setting(d).update(recall="high")),
     ".settings[0].recall: expected a finite number, got str 'high'"),
    ("recall-nan", _edit(lambda d: _first_setting(d).update(recall=float("nan"))),
     ".settings[0].recall: expected a finite number, got NaN"),
    ("p99-infinite", _edit(lambda d: _first_setting(d)["latency_ms"].update(p99=float("inf"))),
     ".settings[0].latency_ms.p99: expected a finite number, got Infinity"),
    ("recall-above-1", _edit(lambda d: _first_setting(d).update(recall=1.5)),
     ".settings[0].recall: 1.5 is not in [0, 1]"),
    ("missing-latency", _edit(lambda d: _first_setting(d).pop("latency_ms")), ".settings[0].latency_ms: missing field"),
    ("missing-params", _edit(lambda d: _first_setting(d).pop("params")), ".settings[0].params: missing field"),
    ("k-wrong-type", _edit(lambda d: d["scenario"].update(k=10.5)), "scenario.k: expected an integer, got float 10.5"),
    ("bool-for-int", _edit(lambda d: d.update(threads=True)), "threads: expected an integer, got bool True"),
    ("nan-in-params", _edit(lambda d: d["index"]["build_params"].update(x=float("nan"))),
     "index.build_params.x: expected a finite number, got NaN"),
    ("unknown-op", _edit(lambda d: d["steps"][0].update(op="teleport")), "steps[0].op: 'teleport' is not one of"),
    ("not-utf8", lambda t: "\udcff" + t, "cannot read"),
]


@pytest.mark.parametrize("corrupt, expected", [pytest.param(c, e, id=i) for i, c, e in CORRUPTIONS])
def test_verify_lists_each_bad_file_and_exits_1(tmp_path: Path, corrupt: Callable[[str], str],
                                                expected: str) -> None:
    folder = tmp_path / "res"
    shutil.copytree(FIXTURES / "ci_smoke", folder / "ci_smoke")
    victim = sorted((folder / "ci_smoke").glob("*.json"))[2]
    victim.write_bytes(corrupt(victim.read_text(encoding="utf-8")).encode("utf-8", "surrogateescape"))
    n = len(list(folder.rglob("*.json")))
    code, out = verify(folder)
    assert code == 1, out
    bad = [line for line in out.splitlines() if line.startswith("BAD")]
    assert len(bad) == 1 and victim.name in bad[0] and expected in bad[0], out
    assert f"{n - 1} valid, 1 bad result file(s)" in out


def test_verify_lists_every_bad_file(tmp_path: Path) -> None:
    folder = tmp_path / "res"
    shutil.copytree(FIXTURES, folder)
    victims = sorted(folder.rglob("*.json"))[::7]
    for v in victims:
        v.write_text("{")
    code, out = verify(folder)
    assert code == 1
    listed = [line for line in out.splitlines() if line.startswith("BAD")]
    assert sorted(listed) == sorted(f"BAD  {v}: corrupt JSON (Expecting property name enclosed in double quotes "
                                    "at line 1)" for v in victims)


def test_verify_ignores_temp_files_and_dot_folders(tmp_path: Path) -> None:
    # what a killed writer or the cache leaves behind is not a result file, however broken
    folder = tmp_path / "res"
    shutil.copytree(FIXTURES / "ci_smoke", folder / "ci_smoke")
    n = len(list(folder.rglob("*.json")))
    (folder / "ci_smoke" / ".faiss-flat-44136fa3-native.json.k3j2.tmp").write_text("{half a fi")
    (folder / "ci_smoke" / ".hidden.json").write_text("{half a fi")
    (folder / ".cache" / "gt").mkdir(parents=True)
    (folder / ".cache" / "gt" / "key.json").write_text("{not a result")
    (folder / "ci_smoke" / ".partial").mkdir()
    (folder / "ci_smoke" / ".partial" / "x.json").write_text("[]")
    code, out = verify(folder)
    assert code == 0, out
    assert f"{n} valid, 0 bad result file(s)" in out


def test_verify_of_a_fresh_run_passes(tiny_run: Path) -> None:
    code, out = verify(tiny_run / "out")  # includes out/.cache, which must be skipped
    assert code == 0, out
    assert "2 valid, 0 bad" in out


def test_verify_of_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["results", "verify", str(tmp_path / "nowhere")])
    assert res.exit_code == 2
    assert "does not exist" in res.output


# --- the typed record: golden files, one load and one dump ---------------------------------------------------
GOLDEN = REPO / "tests" / "fixtures" / "golden"
GOLDEN_RUN = GOLDEN / "ci_smoke" / "annoy-c8f7ba9b-rebuild.json"  # an ok daily run with a rebuild policy


@pytest.mark.parametrize("path", sorted(GOLDEN.rglob("*.json")) + sorted(FIXTURES.rglob("*.json")),
                         ids=lambda p: p.name)
def test_result_files_of_main_load_and_dump_back_equal(path: Path) -> None:
    # golden/: written by main at 4add3e8 (daily with concurrency levels and an ingest step, a database with
    # upkeep calls and external bytes, a rebuild policy, a static size, a failed run); results/: older files
    doc = json.loads(path.read_text())
    record = results.load(path)
    assert results.dump(record) == doc
    assert results.parse(results.dump(record)) == record


def test_a_written_record_reads_back_equal(tmp_path: Path) -> None:
    record = results.load(GOLDEN_RUN)
    target = tmp_path / "s" / "run.json"
    results.write(target, record)
    again = results.load(target)
    assert again == record and again.path == target


def test_a_key_this_version_does_not_know_is_kept() -> None:
    doc = json.loads(GOLDEN_RUN.read_text())
    doc["written_by_a_newer_annbench"] = {"x": 1}
    doc["steps"][0]["extra_figure"] = 2.5
    assert results.dump(results.parse(doc)) == doc


# --- atomic writes -----------------------------------------------------------------------------------------
def _record() -> results.RunRecord:
    return results.load(GOLDEN_RUN)


@pytest.mark.parametrize("bad, error", [
    (float("nan"), ValueError),  # allow_nan=False: NaN is not JSON
    (float("inf"), ValueError),
    ({1, 2}, TypeError),  # a set has no JSON form
    (object(), TypeError),
])
def test_write_failure_leaves_nothing_and_keeps_the_old_file(tmp_path: Path, bad: Any, error: type) -> None:
    target = tmp_path / "scenario" / "run.json"
    results.write(target, _record())
    before = target.read_bytes()
    broken = _record()
    broken.wall_seconds = bad
    with pytest.raises(error):
        results.write(target, broken)
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["run.json"]  # no temp file left


def test_write_failure_without_an_old_file_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "scenario" / "run.json"
    broken = _record()
    broken.wall_seconds = float("nan")
    with pytest.raises(ValueError):
        results.write(target, broken)
    assert not target.exists()
    assert not target.parent.exists() or not any(target.parent.iterdir())


def test_write_interrupted_at_the_rename_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a Ctrl-C between writing and renaming: the old file stays whole and the temp file goes
    target = tmp_path / "run.json"
    old = _record()
    results.write(target, old)

    def interrupted(*_a: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("os.replace", interrupted)
    new = _record()
    new.run_id = "new"
    with pytest.raises(KeyboardInterrupt):
        results.write(target, new)
    monkeypatch.undo()
    assert results.load(target) == old
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
