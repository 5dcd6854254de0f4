"""Index configurations measured at several catalog sizes, projected to a size N that was not measured.

Owns the link between result records and annbench.forecast: which configurations form a size series (the
same scenario workload, index label, build parameters, policy and search setting, at three or more
catalog sizes of a static scenario), which figures are projected (index memory, saved bytes, build time,
typical p50 and p99, QPS, worst recall), the projected configuration that `recommend --at-n` ranks, and the
cores a configuration needs at N for a target QPS, from its measured scaling across client threads.

A projected configuration carries forecasts, never measurements: its figures are the forecasts' values and
its latency and QPS intervals are the forecasts' 95 % prediction intervals, so the ranking's tie rule (an
overlap of intervals is a tie) applies to forecasts as it does to measurements.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from annbench.errors import ConfigError
from annbench.forecast import FAR, Forecast, forecast
from annbench.recommend import (
    Config,
    Constraints,
    StepFigures,
    configurations,
    finite_median,
    format_text,
    verdict,
)
from annbench.results import RunRecord

FIGURES: dict[str, str] = {  # figure → how it is shown
    "index_bytes": "index memory",
    "saved_bytes": "saved bytes",
    "build_seconds": "build s",
    "p50_ms": "p50 ms (typical step)",
    "p99_ms": "p99 ms (typical step)",
    "qps": "QPS (batch)",
    "recall": "worst recall@k",
}

P50 = "p50_ms"  # the figure a single client's rate follows (1000 / p50 ≈ 1000 / mean)
SeriesKey = tuple[str, str, str, str, str, str]  # scenario hash, label, family, build, policy, search


def figure_of(c: Config, figure: str) -> float:
    """One projected figure of a measured configuration (what its series is made of)."""
    return {"index_bytes": c.index_bytes, "saved_bytes": c.saved_bytes, "build_seconds": c.build_seconds,
            "p50_ms": finite_median([s.p50_ms for s in c.steps]), "p99_ms": c.typical_p99[0],
            "qps": finite_median([s.qps for s in c.steps]), "recall": c.worst_recall}[figure]


def series(configs: list[Config]) -> dict[SeriesKey, list[Config]]:
    """Configurations grouped across catalog sizes, each series sorted by size (sized workloads only)."""
    out: dict[SeriesKey, list[Config]] = {}
    for c in configs:
        if c.workload.size is None:
            continue
        key = (c.workload.scenario_hash, c.label, c.family, json.dumps(c.build_params, sort_keys=True), c.policy,
               json.dumps(c.search_params, sort_keys=True))
        out.setdefault(key, []).append(c)
    return {k: sorted(v, key=lambda c: c.workload.size or 0) for k, v in out.items()}


@dataclass(frozen=True)
class Projection:
    """One configuration's figures forecast at size `n`, from its series."""

    n: int
    measured: tuple[Config, ...]  # the series, by size
    forecasts: dict[str, Forecast]

    @property
    def largest(self) -> Config:
        return self.measured[-1]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(c.workload.size or 0 for c in self.measured)

    def as_config(self) -> Config:
        """The projected configuration at n, for `recommend`'s ranking: forecasts in place of figures."""
        c, f = self.largest, self.forecasts

        def val(figure: str) -> float:
            return f[figure].value if figure in f else math.nan

        def band(figure: str) -> tuple[float, float]:
            return (f[figure].lo, f[figure].hi) if figure in f else (math.nan, math.nan)

        step = StepFigures(day=0, live=self.n, queries=c.steps[0].queries, recall=val("recall"), hit_at_k=None,
                           p_at_k=None, p50_ms=val("p50_ms"), p99_ms=val("p99_ms"), qps=val("qps"), leaks=0,
                           p50_ci=band("p50_ms"), p99_ci=band("p99_ms"), qps_ci=band("qps"), rounds=c.steps[0].rounds)
        wl = dataclasses.replace(c.workload, size=self.n)
        return dataclasses.replace(c, workload=wl, steps=(step,), index_bytes=val("index_bytes"),
                                   saved_bytes=val("saved_bytes"), build_seconds=val("build_seconds"),
                                   steady_bytes=math.nan, peak_bytes=math.nan, baseline_bytes=math.nan,
                                   memory_how=f"forecast at n={self.n:,} from sizes "
                                              f"{', '.join(f'{s:,}' for s in self.sizes)}")

    def cores_for(self, target_qps: float) -> tuple[int | None, str]:
        """Client threads (cores) needed at n for `target_qps` single queries a second, and how it was found.

        From the largest measured size's concurrency levels: the efficiency of T threads (QPS at T ÷ T × QPS at
        one) applied to the forecast single-client QPS (1000 / forecast mean latency ≈ 1000 / p50). None when
        that size measured no concurrency, or when the measured levels do not reach the target."""
        levels = [lv for s in self.largest.steps for lv in s.concurrency]
        one = [lv.qps for lv in levels if lv.threads == 1]
        p50 = self.forecasts.get(P50)
        if not levels or not one or p50 is None:
            return None, "no concurrency levels measured at the largest size"
        single = 1000.0 / p50.value
        best_t = max(lv.threads for lv in levels)
        eff = finite_median([lv.qps for lv in levels if lv.threads == best_t]) / (best_t * finite_median(one))
        need = math.ceil(target_qps / (single * eff)) if single * eff > 0 else None
        how = (f"forecast single-client {single:,.0f} QPS × measured efficiency {eff:.2f} at {best_t} threads "
               f"(n={self.sizes[-1]:,})")
        if need is not None and need > best_t:
            how += f"; beyond the {best_t} threads measured: an extrapolation"
        return need, how


def project(configs: list[Config], n: int) -> tuple[list[Projection], list[str]]:
    """Every size series of ≥ 3 sizes projected to n; notes for the series that cannot be."""
    out, notes = [], []
    for members in series(configs).values():
        sizes = [c.workload.size or 0 for c in members]
        if len(set(sizes)) < 3:
            notes.append(f"{members[0].short()}: measured at {len(set(sizes))} size(s); a forecast needs 3")
            continue
        fcs: dict[str, Forecast] = {}
        for figure in FIGURES:
            got = forecast(figure, sizes, [figure_of(c, figure) for c in members], n)
            if got is not None:
                fcs[figure] = got
        out.append(Projection(n, tuple(members), fcs))
    return out, notes


def forecast_rows(p: Projection) -> list[list[str]]:
    """The table of one projection: figure, model, forecast [95 %], largest measured, held-out check, and the
    other growth laws the measured sizes cannot rule out with their forecasts (the interval covers them)."""
    rows = []
    for figure, label in FIGURES.items():
        f = p.forecasts.get(figure)
        if f is None:
            rows.append([label, "—", "not forecast (non-finite or too few values)", "", "", ""])
            continue
        rows.append([label, f.model, f"{_fmt(figure, f.value)} [{_fmt(figure, f.lo)}–{_fmt(figure, f.hi)}]",
                     _fmt(figure, figure_of(p.largest, figure)), f.holdout_text(),
                     "; ".join(f"{name}: {_fmt(figure, v)}" for name, v in f.alternatives) or "—"])
    return rows


def _fmt(figure: str, v: float) -> str:
    if not math.isfinite(v):
        return "—"
    if figure in ("index_bytes", "saved_bytes"):
        return f"{v / 2**20:,.1f} MiB"
    if figure == "recall":
        return f"{v:.3f}"
    if figure == "qps":
        return f"{v:,.0f}"
    return f"{v:.3g}"


FORECAST_FIELDS = ["scenario", "label", "family", "build_params", "build_params_used_at_largest", "policy",
                   "search_params", "n", "figure", "model", "value", "lo", "hi", "far", "holdout_n", "holdout_error",
                   "alternatives", "sizes", "measured"]


def forecast_records(projections: list[Projection]) -> list[dict[str, Any]]:
    """Every (projection, figure) as a plain record — the forecast, its interval, the law, the self-check, the
    other plausible laws, and its inputs (the measured sizes and values) — for JSON and CSV (FORECAST_FIELDS)."""
    out = []
    for p in projections:
        c = p.largest
        for figure, f in p.forecasts.items():
            out.append({"scenario": c.workload.scenario, "label": c.label, "family": c.family,
                        "build_params": c.build_params, "build_params_used_at_largest": c.used_build_params,
                        "policy": c.policy, "search_params": c.search_params, "n": p.n, "figure": figure,
                        "model": f.model, "value": f.value, "lo": f.lo, "hi": f.hi, "far": f.far,
                        "holdout_n": f.holdout_n, "holdout_error": f.holdout_error,
                        "alternatives": dict(f.alternatives), "sizes": list(p.sizes),
                        "measured": [figure_of(m, figure) for m in p.measured]})
    return out


def render_text(projections: list[Projection], notes: list[str]) -> str:
    """What `annbench forecast` prints: per configuration, each figure's forecast with its interval, model and
    the held-out check; a forecast far beyond the measured sizes says so."""
    lines: list[str] = []
    for p in sorted(projections, key=lambda q: (q.n, q.largest.label, q.largest.policy, q.largest.search_text())):
        c = p.largest
        sizes = ", ".join(f"{s:,}" for s in p.sizes)
        far = max(f.far for f in p.forecasts.values()) if p.forecasts else p.n / max(p.sizes)
        lines.append(f"{c.short()} — measured at n = {sizes}; forecast at n = {p.n:,} ({far:.1f}× the largest)")
        if far > 3:
            lines.append(f"  far beyond the measured sizes ({far:.0f}×): the intervals are wide for that reason, and "
                         "a growth law can change beyond them; measure nearer the size if the choice is close")
        head = ["figure", "model", "forecast [95 % interval]", f"measured at {p.sizes[-1]:,}", "self-check",
                "other laws the sizes allow"]
        table = [head, *forecast_rows(p)]
        widths = [max(len(r[i]) for r in table) for i in range(len(head))]
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in table]
        lines.append("")
    lines += notes
    return "\n".join(lines).rstrip() + "\n"


def recommend_at(runs: list[RunRecord], cons: Constraints, n: int, target_qps: float | None = None,
                 scenario: str | None = None) -> tuple[str, int]:
    """What `annbench recommend --at-n N` prints and its exit status: the configurations measured at three or
    more sizes, ranked on their figures forecast at n under the same constraints (0: a winner, 1: none)."""
    cons.validate()
    if cons.min_qps is not None:
        raise ConfigError("--min-qps needs measured concurrency levels; with --at-n give --target-qps Q instead, "
                          "and the verdict says how many cores each configuration needs for Q at that size")
    if scenario is not None:
        runs = [r for r in runs if r.scenario.name == scenario]
    configs, _failures = configurations(runs)
    projections, notes = project(configs, n)
    if not projections:
        raise ConfigError(f"no configuration measured at 3 or more catalog sizes ({len(notes)} with fewer); run a "
                          "size sweep (timeline.kind: static with sizes, e.g. --scenario catalog_size_1m) first")
    by_scenario: dict[str, list[Projection]] = {}
    for p in projections:
        by_scenario.setdefault(p.largest.workload.scenario_hash, []).append(p)
    lines = [f"Figures at n = {n:,} are FORECASTS (annbench forecast: each figure's growth law chosen by "
             "leave-one-out error), shown with 95 % prediction intervals; ranked under the same constraints.", ""]
    code = 1
    for group in by_scenario.values():
        projected = [p.as_config() for p in group]
        wl = projected[0].workload
        far = n / max(group[0].sizes)
        context = (f"forecast from sizes {', '.join(f'{s:,}' for s in group[0].sizes)}"
                   + (f" — n is {far:.0f}× the largest measured: far beyond it, intervals wide" if far > FAR else ""))
        rec = verdict(wl, projected, cons, [], context)
        lines += format_text([rec], [], cons).rstrip("\n").splitlines()
        if rec.winner is not None:
            code = 0
            if target_qps is not None:
                for c in rec.ties or rec.ranked[:1]:
                    p = next(q for q in group if q.largest.label == c.label and q.largest.policy == c.policy
                             and q.largest.search_params == c.search_params
                             and q.largest.build_params == c.build_params)
                    need, how = p.cores_for(target_qps)
                    lines.append(f"  {c.short()}: {target_qps:,.0f} QPS at n = {n:,} needs "
                                 + (f"{need} cores ({how})" if need is not None else f"— cannot say ({how})"))
        lines.append("")
    lines += notes
    return "\n".join(lines).rstrip() + "\n", code
