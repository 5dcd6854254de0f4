"""How well `annbench forecast` extrapolates: fit on the sizes up to a cut, forecast the largest, compare.

Reads a size sweep's results (e.g. `annbench run --scenario catalog_size_1m --out R`, 1,049 s on the
2-core development machine), refits every configuration's series on the sizes ≤ `--fit-up-to` (300,000 by
default), forecasts the largest measured size (1,000,000), and prints, per (configuration, figure), the
forecast's error against the measurement and whether the measurement falls inside the printed 95 %
interval. Targets (issue 17): memory within 10 %, build time and p50 within 35 %, recall within 0.02 for
every configuration whose fit is accepted — accepted here meaning what `annbench forecast` shows the user:
its own held-out check (the cut size predicted from the smaller ones) is within the same tolerance, and the
other growth laws the measured sizes cannot rule out agree with it at the forecast size within that
tolerance — and the measurement inside the interval for
at least 80 % of the (configuration, figure) pairs.

    python benchmarks/forecast_check.py RESULTS [--fit-up-to 300000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from annbench import projection, recommend, results

TOLERANCE = {"index_bytes": 0.10, "build_seconds": 0.35, "p50_ms": 0.35, "recall": 0.02}
MIN_INSIDE = 0.80


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--fit-up-to", type=int, default=300_000)
    args = ap.parse_args(argv)
    configs, _ = recommend.configurations(results.load_dir(args.results).runs)
    target = max((c.workload.size or 0) for c in configs)
    if target <= args.fit_up_to:
        print(f"no size above {args.fit_up_to:,} to check against", file=sys.stderr)
        return 2
    largest = {(c.label, c.policy, str(c.search_params)): c for c in configs if c.workload.size == target}
    fitted, _ = projection.project([c for c in configs if (c.workload.size or 0) <= args.fit_up_to], target)
    inside = total = accepted = accepted_ok = 0
    print(f"fit on sizes ≤ {args.fit_up_to:,}, forecast {target:,}, compared with its measurement")
    print(f"{'configuration':48s} {'figure':13s} {'law':20s} {'error':>8s}  target  interval  accepted")
    for p in fitted:
        c = largest.get((p.largest.label, p.largest.policy, str(p.largest.search_params)))
        if c is None:
            continue
        for figure, f in p.forecasts.items():
            actual = projection.figure_of(c, figure)
            total += 1
            within = f.lo <= actual <= f.hi
            inside += within
            if figure not in TOLERANCE:
                continue
            err = f.value - actual if figure == "recall" else (f.value - actual) / actual
            ok = abs(err) <= TOLERANCE[figure]
            held = f.holdout_error is not None and abs(f.holdout_error) <= TOLERANCE[figure]
            agree = f.disagreement() <= TOLERANCE[figure]
            acc = held and agree
            accepted += acc
            accepted_ok += acc and ok
            why = "" if acc else " (" + ", ".join(
                w for w, bad in (("held-out check", not held), ("laws disagree", not agree)) if bad) + ")"
            print(f"{c.short()[:48]:48s} {figure:13s} {f.model:20s} {err:+8.3f}  {'pass' if ok else 'MISS':6s}  "
                  f"{'in' if within else 'OUT':8s}  {'yes' if acc else 'no'}{why}")
    share = inside / total if total else 0.0
    print(f"measured inside the 95 % interval: {inside}/{total} = {share:.0%} (target ≥ {MIN_INSIDE:.0%}): "
          f"{'pass' if share >= MIN_INSIDE else 'MISS'}")
    print(f"accepted fits within the point tolerance: {accepted_ok}/{accepted}: "
          f"{'pass' if accepted_ok == accepted else 'MISS'}")
    return 0 if share >= MIN_INSIDE and accepted_ok == accepted else 1


if __name__ == "__main__":
    sys.exit(main())
