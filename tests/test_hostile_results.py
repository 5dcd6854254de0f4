"""Hostile result files: every reader skips a file that `annbench results verify` rejects, and says so.

A folder of good result files (the golden ci_smoke files written by main) plus one bad copy — a NaN recall,
a setting without latency or params, a wrong type, a missing field. `verify` names the file and the field
(exit 1); `recommend`, `plot`, `check` and `results export` never crash with a traceback: each skips the file,
says which, and still answers from the good ones. A NaN never reaches a verdict: the recall gate fails closed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from annbench.cli import main
from tests.conftest import REPO

GOLDEN = REPO / "tests" / "fixtures" / "golden" / "ci_smoke"


def _setting(d: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in d["steps"] if s["op"] == "search")["settings"][0]


BAD: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "nan-recall": (lambda d: _setting(d).update(recall=float("nan")), "recall: expected a finite number, got NaN"),
    "no-latency": (lambda d: _setting(d).pop("latency_ms"), "latency_ms: missing field"),
    "no-params": (lambda d: _setting(d).pop("params"), "params: missing field"),
    "wrong-type": (lambda d: d["index"].update(family=7), "index.family: expected a string, got int 7"),
    "no-index": (lambda d: d.pop("index"), "index: missing field"),
}


@pytest.fixture(params=sorted(BAD))
def folder(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path, str]:
    """(results folder, the bad file, what verify must say of it)."""
    change, said = BAD[request.param]
    root = tmp_path / "res"
    shutil.copytree(GOLDEN, root / "ci_smoke")
    good = root / "ci_smoke" / "hnswlib-017948cd-tombstone.json"
    doc = json.loads(good.read_text())
    change(doc)
    doc["run_id"] = "hostile-copy"
    bad = root / "ci_smoke" / "hostile-copy.json"
    bad.write_text(json.dumps(doc))  # json.dumps writes NaN as NaN, as a careless tool would
    return root, bad, said


def _run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def _no_crash(res: Any) -> None:
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output


def test_verify_names_the_file_and_the_field(folder: tuple[Path, Path, str]) -> None:
    root, bad, said = folder
    res = _run("results", "verify", str(root))
    _no_crash(res)
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.startswith("BAD")]
    assert len(lines) == 1 and str(bad) in lines[0] and said in lines[0], res.output


def test_recommend_skips_it_and_says_so(folder: tuple[Path, Path, str]) -> None:
    root, bad, _ = folder
    res = _run("recommend", str(root), "--min-recall", "0.5")
    _no_crash(res)
    assert res.exit_code == 0, res.output
    assert "could not be read and were ignored" in res.output
    assert "Winner:" in res.output


def test_check_skips_it_and_fails_closed(folder: tuple[Path, Path, str], tmp_path: Path) -> None:
    root, bad, _ = folder
    baseline = tmp_path / "baseline.json"
    good = tmp_path / "good"
    shutil.copytree(GOLDEN, good / "ci_smoke")
    assert _run("baseline", "save", str(good), "--out", str(baseline)).exit_code == 0
    res = _run("check", str(root), "--baseline", str(baseline))
    _no_crash(res)
    assert res.exit_code == 0, res.output  # the good files still match their baseline
    assert bad.name in res.output  # … and the unreadable one is named
    # the same figures with a NaN in place of every good file: the gate has nothing valid, it does not pass
    for f in (root / "ci_smoke").glob("*.json"):
        if f != bad:
            doc = json.loads(f.read_text())
            _setting(doc).update(recall=float("nan"))
            f.write_text(json.dumps(doc))
    res = _run("check", str(root), "--baseline", str(baseline))
    _no_crash(res)
    assert res.exit_code != 0 and "PASS" not in res.output, res.output


def test_export_csv_skips_it_and_says_so(folder: tuple[Path, Path, str], tmp_path: Path) -> None:
    root, bad, _ = folder
    res = _run("results", "export", str(root), "--csv", str(tmp_path / "x.csv"))
    _no_crash(res)
    assert res.exit_code == 0, res.output
    assert f"skipped {bad}" in res.output
    assert "hostile-copy" not in (tmp_path / "x.csv").read_text()


def test_plot_skips_it_and_says_so(folder: tuple[Path, Path, str], tmp_path: Path) -> None:
    root, bad, _ = folder
    res = _run("plot", str(root), "--out", str(tmp_path / "report"))
    _no_crash(res)
    assert res.exit_code == 0, res.output
    assert str(bad) in res.output


# --- hostile folders: what is not a result file of this folder is not read as one ---------------------------
def _golden_copy(tmp_path: Path) -> Path:
    root = tmp_path / "res"
    shutil.copytree(GOLDEN, root / "ci_smoke")
    return root


def test_a_fifo_named_json_is_listed_not_waited_on(tmp_path: Path) -> None:
    import os

    root = _golden_copy(tmp_path)
    os.mkfifo(root / "ci_smoke" / "x.json")
    for args in (("results", "verify", str(root)), ("recommend", str(root), "--min-recall", "0.5")):
        res = _run(*args)  # a FIFO opened for reading blocks until a writer comes: this would hang
        _no_crash(res)
        assert "x.json: not a regular file" in res.output or "could not be read" in res.output, res.output


def test_a_symlink_out_of_the_folder_is_not_a_result(tmp_path: Path) -> None:
    root = _golden_copy(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside = elsewhere / "other.json"
    doc = json.loads((GOLDEN / "annoy-c8f7ba9b-rebuild.json").read_text())
    doc["run_id"] = "from-elsewhere"
    outside.write_text(json.dumps(doc))
    (root / "ci_smoke" / "link.json").symlink_to(outside)
    (root / "loop").symlink_to(root, target_is_directory=True)  # a folder link loop: not followed
    res = _run("results", "verify", str(root))
    _no_crash(res)
    assert res.exit_code == 1
    assert "link.json: a symlink to a file outside" in res.output
    assert "2 valid, 1 bad" in res.output, res.output


def test_deeply_nested_json_is_one_line(tmp_path: Path) -> None:
    root = _golden_copy(tmp_path)
    (root / "ci_smoke" / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    res = _run("results", "verify", str(root))
    _no_crash(res)
    assert res.exit_code == 1 and "deep.json: corrupt JSON (nested too deeply)" in res.output, res.output


def _rows_of(folder: Path) -> int:
    """CSV rows the files of `folder` make: one per non-search step, one per search setting."""
    total = 0
    for f in folder.glob("*.json"):
        for st in json.loads(f.read_text())["steps"]:
            total += len(st["settings"]) if st["op"] == "search" else 1
    return total


def _annoy_rows(text: str) -> int:
    return sum(1 for ln in text.splitlines() if ln.strip()[:1].isdigit() and " annoy " in f" {ln} ")


def test_a_copy_of_a_result_is_read_once(tmp_path: Path) -> None:
    root = _golden_copy(tmp_path)
    once = _run("recommend", str(root), "--min-recall", "0.5").output
    shutil.copy(root / "ci_smoke" / "annoy-c8f7ba9b-rebuild.json", root / "ci_smoke" / "zz-copy.json")
    res = _run("recommend", str(root), "--min-recall", "0.5")
    _no_crash(res)
    assert _annoy_rows(once) == 2 and _annoy_rows(res.output) == 2, res.output  # its 2 search settings, once each
    assert "could not be read and were ignored" in res.output
    csv_path = tmp_path / "x.csv"
    res = _run("results", "export", str(root), "--csv", str(csv_path))
    assert "zz-copy.json: a copy of run annoy-c8f7ba9b-rebuild" in res.output, res.output
    assert len(csv_path.read_text().splitlines()) - 1 == _rows_of(GOLDEN)


def test_a_nan_in_the_baseline_is_an_error_not_a_pass(tmp_path: Path) -> None:
    root = _golden_copy(tmp_path)
    baseline = tmp_path / "baseline.json"
    assert _run("baseline", "save", str(root), "--out", str(baseline)).exit_code == 0
    text = baseline.read_text()
    doc = json.loads(text)
    doc["entries"][0]["recall"] = float("nan")
    baseline.write_text(json.dumps(doc))
    res = _run("check", str(root), "--baseline", str(baseline))
    _no_crash(res)
    assert res.exit_code == 2 and "PASS" not in res.output, res.output
    assert "entries[0].recall: expected a finite number, got NaN" in res.output
