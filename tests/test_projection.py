"""`annbench forecast` and `recommend --at-n` on a real size sweep (4 sizes, faiss Flat and hnswlib).

The figures that follow a law exactly here (a flat index's saved bytes: n·(d·4 + 8) plus a header) are forecast
within a fraction of a percent with the law named; every forecast carries an interval and a self-check; a
size far beyond the measured ones says so; `recommend --at-n` ranks forecasts and says they are forecasts.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from annbench import projection, recommend, results
from annbench.cli import main
from annbench.export import export_forecasts
from tests.conftest import SIZE_SWEEP_SIZES


def test_a_law_that_holds_is_forecast_closely_with_its_interval(size_sweep: Path) -> None:
    configs, _ = recommend.configurations(results.load_dir(size_sweep).runs)
    projections, notes = projection.project(configs, 16_000)
    assert not notes and len(projections) == 2
    exact = next(p for p in projections if p.largest.label == "exact")
    saved = exact.forecasts["saved_bytes"]
    assert saved.model == "linear"
    assert saved.value == pytest.approx(16_000 * (16 * 4 + 8), rel=0.01)  # vectors and int64 ids, n·(d·4 + 8)
    assert saved.lo <= saved.value <= saved.hi
    assert abs(saved.holdout_error) < 0.01 and saved.holdout_n == 8000
    for p in projections:
        assert set(p.forecasts) == set(projection.FIGURES)
        for f in p.forecasts.values():
            assert f.lo <= f.value <= f.hi and f.sizes == tuple(SIZE_SWEEP_SIZES)


def test_forecast_command_prints_model_interval_and_self_check(size_sweep: Path) -> None:
    res = CliRunner().invoke(main, ["forecast", str(size_sweep), "--n", "16000", "--n", "1000000"])
    assert res.exit_code == 0, res.output
    assert "forecast at n = 16,000 (2.0× the largest)" in res.output
    assert "forecast at n = 1,000,000 (125.0× the largest)" in res.output
    assert res.output.count("far beyond the measured sizes") == 2  # once per configuration at 1M
    rows = [ln for ln in res.output.splitlines() if ln.strip().startswith("saved bytes")]
    assert len(rows) == 4 and all(re.search(r"\[[\d.,]+ MiB–[\d.,]+ MiB\]", r) and "held out 8,000" in r for r in rows)


def test_forecasts_and_their_inputs_are_data(size_sweep: Path, tmp_path: Path) -> None:
    out_json, out_csv = tmp_path / "fc.json", tmp_path / "fc.csv"
    res = CliRunner().invoke(main, ["forecast", str(size_sweep), "--n", "16000", "--n", "64000",
                                    "--json", str(out_json), "--csv", str(out_csv)])
    assert res.exit_code == 0, res.output
    got = json.loads(out_json.read_text())
    rows = list(csv.DictReader(out_csv.open()))
    assert len(got) == len(rows) == 2 * 2 * len(projection.FIGURES)  # 2 sizes × 2 configurations × figures
    assert {r["n"] for r in got} == {16000, 64000} and set(rows[0]) == set(projection.FORECAST_FIELDS)
    configs, _ = recommend.configurations(results.load_dir(size_sweep).runs)
    by_size = {(c.label, c.workload.size): c for c in configs}
    for r in got:
        # the inputs are the measured figures, size by size, and the forecast is the printed one's number
        assert r["sizes"] == list(SIZE_SWEEP_SIZES)
        assert r["measured"] == [projection.figure_of(by_size[(r["label"], n)], r["figure"]) for n in r["sizes"]]
        if r["lo"] is not None:
            assert r["lo"] <= r["value"] <= r["hi"]
            assert all(r["lo"] <= v <= r["hi"] for v in r["alternatives"].values())
    saved = next(r for r in rows if r["label"] == "exact" and r["figure"] == "saved_bytes" and r["n"] == "16000")
    assert saved["model"] == "linear" and math.isclose(float(saved["value"]), 16_000 * 72, rel_tol=0.01)
    assert json.loads(saved["sizes"]) == list(SIZE_SWEEP_SIZES)


def test_recommend_at_n_ranks_forecasts_and_says_so(size_sweep: Path) -> None:
    res = CliRunner().invoke(main, ["recommend", str(size_sweep), "--at-n", "32000", "--min-recall", "0.5",
                                    "--target-qps", "20000"])
    assert res.exit_code == 0, res.output
    assert "are FORECASTS" in res.output and "Winner:" in res.output and "n=32,000" in res.output
    assert "QPS at n = 32,000 needs" in res.output


def test_what_cannot_be_forecast_is_one_line(size_sweep: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["recommend", str(size_sweep), "--target-qps", "100"])
    assert res.exit_code == 2 and "--target-qps goes with --at-n" in res.output
    res = CliRunner().invoke(main, ["recommend", str(size_sweep), "--at-n", "32000", "--min-qps", "100"])
    assert res.exit_code == 2 and "--min-qps needs measured concurrency" in res.output
    one = tmp_path / "one" / "sizes_small"
    one.mkdir(parents=True)
    for f in sorted((size_sweep / "sizes_small").glob("*n1000.json")):
        (one / f.name).write_bytes(f.read_bytes())
    res = CliRunner().invoke(main, ["forecast", str(tmp_path / "one"), "--n", "5000"])
    assert res.exit_code == 2 and "no configuration measured at 3 or more catalog sizes" in res.output


@pytest.mark.parametrize("args, said", [
    (["--n", "0"], "0 is not in the range x>=1"),
    (["--n", "-5"], "-5 is not in the range x>=1"),
    ([], "Missing option '--n'"),
])
def test_a_size_that_is_not_one_is_one_line(size_sweep: Path, args: list[str], said: str) -> None:
    res = CliRunner().invoke(main, ["forecast", str(size_sweep), *args])
    assert res.exit_code == 2 and said in res.output and "Traceback" not in res.output, res.output


def test_results_without_a_size_sweep_are_one_line() -> None:
    from tests.conftest import REPO

    daily = REPO / "tests" / "fixtures" / "golden" / "ci_smoke"
    for args in (["forecast", str(daily), "--n", "100000"], ["recommend", str(daily), "--at-n", "100000"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2 and "no configuration measured at 3 or more catalog sizes" in res.output, res.output


def test_a_non_finite_input_or_interval_is_written_as_null(tmp_path: Path) -> None:
    rec = dict.fromkeys(projection.FORECAST_FIELDS)
    rec.update(value=1.0, lo=math.nan, measured=[1.0, math.nan], alternatives={"power law": math.inf})
    export_forecasts([rec], tmp_path / "f.json", tmp_path / "f.csv")
    (got,) = json.loads((tmp_path / "f.json").read_text())
    assert got["lo"] is None and got["measured"] == [1.0, None] and got["alternatives"] == {"power law": None}
    (row,) = csv.DictReader((tmp_path / "f.csv").open())
    assert row["lo"] == "" and json.loads(row["measured"]) == [1.0, None]
