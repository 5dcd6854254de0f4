"""Which index configuration to deploy: constraints in, a ranked table, a winner and every rejection out.

Owns the reading of result files as *configurations* — one (scenario, catalog size, index, build
parameters, search parameters, policy), with that setting's figures at every search step — which the
report (`annbench.report`) shares, and the `annbench recommend` verdict.

The rules, chosen so a recommendation holds on the worst day rather than on average:
- a configuration is feasible when it meets every constraint on *every* search step of its run (a policy
  that loses recall on day 5 is rejected even when its 7-day average passes);
- memory is the index's own: the anonymous memory the run's process holds after the build beyond what it
  held just before (annbench.memory), plus a database's files and server outside the process;
- ranking uses figures that hold still: on latency, a typical step's p99 (the median over search steps of
  each step's p99, itself a median over `search.rounds` rounds) with its 95 % interval; a configuration whose
  interval overlaps the best one's is *tied within noise* with it, and a tie is broken by the stated
  secondary criteria (memory, then build time, then the higher worst-step recall) — never by a gap smaller
  than the noise. Memory within 5 % and build times within 20 % (single measurements) count as ties too;
- a configuration with a step whose timings were disturbed (annbench.timing: rounds that disagree, or a
  timed thread without its core) is marked noisy wherever it is shown;
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

from annbench import results, timing
from annbench.errors import ConfigError
from annbench.results import RunRecord

MINIMISE = ("latency", "memory", "build")
_GIB = 2**30  # every memory figure and limit of annbench is in GiB (run's --max-memory-gib, fmt_bytes)


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
    # 95 % intervals of the figures above (annbench.timing); a file without rounds has the figure at both ends
    p50_ci: tuple[float, float] = (math.nan, math.nan)
    p99_ci: tuple[float, float] = (math.nan, math.nan)
    qps_ci: tuple[float, float] = (math.nan, math.nan)
    rounds: int = 1
    noise: tuple[str, ...] = ()  # why the step's timings are noisy (annbench.timing.noise_verdict); () = not noisy

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
    index_bytes: float  # the index's own memory (annbench.memory), plus a database's external bytes
    steady_bytes: float
    peak_bytes: float
    baseline_bytes: float
    saved_bytes: float
    build_seconds: float
    run: RunRecord = field(hash=False, compare=False, repr=False)
    memory_how: str = ""  # what index_bytes counts (an old file's RSS delta, or annbench.memory.HOW)
    used_build_params: dict[str, Any] = field(default_factory=dict, hash=False)  # as the library used them

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
    def worst_p99_step(self) -> StepFigures:
        return max(self.steps, key=lambda s: _nan_last(s.p99_ms))

    @property
    def worst_recall_step(self) -> StepFigures:
        return min(self.steps, key=lambda s: s.recall)

    @property
    def typical_p99(self) -> tuple[float, float, float]:
        """(p99, lo, hi): the median over search steps of each step's p99 and of its interval's ends.

        What ranks configurations on latency: each step's p99 is already a median over rounds, and a median
        over steps holds still where the worst step (a maximum over steps) moves with every disturbance.
        """
        return (finite_median([s.p99_ms for s in self.steps]), finite_median([s.p99_ci[0] for s in self.steps]),
                finite_median([s.p99_ci[1] for s in self.steps]))

    @property
    def noisy_steps(self) -> list[StepFigures]:
        return [s for s in self.steps if s.noise]

    def noise_mark(self) -> str:
        """"noisy (2/5 steps)" for a configuration with noisy search steps, else "—"."""
        return f"noisy ({len(self.noisy_steps)}/{len(self.steps)} steps)" if self.noisy_steps else "—"

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
        """The build parameters as given, with the value the library used where a size rule resolved one
        (`nlist=0 → 894`)."""
        return params_text({k: (f"{v} → {self.used_build_params[k]}" if k in self.used_build_params
                                and self.used_build_params[k] != v else v) for k, v in self.build_params.items()})

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


def finite_median(values: list[float]) -> float:
    """The median of the finite values (nan when there is none): a step's missing figure does not move it."""
    vals = sorted(v for v in values if math.isfinite(v))
    if not vals:
        return math.nan
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def _ci(raw: list[float] | None, figure: float) -> tuple[float, float]:
    """A stored [lo, hi] interval, or the figure at both ends for a file measured before rounds existed."""
    if raw is not None and len(raw) == 2:
        return float(raw[0]), float(raw[1])
    return figure, figure


def params_text(params: dict[str, Any]) -> str:
    return results.format_params(params)


def workload_of(run: RunRecord) -> Workload:
    return Workload(scenario=run.scenario.name, scenario_hash=run.scenario.hash, dataset_hash=run.dataset.hash,
                    size=run.index.size, timeline=run.scenario.timeline)


def _num(value: float | None, default: float = math.nan) -> float:
    return float(value) if value is not None else default


def _step_figures(step: results.Step, s: results.SearchSetting) -> StepFigures:
    lat, ci = s.latency_ms, s.latency_ms_ci95
    p50, p99, qps = float(lat.p50), float(lat.p99), float(s.qps)
    return StepFigures(
        day=step.day, live=step.live, queries=step.count, recall=float(s.recall),
        hit_at_k=s.hit_at_k, p_at_k=s.p_at_k, p50_ms=p50, p99_ms=p99, qps=qps, leaks=s.leaks or 0,
        mean_ms=_num(lat.mean), concurrency=_levels(s.concurrency or []),
        p50_ci=_ci(ci.p50 if ci else None, p50), p99_ci=_ci(ci.p99 if ci else None, p99),
        qps_ci=_ci(s.qps_ci95, qps), rounds=s.rounds or 1,
        noise=tuple(s.noise.reasons) if s.noise is not None and s.noise.noisy else ())


def configurations(runs: Iterable[RunRecord]) -> tuple[list[Config], list[Failure]]:
    """Every (run, search setting) of the ok runs as a Config; the runs that failed or timed out apart."""
    configs: list[Config] = []
    failures: list[Failure] = []
    for run in runs:
        wl = workload_of(run)
        index = run.index
        label = index.label or index.family
        if not run.ok:
            failures.append(Failure(wl, run.run_id, label, index.family, index.policy, run.status,
                                    run.error or "no error recorded", str(run.path or "")))
            continue
        per_setting: dict[str, list[StepFigures]] = {}
        params_of: dict[str, dict[str, Any]] = {}
        for step in run.search_steps:
            for s in step.settings:
                key = json.dumps(s.params, sort_keys=True)
                params_of[key] = s.params
                per_setting.setdefault(key, []).append(_step_figures(step, s))
        mem = run.memory
        # a database's files and its server's RSS live outside the run's process: they count as memory
        external = float(sum((mem.external_bytes or {}).values()))
        build_s = sum(st.seconds for st in run.steps if st.op == "build")
        # the index's own memory (annbench.memory); a file written before it existed has only the RSS delta
        how = mem.index_bytes_how or "RSS after build − before (counts the dataset's file pages too)"
        for key, steps in per_setting.items():
            configs.append(Config(
                workload=wl, run_id=run.run_id, name=label.split("[")[0], label=label, family=index.family,
                build_params=dict(index.build_params), search_params=dict(params_of[key]),
                policy=index.policy, k=run.scenario.k, steps=tuple(steps),
                index_bytes=_num(mem.own_bytes) + external,
                steady_bytes=_num(mem.rss_steady_bytes) + external,
                peak_bytes=_num(mem.rss_peak_bytes), baseline_bytes=_num(mem.rss_baseline_bytes),
                saved_bytes=_num(mem.saved_bytes), build_seconds=build_s, run=run, memory_how=how,
                used_build_params=dict(index.build_params_used or {})))
    return configs, failures


def _levels(levels: list[results.ClientLoad]) -> tuple[LevelFigures, ...]:
    """The `concurrency` list of a search setting (annbench.concurrency.measure_levels) as LevelFigures."""
    out = [LevelFigures(threads=lv.threads, qps=float(lv.qps), p50_ms=float(lv.latency_ms.p50),
                        p95_ms=float(lv.latency_ms.p95), p99_ms=float(lv.latency_ms.p99),
                        cpu_utilisation=_num(lv.cpu_utilisation),
                        batch_qps=_num(lv.batch.qps if lv.batch is not None else None),
                        free_cores=_num(lv.free_cores))
           for lv in levels]
    return tuple(sorted(out, key=lambda lv: lv.threads))


# --- constraints and the verdict ---------------------------------------------------------------------
@dataclass(frozen=True)
class Constraints:
    min_recall: float = 0.9
    max_p99_ms: float | None = None
    max_memory_gib: float | None = None  # GiB (2**30 bytes), as `run --max-memory-gib` and every printed size
    needs_updates: bool = False
    minimise: str = "latency"
    min_qps: float | None = None
    min_p_at_k: float | None = None  # product precision@k: the share of the k answers that are the query's product

    def validate(self) -> Constraints:
        """Raise ConfigError (exit 2) on a value no configuration could be measured against."""
        if not (0.0 < self.min_recall <= 1.0):
            raise ConfigError(f"--min-recall must be in (0, 1], got {self.min_recall:g}")
        if self.max_p99_ms is not None and not self.max_p99_ms > 0:
            raise ConfigError(f"--max-p99-ms must be > 0, got {self.max_p99_ms:g}")
        if self.max_memory_gib is not None and not self.max_memory_gib > 0:
            raise ConfigError(f"--max-memory-gib must be > 0, got {self.max_memory_gib:g}")
        if self.min_qps is not None and not (self.min_qps > 0 and math.isfinite(self.min_qps)):
            raise ConfigError(f"--min-qps must be a positive number, got {self.min_qps:g}")
        if self.min_p_at_k is not None and not (0.0 < self.min_p_at_k <= 1.0):
            raise ConfigError(f"--min-p-at-k must be in (0, 1], got {self.min_p_at_k:g}")
        if self.minimise not in MINIMISE:
            raise ConfigError(f"--minimise must be one of {', '.join(MINIMISE)}, got {self.minimise!r}")
        return self

    def describe(self, k: int | None = None) -> list[str]:
        at = f"@{k}" if k else ""
        out = [f"recall{at} ≥ {self.min_recall:g} on every search step"]
        if self.min_p_at_k is not None:
            out.append(f"P{at} (answers of the query's own product) ≥ {self.min_p_at_k:g} on every search step")
        if self.max_p99_ms is not None:
            out.append(f"p99 latency ≤ {self.max_p99_ms:g} ms on every search step")
        if self.min_qps is not None:
            under = f" with p99 ≤ {self.max_p99_ms:g} ms under that load" if self.max_p99_ms is not None else ""
            out.append(f"≥ {self.min_qps:g} QPS from single-query client threads{under}, at the best concurrency "
                       "level measured, on every step that measured concurrency (one client when none did)")
        if self.max_memory_gib is not None:
            out.append(f"index memory ≤ {self.max_memory_gib:g} GiB")
        if self.needs_updates:
            out.append("serves daily updates (an ok run of a daily scenario)")
        out.append(f"minimise {OBJECTIVES[self.minimise][0]}")
        return out


# One measurement each: sizes within 5 % (allocator and page granularity) and build times within 20 % (one
# timed build on a shared machine) are not told apart, as latencies inside their 95 % intervals are not.
MEMORY_TOLERANCE = 0.05
BUILD_TOLERANCE = 0.20


def _band(x: float, tol: float) -> tuple[float, float, float]:
    return x, x / (1 + tol / 2), x * (1 + tol / 2)


# objective name → (what it is, figure as (value, lo, hi); lower is better)
OBJECTIVES = {
    "latency": ("p99 latency of a typical search step (median over steps, 95 % interval)", lambda c: c.typical_p99),
    "memory": ("index memory", lambda c: _band(c.index_bytes, MEMORY_TOLERANCE)),
    "build": ("build time", lambda c: _band(c.build_seconds, BUILD_TOLERANCE)),
}


SHORT = {"latency": "p99 latency", "memory": "index memory", "build": "build time"}


def _objective_text(c: Config, minimise: str) -> str:
    if minimise == "latency":
        v, lo, hi = c.typical_p99
        return f"{v:.3g} ms [{lo:.3g}–{hi:.3g}]" if lo != hi else f"{v:.3g} ms"
    if minimise == "memory":
        return fmt_bytes(c.index_bytes)
    return f"{c.build_seconds:.3g} s"


def within_noise(a: Config, b: Config, minimise: str) -> bool:
    """Whether a and b cannot be told apart on the objective: their intervals (or tolerance bands) overlap."""
    _, alo, ahi = OBJECTIVES[minimise][1](a)
    _, blo, bhi = OBJECTIVES[minimise][1](b)
    if not all(math.isfinite(x) for x in (alo, ahi, blo, bhi)):
        return False
    return timing.overlap((alo, ahi), (blo, bhi))


def tie_break_order(minimise: str) -> list[str]:
    """The stated secondary criteria inside a tie: the other objectives, latency before memory before build."""
    return [m for m in MINIMISE if m != minimise]


def _pick(ties: list[Config], minimise: str) -> Config:
    """The configuration a tie set recommends: narrowed by each secondary criterion in turn (keeping every
    configuration within that criterion's noise of the best), then the higher worst-step recall, then the name."""
    pool = list(ties)
    for crit in tie_break_order(minimise):
        best = min(pool, key=lambda c, k=crit: _nan_last(OBJECTIVES[k][1](c)[0]))
        pool = [c for c in pool if c is best or within_noise(c, best, crit)]
    return min(pool, key=lambda c: (-c.worst_recall, _nan_last(OBJECTIVES[minimise][1](c)[0]), c.label,
                                    c.search_text(), c.policy))


def fmt_bytes(b: float) -> str:
    if not math.isfinite(b):
        return "?"
    if abs(b) >= 2**30:
        return f"{b / 2**30:.2f} GiB"
    return f"{b / 2**20:.1f} MiB"


def first_failure(c: Config, cons: Constraints) -> str | None:
    """The first constraint `c` fails, in the order recall, p99, QPS, memory, updates; None when feasible.

    The reason gives the worst step's figure (the one that decides), with its interval where it has one.
    """
    what = "day" if c.workload.timeline == "daily" else "step"
    s = c.worst_recall_step
    if not s.recall >= cons.min_recall:
        tail = f" (mean over {len(c.steps)} steps {c.mean_recall:.3f})" if len(c.steps) > 1 else ""
        return f"recall@{c.k} {s.recall:.3f} < {cons.min_recall:g} on worst {what} {s.day}{tail}"
    if cons.min_p_at_k is not None:
        p = c.worst_p_at_k
        if p is None:
            return f"P@{c.k} not measured (the dataset has no product labels)"
        if not p >= cons.min_p_at_k:
            return f"P@{c.k} {p:.3f} < {cons.min_p_at_k:g} on its worst {what}"
    if cons.max_p99_ms is not None:
        s = c.worst_p99_step
        if not s.p99_ms <= cons.max_p99_ms:
            lo, hi = s.p99_ci
            band = f" [95 % {lo:.3g}–{hi:.3g}]" if lo != hi else ""
            near = "; the limit is inside the noise" if lo <= cons.max_p99_ms else ""
            noisy = "; that step was noisy" if s.noise else ""
            return f"p99 {s.p99_ms:.3g} ms{band} > {cons.max_p99_ms:g} ms on worst {what} {s.day}{near}{noisy}"
    if cons.min_qps is not None:
        served = [(st.serving_qps(cons.max_p99_ms), st) for st in c.qps_steps()]
        (got, threads), st = min(served, key=lambda x: x[0][0])
        if not got >= cons.min_qps:
            how = (f"best of {len(st.concurrency)} concurrency level(s)" if st.concurrency
                   else "1 client; no concurrency measured")
            if cons.max_p99_ms is not None:
                how += f", p99 ≤ {cons.max_p99_ms:g} ms" + ("" if threads else ": no level keeps it")
            return f"QPS {got:,.0f} < {cons.min_qps:g} on worst {what} {st.day} ({how})"
    if cons.max_memory_gib is not None and not c.index_bytes <= cons.max_memory_gib * _GIB:
        return f"index memory {c.index_bytes / _GIB:.3g} GiB > {cons.max_memory_gib:g} GiB"
    if cons.needs_updates and c.workload.timeline != "daily":
        return "not measured under updates (static scenario)"
    return None


def closest(configs: list[Config], cons: Constraints) -> list[str]:
    """For each constraint, the configuration that comes closest to meeting it, with its worst-step figure."""
    if not configs:
        return []
    out = []
    c = max(configs, key=lambda x: x.worst_recall)
    out.append(f"recall ≥ {cons.min_recall:g}: closest {c.short()}, worst-step recall@{c.k} {c.worst_recall:.3f}")
    if cons.min_p_at_k is not None:
        c = max(configs, key=lambda x: -1.0 if x.worst_p_at_k is None else x.worst_p_at_k)
        got = "not measured" if c.worst_p_at_k is None else f"{c.worst_p_at_k:.3f}"
        out.append(f"P@k ≥ {cons.min_p_at_k:g}: closest {c.short()}, worst-step P@{c.k} {got}")
    if cons.max_p99_ms is not None:
        c = min(configs, key=lambda x: _nan_last(x.worst_p99_ms))
        out.append(f"p99 ≤ {cons.max_p99_ms:g} ms: closest {c.short()}, worst-step p99 {c.worst_p99_ms:.3g} ms")
    if cons.min_qps is not None:
        def served(x: Config) -> float:
            return min(st.serving_qps(cons.max_p99_ms)[0] for st in x.qps_steps())
        c = max(configs, key=served)
        out.append(f"QPS ≥ {cons.min_qps:g}: closest {c.short()}, worst-step {served(c):,.0f} QPS")
    if cons.max_memory_gib is not None:
        c = min(configs, key=lambda x: _nan_last(x.index_bytes))
        out.append(f"memory ≤ {cons.max_memory_gib:g} GiB: closest {c.short()}, {fmt_bytes(c.index_bytes)}")
    return out


@dataclass
class Recommendation:
    """The verdict for one workload."""

    workload: Workload
    constraints: Constraints
    ranked: list[Config]  # the recommended configuration first, then the rest of its tie set, then the others
    rejected: list[tuple[Config, str]]
    failed: list[Failure]
    context: str  # dataset, size, k, machine, threads
    ties: list[Config] = field(default_factory=list)  # the winner and every configuration within its noise

    @property
    def winner(self) -> Config | None:
        return self.ranked[0] if self.ranked else None

    @property
    def noisy(self) -> list[Config]:
        """Configurations of the tie set (or the winner) with a search step whose timings were disturbed."""
        return [c for c in (self.ties or self.ranked[:1]) if c.noisy_steps]

    def why(self) -> str:
        """Why the winner (outright, or picked from a tie within the noise), or why nothing is feasible."""
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
            near = closest([c for c, _ in self.rejected], cons)
            return f"No feasible configuration: all {n} fail ({counts})." + (
                " Closest to each constraint — " + "; ".join(near) + "." if near else "")
        w = self.ranked[0]
        feasible = f"{len(self.ranked)} configuration{'s' if len(self.ranked) != 1 else ''} meeting every " \
                   f"constraint on every step"
        if len(self.ties) > 1:
            crit = ", then ".join(SHORT[m] for m in tie_break_order(cons.minimise))
            line = (f"tied within noise: {len(self.ties)} of {feasible} are within the best one's noise on "
                    f"{SHORT[cons.minimise]} "
                    f"({'; '.join(f'{c.short()} {_objective_text(c, cons.minimise)}' for c in self.ties)}); "
                    f"picked by {crit}, then the higher worst-step recall; worst-step recall@{w.k} "
                    f"{w.worst_recall:.3f}")
        else:
            line = (f"lowest {what} ({_objective_text(w, cons.minimise)}) of {feasible}; worst-step recall@{w.k} "
                    f"{w.worst_recall:.3f}")
            if len(self.ranked) > 1:
                r = self.ranked[1]
                line += f"; runner-up {r.short()} ({_objective_text(r, cons.minimise)}), outside the noise"
        noisy = self.noisy
        if noisy:
            reasons_seen = sorted({r for c in noisy for st in c.noisy_steps for r in st.noise})
            line += (f". NOISY: {len(noisy)} of these configurations had disturbed timing steps "
                     f"({reasons_seen[0]}{' …' if len(reasons_seen) > 1 else ''}); rerun on a quiet machine "
                     "before trusting the latency ranking")
        return line + "."


def _reason_kind(reason: str) -> str:
    for kind in ("QPS", "recall", "p99", "memory", "updates"):
        if kind in reason:
            return kind
    return "other"


def _rank_key(minimise: str):  # noqa: ANN202 - a sort key
    objective = OBJECTIVES[minimise][1]

    def key(c: Config) -> tuple[float, ...]:
        # equal figures: the safer recall first, then the faster, then the smaller
        return (_nan_last(objective(c)[0]), -c.worst_recall, _nan_last(c.worst_p99_ms), _nan_last(c.index_bytes))

    return key


def rank(feasible: list[Config], minimise: str) -> tuple[list[Config], list[Config]]:
    """(ranked, ties): the feasible configurations by their figure, the recommended one first; `ties` is the
    best figure's configuration and every other whose interval overlaps it, in the order they were picked."""
    ordered = sorted(feasible, key=_rank_key(minimise))
    if not ordered:
        return [], []
    best = ordered[0]
    ties = [c for c in ordered if c is best or within_noise(c, best, minimise)]
    pick = _pick(ties, minimise)
    ties = [pick] + [c for c in ties if c is not pick]
    rest = [c for c in ordered if all(c is not t for t in ties)]
    return ties + rest, ties


def _nan_last(x: float) -> float:
    return math.inf if not math.isfinite(x) else x


def context_line(runs: Sequence[RunRecord]) -> str:
    """Dataset, size, k, machine and threads of a set of runs, for captions and the text verdict."""
    if not runs:
        return ""
    first = runs[0]
    ds = first.dataset
    sizes = sorted({r.index.size for r in runs if r.index.size})
    n = f"n={sizes[0]:,}" if len(sizes) == 1 else (f"n={sizes[0]:,}–{sizes[-1]:,}" if sizes else f"n={ds.n:,}")
    lives = [st.live for r in runs for st in r.search_steps]
    live = f" (live {min(lives):,}–{max(lives):,})" if lives and first.scenario.timeline == "daily" else ""
    cpus = sorted({r.machine.cpu or "?" for r in runs})
    cores = sorted({r.machine.cores for r in runs if r.machine.cores})
    threads = sorted({r.threads for r in runs})
    machine = " / ".join(cpus) + (f" ({'/'.join(map(str, cores))} cores)" if cores else "")
    if len(cpus) > 1:
        machine += " — MIXED MACHINES"
    return (f"dataset {ds.name} {n}{live} × {ds.dim} {ds.metric}"
            f" · k={first.scenario.k} · {machine} · "
            f"{'/'.join(map(str, threads)) or '?'} thread{'s' if threads != [1] else ''}")


def recommend(runs: Sequence[RunRecord], cons: Constraints, scenario: str | None = None
              ) -> tuple[list[Recommendation], list[str]]:
    """One Recommendation per workload, and notes on workloads left out (e.g. static with --needs updates)."""
    cons.validate()
    if scenario is not None:
        names = sorted({r.scenario.name for r in runs})
        if scenario not in names:
            raise ConfigError(f"no results for scenario {scenario!r}; found: {', '.join(names) or 'none'}")
        runs = [r for r in runs if r.scenario.name == scenario]
    configs, failures = configurations(runs)
    by_wl: dict[Workload, list[RunRecord]] = {}
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
        recs.append(verdict(wl, mine, cons, [f for f in failures if f.workload == wl], context_line(by_wl[wl])))
    return recs, notes


def verdict(wl: Workload, configs: list[Config], cons: Constraints, failures: list[Failure],
            context: str) -> Recommendation:
    """The Recommendation for one workload's configurations: the feasible ranked, the others with why."""
    feasible, rejected = [], []
    for c in configs:
        why = first_failure(c, cons)
        if why is None:
            feasible.append(c)
        else:
            rejected.append((c, why))
    ranked, ties = rank(feasible, cons.minimise)
    rejected.sort(key=lambda cr: (-cr[0].worst_recall, cr[0].label, cr[0].policy))
    return Recommendation(wl, cons, ranked, rejected, failures, context, ties=ties)


# --- text output -------------------------------------------------------------------------------------
def _table(rows: list[list[str]], head: list[str]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*head).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


def ranked_rows(recommendation: Recommendation) -> tuple[list[str], list[list[str]]]:
    """The ranked table (header, rows) shared by the text output and the HTML report."""
    head = ["#", "index", "build", "search", "policy", f"worst recall@{_k(recommendation)}", "mean recall",
            "p99 ms typical [95 %]", "worst p99 ms", "index mem", "build s", "noise"]
    ties = recommendation.ties
    rows = []
    for i, c in enumerate(recommendation.ranked):
        v, lo, hi = c.typical_p99
        mark = "tie" if len(ties) > 1 and any(c is t for t in ties) else ""
        if c.noisy_steps:
            mark = (mark + " " if mark else "") + c.noise_mark()
        rows.append([str(i + 1), c.label, c.build_text(), c.search_text(), c.policy, f"{c.worst_recall:.3f}",
                     f"{c.mean_recall:.3f}", f"{v:.3g} [{lo:.3g}–{hi:.3g}]", f"{c.worst_p99_ms:.3g}",
                     fmt_bytes(c.index_bytes), f"{c.build_seconds:.3g}", mark or "—"])
    return head, rows


def rejected_rows(recommendation: Recommendation) -> tuple[list[str], list[list[str]]]:
    head = ["index", "build", "search", "policy", "first constraint failed (worst step)"]
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
def memory_option(help_text: str) -> Any:
    """`--max-memory-gib G` (GiB: 2**30 bytes) into `max_memory_gib`; `run`, `plot` and `recommend` share it.

    Its old name `--max-memory-gb` (which meant GiB in `run` but 10**9 bytes in `plot` and `recommend`)
    is still accepted, now in GiB everywhere, and no longer shown by --help.
    """
    import click  # deferred, as in constraint_options

    class OldNamesHidden(click.Option):
        def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
            names = self.opts
            self.opts = names[:1]  # --help shows the current name only
            try:
                return super().get_help_record(ctx)
            finally:
                self.opts = names

    return click.option("--max-memory-gib", "--max-memory-gb", "max_memory_gib", cls=OldNamesHidden, type=float,
                        default=None, metavar="GIB", help=help_text)


def constraint_options(func: Any) -> Any:
    """Decorate a click command with the constraint options (`annbench recommend` and `annbench plot`)."""
    import click

    options = [
        click.option("--min-recall", type=float, default=Constraints.min_recall, show_default=True,
                     help="Lowest recall@k allowed at any search step (0–1]."),
        click.option("--max-p99-ms", type=float, default=None,
                     help="Highest single-query p99 latency (ms) allowed at any search step [default: no limit]."),
        memory_option("Largest index memory in GiB (2^30 bytes): what the index holds in the run's process, plus "
                      "a database's files and server [default: no limit]."),
        click.option("--min-qps", type=float, default=None,
                     help="Lowest throughput allowed at any step: QPS of single-query client threads at the best "
                          "concurrency level measured (with p99 within --max-p99-ms when given); one client when "
                          "the scenario measured no concurrency [default: no limit]."),
        click.option("--min-p-at-k", type=float, default=None,
                     help="Lowest product precision@k allowed at any search step (0–1]: the share of the k answers "
                          "that are images of the query's own product (needs product labels) [default: no limit]."),
        click.option("--needs", type=click.Choice(["updates"]), default=None,
                     help="'updates': only configurations that served every day of a daily (update) scenario."),
        click.option("--minimise", "--minimize", "minimise", type=click.Choice(MINIMISE), default="latency",
                     show_default=True, help="What ranks the feasible configurations: a typical step's p99 latency "
                                             "(with its 95 % interval; overlapping intervals are ties), index "
                                             "memory or build time."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def constraints_from_options(min_recall: float, max_p99_ms: float | None, max_memory_gib: float | None,
                             needs: str | None, minimise: str, min_qps: float | None = None,
                             min_p_at_k: float | None = None) -> Constraints:
    """Constraints from the options above; ConfigError (exit 2) when a value is out of range."""
    return Constraints(min_recall=min_recall, max_p99_ms=max_p99_ms, max_memory_gib=max_memory_gib,
                       needs_updates=needs == "updates", minimise=minimise, min_qps=min_qps,
                       min_p_at_k=min_p_at_k).validate()
