"""report.figures.save: the canvas's own printing (one layout and one draw per file) writes the files that
`Figure.savefig` writes (which draws twice), byte for byte — every figure of the committed fixtures, PNG and
SVG, and the README thumbnail at its own dpi.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import pytest
from matplotlib.figure import Figure

from annbench import report
from annbench.recommend import Constraints
from annbench.report import figures

RESULTS = Path(__file__).resolve().parent / "fixtures" / "results"


def _savefig(fig: Any, path: Path, dpi: float = figures.DPI) -> Path:
    """What `figures.save` did before: matplotlib's savefig."""
    fig.savefig(path, format=path.suffix.lstrip("."), dpi=dpi)
    return path


def test_save_writes_the_bytes_savefig_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")  # the SVG's date: the same in both
    with monkeypatch.context() as m:
        m.setattr(figures, "save", _savefig)  # draw_and_save and thumbnail look it up when they run
        report.plot(RESULTS, tmp_path / "savefig", Constraints(), workers=1, write_index=False)
        report.thumbnail(RESULTS, tmp_path / "savefig" / "thumbnail.png", width_px=700)
    report.plot(RESULTS, tmp_path / "save", Constraints(), workers=1, write_index=False)
    report.thumbnail(RESULTS, tmp_path / "save" / "thumbnail.png", width_px=700)
    names = sorted(p.name for p in (tmp_path / "savefig").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "save").iterdir())
    assert {n.rsplit(".", 1)[1] for n in names} == {"png", "svg"} and len(names) >= 20
    for name in names:
        assert (tmp_path / "save" / name).read_bytes() == (tmp_path / "savefig" / name).read_bytes(), name


def test_save_leaves_the_figure_as_it_found_it(tmp_path: Path) -> None:
    with matplotlib.rc_context(figures.RC):
        fig = Figure(figsize=(4, 3), dpi=figures.DPI, layout="constrained")
        fig.add_subplot().plot([1, 2, 3])
        canvas, dpi = fig.canvas, fig.dpi
        figures.save(fig, tmp_path / "a.svg")  # the SVG printer sets the figure to 72 dpi
        figures.save(fig, tmp_path / "a.png", dpi=50)
    assert fig.canvas is canvas and fig.dpi == dpi
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (tmp_path / "a.svg").read_text()
    assert not list(tmp_path.glob("*.tmp*"))
