"""The CI recall gate (annbench.check): baseline save, check's verdicts and exit codes, markdown and JUnit.

Every regression here comes from a real run: the ci_smoke workload rerun from a copy of its scenario file
in which one index's search grid is weaker (same workload, so the same scenario hash), or whose dataset
seed changed. The runs are shared by the whole module (one fixture) to keep it fast.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from annbench import check, results
from annbench.cli import main
from tests.conftest import REPO

CI_SMOKE = REPO / "configs" / "scenarios" / "ci_smoke.yaml"
SUBSET = "exact,ivf-flat,hnswlib"  # 4 runs (hnswlib has two policies): 28 entries, a few seconds
N_ENTRIES = 4 * (1 + 2 + 2 + 2)  # 4 search steps × (exact 1 + ivf 2 + hnswlib native 2 + tombstone 2 settings)


def cli(*args: Any) -> tuple[int, str]:
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, res.output


def scenario_copy(folder: Path, edit: Any) -> Path:
    """ci_smoke.yaml copied into `folder` with `edit(doc)` applied; the file keeps the name ci_smoke."""
    doc = yaml.safe_load(CI_SMOKE.read_text())
    edit(doc)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ci_smoke.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def set_search(label: str, search: dict[str, Any]) -> Any:
    def edit(doc: dict[str, Any]) -> None:
        (cfg,) = [c for c in doc["indexes"] if c["name"] == label]
        cfg["search"] = search
    return edit


@dataclass
class Runs:
    root: Path
    base: Path  # ci_smoke as shipped
    weak: Path  # ivf-flat nprobe [1, 4] → [1, 2]: a real recall regression at grid position 1
    short: Path  # ivf-flat nprobe [1, 4] → [1]: grid position 1 is missing
    seed1: Path  # dataset seed 1: another dataset (and so another workload)
    other: Path  # the same workload under another scenario name
    baseline: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("gate")
    cache = root / "cache"  # shared: the ci_smoke copies reuse the dataset and ground truth

    def run(scenario: Path, out: str, indexes: str = SUBSET) -> Path:
        code, output = cli("run", "--scenario", scenario, "--out", root / out, "--cache", cache, "--indexes", indexes)
        assert code == 0, output
        return root / out

    base = run(CI_SMOKE, "base")
    weak = run(scenario_copy(root / "weak-yaml", set_search("ivf-flat", {"nprobe": [1, 2]})), "weak")
    short = run(scenario_copy(root / "short-yaml", set_search("ivf-flat", {"nprobe": [1]})), "short", "ivf-flat")

    def seed1(doc: dict[str, Any]) -> None:
        doc["dataset"]["params"]["seed"] = 1

    seed = run(scenario_copy(root / "seed-yaml", seed1), "seed1", "exact")

    def rename(doc: dict[str, Any]) -> None:
        doc["name"] = "ci_other"

    other = run(scenario_copy(root / "other-yaml", rename), "other", "exact")
    code, output = cli("baseline", "save", base, "--out", root / "baseline.json")
    assert code == 0, output
    return Runs(root, base, weak, short, seed, other, root / "baseline.json")


def table_rows(output: str) -> list[str]:
    """The data rows of check's text table (between the header line and the summary)."""
    lines = output.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("verdict"))
    return [ln for ln in lines[start + 1:] if ln.split(" ", 1)[0] in {v.upper() for v in check.VERDICTS}]


# --- acceptance ---------------------------------------------------------------------------------------
def test_check_against_own_baseline_passes(runs: Runs) -> None:
    code, out = cli("check", runs.base, "--baseline", runs.baseline)
    assert code == 0, out
    rows = table_rows(out)
    assert len(rows) == N_ENTRIES and all(r.startswith("OK ") for r in rows)
    assert f"PASS: ci_smoke: {N_ENTRIES} entries ({N_ENTRIES} ok)" in out


def test_weaker_search_setting_is_a_regression_named_first(runs: Runs) -> None:
    code, out = cli("check", runs.weak, "--baseline", runs.baseline)
    assert code == 1, out
    rows = table_rows(out)
    first = rows[0]
    assert first.startswith("REGRESSION") and "ivf-flat [native]" in first and "#1" in first
    assert "nprobe=4 → nprobe=2" in first and "recall dropped" in first
    regressions = [r for r in rows if r.startswith("REGRESSION")]
    # every day's nprobe position 1 dropped, nothing else moved: the weaker setting mapped onto its entry
    assert len(regressions) == 4 and all("ivf-flat [native]" in r and "#1" in r for r in regressions)
    assert all(r.startswith("OK ") for r in rows[4:])
    assert "FAIL: ci_smoke" in out
    # the drops are real: recomputed from the result files, each exceeds the tolerance
    base = check.load_baseline(runs.baseline)
    now = {e.key: e for f in sorted(runs.weak.rglob("*.json")) for e in check._entries_of(results.load(f))}
    drops = [e.recall - now[e.key].recall for e in base.entries if e.label == "ivf-flat" and e.setting == 1]
    assert len(drops) == 4 and min(drops) > check.DEFAULT_TOLERANCE


def test_tolerance_option_decides(runs: Runs) -> None:
    code, out = cli("check", runs.weak, "--baseline", runs.baseline, "--tolerance", "0.9")
    assert code == 0, out


def test_changed_dataset_seed_refuses_naming_the_dataset_hash(runs: Runs) -> None:
    code, out = cli("check", runs.seed1, "--baseline", runs.baseline)
    assert code == 2, out
    line = out.strip().splitlines()[-1]
    assert line.startswith("annbench: error: dataset hash differs") and len(out.strip().splitlines()) == 1


def test_markdown_and_junit(runs: Runs) -> None:
    md, junit = runs.root / "out" / "check.md", runs.root / "out" / "junit.xml"
    code, out = cli("check", runs.weak, "--baseline", runs.baseline, "--markdown", md, "--junit", junit)
    assert code == 1, out

    tree = ET.parse(junit)
    cases = tree.getroot().findall(".//testcase")
    failures = [c for c in cases if c.find("failure") is not None]
    assert len(cases) == N_ENTRIES and len(failures) == 4
    suite = tree.getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == str(N_ENTRIES) and suite.get("failures") == "4"
    assert all("ivf-flat" in (c.get("classname") or "") and "#1" in (c.get("name") or "") for c in failures)
    assert failures[0].find("failure").get("type") == "regression"  # type: ignore[union-attr]

    lines = md.read_text().splitlines()
    assert lines[0].startswith("### annbench check: ci_smoke") and "FAIL" in lines[0]
    table = [ln for ln in lines if ln.startswith("|")]
    assert table[0].startswith("| verdict | entry |") and set(table[1]) <= set("|-")
    body = table[2:]
    assert len(body) == N_ENTRIES and all(ln.count(" | ") == len(check.HEADERS) - 1 for ln in body)
    assert "regression" in body[0] and "ivf-flat [native]" in body[0]


def test_baseline_of_another_scenario_refuses(runs: Runs, tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    assert cli("baseline", "save", runs.other, "--out", other)[0] == 0
    code, out = cli("check", runs.base, "--baseline", other)
    assert code == 2 and "no results of scenario 'ci_other'" in out, out


def test_missing_grid_position_fails(runs: Runs) -> None:
    """A run whose grid lost a position (and the configurations not run at all) fail as missing."""
    code, out = cli("check", runs.short, "--baseline", runs.baseline)
    assert code == 1, out
    rows = table_rows(out)
    missing = [r for r in rows if r.startswith("MISSING")]
    # ivf #1 on 4 days (no such grid position), exact and both hnswlib runs (not run): 4 + 4 + 16
    assert len(missing) == 24 and sum("no such search step or search-grid position" in r for r in missing) == 4
    assert rows[0].startswith("MISSING")


def test_missing_and_failed_configuration_fail(runs: Runs, tmp_path: Path) -> None:
    res = tmp_path / "res"
    shutil.copytree(runs.base, res, ignore=shutil.ignore_patterns(".cache"))
    files = {json.loads(p.read_text())["index"]["label"] + "/" + json.loads(p.read_text())["index"]["policy"]: p
             for p in res.rglob("*.json")}
    files["hnswlib/tombstone"].unlink()
    doc = json.loads(files["exact/native"].read_text())
    doc.update(status="failed", error="the run killed by SIGABRT: assertion failed", steps=[])
    files["exact/native"].write_text(json.dumps(doc))
    code, out = cli("check", res, "--baseline", runs.baseline)
    assert code == 1, out
    rows = table_rows(out)
    assert [r.split(" ", 1)[0] for r in rows[:12]] == ["FAILED"] * 4 + ["MISSING"] * 8
    assert "SIGABRT" in rows[0] and "hnswlib [tombstone]" in rows[4]


# --- the rest of the contract -------------------------------------------------------------------------
def test_improvement_is_reported_with_a_refresh_hint(runs: Runs, tmp_path: Path) -> None:
    weak_base = tmp_path / "weak.json"
    assert cli("baseline", "save", runs.weak, "--out", weak_base)[0] == 0
    code, out = cli("check", runs.base, "--baseline", weak_base)
    assert code == 0, out
    rows = table_rows(out)
    assert all(r.startswith("IMPROVED") for r in rows[:4]) and "nprobe=2 → nprobe=4" in rows[0]
    assert "refresh the baseline: annbench baseline save" in out


def test_baseline_file_is_small_and_reviewable(runs: Runs) -> None:
    text = runs.baseline.read_text()
    doc = json.loads(text)
    assert doc["scenario"]["name"] == "ci_smoke" and doc["annbench_version"]
    assert len(doc["dataset"]["hash"]) == 64 and len(doc["scenario"]["hash"]) == 64
    assert len(doc["entries"]) == N_ENTRIES == len(doc["latency"])
    lines = text.splitlines()
    for e in doc["entries"]:  # one line per entry, with sorted keys
        assert sum(json.dumps(e, sort_keys=True) in ln for ln in lines) == 1
        assert {"recall", "hit_at_k", "params", "setting", "step", "day"} <= set(e)
    assert all(len(item["ns"]) == check.LATENCY_POINTS for item in doc["latency"])
    assert len(text) < 30_000


def test_baseline_save_refuses_mixed_scenarios_and_no_ok_results(runs: Runs, tmp_path: Path) -> None:
    mix = tmp_path / "mix"
    shutil.copytree(runs.base / "ci_smoke", mix / "ci_smoke")
    shutil.copytree(runs.other / "ci_other", mix / "ci_other")
    code, out = cli("baseline", "save", mix, "--out", tmp_path / "b.json")
    assert code == 2 and "several scenarios (ci_other, ci_smoke)" in out and len(out.strip().splitlines()) == 1
    code, out = cli("baseline", "save", mix, "--out", tmp_path / "b.json", "--scenario", "ci_other")
    assert code == 0, out

    failed = tmp_path / "failed"
    (path,) = (runs.other / "ci_other").glob("*.json")
    doc = json.loads(path.read_text())
    doc.update(status="timeout", error="killed", steps=[])
    (failed / "ci_other").mkdir(parents=True)
    (failed / "ci_other" / path.name).write_text(json.dumps(doc))
    code, out = cli("baseline", "save", failed, "--out", tmp_path / "c.json")
    assert code == 2 and "no ok results" in out, out


def test_bad_baseline_file_is_exit_2(tmp_path: Path, runs: Runs) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "something else"}')
    code, out = cli("check", runs.base, "--baseline", bad)
    assert code == 2 and "not an annbench baseline" in out


def test_latency_gate_is_off_by_default_and_uses_the_raw_samples(runs: Runs, tmp_path: Path) -> None:
    res = tmp_path / "res"
    shutil.copytree(runs.base, res, ignore=shutil.ignore_patterns(".cache"))
    (path,) = [p for p in res.rglob("*.json") if json.loads(p.read_text())["index"]["label"] == "exact"]
    doc = json.loads(path.read_text())
    for step in doc["steps"]:
        for s in step.get("settings", []):
            s["latency_ns"] = [v * 5 for v in s["latency_ns"]]  # a 5× slowdown of every query
    path.write_text(json.dumps(doc))
    assert cli("check", res, "--baseline", runs.baseline)[0] == 0
    code, out = cli("check", res, "--baseline", runs.baseline, "--latency-factor", "2")
    assert code == 1, out
    rows = table_rows(out)
    assert all(r.startswith("SLOWER") and "exact [native]" in r and "Mann-Whitney" in r for r in rows[:4])
    assert not any(r.startswith("SLOWER") for r in rows[4:])
    assert cli("check", res, "--baseline", runs.baseline, "--latency-factor", "8")[0] == 0


def test_mann_whitney_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for shift in (0.0, 0.2, 1.0):
        x = np.round(rng.lognormal(shift, 0.5, 200), 1)  # rounded: ties, like integer nanoseconds
        y = np.round(rng.lognormal(0.0, 0.5, 16), 1)
        want = stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic").pvalue
        assert check.mann_whitney_greater(x, y) == pytest.approx(want, rel=1e-9)
    assert check.mann_whitney_greater(np.ones(5), np.ones(5)) == 1.0


def test_committed_baseline_matches_the_shipped_scenario() -> None:
    """configs/baselines/ci_smoke.json must be refreshed whenever ci_smoke's workload changes."""
    from annbench.harness import open_scenario_dataset
    from annbench.scenarios import load_scenario

    base = check.load_baseline(REPO / "configs" / "baselines" / "ci_smoke.json")
    sc = load_scenario(CI_SMOKE)
    assert base.scenario.name == sc.name
    assert base.scenario.hash == sc.content_hash(), "ci_smoke.yaml changed: refresh the baseline"
    assert base.dataset.hash == open_scenario_dataset(sc).content_hash()
    labels = {(e.label, e.policy) for e in base.entries}
    assert labels == {(c.label, p) for c in sc.indexes for p in c.policies}


def test_github_actions_example_runs_the_gate() -> None:
    doc = yaml.safe_load((REPO / "examples" / "github-actions.yml").read_text())
    assert "jobs" in doc and (True in doc or "on" in doc)  # YAML 1.1 reads a bare `on:` key as True
    runs_of = [step.get("run", "") for job in doc["jobs"].values() for step in job["steps"]]
    script = "\n".join(runs_of)
    assert "annbench run" in script and "annbench check" in script
    check_lines = [ln for ln in script.splitlines() if "annbench check" in ln or "--baseline" in ln]
    baseline = next(tok for ln in check_lines for tok in ln.split() if tok.endswith(".json"))
    assert (REPO / baseline).is_file(), f"{baseline} named by the example does not exist"
    assert "GITHUB_STEP_SUMMARY" in script and "--junit" in script
    assert any("upload-artifact" in str(step.get("uses", "")) for job in doc["jobs"].values() for step in job["steps"])
