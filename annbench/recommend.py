"""Which index configuration to deploy: constraints in, a ranked table, a winner and every rejection out.

Owns the reading of result files as *configurations* — one (scenario, catalog size, index, build
parameters, search parameters, policy), with that setting's figures at every search step — which the
report (`annbench.report`) shares, and the `annbench recommend` verdict.

The rules, chosen so a recommendation holds on the worst day rather than on average:
- a configuration is feasible when it meets every constraint on *every* search step of its run (a policy
  that loses recall on day 5 is rejected even when its 7-day average passes);
- memory is the index's own: steady RSS after build minus the run's RSS before the build;
- configurations are only compared within one *workload* (same scenario, dataset and catalog size):
  a latency at 10k vectors says nothing about one at 1M, so each workload gets its own verdict;
- a failed or timed-out run is a rejected configuration, with its error as the reason;
- `--min-qps` is throughput as a service sees it, single queries from client threads: at each step that
  measured concurrency (`search.concurrency`), the best level's QPS among the levels whose p99 under that
  load stays within `--max-p99-ms` (when given); a run that measured none is one client, 1000 / mean ms.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annbench import results
from annbench.errors import ConfigError

MINIMISE = ("latency", "memory", "build")
_GB = 1e9


@dataclass(frozen=True)
class LevelFigures:
    """One concurrency level of one search step: T client threads issuing single queries (`search.concurrency`)."""

    threads: int
    qps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_utilisation: float  # process CPU time ÷ wall time: cores busy
    batch_qps: float  # beside it: one call with every query, the library's own threads at T
    free_cores: float = math.nan  # control measured just before: GIL-free work in T threads ÷ in one


@dataclass(frozen=True)
class StepFigures:
    """One search setting's figures at one search step (a day, or the single step of a static run)."""

    day: int
    live: int
    queries: int
    recall: float
    hit_at_k: float | None
    p_at_k: float | None
    p50_ms: float
    p99_ms: float
    qps: float
    leaks: int
    mean_ms: float = math.nan  # mean single-query latency: 1000/mean_ms is what one client gets
    concurrency: tuple[LevelFigures, ...] = ()  # when the scenario measured concurrency at this step

    def serving_qps(self, max_p99_ms: float | None = None) -> tuple[float, int]:
        """(QPS, client threads) of the best concurrency level, among those with p99 ≤ `max_p99_ms` when
        given; a step without concurrency levels is one client sending single queries, one after another."""
        if not self.concurrency:
            ok = max_p99_ms is None or self.p99_ms <= max_p99_ms
            return (1000.0 / self.mean_ms if ok and self.mean_ms > 0 else 0.0), 1
        fine = [lv for lv in self.concurrency if max_p99_ms is None or lv.p99_ms <= max_p99_ms]
        best = max(fine, key=lambda lv: lv.qps, default=None)
        return (best.qps, best.threads) if best is not None else (0.0, 0)


@dataclass(frozen=True)
class Workload:
    """What makes figures comparable: the same scenario workload, dataset and catalog size."""

    scenario: str
    scenario_hash: str
    dataset_hash: str
    size: int | None
    timeline: str

    def title(self) -> str:
        return self.scenario + (f" · n={self.size:,}" if self.size else "")


@dataclass(frozen=True)
class Config:
    """One index configuration of one ok run: a build, one search setting, one policy, all its steps."""

    workload: Workload
    run_id: str
    name: str  # the scenario's index name without a build-grid suffix: the "family" a Pareto front joins
    label: str  # the scenario's index name, with the build grid suffix when there is one
    family: str  # the adapter
    build_params: dict[str, Any] = field(hash=False)
    search_params: dict[str, Any] = field(hash=False)
    policy: str
    k: int
    steps: tuple[StepFigures, ...]
    index_bytes: float  # steady RSS after build − RSS before build
    steady_bytes: float
    peak_bytes: float
    baseline_bytes: float
    saved_bytes: float
    build_seconds: float
    run: dict[str, Any] = field(hash=False, compare=False, repr=False)

    # Worst-step figures: the ones constraints and figures use, so nothing hides in an average.
    @property
    def worst_recall(self) -> float:
        return min(s.recall for s in self.steps)

    @property
    def mean_recall(self) -> float:
        return sum(s.recall for s in self.steps) / len(self.steps)

    @property
    def worst_p99_ms(self) -> float:
        return max(s.p99_ms for s in self.steps)

    @property
    def worst_p50_ms(self) -> float:
        return max(s.p50_ms for s in self.steps)

    @property
    def worst_qps(self) -> float:
        return min(s.qps for s in self.steps)

    @property
    def worst_hit(self) -> float | None:
        vals = [s.hit_at_k for s in self.steps if s.hit_at_k is not None]
        return min(vals) if vals else None

    @property
    def worst_p_at_k(self) -> float | None:
        vals = [s.p_at_k for s in self.steps if s.p_at_k is not None]
        return min(vals) if vals else None

    @property
    def total_leaks(self) -> int:
        return sum(s.leaks for s in self.steps)

    @property
    def concurrency_levels(self) -> list[int]:
        """Client thread counts measured at some search step (`search.concurrency`), ascending."""
        return sorted({lv.threads for s in self.steps for lv in s.concurrency})

    def worst_level(self, threads: int) -> LevelFigures | None:
        """One level's worst figures over the steps that measured it (lowest QPS, highest latency, as
        everywhere else), or None when no step did."""
        levels = [lv for s in self.steps for lv in s.concurrency if lv.threads == threads]
        if not levels:
            return None
        return LevelFigures(threads, min(lv.qps for lv in levels), max(lv.p50_ms for lv in levels),
                            max(lv.p95_ms for lv in levels), max(lv.p99_ms for lv in levels),
                            min(lv.cpu_utilisation for lv in levels), min(lv.batch_qps for lv in levels),
                            min(lv.free_cores for lv in levels))

    def qps_steps(self) -> tuple[StepFigures, ...]:
        """The steps `--min-qps` is judged on: those that measured concurrency, else every step."""
        measured = tuple(s for s in self.steps if s.concurrency)
        return measured or self.steps

    def build_text(self) -> str:
        return params_text(self.build_params)

    def search_text(self) -> str:
        return params_text(self.search_params)

    def short(self) -> str:
        """One-line name: index, build grid, search setting, policy."""
        parts = [self.label]
        if self.search_params:
            parts.append(self.search_text())
        parts.append(self.policy)
        return " · ".join(parts)


@dataclass
class Failure:
    """A run that did not finish: it is rejected, with its error."""

    workload: Workload
    run_id: str
    label: str
    family: str
    policy: str
    status: str
    error: str
    path: str


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) if params else "—"


def workload_of(run: dict[str, Any]) -> Workload:
    return Workload(scenario=run["scenario"]["name"], scenario_hash=run["scenario"]["hash"],
                    dataset_hash=run["dataset"]["hash"], size=run["index"].get("size"),
                    timeline=run["scenario"].get("timeline", "static"))


def _num(value: Any, default: float = math.nan) -> float:
    return float(value) if isinstance(value, (int, float)) else default


def configurations(runs: Iterable[dict[str, Any]]) -> tuple[list[Config], list[Failure]]:
    """Every (run, search setting) of the ok runs as a Config; the runs that failed or timed out apart."""
    configs: list[Config] = []
    failures: list[Failure] = []
    for run in runs:
        wl = workload_of(run)
        index = run["index"]
        label = str(index.get("label") or index["family"])
        if run["status"] != "ok":
            failures.append(Failure(wl, run["run_id"], label, index["family"], index["policy"], run["status"],
                                    str(run.get("error") or "no error recorded"), str(run.get("_path", ""))))
            continue
        per_setting: dict[str, list[StepFigures]] = {}
        params_of: dict[str, dict[str, Any]] = {}
        for step in run["steps"]:
            if step["op"] != "search":
                continue
            for s in step.get("settings", []):
                if not s.get("latency_ms"):
                    continue
                key = json.dumps(s["params"], sort_keys=True)
                params_of[key] = s["params"]
                lat = s["latency_ms"]
                per_setting.setdefault(key, []).append(StepFigures(
                    day=int(step.get("day") or 0), live=int(step.get("live") or 0),
                    queries=int(step.get("count") or 0), recall=float(s["recall"]),
                    hit_at_k=s.get("hit_at_k"), p_at_k=s.get("p_at_k"), p50_ms=_num(lat.get("p50")),
                    p99_ms=_num(lat.get("p99")), qps=_num(s.get("qps")), leaks=int(s.get("leaks") or 0),
                    mean_ms=_num(lat.get("mean")), concurrency=_levels(s.get("concurrency"))))
        mem = run.get("memory") or {}
        # a database's files and its server's RSS live outside the run's process: they count as memory
        external = float(sum((mem.get("external_bytes") or {}).values()))
        build_s = sum(_num(st.get("seconds"), 0.0) for st in run["steps"] if st["op"] == "build")
        for key, steps in per_setting.items():
            configs.append(Config(
                workload=wl, run_id=run["run_id"], name=label.split("[")[0], label=label, family=index["family"],
                build_params=dict(index.get("build_params") or {}), search_params=dict(params_of[key]),
                policy=index["policy"], k=int(run["scenario"].get("k") or 0), steps=tuple(steps),
                index_bytes=_num(mem.get("index_rss_bytes")) + external,
                steady_bytes=_num(mem.get("rss_steady_bytes")) + external,
                peak_bytes=_num(mem.get("rss_peak_bytes")), baseline_bytes=_num(mem.get("rss_baseline_bytes")),
                saved_bytes=_num(mem.get("saved_bytes")), build_seconds=build_s, run=run))
    return configs, failures


def _levels(raw: Any) -> tuple[LevelFigures, ...]:
    """The `concurrency` list of a search setting (annbench.concurrency.measure_levels) as LevelFigures."""
    out = []
    for lv in raw if isinstance(raw, list) else []:
        if not isinstance(lv, dict) or not isinstance(lv.get("threads"), int):
            continue
        lat = lv.get("latency_ms") or {}
        out.append(LevelFigures(threads=lv["threads"], qps=_num(lv.get("qps")), p50_ms=_num(lat.get("p50")),
                                p95_ms=_num(lat.get("p95")), p99_ms=_num(lat.get("p99")),
                                cpu_utilisation=_num(lv.get("cpu_utilisation")),
                                batch_qps=_num((lv.get("batch") or {}).get("qps")),
                                free_cores=_num(lv.get("free_cores"))))
    return tuple(sorted(out, key=lambda lv: lv.threads))


# --- constraints and the verdict ---------------------------------------------------------------------
@dataclass(frozen=True)
class Constraints:
    min_recall: float = 0.9
    max_p99_ms: float | None = None
    max_memory_gb: float | None = None
    needs_updates: bool = False
    minimise: str = "latency"
    min_qps: float | None = None

    def validate(self) -> Constraints:
        """Raise ConfigError (exit 2) on a value no configuration could be measured against."""
        if not (0.0 < self.min_recall <= 1.0):
            raise ConfigError(f"--min-recall must be in (0, 1], got {self.min_recall:g}")
        if self.max_p99_ms is not None and not self.max_p99_ms > 0:
            raise ConfigError(f"--max-p99-ms must be > 0, got {self.max_p99_ms:g}")
        if self.max_memory_gb is not None and not self.max_memory_gb > 0:
            raise ConfigError(f"--max-memory-gb must be > 0, got {self.max_memory_gb:g}")
        if self.min_qps is not None and not (self.min_qps > 0 and math.isfinite(self.min_qps)):
            raise ConfigError(f"--min-qps must be a positive number, got {self.min_qps:g}")
        if self.minimise not in MINIMISE:
            raise ConfigError(f"--minimise must be one of {', '.join(MINIMISE)}, got {self.minimise!r}")
        return self

    def describe(self, k: int | None = None) -> list[str]:
        at = f"@{k}" if k else ""
        out = [f"recall{at} ≥ {self.min_recall:g} on every search step"]
        if self.max_p99_ms is not None:
            out.append(f"p99 latency ≤ {self.max_p99_ms:g} ms on every search step")
        if self.min_qps is not None:
            under = f" with p99 ≤ {self.max_p99_ms:g} ms under that load" if self.max_p99_ms is not None else ""
            out.append(f"≥ {self.min_qps:g} QPS from single-query client threads{under}, at the best concurrency "
                       "level measured, on every step that measured concurrency (one client when none did)")
        if self.max_memory_gb is not None:
            out.append(f"index memory ≤ {self.max_memory_gb:g} GB (steady RSS − RSS before build)")
        if self.needs_updates:
            out.append("serves daily updates (an ok run of a daily scenario)")
        out.append(f"minimise {OBJECTIVES[self.minimise][0]}")
        return out


# objective name → (what it is, key function; lower is better)
OBJECTIVES = {
    "latency": ("worst-step p99 latency", lambda c: c.worst_p99_ms),
    "memory": ("index memory", lambda c: c.index_bytes),
    "build": ("build time", lambda c: c.build_seconds),
}


def _objective_text(c: Config, minimise: str) -> str:
    if minimise == "latency":
        return f"{c.worst_p99_ms:.3g} ms"
    if minimise == "memory":
        return fmt_bytes(c.index_bytes)
    return f"{c.build_seconds:.3g} s"


def fmt_bytes(b: float) -> str:
    if not math.isfinite(b):
        return "?"
    if abs(b) >= 2**30:
        return f"{b / 2**30:.2f} GiB"
    return f"{b / 2**20:.1f} MiB"


def first_failure(c: Config, cons: Constraints) -> str | None:
    """The first constraint `c` fails, in the order recall, p99, memory, updates; None when feasible.

    Recall and latency are checked step by step, in order, so the message names the day that failed.
    """
    what = "day" if c.workload.timeline == "daily" else "step"
    for s in c.steps:
        if not s.recall >= cons.min_recall:
            tail = f" (mean over {len(c.steps)} steps {c.mean_recall:.3f})" if len(c.steps) > 1 else ""
            return f"recall@{c.k} {s.recall:.3f} < {cons.min_recall:g} on {what} {s.day}{tail}"
    if cons.max_p99_ms is not None:
        for s in c.steps:
            if not s.p99_ms <= cons.max_p99_ms:
                return f"p99 {s.p99_ms:.3g} ms > {cons.max_p99_ms:g} ms on {what} {s.day}"
    if cons.min_qps is not None:
        for s in c.qps_steps():
            got, threads = s.serving_qps(cons.max_p99_ms)
            if not got >= cons.min_qps:
                how = (f"best of {len(s.concurrency)} concurrency level(s)" if s.concurrency
                       else "1 client; no concurrency measured")
                if cons.max_p99_ms is not None:
                    how += f", p99 ≤ {cons.max_p99_ms:g} ms" + ("" if threads else ": no level keeps it")
                return f"QPS {got:,.0f} < {cons.min_qps:g} on {what} {s.day} ({how})"
    if cons.max_memory_gb is not None and not c.index_bytes <= cons.max_memory_gb * _GB:
        return f"index memory {c.index_bytes / _GB:.3g} GB > {cons.max_memory_gb:g} GB"
    if cons.needs_updates and c.workload.timeline != "daily":
        return "not measured under updates (static scenario)"
    return None


@dataclass
class Recommendation:
    """The verdict for one workload."""

    workload: Workload
    constraints: Constraints
    ranked: list[Config]
    rejected: list[tuple[Config, str]]
    failed: list[Failure]
    context: str  # dataset, size, k, machine, threads

    @property
    def winner(self) -> Config | None:
        return self.ranked[0] if self.ranked else None

    def why(self) -> str:
        """One line: why the winner, or why nothing is feasible."""
        cons = self.constraints
        what = OBJECTIVES[cons.minimise][0]
        if not self.ranked:
            n = len(self.rejected) + len(self.failed)
            reasons: dict[str, int] = {}
            for _c, r in self.rejected:
                reasons[_reason_kind(r)] = reasons.get(_reason_kind(r), 0) + 1
            if self.failed:
                reasons["run failed"] = len(self.failed)
            counts = ", ".join(f"{v} on {k}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]))
            best = max((c for c, _ in self.rejected), key=lambda c: c.worst_recall, default=None)
            hint = ""
            if best is not None:
                hint = (f"; the best worst-step recall@{best.k} measured is {best.worst_recall:.3f} "
                        f"({best.short()}, p99 {best.worst_p99_ms:.3g} ms, memory {fmt_bytes(best.index_bytes)})")
            return f"No feasible configuration: all {n} fail ({counts}){hint}."
        w = self.ranked[0]
        line = (f"lowest {what} ({_objective_text(w, cons.minimise)}) of {len(self.ranked)} configuration"
                f"{'s' if len(self.ranked) != 1 else ''} meeting every constraint on every step; "
                f"worst-step recall@{w.k} {w.worst_recall:.3f}")
        if len(self.ranked) > 1:
            r = self.ranked[1]
            line += f"; runner-up {r.short()} ({_objective_text(r, cons.minimise)})"
        return line + "."


def _reason_kind(reason: str) -> str:
    for kind in ("QPS", "recall", "p99", "memory", "updates"):
        if kind in reason:
            return kind
    return "other"


def _rank_key(minimise: str):  # noqa: ANN202 - a sort key
    objective = OBJECTIVES[minimise][1]

    def key(c: Config) -> tuple[float, ...]:
        # ties: the safer recall first, then the faster, then the smaller
        return (_nan_last(objective(c)), -c.worst_recall, _nan_last(c.worst_p99_ms), _nan_last(c.index_bytes))

    return key


def _nan_last(x: float) -> float:
    return math.inf if not math.isfinite(x) else x


def context_line(runs: Sequence[dict[str, Any]]) -> str:
    """Dataset, size, k, machine and threads of a set of runs, for captions and the text verdict."""
    if not runs:
        return ""
    first = runs[0]
    ds = first.get("dataset", {})
    sizes = sorted({r["index"].get("size") for r in runs if r["index"].get("size")})
    n = f"n={sizes[0]:,}" if len(sizes) == 1 else (f"n={sizes[0]:,}–{sizes[-1]:,}" if sizes else
                                                    f"n={ds.get('n', 0):,}")
    lives = [st.get("live") for r in runs for st in r.get("steps", []) if st.get("op") == "search"]
    lives = [v for v in lives if isinstance(v, int)]
    live = f" (live {min(lives):,}–{max(lives):,})" if lives and first["scenario"].get("timeline") == "daily" else ""
    cpus = sorted({str((r.get("machine") or {}).get("cpu", "?")) for r in runs})
    cores = sorted({(r.get("machine") or {}).get("cores") for r in runs if (r.get("machine") or {}).get("cores")})
    threads = sorted({r.get("threads") for r in runs if r.get("threads") is not None})
    machine = " / ".join(cpus) + (f" ({'/'.join(map(str, cores))} cores)" if cores else "")
    if len(cpus) > 1:
        machine += " — MIXED MACHINES"
    return (f"dataset {ds.get('name', '?')} {n}{live} × {ds.get('dim', '?')} {ds.get('metric', '')}"
            f" · k={first['scenario'].get('k', '?')} · {machine} · "
            f"{'/'.join(map(str, threads)) or '?'} thread{'s' if threads != [1] else ''}")


def recommend(runs: Sequence[dict[str, Any]], cons: Constraints, scenario: str | None = None
              ) -> tuple[list[Recommendation], list[str]]:
    """One Recommendation per workload, and notes on workloads left out (e.g. static with --needs updates)."""
    cons.validate()
    if scenario is not None:
        names = sorted({r["scenario"]["name"] for r in runs})
        if scenario not in names:
            raise ConfigError(f"no results for scenario {scenario!r}; found: {', '.join(names) or 'none'}")
        runs = [r for r in runs if r["scenario"]["name"] == scenario]
    configs, failures = configurations(runs)
    by_wl: dict[Workload, list[dict[str, Any]]] = {}
    for r in runs:
        by_wl.setdefault(workload_of(r), []).append(r)
    recs: list[Recommendation] = []
    notes: list[str] = []
    for wl in sorted(by_wl, key=lambda w: (w.scenario, w.size or 0, w.scenario_hash)):
        if cons.needs_updates and wl.timeline != "daily":
            notes.append(f"{wl.title()}: left out — a static scenario, and --needs updates asks for configurations "
                         f"measured under daily updates")
            continue
        mine = [c for c in configs if c.workload == wl]
        feasible, rejected = [], []
        for c in mine:
            why = first_failure(c, cons)
            if why is None:
                feasible.append(c)
            else:
                rejected.append((c, why))
        feasible.sort(key=_rank_key(cons.minimise))
        rejected.sort(key=lambda cr: (-cr[0].worst_recall, cr[0].label, cr[0].policy))
        recs.append(Recommendation(wl, cons, feasible, rejected, [f for f in failures if f.workload == wl],
                                   context_line(by_wl[wl])))
    return recs, notes


# --- text output -------------------------------------------------------------------------------------
def _table(rows: list[list[str]], head: list[str]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*head).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


def ranked_rows(recommendation: Recommendation) -> tuple[list[str], list[list[str]]]:
    """The ranked table (header, rows) shared by the text output and the HTML report."""
    head = ["#", "index", "build", "search", "policy", f"worst recall@{_k(recommendation)}", "mean recall",
            "worst p99 ms", "index mem", "build s"]
    rows = [[str(i + 1), c.label, c.build_text(), c.search_text(), c.policy, f"{c.worst_recall:.3f}",
             f"{c.mean_recall:.3f}", f"{c.worst_p99_ms:.3g}", fmt_bytes(c.index_bytes), f"{c.build_seconds:.3g}"]
            for i, c in enumerate(recommendation.ranked)]
    return head, rows


def rejected_rows(recommendation: Recommendation) -> tuple[list[str], list[list[str]]]:
    head = ["index", "build", "search", "policy", "first constraint failed"]
    rows = [[c.label, c.build_text(), c.search_text(), c.policy, why] for c, why in recommendation.rejected]
    rows += [[f.label, "", "", f.policy, f"run {f.status}: {f.error}"] for f in recommendation.failed]
    return head, rows


def _k(rec: Recommendation) -> str:
    ks = {c.k for c in rec.ranked} | {c.k for c, _ in rec.rejected}
    return str(next(iter(ks))) if len(ks) == 1 else "k"


def format_text(recs: list[Recommendation], notes: list[str], cons: Constraints) -> str:
    ks = {c.k for r in recs for c in r.ranked} | {c.k for r in recs for c, _ in r.rejected}
    lines = ["Constraints: " + "; ".join(cons.describe(next(iter(ks)) if len(ks) == 1 else None)), ""]
    for rec in recs:
        lines.append(f"{rec.workload.title()} ({rec.workload.timeline}) — {rec.context}")
        w = rec.winner
        if w is not None:
            lines.append(f"  Winner: {w.short()} — {rec.why()}")
            lines.append("")
            head, rows = ranked_rows(rec)
            lines += ["  " + ln for ln in _table(rows, head)]
        else:
            lines.append(f"  {rec.why()}")
        head, rows = rejected_rows(rec)
        if rows:
            lines.append("")
            lines.append("  Rejected (the first constraint each fails):")
            lines += ["  " + ln for ln in _table(rows, head)]
        lines.append("")
    lines += notes
    return "\n".join(lines).rstrip() + "\n"


def load_runs(results_dir: Path) -> results.LoadReport:
    """Every valid result below `results_dir`; ConfigError (exit 2) when there are none at all."""
    report = results.load_dir(results_dir)
    if not report.runs:
        why = f"; {len(report.bad)} unreadable (e.g. {report.bad[0][1]})" if report.bad else ""
        raise ConfigError(f"no result files in {results_dir}{why}; run `annbench run --scenario NAME` first")
    return report


def run_command(results_dir: Path, cons: Constraints, scenario: str | None = None) -> tuple[str, int]:
    """What `annbench recommend` prints and its exit status (0: a winner exists, 1: nothing feasible)."""
    cons.validate()
    report = load_runs(results_dir)
    recs, notes = recommend(report.runs, cons, scenario)
    text = format_text(recs, notes, cons)
    if report.bad:
        text += f"\nNote: {len(report.bad)} result file(s) could not be read and were ignored " \
                f"(`annbench results verify {results_dir}`).\n"
    if not any(r.winner for r in recs):
        text += ("\nNothing meets every constraint on every step. Relax a constraint (e.g. a lower --min-recall "
                 "or a higher --max-p99-ms), or run more index settings.\n")
        return text, 1
    return text, 0


# --- command-line options shared by `annbench recommend` and `annbench plot` ------------------------------
def constraint_options(func: Any) -> Any:
    """Decorate a click command with the constraint options (`annbench recommend` and `annbench plot`)."""
    import click

    options = [
        click.option("--min-recall", type=float, default=Constraints.min_recall, show_default=True,
                     help="Lowest recall@k allowed at any search step (0–1]."),
        click.option("--max-p99-ms", type=float, default=None,
                     help="Highest single-query p99 latency (ms) allowed at any search step [default: no limit]."),
        click.option("--max-memory-gb", type=float, default=None,
                     help="Largest index memory (steady RSS − RSS before build), GB [default: no limit]."),
        click.option("--min-qps", type=float, default=None,
                     help="Lowest throughput allowed at any step: QPS of single-query client threads at the best "
                          "concurrency level measured (with p99 within --max-p99-ms when given); one client when "
                          "the scenario measured no concurrency [default: no limit]."),
        click.option("--needs", type=click.Choice(["updates"]), default=None,
                     help="'updates': only configurations that served every day of a daily (update) scenario."),
        click.option("--minimise", "--minimize", "minimise", type=click.Choice(MINIMISE), default="latency",
                     show_default=True, help="What ranks the feasible configurations: worst-step p99 latency, "
                                             "index memory or build time."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def constraints_from_options(min_recall: float, max_p99_ms: float | None, max_memory_gb: float | None,
                             needs: str | None, minimise: str, min_qps: float | None = None) -> Constraints:
    """Constraints from the options above; ConfigError (exit 2) when a value is out of range."""
    return Constraints(min_recall=min_recall, max_p99_ms=max_p99_ms, max_memory_gb=max_memory_gb,
                       needs_updates=needs == "updates", minimise=minimise, min_qps=min_qps).validate()
