"""P6: loading and plotting a large results folder.

1,000 result files are synthesised from the committed fixtures (tests/fixtures/results: real
ci_smoke and catalog_size runs, schema-valid), read as typed records (`results.load`) and written with
`results.write`. Copy v of a fixture keeps its scenario, workload and
index name, and gets its own run id and label suffix `[v…]` (as a build grid would), recall lowered by
up to 0.05 and latencies and memory raised by up to 50 % (QPS lowered alike), so the fronts, tables and
recommendation have 1,000 distinct runs to place — a large sweep of the two fixture scenarios.

Timed: `results.load_dir` in this process (loading alone), and the wall time of `annbench plot DIR`
in a fresh process — what a user waits for: interpreter start, loading, every figure, index.html.
The profile (printed on a miss or with --profile) reruns the report in this process with one worker and
times each figure's drawing and saving (`_per_figure`).
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import Line, annbench_command, repo_root

LATENCY_FIGURES = ("p50", "p95", "p99", "mean", "min", "max")  # results.Latency's milliseconds (not its count n)
MEMORY_FIGURES = ("index_rss_bytes", "rss_steady_bytes", "rss_peak_bytes", "saved_bytes")


def _perturb(rec: Any, v: int, rng: np.random.Generator) -> Any:
    """Copy v of a fixture's `results.RunRecord` (changed in place): its own run id and label, worse figures."""
    if v == 0:
        return rec
    rec.run_id = f"{rec.run_id}-v{v}"
    rec.index.label = f"{rec.index.label or rec.index.family}[v{v}]"
    slow = 1.0 + 0.5 * rng.random()
    worse = 0.05 * rng.random()
    for step in rec.search_steps:
        for s in step.settings:
            s.recall = max(0.0, s.recall - worse)
            s.latency_ns = [int(x * slow) for x in s.latency_ns]
            for name in LATENCY_FIGURES:
                x = getattr(s.latency_ms, name)
                if x is not None:
                    setattr(s.latency_ms, name, x * slow)
            s.qps = s.qps / slow
    for name in MEMORY_FIGURES:
        x = getattr(rec.memory, name)
        if x is not None:
            setattr(rec.memory, name, type(x)(x * slow))
    return rec


def synthesise(out: Path, count: int, seed: int = 0) -> int:
    """Write `count` valid result files below `out` (one folder per scenario); return their total bytes.

    The fixtures are read as typed records (`results.load`) and each copy is written with `results.write`,
    so every file has the run record's shape by construction."""
    from annbench import results

    fixtures = sorted((repo_root() / "tests" / "fixtures" / "results").rglob("*.json"))
    records = [results.load(p) for p in fixtures]
    rng = np.random.default_rng(seed)
    total = 0
    for j in range(count):
        rec = _perturb(copy.deepcopy(records[j % len(records)]), j // len(records), rng)
        path = results.result_path(out, rec.scenario.name, rec.run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        results.write(path, rec)
        total += path.stat().st_size
    return total


def _per_figure(data: Path, out: Path, count: int) -> str:
    """Run the report in this process (`report.plot_command(..., workers=1)`: figures one after another, so
    each one's seconds are its own) with every figure timed, and return a table of seconds per figure.

    `build.plot` makes each figure's task as `partial(figures.draw_and_save, key, draw, out_dir)`, looking
    `draw_and_save` up on `annbench.report.figures` when the report is planned: replacing it there for this
    one call times each figure. The wrapper also times the figure's drawing (`draw`, a partial of a
    `figures.fig_*` function); the rest of `draw_and_save` is saving it as PNG and SVG."""
    import contextlib
    import io
    import warnings

    from annbench import report
    from annbench.recommend import Constraints
    from annbench.report import figures

    rows: list[tuple[str, str, float, float, int, str]] = []  # key, fig_* function, draw s, save s, axes, size
    draw_and_save = figures.draw_and_save

    def timed_draw_and_save(key: str, draw: Any, out_dir: Path) -> dict[str, int]:
        drawn: dict[str, Any] = {}

        def timed_draw() -> tuple[Any, dict[str, int]]:
            t = time.perf_counter()
            fig, points = draw()
            drawn["seconds"] = time.perf_counter() - t
            drawn["axes"] = len(fig.axes)
            drawn["size"] = "×".join(f"{x:.0f}" for x in fig.get_size_inches())
            return fig, points

        t = time.perf_counter()
        points = draw_and_save(key, timed_draw, out_dir)
        total = time.perf_counter() - t
        name = getattr(getattr(draw, "func", draw), "__name__", "?")
        rows.append((key, name, drawn["seconds"], total - drawn["seconds"], drawn["axes"], drawn["size"]))
        return points

    t0 = time.perf_counter()
    try:
        figures.draw_and_save = timed_draw_and_save
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # matplotlib's layout warnings: the timed run already showed them
            report.plot_command(data, out, Constraints(), workers=1)
    finally:
        figures.draw_and_save = draw_and_save
    total = time.perf_counter() - t0
    figs = sum(r[2] + r[3] for r in rows)
    lines = [f"  {key:<36} {name:<16} draw {d:6.1f} s  save {s_:6.1f} s   {axes:4d} axes, {size} in"
             for key, name, d, s_, axes, size in sorted(rows, key=lambda r: -(r[2] + r[3]))]
    return (f"report.plot_command on {count} files in this process, figures drawn one after another (workers=1): "
            f"{total:.1f} s, of which figures {figs:.1f} s (drawing + saving PNG and SVG), loading, "
            f"recommendation and HTML {total - figs:.1f} s:\n" + "\n".join(lines))


def measure(count: int, limit_s: float, want_profile: bool = False) -> list[Line]:
    from annbench import results

    with tempfile.TemporaryDirectory(prefix="annbench-p6-") as tmp_s:
        tmp = Path(tmp_s)
        data = tmp / "results"
        nbytes = synthesise(data, count)
        t = time.perf_counter()
        loaded = results.load_dir(data)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        proc = subprocess.run([*annbench_command(), "plot", str(data), "--out", str(tmp / "report")],
                              capture_output=True, text=True)
        plot_s = time.perf_counter() - t
        figures = sorted(p.name for p in (tmp / "report").glob("*.png")) if (tmp / "report").exists() else []
        ok = proc.returncode == 0 and len(loaded.runs) == count and not loaded.bad
        prof = ""
        if want_profile or plot_s > limit_s:
            prof = _per_figure(data, tmp / "report-profile", count)
        shutil.rmtree(tmp / "report", ignore_errors=True)
    return [Line(
        "P6", f"annbench plot on {count:,} result files (load {load_s:.1f} s + figures + HTML)", plot_s, " s",
        "<=", limit_s,
        raw={"files": count, "bytes": nbytes, "load_dir_seconds": load_s, "plot_wall_seconds": plot_s,
             "runs_loaded": len(loaded.runs), "bad_files": len(loaded.bad), "plot_exit": proc.returncode,
             "plot_stderr_tail": proc.stderr[-1000:], "figures": figures},
        profile=prof, sound=ok)]
