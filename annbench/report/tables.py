"""The report's derived data: what each figure and table shows, the tables themselves, and the notes.

Owns everything the report computes from result documents and `annbench.recommend.Config`s that is not
drawing or markup: the report's own record of what it wrote (`Report`, `ScenarioReport`, `FigureInfo`),
the configurations table and the notes under it (what memory and timing columns count), the catalog-size
points (the cheapest setting reaching a recall target per size), the upkeep, concurrency and
search-while-updating tables, which indexes do not scale with client threads and why, and the sanity
notes ("worth a second look"). Tables are (head, rows) of strings; `annbench.report.page` lays them out.
Nothing here imports matplotlib.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annbench import memory, timing
from annbench.forecast import FAR
from annbench.projection import Projection, project
from annbench.recommend import Config, Failure, Recommendation, fmt_bytes, params_text
from annbench.results import ClientLoad, RunRecord, Step

SCALES = 1.2  # QPS gained from the fewest to the most client threads below which an index "does not scale"


# --- what the report wrote ----------------------------------------------------------------------------------
@dataclass
class FigureInfo:
    """One written figure: where it is, what it shows, and how many points each plotted group has."""

    key: str
    title: str
    caption: str
    png: Path
    svg: Path
    points: dict[str, int] = field(default_factory=dict)  # SVG gid → number of plotted points

    @property
    def n_points(self) -> int:
        return sum(self.points.values())


@dataclass
class ScenarioReport:
    name: str
    timeline: str
    context: str
    figures: list[FigureInfo]
    configs: list[Config]
    notes: list[str]
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)  # (title, head, rows)


@dataclass
class Report:
    out_dir: Path
    index_html: Path
    scenarios: list[ScenarioReport]
    recommendations: list[Recommendation]
    rec_notes: list[str]
    failures: list[Failure]
    bad: list[tuple[Path, str]]

    @property
    def figures(self) -> list[FigureInfo]:
        return [f for s in self.scenarios for f in s.figures]


# --- shared by the figures and the tables ------------------------------------------------------------
def config_key(c: Config) -> tuple[str, str]:
    """A configuration's identity across `recommend` calls (which build their own Config objects)."""
    return c.run_id, json.dumps(c.search_params, sort_keys=True)


def rounds_text(configs: Sequence[Config]) -> str:
    """How many timing rounds the configurations' search steps had: "3 rounds", "2–5 rounds"."""
    rounds = sorted({s.rounds for c in configs for s in c.steps})
    return ("rounds" if not rounds else f"{rounds[0]} rounds" if len(rounds) == 1
            else f"{rounds[0]}–{rounds[-1]} rounds")


def is_daily(configs: Sequence[Config]) -> bool:
    """Whether any of the configurations comes from a daily (update) scenario."""
    return any(c.workload.timeline == "daily" for c in configs)


# --- memory, catalog size, upkeep, concurrency ---------------------------------------------------------
OLD_MEMORY = "older result files: RSS after build − before, which counts the dataset's file pages"


def _own_memory(c: Config) -> bool:
    """Whether `c.index_bytes` is the index's own memory (annbench.memory), not an older file's RSS delta."""
    return c.run.memory.index_bytes is not None


def library_bytes(c: Config) -> tuple[float, str] | None:
    """(bytes, what is counted) of the library's own count of its index's size, when the run recorded one."""
    lib = c.run.memory.library_bytes
    return (float(lib.bytes), lib.what) if lib is not None else None


def memory_measure(configs: Sequence[Config]) -> tuple[str, list[str]]:
    """(y label, footer sentences): what the figures' index memory is, for these configurations' files."""
    own = [c for c in configs if _own_memory(c)]
    old = len(configs) - len(own)
    hows = sorted({c.run.memory.index_bytes_how or memory.HOW for c in own})
    ext = " plus a database's files and server outside the process"
    if own and not old:
        label = "index memory (MiB, log):\nheld by the index in the run's process"
        lines = [f"Index memory is what the index holds in the run's process (annbench.memory): "
                 f"{'; '.join(hows)};{ext}."]
    elif old and not own:
        label = "index memory (MiB, log):\nRSS after build − before (older files)"
        lines = [f"Index memory here comes from {OLD_MEMORY} (and the interpreter's own growth), so indexes of "
                 f"very different sizes can look alike;{ext}. Newer runs measure the index's own memory "
                 "(annbench.memory)."]
    else:
        label = "index memory (MiB, log):\ntwo measures, see below"
        lines = [f"Index memory of {len(own)} configuration(s) is what the index holds in the run's process "
                 f"(annbench.memory): {'; '.join(hows)}. The other {old} come from {OLD_MEMORY}, so they read high "
                 f"and are not comparable with the first;{ext}."]
    if any("pq" in (c.label + " " + c.build_text()).lower() for c in configs):
        lines.append("faiss IVF-PQ under L2 includes its precomputed distance table (nlist·m·256·4 bytes): "
                     "real serving memory, counted in both the measurement and the library's own count.")
    return label, lines


def catalog_points(configs: Sequence[Config], target: float) -> dict[str, list[tuple[int, Config, bool]]]:
    """Per index name: for each size, the cheapest (lowest p99) setting reaching `target` recall, or — when
    none does — the setting with the highest recall, flagged as missing the target."""
    out: dict[str, list[tuple[int, Config, bool]]] = {}
    by: dict[tuple[str, int], list[Config]] = {}
    for c in configs:
        if c.workload.size:
            by.setdefault((c.name, c.workload.size), []).append(c)
    for (name, size), group in sorted(by.items()):
        reach = [c for c in group if c.worst_recall >= target]
        if reach:
            out.setdefault(name, []).append((size, min(reach, key=lambda c: (c.worst_p99_ms, c.index_bytes)), True))
        else:
            out.setdefault(name, []).append((size, max(group, key=lambda c: c.worst_recall), False))
    return out


@dataclass(frozen=True)
class CatalogForecast:
    """One catalog-size curve extended to size n: the series of the setting drawn at the curve's largest size,
    forecast at n (`at_n`) and at that largest size (`at_start`: the 95 % interval where the band starts)."""

    n: int
    start: int  # the curve's largest measured size
    at_n: Projection
    at_start: Projection


def catalog_forecasts(configs: Sequence[Config], target: float, n: int
                      ) -> tuple[dict[str, CatalogForecast], list[str]]:
    """Per index name of `catalog_points`: the forecast to n of the setting drawn at its largest size, and the
    names whose setting there was measured at fewer than three sizes (no forecast)."""
    points = catalog_points(configs, target)
    at_n, _ = project(list(configs), n)
    out: dict[str, CatalogForecast] = {}
    missing: list[str] = []
    at_start: dict[int, list[Projection]] = {}
    for name, pts in points.items():
        size, last, _ok = pts[-1]
        p = next((q for q in at_n if q.largest is last), None)
        if p is None:
            missing.append(name)
            continue
        if size not in at_start:
            at_start[size] = project(list(configs), size)[0]
        s = next(q for q in at_start[size] if q.largest is last)
        out[name] = CatalogForecast(n, size, p, s)
    return out, missing


def forecast_note(n: int, largest: int, missing: Sequence[str] = ()) -> str:
    """What a catalog-size figure extended to n says under it."""
    note = (f"Dashed: forecast to n={n:,} (law per curve, 95 % band); hollow marker: the largest size predicted "
            "from the others.")
    if largest and n > FAR * largest:
        note += (f" n={n:,} is {n / largest:.0f}× the largest measured size ({largest:,}): the forecast is far "
                 "beyond the measured range.")
    if missing:
        note += f" Not forecast (the setting at the largest size has fewer than 3 sizes): {', '.join(missing)}."
    return note


def is_runbook(runs: Sequence[RunRecord]) -> bool:
    """True when every run replays a big-ann runbook, whose 'days' are the runbook's step numbers."""
    return bool(runs) and all(r.scenario.runbook for r in runs)


def update_costs(run: RunRecord) -> dict[str, dict[int, float]]:
    """Seconds per day of each maintenance op (insert, delete, update, rebuild) of one run, and the build."""
    out: dict[str, dict[int, float]] = {}
    for st in run.steps:
        # an ingest step's seconds are its write calls (and lock waits), applied while clients searched
        if st.op in ("insert", "delete", "update", "ingest", "rebuild", "build", "maintain"):
            op = "rebuild" if st.op == "maintain" else st.op  # a database's optimize / reindex / vacuum
            out.setdefault(op, {})
            out[op][st.day] = out[op].get(st.day, 0.0) + float(st.seconds)
    return out


def scaling(c: Config) -> tuple[int, int, float, float, float] | None:
    """(fewest, most client threads, QPS ratio most/fewest, cores busy and cores free at most) of one
    configuration, worst step figures; None when it measured fewer than two levels."""
    levels = c.concurrency_levels
    if len(levels) < 2:
        return None
    lo, hi = c.worst_level(levels[0]), c.worst_level(levels[-1])
    assert lo is not None and hi is not None
    return (levels[0], levels[-1], hi.qps / lo.qps if lo.qps > 0 else math.nan, hi.cpu_utilisation,
            hi.free_cores)


def concurrency_table(configs: Sequence[Config]) -> tuple[list[str], list[list[str]]]:
    """Per configuration and level: client QPS, p50/p99, cores busy, and batch QPS at T library threads."""
    head = ["index", "search", "policy", "client threads", "QPS", "p50 ms", "p99 ms", "cores busy",
            "cores free (control)", "batch QPS (T library threads)", "QPS vs fewest threads"]
    rows = []
    for c in sorted((c for c in configs if c.concurrency_levels), key=lambda c: (c.name, c.label, c.policy)):
        first = c.worst_level(c.concurrency_levels[0])
        for t in c.concurrency_levels:
            lv = c.worst_level(t)
            assert lv is not None and first is not None
            rows.append([c.label, c.search_text(), c.policy, str(t), _fmt(lv.qps, ",.0f"), _fmt(lv.p50_ms, ".3g"),
                         _fmt(lv.p99_ms, ".3g"), _fmt(lv.cpu_utilisation, ".2f"), _fmt(lv.free_cores, ".2f"),
                         _fmt(lv.batch_qps, ",.0f"),
                         f"×{lv.qps / first.qps:.2f}" if first.qps > 0 else "—"])
    return head, rows


def scaling_notes(configs: Sequence[Config]) -> list[str]:
    """One line per (index, policy) whose best setting does not gain QPS with client threads, and why."""
    notes = []
    groups: dict[tuple[str, str], list[tuple[Config, tuple[int, int, float, float, float]]]] = {}
    for c in configs:
        sc = scaling(c)
        if sc is not None:
            groups.setdefault((c.name, c.policy), []).append((c, sc))
    for (name, policy), items in sorted(groups.items()):
        c, (lo, hi, ratio, cores, free) = max(items, key=lambda it: it[1][2])
        if ratio >= SCALES:
            continue
        # what "busy" means at `hi` threads on this machine: halfway between one core and all it could use
        half = 0.5 * (1 + min(hi, c.run.machine.cores or hi))
        what = (f"QPS ×{ratio:.2f} from {lo} to {hi} client threads at its best setting ({c.search_text()}), "
                f"{cores:.2f} cores busy")
        if free < half:
            notes.append(f"{name} · {policy}: scaling not judged — {what}, but the machine gave this process only "
                         f"{free:.2f} cores at the time (GIL-free control work in as many threads): other processes "
                         "were using the rest. Rerun on an idle machine.")
        elif cores < half:
            notes.append(f"{name} · {policy} does not scale: {what} — the searches took turns: the search holds "
                         "the GIL (or a lock) for most of its time.")
        else:
            notes.append(f"{name} · {policy} does not scale: {what} — the cores were busy without more "
                         "throughput: contention or memory bandwidth.")
    return notes


# --- search while updating -----------------------------------------------------------------------------------
def ingest_runs(runs: Sequence[RunRecord]) -> list[RunRecord]:
    """The ok runs with a search-while-updating (ingest) step, in a stable order."""
    ok = [r for r in runs if r.ok and any(st.op == "ingest" for st in r.steps)]
    return sorted(ok, key=lambda r: (r.index.label or r.index.family, r.index.policy))


def run_name(run: RunRecord) -> str:
    """"label · policy" of one run."""
    return f"{run.index.label or run.index.family} · {run.index.policy}"


def rest_recall(run: RunRecord, day: int, params: dict[str, Any] | None) -> float | None:
    """Recall of one setting at the day's search step (at rest, after the day's writes)."""
    for st in run.search_steps:
        if st.day == day:
            for s in st.settings:
                if s.params == params:
                    return float(s.recall)
    return None


@dataclass(frozen=True)
class IngestDay:
    """One day of search while updating (an `ingest` step of a run), as the figure and the table read it."""

    step: Step
    at_rest: ClientLoad  # the same client threads and setting right after the day's writes
    under_ingest: ClientLoad
    snapshot_recalls: list[float]  # the step's setting, at each snapshot taken during the writes
    rest_recall: float | None  # the same setting at the day's search step


def ingest_days(run: RunRecord) -> list[IngestDay]:
    """The run's ingest steps, in order (a step without both loads, which the run never writes, is left out)."""
    out = []
    for st in run.steps:
        if st.op == "ingest" and st.at_rest is not None and st.under_ingest is not None:
            snaps = [s.recall for sn in st.snapshots or [] for s in sn.settings if s.params == st.params]
            out.append(IngestDay(st, st.at_rest, st.under_ingest, snaps, rest_recall(run, st.day, st.params)))
    return out


def ingest_table(runs: Sequence[RunRecord]) -> tuple[list[str], list[list[str]]]:
    """One row per ingest day: write rate against target, latency and QPS at rest → during ingestion, recall."""
    head = ["index · policy", "day", "written", "target /s", "achieved /s", "write s", "lock wait s",
            "search threads", "p50 ms rest → ingest", "p99 ms rest → ingest", "QPS rest → ingest",
            "recall rest", "snapshot recall (min)", "setting", "writes"]
    rows = []
    for run in ingest_runs(runs):
        for d in ingest_days(run):
            st, rest, under = d.step, d.at_rest, d.under_ingest
            rows.append([run_name(run), str(st.day), f"{st.count:,}", _fmt(st.target_rate, ",.0f"),
                         _fmt(st.achieved_rate, ",.0f"), _fmt(st.seconds, ".3g"),
                         _fmt(st.lock_wait_seconds, ".3g"), str(st.search_threads),
                         _pair(rest.latency_ms.p50, under.latency_ms.p50, ".3g"),
                         _pair(rest.latency_ms.p99, under.latency_ms.p99, ".3g"),
                         _pair(rest.qps, under.qps, ",.0f"), _fmt(d.rest_recall, ".4f"),
                         _fmt(min(d.snapshot_recalls), ".4f") if d.snapshot_recalls else "—",
                         params_text(st.params or {}), st.guard.writes if st.guard is not None else "—"])
    return head, rows


def _external_total(run: RunRecord) -> int | None:
    """Bytes a database holds outside the process at the last search step (files, server), if it reports any."""
    last = [st.external_bytes for st in run.search_steps if st.external_bytes]
    return int(sum(last[-1].values())) if last else None


def _pair(before: float | None, after: float | None, spec: str) -> str:
    return f"{_fmt(before, spec)} → {_fmt(after, spec)}"


def upkeep_table(configs: Sequence[Config]) -> tuple[list[str], list[list[str]]]:
    """Each upkeep policy (tombstone, rebuild, a database's optimize / reindex / vacuum) against native writes
    on the same build and setting: what its calls cost and what they changed, as native → policy.

    The native run is the "before": the same days and writes with no upkeep call at all.
    """
    daily = [c for c in configs if c.workload.timeline == "daily"]

    def build(c: Config) -> str:
        return json.dumps(c.build_params, sort_keys=True)

    def same(c: Config) -> tuple[Any, ...]:  # the same workload, build and setting, whatever the policy
        return c.workload, c.label, build(c), json.dumps(c.search_params, sort_keys=True)

    native = {same(c): c for c in daily if c.policy == "native"}
    head = ["index", "setting", "policy", "upkeep calls", "s per call (median)", "recall last day",
            "worst-day recall", "p50 ms last day", "external bytes last day"]
    rows = []
    for c in sorted(daily, key=lambda c: (c.label, build(c), c.policy)):  # stable: settings keep grid order
        base = native.get(same(c))
        if c.policy == "native" or base is None:
            continue
        calls = [float(st.seconds) for st in c.run.steps if st.op in ("maintain", "rebuild")]
        ext = (_external_total(base.run), _external_total(c.run))
        last = c.steps[-1]
        before = next((s for s in base.steps if s.day == last.day), None)
        rows.append([c.label, c.search_text(), c.policy, str(len(calls)),
                     _fmt(float(np.median(calls)), ".3g") if calls else "—",
                     _pair(before.recall if before else None, last.recall, ".4f"),
                     _pair(base.worst_recall, c.worst_recall, ".4f"),
                     _pair(before.p50_ms if before else None, last.p50_ms, ".3g"),
                     " → ".join("—" if b is None else fmt_bytes(b) for b in ext) if any(ext) else "—"])
    return head, rows


# --- per scenario: notes and the configurations table ------------------------------------------------
def scenario_key(name: str) -> str:
    """A scenario name as a file-name and HTML-id fragment."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def sanity_notes(configs: Sequence[Config]) -> list[str]:
    """Numbers that cannot be right, or deserve a second look before anyone quotes them."""
    notes = []
    for c in configs:
        if c.family == "faiss-flat" and c.worst_recall < 0.999:
            notes.append(f"{c.short()}: exact search with recall {c.worst_recall:.4f} < 1 — ground truth or "
                         "distance handling is off.")
    for c in configs:
        for s in c.steps:
            # a batch call slower than a loop of single calls usually means a cold or contended batch path
            if s.p50_ms > 0 and s.qps < 0.5 * 1000.0 / s.p50_ms:
                notes.append(f"{c.short()} ({'day' if c.workload.timeline == 'daily' else 'step'} {s.day}"
                             f"{', n=' + format(c.workload.size, ',') if c.workload.size else ''}): batch QPS "
                             f"{s.qps:,.0f} is less than half the single-query rate 1/p50 = {1000 / s.p50_ms:,.0f}/s.")
                break
    noisy = [c for c in configs if c.noisy_steps]
    if noisy:
        c = noisy[0]
        notes.append(f"{len(noisy)} of {len(configs)} configurations had search steps with noisy timings (e.g. "
                     f"{c.short()}, {'day' if c.workload.timeline == 'daily' else 'step'} {c.noisy_steps[0].day}: "
                     f"{c.noisy_steps[0].noise[0]}): ringed in the figures, marked in the table; their latency and "
                     "QPS are uncertain — rerun on a quiet machine.")
    for c in configs:
        few = min((s.queries for s in c.steps), default=0)
        if 0 < few < 100:
            notes.append(f"{c.short()}: only {few} queries at a step: its p99 is about its slowest query.")
            break
    return notes


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _p99_ci_text(c: Config) -> str:
    """The worst step's p99 with its 95 % interval ("1.2 [1.1–1.4]"); the figure alone without an interval."""
    lo, hi = c.worst_p99_step.p99_ci
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo == hi:
        return _fmt(c.worst_p99_ms, ".3g")
    return f"{_fmt(c.worst_p99_ms, '.3g')} [{lo:.3g}–{hi:.3g}]"


def config_table(configs: Sequence[Config]) -> tuple[list[str], list[list[str]]]:
    """Every configuration with its worst-step figures (the p99 with its 95 % interval, a noisy mark), memory
    (the index's own, the library's own count beside it, the last day's for a daily scenario, saved bytes)
    and build time. Build parameters as the library used them (`Config.build_text`)."""
    k = configs[0].k if configs else "k"
    multi_size = len({c.workload.size for c in configs}) > 1
    daily = is_daily(configs)
    head = (["size"] if multi_size else []) + [
        "index", "build", "search", "policy", f"recall@{k}" + (" worst" if daily else ""),
        *(["recall mean"] if daily else []), f"hit@{k}", f"P@{k}", "p50 ms", "p99 ms [95 %]", "QPS", "noise",
        "index mem", "library's count", *(["index mem last day"] if daily else []),
        "steady RSS", "peak RSS", "saved", "build s", *(["leaks", "upkeep s"] if daily else [])]
    rows = []
    for c in sorted(configs, key=lambda c: (c.workload.size or 0, c.name, c.label, c.policy, c.worst_recall)):
        upkeep = sum(v for op, d in update_costs(c.run).items() if op != "build" for v in d.values())
        lib = library_bytes(c)
        last = c.run.memory.index_bytes_last_day
        rows.append(([f"{c.workload.size:,}"] if multi_size else []) + [
            c.label, c.build_text(), c.search_text(), c.policy, f"{c.worst_recall:.4f}",
            *([f"{c.mean_recall:.4f}"] if daily else []), _fmt(c.worst_hit), _fmt(c.worst_p_at_k),
            _fmt(c.worst_p50_ms, ".3g"), _p99_ci_text(c), _fmt(c.worst_qps, ",.0f"), c.noise_mark(),
            fmt_bytes(c.index_bytes) + ("" if _own_memory(c) else " (RSS Δ)"),
            fmt_bytes(lib[0]) if lib else "—",
            *([fmt_bytes(float(last)) if last is not None else "—"] if daily else []),
            fmt_bytes(c.steady_bytes), fmt_bytes(c.peak_bytes), fmt_bytes(c.saved_bytes),
            _fmt(c.build_seconds, ".3g"), *([str(c.total_leaks), _fmt(upkeep, ".3g")] if daily else [])])
    return head, rows


def config_table_notes(configs: Sequence[Config]) -> list[str]:
    """What the configurations table's memory and timing columns count, for the lines under it."""
    _label, lines = memory_measure(configs)
    out = [" ".join(lines)]
    if not all(_own_memory(c) for c in configs):
        out.append("\"(RSS Δ)\" marks index memory from an older result file: RSS after build − before.")
    whats: dict[str, set[str]] = {}
    for c in configs:
        lib = library_bytes(c)
        if lib is not None:
            whats.setdefault(c.family, set()).add(lib[1])
    if whats:
        out.append("library's count: the library's own count of its index's size, beside the measurement — "
                   + "; ".join(f"{fam}: {' / '.join(sorted(w))}" for fam, w in sorted(whats.items())) + ".")
    out.append(f"p99 ms: the worst step's p99 (each step's a median over {rounds_text(configs)}) with its 95 % "
               "interval where the file has one; noise: the configuration's search steps whose timings were noisy "
               f"(rounds disagree by > {timing.ROUND_SPREAD:.0%}, or the timed thread had < "
               f"{timing.MIN_CPU_SHARE:g} of its core) — rerun those on a quiet machine.")
    return out
