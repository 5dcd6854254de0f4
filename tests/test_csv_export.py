"""`annbench results export --csv`: one row per (run, step, search setting), every run accounted for.

On the golden result files written by main (daily runs with concurrency and ingest steps, a database, a
static size, a failed run): a failed run is a row with its status and error; every row names the index
(label), k, metric and threads; the figures are the record's own.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from click.testing import CliRunner

from annbench import results
from annbench.cli import main
from tests.conftest import REPO

GOLDEN = REPO / "tests" / "fixtures" / "golden"


def _export(tmp_path: Path) -> list[dict[str, str]]:
    out = tmp_path / "out" / "all.csv"
    res = CliRunner().invoke(main, ["results", "export", str(GOLDEN), "--csv", str(out)])
    assert res.exit_code == 0, res.output
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert f"wrote {len(rows)} rows" in res.output
    assert [p.name for p in out.parent.iterdir()] == ["all.csv"]  # written through atomic.py: no temp left
    return rows


def test_every_run_is_in_the_csv_failed_ones_with_their_status(tmp_path: Path) -> None:
    rows = _export(tmp_path)
    runs = results.load_dir(GOLDEN).runs
    assert {r["run_id"] for r in rows} == {run.run_id for run in runs}
    expected = sum(1 if not run.steps else sum(len(s.settings) if s.op == "search" else 1 for s in run.steps)
                   for run in runs)
    assert len(rows) == expected
    failed = [r for r in rows if r["status"] != "ok"]
    assert failed and all(r["error"] for r in failed)
    assert all(r["label"] and r["k"] and r["metric"] in ("cosine", "l2") and r["threads"] for r in rows)


def test_csv_figures_are_the_records(tmp_path: Path) -> None:
    rows = _export(tmp_path)
    path = GOLDEN / "ci_smoke" / "hnswlib-017948cd-tombstone.json"
    doc = json.loads(path.read_text())
    mine = [r for r in rows if r["run_id"] == doc["run_id"] and r["op"] == "search"]
    settings = [s for st in doc["steps"] if st["op"] == "search" for s in st["settings"]]
    assert len(mine) == len(settings)
    for row, s in zip(mine, settings, strict=True):
        assert float(row["recall"]) == s["recall"] and float(row["p99_ms"]) == s["latency_ms"]["p99"]
        assert float(row["qps"]) == s["qps"] and json.loads(row["search_params"]) == s["params"]
        assert row["label"] == doc["index"]["label"] and int(row["k"]) == doc["scenario"]["k"]
        assert float(row["index_bytes"]) == doc["memory"]["index_bytes"]
