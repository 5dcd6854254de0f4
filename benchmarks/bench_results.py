"""P6: loading and plotting a large results folder.

1,000 result files are synthesised from the committed fixtures (tests/fixtures/results: real
ci_smoke and catalog_size runs, schema-valid). Copy v of a fixture keeps its scenario, workload and
index name, and gets its own run id and label suffix `[v…]` (as a build grid would), recall lowered by
up to 0.05 and latencies and memory raised by up to 50 % (QPS lowered alike), so the fronts, tables and
recommendation have 1,000 distinct runs to place — a large sweep of the two fixture scenarios.

Timed: `results.load_dir` in this process (loading alone), and the wall time of `annbench plot DIR`
in a fresh process — what a user waits for: interpreter start, loading, every figure, index.html.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import Line, annbench_command, repo_root


def _perturb(doc: dict[str, Any], v: int, rng: np.random.Generator) -> dict[str, Any]:
    if v == 0:
        return doc
    doc["run_id"] = f"{doc['run_id']}-v{v}"
    label = doc["index"].get("label") or doc["index"]["family"]
    doc["index"]["label"] = f"{label}[v{v}]"
    slow = 1.0 + 0.5 * rng.random()
    worse = 0.05 * rng.random()
    for step in doc["steps"]:
        for s in step.get("settings", []) if step["op"] == "search" else []:
            s["recall"] = max(0.0, s["recall"] - worse)
            s["latency_ns"] = [int(x * slow) for x in s.get("latency_ns", [])]
            s["latency_ms"] = {key: (x * slow if isinstance(x, (int, float)) else x)
                               for key, x in s.get("latency_ms", {}).items()}
            if isinstance(s.get("qps"), (int, float)):
                s["qps"] = s["qps"] / slow
    mem = doc.get("memory") or {}
    for key in ("index_rss_bytes", "rss_steady_bytes", "rss_peak_bytes", "saved_bytes"):
        if isinstance(mem.get(key), (int, float)):
            mem[key] = int(mem[key] * slow)
    return doc


def synthesise(out: Path, count: int, seed: int = 0) -> int:
    """Write `count` valid result files below `out` (one folder per scenario); return their total bytes."""
    fixtures = sorted((repo_root() / "tests" / "fixtures" / "results").rglob("*.json"))
    docs = [json.loads(p.read_text()) for p in fixtures]
    rng = np.random.default_rng(seed)
    total = 0
    for j in range(count):
        src = docs[j % len(docs)]
        doc = _perturb(json.loads(json.dumps(src)), j // len(docs), rng)
        path = out / doc["scenario"]["name"] / f"{doc['run_id']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(doc, indent=1)
        path.write_text(text)
        total += len(text)
    return total


def _per_figure(data: Path, out: Path, count: int) -> str:
    """Run the report in this process with each figure's drawing (`report.fig_*`) and saving (`report._save`)
    timed, by patching the module's functions for this one call; a table of seconds per figure. Figures are
    drawn one after another here (`report.FIGURE_WORKERS = 1`), so each one's seconds are its own."""
    import contextlib
    import io
    import warnings

    from annbench import report
    from annbench.recommend import Constraints

    rows: list[tuple[str, float, float, int, str]] = []  # key, draw s, save s, axes, size
    pending: list[float] = []
    originals = {name: getattr(report, name) for name in dir(report) if name.startswith("fig_")}
    save = report._save

    def drawn(fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                pending.append(time.perf_counter() - t)
        return timed

    def saved(fig: Any, out_dir: Path, key: str) -> Any:
        axes, size = len(fig.axes), "×".join(f"{x:.0f}" for x in fig.get_size_inches())
        t = time.perf_counter()
        try:
            return save(fig, out_dir, key)
        finally:
            rows.append((key, sum(pending), time.perf_counter() - t, axes, size))
            pending.clear()

    t0 = time.perf_counter()
    workers = report.FIGURE_WORKERS
    try:
        report.FIGURE_WORKERS = 1
        for name, fn in originals.items():
            setattr(report, name, drawn(fn))
        report._save = saved
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # matplotlib's layout warnings: the timed run already showed them
            report.plot_command(data, out, Constraints())
    finally:
        for name, fn in originals.items():
            setattr(report, name, fn)
        report._save = save
        report.FIGURE_WORKERS = workers
    total = time.perf_counter() - t0
    figs = sum(r[1] + r[2] for r in rows)
    lines = [f"  {key:<36} draw {d:6.1f} s  save {s_:6.1f} s   {axes:4d} axes, {size} in"
             for key, d, s_, axes, size in sorted(rows, key=lambda r: -(r[1] + r[2]))]
    return (f"report.plot_command on {count} files in this process: {total:.1f} s, of which figures "
            f"{figs:.1f} s (drawing + saving PNG and SVG), loading, recommendation and HTML {total - figs:.1f} s:\n"
            + "\n".join(lines))


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
