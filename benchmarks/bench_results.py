"""P6: `annbench plot` on a real main-job run, and on a large results folder of 1,000 files.

Two lines, each the wall time of `annbench plot DIR` in a fresh process — what a user waits for:
interpreter start, loading, every figure, index.html — the median of `repeats` runs (every run in the JSON).

- **a real main-job run**: the result files of `annbench run --scenario reseller_daily_updates` (its 18 runs:
  every index and policy, 8 search steps × 3 settings × 3 rounds of single-query latencies, concurrency
  levels, the day-7 ingest). Either a folder the caller names (`run.py --main-results PATH`: a main job the
  user ran) or a run made here into a temporary folder at `--scale main_scale` (the catalog shrinks; the
  days, settings, queries, rounds and concurrency timings — what the report reads and draws — stay the
  main job's).
- **1,000 files** synthesised from the committed fixtures (tests/fixtures/results: real ci_smoke and
  catalog_size runs, schema-valid), read as typed records (`results.load`) and written with
  `results.write`. Each search setting first gets the main job's per-query latencies and rounds
  (`_enlarge`: rounds × queries latencies resampled from the fixture's own, summarised by
  `annbench.timing.summarise_rounds` as a run does it), so each file carries what a main job's search
  steps carry. Copy v of a fixture keeps its scenario, workload and index name, and gets its own run id
  and label suffix `[v…]` (as a build grid would), recall lowered by up to 0.05 and latencies and memory
  raised by up to 50 % (QPS lowered alike), so the fronts, tables and recommendation have 1,000 distinct
  runs to place — a large sweep of the two fixture scenarios.

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
from common import Line, annbench_command, median, repo_root

MAIN_SCENARIO = "reseller_daily_updates"
LATENCY_FIGURES = ("p50", "p95", "p99", "mean", "min", "max")  # results.Latency's milliseconds (not its count n)
INTERVAL_FIGURES = ("p50", "p95", "p99", "mean")  # results.Interval95's [lo, hi] pairs, in milliseconds
ROUND_FIGURES = ("p50_ms", "p99_ms", "mean_ms")  # results.Round's milliseconds
MEMORY_FIGURES = ("index_rss_bytes", "rss_steady_bytes", "rss_peak_bytes", "saved_bytes")


# --- the 1,000 synthesised files -----------------------------------------------------------------------------
def latency_shape(runs: list[Any]) -> tuple[int, int]:
    """(rounds, queries per round) of the search settings of `runs` (`results.RunRecord`s): the medians."""
    rounds, queries = [], []
    for run in runs:
        for step in run.search_steps:
            for s in step.settings:
                r = s.rounds or 1
                if s.latency_ns:
                    rounds.append(r)
                    queries.append(len(s.latency_ns) // r)
    if not rounds:
        raise ValueError("no search setting with per-query latencies in the main job's results")
    return int(np.median(rounds)), int(np.median(queries))


def _enlarge(doc: dict[str, Any], rounds: int, queries: int, rng: np.random.Generator) -> dict[str, Any]:
    """A fixture's JSON document (`results.dump`) whose every search setting has `rounds` × `queries` single-query
    latencies (resampled from its own) and the figures a run computes from them (`timing.summarise_rounds`:
    medians over rounds, 95 % intervals, per-round figures, the noisy verdict), as a run of the main job has."""
    from annbench import timing

    for step in doc["steps"]:
        for s in step.get("settings") or []:
            own = np.asarray(s.get("latency_ns") or [], dtype=np.int64)
            if not len(own):
                continue
            step["count"] = queries  # the queries searched at the step: as many as each round's latencies
            lat = rng.choice(own, size=(rounds, queries))
            # batch calls: the fixture's batch time per query, a few per cent apart round to round
            per_query = 1.0 / float(s["qps"])
            batch = [queries * per_query * (1.0 + 0.03 * x) for x in rng.standard_normal(rounds)]
            fig = timing.summarise_rounds(lat, batch, queries)
            for r, rec in enumerate(fig["per_round"]):
                rec["round"] = r
            s.update(latency_ms=fig["latency_ms"], latency_ms_ci95=fig["latency_ms_ci95"], qps=fig["qps"],
                     qps_ci95=fig["qps_ci95"], batch_seconds=fig["batch_seconds"], batch_seconds_all=batch,
                     rounds=rounds, per_round=fig["per_round"], latency_ns=lat.reshape(-1).tolist(),
                     noise=timing.noise_verdict(fig["per_round"], []))
    return doc


def _copy(rec: Any) -> Any:
    """A deep copy of a record that shares its settings' latency lists: `_perturb` replaces them, never changes
    them in place, and deep-copying millions of ints would take longer than the benchmark."""
    memo = {id(s.latency_ns): s.latency_ns for step in rec.search_steps for s in step.settings}
    return copy.deepcopy(rec, memo)


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
            s.latency_ns = (np.asarray(s.latency_ns, dtype=np.int64) * slow).astype(np.int64).tolist()
            for name in LATENCY_FIGURES:
                x = getattr(s.latency_ms, name)
                if x is not None:
                    setattr(s.latency_ms, name, x * slow)
            ci = s.latency_ms_ci95
            for name in INTERVAL_FIGURES if ci is not None else ():
                pair = getattr(ci, name)
                if pair is not None:
                    setattr(ci, name, [x * slow for x in pair])
            for rnd in s.per_round:
                for name in ROUND_FIGURES:
                    x = getattr(rnd, name)
                    if x is not None:
                        setattr(rnd, name, x * slow)
                rnd.qps = rnd.qps / slow
            s.qps = s.qps / slow
            if s.qps_ci95 is not None:
                s.qps_ci95 = [x / slow for x in s.qps_ci95]
    for name in MEMORY_FIGURES:
        x = getattr(rec.memory, name)
        if x is not None:
            setattr(rec.memory, name, type(x)(x * slow))
    return rec


def synthesise(out: Path, count: int, shape: tuple[int, int], seed: int = 0) -> int:
    """Write `count` valid result files below `out` (one folder per scenario), each search setting with
    `shape` = (rounds, queries per round) single-query latencies; return their total bytes.

    The fixtures are read as typed records (`results.load`), enlarged (`_enlarge`, then read back with
    `results.parse`) and each copy is written with `results.write`, so every file has the run record's shape
    by construction."""
    from annbench import results

    fixtures = sorted((repo_root() / "tests" / "fixtures" / "results").rglob("*.json"))
    rng = np.random.default_rng(seed)
    records = [results.parse(_enlarge(results.dump(results.load(p)), *shape, rng), str(p)) for p in fixtures]
    total = 0
    for j in range(count):
        rec = _perturb(_copy(records[j % len(records)]), j // len(records), rng)
        path = results.result_path(out, rec.scenario.name, rec.run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        results.write(path, rec)
        total += path.stat().st_size
    return total


# --- the real main job ---------------------------------------------------------------------------------------
def _scale_arg(scale: float) -> str:
    return f" --scale {scale:g}" if scale != 1.0 else ""


def run_main_job(out: Path, scale: float) -> tuple[float, subprocess.CompletedProcess]:
    """`annbench run --scenario reseller_daily_updates [--scale S] --out OUT` from the repository root (the
    shipped scenario); its wall seconds and the finished process."""
    args = [*annbench_command(), "run", "--scenario", MAIN_SCENARIO, "--out", str(out), *_scale_arg(scale).split()]
    t = time.perf_counter()
    proc = subprocess.run(args, cwd=repo_root(), capture_output=True, text=True)
    return time.perf_counter() - t, proc


# --- timing `annbench plot` ----------------------------------------------------------------------------------
def _time_plot(data: Path, out: Path, repeats: int) -> tuple[list[float], subprocess.CompletedProcess, list[str]]:
    """Wall seconds of `repeats` runs of `annbench plot DATA --out OUT` (each into an empty OUT), the last
    process, and the PNGs it wrote."""
    walls: list[float] = []
    proc: subprocess.CompletedProcess | None = None
    pngs: list[str] = []
    for _ in range(repeats):
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        proc = subprocess.run([*annbench_command(), "plot", str(data), "--out", str(out)],
                              capture_output=True, text=True)
        walls.append(time.perf_counter() - t)
        pngs = sorted(p.name for p in out.glob("*.png")) if out.exists() else []
        if proc.returncode != 0:
            break
    assert proc is not None
    return walls, proc, pngs


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

    from annbench import report, results
    from annbench.recommend import Constraints
    from annbench.report import figures

    t = time.perf_counter()
    results.load_dir(data)
    load_s = time.perf_counter() - t
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
            f"{total:.1f} s, of which figures {figs:.1f} s (drawing + saving PNG and SVG), loading ({load_s:.1f} s "
            f"alone, results.load_dir), recommendation and HTML {total - figs:.1f} s:\n" + "\n".join(lines))


def _plot_line(what: str, data: Path, tmp: Path, files: int, nbytes: int, limit_s: float, repeats: int,
               want_profile: bool, raw: dict[str, Any]) -> Line:
    """The line of one folder: `annbench plot` timed `repeats` times, the folder loaded once here as a check."""
    from annbench import results

    t = time.perf_counter()
    loaded = results.load_dir(data)
    load_s = time.perf_counter() - t
    walls, proc, pngs = _time_plot(data, tmp / "report", repeats)
    plot_s = median(walls)
    ok = proc.returncode == 0 and len(walls) == repeats and len(loaded.runs) == files and not loaded.bad
    prof = _per_figure(data, tmp / "report-profile", files) if want_profile or plot_s > limit_s else ""
    shutil.rmtree(tmp / "report", ignore_errors=True)
    shutil.rmtree(tmp / "report-profile", ignore_errors=True)
    return Line("P6", what.format(load=load_s), plot_s, " s", "<=", limit_s,
                raw={**raw, "files": files, "bytes": nbytes, "load_dir_seconds": load_s, "plot_wall_seconds": walls,
                     "runs_loaded": len(loaded.runs), "bad_files": len(loaded.bad), "plot_exit": proc.returncode,
                     "plot_stderr_tail": proc.stderr[-1000:], "figures": pngs},
                profile=prof, sound=ok)


def measure(count: int, limit_s: float, want_profile: bool = False, main_results: Path | None = None,
            main_scale: float = 1.0, main_limit_s: float = 5.0, repeats: int = 3) -> list[Line]:
    """Both P6 lines: `annbench plot` on a real main-job run (`main_results`, else one run here at
    `main_scale`), then on `count` synthesised files whose search settings have that run's latency shape."""
    from annbench import results

    lines: list[Line] = []
    with tempfile.TemporaryDirectory(prefix="annbench-p6-") as tmp_s:
        tmp = Path(tmp_s)
        raw: dict[str, Any] = {}
        if main_results is not None:
            main = Path(main_results)
            source = f"{main}"
            raw["source"] = source
        else:
            main = tmp / "main"
            run_s, proc = run_main_job(main, main_scale)
            source = f"annbench run --scenario {MAIN_SCENARIO}" + _scale_arg(main_scale)
            raw.update(source=source, run_seconds=run_s, run_exit=proc.returncode,
                       run_stderr_tail=proc.stderr[-2000:])
            if proc.returncode != 0:
                return [Line("P6", f"annbench plot on a real main-job run: `{source}` exited {proc.returncode}",
                             float("nan"), " s", "<=", main_limit_s, raw=raw, sound=False)]
        files = list(results.iter_files(main))
        nbytes = sum(p.stat().st_size for p in files)
        runs = results.load_dir(main).runs
        shape = latency_shape(runs)
        raw["latency_shape_rounds_queries"] = list(shape)
        scale_note = "," + _scale_arg(main_scale) if main_results is None and main_scale != 1.0 else ""
        lines.append(_plot_line(
            f"annbench plot, a real main-job run ({len(files)} files, {nbytes / 1e6:.0f} MB{scale_note}; "
            "load {load:.1f} s)", main, tmp, len(files), nbytes, main_limit_s, repeats, want_profile, raw))

        data = tmp / "results"
        nbytes = synthesise(data, count, shape)
        lines.append(_plot_line(
            f"annbench plot on {count:,} result files, {shape[0]} × {shape[1]} latencies a setting "
            "(load {load:.1f} s)", data, tmp, count, nbytes, limit_s, repeats, want_profile,
            {"latency_shape_rounds_queries": list(shape)}))
    return lines
