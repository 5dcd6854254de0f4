"""`annbench plot --at-n N` on a real size sweep (4 sizes, faiss Flat and hnswlib): each catalog-size curve goes
on to N as a dashed forecast with its 95 % band and the held-out check marked, and the page says what the
dashes are; without --at-n the report has no forecast in it."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from annbench.cli import main


def _plot(size_sweep: Path, out: Path, *extra: str) -> str:
    res = CliRunner().invoke(main, ["plot", str(size_sweep), "--out", str(out), "--min-recall", "0.5", *extra])
    assert res.exit_code == 0, res.output
    return res.output


def _group(svg: str, gid: str) -> str:
    """The SVG group with id `gid` (its text up to the group's end)."""
    m = re.search(rf'<g id="{re.escape(gid)}">(.*?)</g>', svg, re.S)
    assert m, gid
    return m.group(1)


def test_plot_at_n_draws_dashed_forecasts_bands_and_held_out_checks(size_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    _plot(size_sweep, out, "--at-n", "32000")
    svg = (out / "sizes_small-catalog-size.svg").read_text()
    for name in ("exact", "hnswlib"):
        for panel in range(3):  # p99, index memory, build time
            line = _group(svg, f"forecast-{name}-{panel}")
            assert "stroke-dasharray" in line, (name, panel)
            assert f'id="forecast-band-{name}-{panel}"' in svg
            assert f'id="holdout-{name}-{panel}"' in svg
    html = (out / "index.html").read_text()
    assert "dashed: forecast to n=32,000 (law per curve, 95 % band)" in html.lower()
    assert "hollow marker: the largest size predicted from the others" in html
    assert "far beyond the measured range" in html  # 32,000 is 4× the largest size measured (8,000)


def test_a_forecast_near_the_measured_sizes_is_not_called_far(size_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "near"
    _plot(size_sweep, out, "--at-n", "16000")
    html = (out / "index.html").read_text()
    assert "forecast to n=16,000" in html and "far beyond the measured range" not in html


def test_without_at_n_no_forecast_is_drawn(size_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "plain"
    _plot(size_sweep, out)
    assert "forecast-" not in (out / "sizes_small-catalog-size.svg").read_text()
    assert "forecast to n=" not in (out / "index.html").read_text()


def test_at_n_is_refused_with_thumbnail(size_sweep: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["plot", str(size_sweep), "--thumbnail", str(tmp_path / "t.png"), "--at-n", "32000"])
    assert res.exit_code == 2 and "without --out or --at-n" in res.output
