"""annbench's performance suite: one line per target (P1–P6 of issue 7, P7 of issue 14), each measured in this run.

    python benchmarks/run.py                      # every target at the issue's sizes (~15–20 min on 2 cores)
    python benchmarks/run.py --only P1,P2         # a subset
    python benchmarks/run.py --quick              # small sizes: a smoke check, not the issue's figures
    python benchmarks/run.py --json out.json      # where the raw figures go (default results/benchmarks.json)
    python benchmarks/run.py --profile            # print every profile, not only those of missed targets
    python benchmarks/run.py --only P6 --main-results results/   # P6 on your own main job's results

Each line reads: target id, what was measured, the figure, the target, pass or miss. A target is never
restated to fit a figure: the verdict is the figure compared with the issue's number. Ratios (P1, P2,
P3) are taken between two things measured alternately in the same process, so a shared machine's
speed cancels; wall times (P4, P6) and memory (P5) are absolute. The raw figures of every line
(every repeat, the cross-checks, the BLAS in use) are written to the JSON file. See README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from common import Line, blas_info, fmt_figure, machine

TARGETS = ("P1", "P2", "P3", "P4", "P5", "P6", "P7")
TITLES = {
    "P1": "timed search ÷ bare library loop",
    "P2": "exact ground truth throughput and memory",
    "P3": "incremental ground truth ÷ one full ground truth",
    "P4": "annbench run --scenario reseller_daily_updates",
    "P5": "harness memory on a 1M × 128 memory-mapped catalog",
    "P6": "annbench plot on a real main-job run and on 1,000 result files",
    "P7": "tombstone / rebuild policies' own code per query, day 7",
}


def sizes(quick: bool) -> dict[str, dict]:
    """Sizes per target: the issue's by default; --quick shrinks every one of them."""
    if quick:
        return {"P1": {"n": 10_000, "n_queries": 200, "repeats": 5},
                "P2": {"n": 40_000, "n_queries": 1_000, "k": 100, "repeats": 2},
                "P3": {"days": 5, "n": 20_000, "initial_fraction": 0.4, "repeats": 2},
                "P4": {"scenario": "reseller_daily_updates", "scale": 0.1, "limit_s": 600.0},
                "P5": {"n": 100_000},
                "P6": {"count": 100, "limit_s": 10.0, "main_scale": 0.1, "main_limit_s": 5.0},
                "P7": {"scale": 0.2, "repeats": 3}}
    return {"P1": {"n": 50_000, "n_queries": 1_000, "repeats": 21},  # reseller_daily_updates' catalog size
            "P2": {"n": 200_000, "n_queries": 10_000, "k": 100, "repeats": 3},
            # reseller_daily_updates for 30 days: day 0 = 35,000 images as in the shipped scenario
            # (0.4 × 87,500), 0.4 so that the reserve lasts 30 days of +3 % / −2 % / ~1 %
            "P3": {"days": 30, "n": 87_500, "initial_fraction": 0.4, "repeats": 9},
            "P4": {"scenario": "reseller_daily_updates", "scale": 1.0, "limit_s": 600.0},
            "P5": {"n": 1_000_000},
            # the main job is run at --scale 0.1 (its days, settings, queries, rounds and concurrency timings are
            # those of the full job; only the catalog shrinks), unless --main-results names a run to plot
            "P6": {"count": 1_000, "limit_s": 10.0, "main_scale": 0.1, "main_limit_s": 5.0},
            "P7": {"scale": 1.0, "repeats": 7}}  # the shipped main job, day 7


def runners(size: dict[str, dict], want_profile: bool,
            main_results: Path | None = None) -> dict[str, Callable[[], list[Line]]]:
    import bench_groundtruth
    import bench_harness
    import bench_policies
    import bench_results
    import bench_search

    return {
        "P1": lambda: bench_search.measure(**size["P1"], want_profile=want_profile),
        "P2": lambda: bench_groundtruth.measure_exact(**size["P2"], want_profile=want_profile),
        "P3": lambda: bench_groundtruth.measure_incremental(**size["P3"], want_profile=want_profile),
        "P4": lambda: bench_harness.measure_run(**size["P4"]),
        "P5": lambda: bench_harness.measure_memory(**size["P5"]),
        "P6": lambda: bench_results.measure(**size["P6"], want_profile=want_profile, main_results=main_results),
        "P7": lambda: bench_policies.measure(**size["P7"], want_profile=want_profile),
    }


def print_line(line: Line) -> None:
    verdict = "pass" if line.ok else ("MISS (void: cross-check failed)" if not line.sound else "MISS")
    print(f"{line.id:<3} {line.what:<78} {fmt_figure(line.figure, line.unit):>16}   {line.target():<44} {verdict}",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(TARGETS), help="comma-separated targets, e.g. P1,P2 (default: all)")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke check, not the issue's measurement")
    ap.add_argument("--json", type=Path, default=Path("results/benchmarks.json"), help="raw figures go here")
    ap.add_argument("--profile", action="store_true", help="print every profile, not only those of misses")
    ap.add_argument("--main-results", type=Path, default=None, metavar="PATH",
                    help="P6: time `annbench plot` on this main-job results folder instead of running the main job")
    a = ap.parse_args(argv)
    only = [t.strip().upper() for t in a.only.split(",") if t.strip()]
    unknown = [t for t in only if t not in TARGETS]
    if unknown:
        ap.error(f"unknown target {unknown[0]}; known: {', '.join(TARGETS)}")

    started = datetime.now(timezone.utc)
    t_all = time.perf_counter()
    info = machine()
    print(f"annbench benchmarks {'(QUICK: reduced sizes, not the issue figures) ' if a.quick else ''}"
          f"on {info['cpu']}, {info['cores']} cores, load average {info['load_avg_1_5_15'][0]:.2f}")
    print(f"{'id':<3} {'what':<78} {'figure':>16}   {'target':<44} verdict")
    size = sizes(a.quick)
    run = runners(size, a.profile, a.main_results)
    lines: list[Line] = []
    seconds: dict[str, float] = {}
    for target in only:
        t0 = time.perf_counter()
        try:
            got = run[target]()
        except Exception as e:  # one target failing must not hide the others' figures
            got = [Line(target, f"{TITLES[target]}: failed: {type(e).__name__}: {e}"[:78], float("nan"), "",
                        "<=", float("nan"), raw={"traceback": traceback.format_exc()}, sound=False)]
        seconds[target] = time.perf_counter() - t0
        for line in got:
            print_line(line)
        lines.extend(got)

    shown = [ln for ln in lines if ln.profile and (a.profile or not ln.ok or ln.id == "P4")]
    for ln in shown:
        print(f"\n--- {ln.id} {ln.what}: {'pass' if ln.ok else 'miss'}\n{ln.profile}")
    for ln in lines:
        if "traceback" in ln.raw:
            print(f"\n--- {ln.id} failed:\n{ln.raw['traceback']}")

    doc = {"started_at": started.isoformat(), "argv": sys.argv[1:] if argv is None else argv, "quick": a.quick,
           "sizes": {t: size[t] for t in only}, "machine": info, "blas": blas_info(),
           "seconds_per_target": seconds, "seconds_total": time.perf_counter() - t_all,
           "lines": [ln.as_dict() for ln in lines]}
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(doc, indent=1, default=str))
    missed = sum(not ln.ok for ln in lines)
    print(f"\n{len(lines) - missed} pass, {missed} miss in {doc['seconds_total']:.0f} s; raw figures in {a.json}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
