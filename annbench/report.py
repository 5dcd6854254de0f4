"""The report: matplotlib figures (PNG + SVG) and an `index.html` that shows them with their tables.

Owns `annbench plot RESULTS_DIR [--out DIR]` and `python -m annbench.report --thumbnail FILE RESULTS_DIR`
(the README's thumbnail). Reads result files through `annbench.recommend.configurations` and never
writes to them: every derived figure (Pareto fronts, worst steps, the recommendation) is computed here.

Figures, per scenario (each states the dataset, its size, k, the machine and the threads):
- recall vs single-query p50 and p99 latency, and vs batch QPS: one Pareto front per index name and
  policy, dominated points fainter, recall on a logit axis;
- recall vs memory (index memory = what the index holds in the run's process: anonymous memory after the
  build − just before, annbench.memory; an older result file's RSS delta; the library's own count of its
  size beside it, where it reports one), and the run's peak RSS;
- catalog size curves (static scenarios with several sizes): latency, memory and build time at a recall
  target, with the sizes where an index stops reaching it marked;
- day by day (daily scenarios): recall@k, hit@k, p99 and leaked ids, every (policy, setting) its own line;
  and the upkeep per day (insert, delete, update, rebuild seconds);
- label metrics (when the dataset has product labels): hit@k and P@k beside recall@k, with the exact
  search's value as the ceiling the embedding sets;
- throughput under concurrency (`search.concurrency`): QPS against p99 at each client-thread level, one
  line per setting through its levels (VectorDBBench's curve), every index; a table beside it with the
  batch figure at the same number of library threads, and a note for each index that does not scale;
- search while updating (`timeline.concurrent_updates`): latency under ingestion against at rest, the
  ingest rate achieved against its target, and recall on the snapshots taken during ingestion.

For a daily scenario each point of a recall-vs-cost figure is a setting's *worst* search step (lowest
recall, highest latency, lowest QPS over the days): the same rule `recommend` applies.

Timings are medians over rounds with 95 % intervals (annbench.timing). A configuration with a search step
whose timings were noisy (rounds that disagree, or a timed thread without its core) is ringed in amber in
every recall-vs-cost figure (SVG group "noisy-<group>"), as is each noisy day's p99 in the day-by-day figure
("noisy-days-<row>-<n>"), and the figure's footer says how many and what noisy means. The p99 figure draws
the worst step's 95 % interval as an error bar on the points of each front and of the recommendation's tie
set ("ci-<group>"); the tie set's other members carry a small hollow star ("tied").
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from annbench import memory, metrics, timing
from annbench.errors import ConfigError
from annbench.recommend import (
    Config,
    Constraints,
    Failure,
    Recommendation,
    configurations,
    context_line,
    fmt_bytes,
    load_runs,
    params_text,
    recommend,
    rejected_rows,
)

RECALL_CLIP = 1e-4  # recall 1.0 (and 0.0) cannot sit on a logit axis: drawn at 1 − 1e-4 (1e-4)
# the generic policies, then the databases' maintenance policies (optimize, reindex, vacuum)
POLICY_MARKER = {"native": "o", "tombstone": "s", "rebuild": "^", "optimize": "v", "reindex": "D", "vacuum": "P"}
POLICY_LINE = {"native": "-", "tombstone": "--", "rebuild": ":", "optimize": "-.", "reindex": ":", "vacuum": "-."}
POLICY_COLOUR = {"native": "#1f77b4", "tombstone": "#ff7f0e", "rebuild": "#2ca02c", "optimize": "#8c564b",
                 "reindex": "#e377c2", "vacuum": "#17becf"}
OP_COLOUR = {"insert": "#1f77b4", "delete": "#d62728", "update": "#9467bd", "rebuild": "#2ca02c",
             "ingest": "#8c564b", "build": "#000000"}
SCALES = 1.2  # QPS gained from the fewest to the most client threads below which an index "does not scale"
SETTING_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DPI = 100
_RC = {
    "svg.fonttype": "none",  # text stays text in the SVG: smaller files, searchable
    "svg.hashsalt": "annbench",  # stable ids, so regenerated SVGs diff cleanly
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


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
    description: str
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


# --- helpers --------------------------------------------------------------------------------------------
def _clip_recall(x: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(x, dtype=np.float64), RECALL_CLIP, 1 - RECALL_CLIP)


def _colours(names: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    ordered = sorted(set(names))
    cmap = colormaps["tab10" if len(ordered) <= 10 else "tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(ordered)}


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _footer(fig: Any, lines: list[str]) -> None:
    """The footer every figure carries (dataset, size, k, machine, threads, how to read it), in a band the
    constrained layout keeps free."""
    width_chars = int(fig.get_figwidth() * 15)
    wrapped = [w for line in lines for w in textwrap.wrap(line, width_chars)]
    band = min(0.35, (0.12 + 0.14 * len(wrapped)) / fig.get_figheight())
    fig.get_layout_engine().set(rect=(0, band, 1, 1 - band), h_pad=0.06, w_pad=0.06)
    fig.text(0.01, 0.008, "\n".join(wrapped), fontsize=8, color="#444444", va="bottom", ha="left")


def _min_decade(ax: Any) -> None:
    """Let a log y axis span at least one decade: a flat line then looks flat, not like a cliff."""
    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo < 10:
        mid = math.sqrt(lo * hi)
        ax.set_ylim(mid / math.sqrt(10), mid * math.sqrt(10))


def _plain_log(axis: Any, subs: tuple[float, ...] = (1.0, 2.0, 5.0)) -> None:
    """Log axis labelled 0.01, 0.1, 1, 10 (not 10⁻²): people read latencies, not exponents."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.10g}" if v >= 1e-3 else f"{v:.0e}"))
    axis.set_minor_formatter(NullFormatter())


def _save(fig: Any, out_dir: Path, key: str) -> tuple[Path, Path]:
    png, svg = out_dir / f"{key}.png", out_dir / f"{key}.svg"
    fig.savefig(png, dpi=DPI)
    fig.savefig(svg)
    return png, svg


Drawing = Callable[[], tuple[Any, dict[str, int]]]  # makes one figure: (matplotlib Figure, SVG gid → points)
FIGURE_WORKERS: int | None = None  # processes drawing figures; None: one per core (1: in this process)
_PENDING: list[tuple[str, Drawing]] = []  # the drawings of draw_all, read by its forked workers


def _draw_one(i: int, out_dir: Path) -> dict[str, int]:
    key, draw = _PENDING[i]
    fig, points = draw()
    _save(fig, out_dir, key)
    return points


def draw_all(jobs: list[tuple[str, Drawing]], out_dir: Path) -> list[dict[str, int]]:
    """Draw and save every (key, drawing) as out_dir/key.png and .svg; return each one's plotted points.

    Drawing and saving (the layout runs once per format) is nearly all of a report's time, and each figure
    is independent: with more than one core the figures are made by forked workers, which inherit the
    results already in memory instead of being sent them.
    """
    global _PENDING
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    cores = FIGURE_WORKERS or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                               else (os.cpu_count() or 1))
    # lancedb's runtime thread re-starts itself in every forked child and warns on stderr: a process that
    # loaded it (never `annbench plot`; a test session may) draws one figure after another
    serial = cores < 2 or len(jobs) < 2 or "fork" not in mp.get_all_start_methods() or "lancedb" in sys.modules
    _PENDING = list(jobs)
    try:
        if serial:
            return [_draw_one(i, out_dir) for i in range(len(jobs))]
        with ProcessPoolExecutor(min(cores, len(jobs)), mp_context=mp.get_context("fork")) as pool:
            return list(pool.map(_draw_one, range(len(jobs)), [out_dir] * len(jobs)))
    finally:
        _PENDING = []


def _logit_axis(ax: Any, xs: Sequence[float]) -> None:
    ax.set_xscale("logit")
    lo = float(np.min(_clip_recall(xs))) if len(xs) else 0.5
    # widen by a margin in logit space so the lowest point is not on the frame
    lo_logit = math.log(lo / (1 - lo)) - 0.4
    ax.set_xlim(min(0.5, 1 / (1 + math.exp(-lo_logit))), 1 - RECALL_CLIP / 2)
    from matplotlib.ticker import FixedLocator, NullLocator

    ticks = [t for t in (0.1, 0.3, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 1 - RECALL_CLIP)
             if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    # the clipped end of the axis is where recall 1.0 is drawn: label it so
    ax.set_xticklabels(["1.0" if t >= 1 - RECALL_CLIP else f"{t:g}" for t in ticks], rotation=0)


def _worst_note(configs: Sequence[Config]) -> str:
    daily = [c for c in configs if c.workload.timeline == "daily"]
    if not daily:
        return "Static scenario: one search step per run."
    n = max(len(c.steps) for c in daily)
    return (f"Daily scenario: each point is one search setting at its WORST search step over {n} steps "
            "(lowest recall, highest latency, lowest QPS), not an average.")


def _clip_note(configs: Sequence[Config]) -> str:
    clipped = sum(c.worst_recall >= 1 - RECALL_CLIP for c in configs)
    return (f"Recall axis is logit: recall 1.0 is drawn at {1 - RECALL_CLIP:g} ({clipped} point(s))."
            if clipped else "Recall axis is logit.")


NOISY_COLOUR = "#e69f00"  # amber: a warning, apart from the tab10 and policy colours of the data


def _noisy_note(n: int, total: int, what: str) -> str:
    """The footer's note on noisy points ("" when none): how many, what noisy means, what to do.

    `what` completes "NOISY: n of total …, ringed in amber, …", e.g. "configurations … had a search step
    with noisy timings".
    """
    if not n:
        return ""
    return (f"NOISY: {n} of {total} {what.format(ringed='ringed in amber')} — a step is noisy when its timing "
            f"rounds disagree by more than {timing.ROUND_SPREAD:.0%} (slowest round's p50 or batch QPS against the "
            f"fastest's) or the timed thread did not have its core (CPU ÷ wall < {timing.MIN_CPU_SHARE:g}), "
            "annbench.timing. Those figures are uncertain: rerun on a quiet machine.")


def _ring(ax: Any, xs: Sequence[float], ys: Sequence[float], gid: str, label: str | None, size: float = 14) -> None:
    """The noisy mark: a hollow amber ring around each point (x already on the axis' scale)."""
    ax.plot(xs, ys, linestyle="none", marker="o", markersize=size, markerfacecolor="none",
            markeredgecolor=NOISY_COLOUR, markeredgewidth=2.0, label=label, gid=gid, zorder=4)


def _group(configs: Sequence[Config]) -> dict[tuple[str, str], list[Config]]:
    out: dict[tuple[str, str], list[Config]] = {}
    for c in configs:
        out.setdefault((c.name, c.policy), []).append(c)
    return dict(sorted(out.items()))


def _policy_count(configs: Sequence[Config]) -> int:
    return len({c.policy for c in configs})


def _group_label(name: str, policy: str, multi_policy: bool) -> str:
    return f"{name} · {policy}" if multi_policy else name


def _plot_group(ax: Any, xs: np.ndarray, ys: np.ndarray, front: np.ndarray, policy: str, colour: Any,
                label: str | None, *, linewidth: float, gid: str, points: dict[str, int],
                label_dominated: bool) -> None:
    """Draw one (index, policy) group: its Pareto front (indices `front`) as a line, the rest faint.

    `gid` is a format string with one `{}`, filled with "front" or "dominated" to name each drawn
    artist; `points` records under that name how many points it holds. `label` goes on the front
    line, and on the dominated points when the group has no front and `label_dominated` is set.
    """
    on = np.zeros(len(xs), bool)
    on[front] = True
    mk = POLICY_MARKER.get(policy, "o")
    if on.any():
        ax.plot(_clip_recall(xs[front]), ys[front], linestyle=POLICY_LINE.get(policy, "-"), marker=mk,
                color=colour, markersize=6, linewidth=linewidth, label=label, gid=gid.format("front"))
        points[gid.format("front")] = int(on.sum())
    if (~on).any():
        ax.plot(_clip_recall(xs[~on]), ys[~on], linestyle="none", marker=mk, color=colour, alpha=0.28,
                markersize=5, label=label if label_dominated and not on.any() else None,
                gid=gid.format("dominated"))
        points[gid.format("dominated")] = int((~on).sum())


# --- recall vs cost (Pareto) --------------------------------------------------------------------------
def fig_pareto(configs: Sequence[Config], cost: str, context: str, winner: Config | None = None,
               cons: Constraints | None = None, ties: Sequence[Config] = ()) -> tuple[Any, dict[str, int]]:
    """Recall (x, logit) vs a cost (y, log): one Pareto front per (index, policy); dominated points fainter.

    cost: "p50" | "p99" (worst-step single-query latency, lower is better) or "qps" (batch, higher is better).
    A configuration with a noisy search step is ringed in amber ("noisy-<group>"). On the p99 figure the
    points of each front and of the tie set `ties` (the recommendation's: the winner and every configuration
    within its noise) carry the worst step's 95 % interval as an error bar ("ci-<group>"): on every point
    the bars of a big grid would hide the points; dominated points are not candidates anyway.
    """
    value: Callable[[Config], float] = {
        "p50": lambda c: c.worst_p50_ms, "p99": lambda c: c.worst_p99_ms, "qps": lambda c: c.worst_qps}[cost]
    ylabel = {"p50": "single-query latency p50 (ms, log)", "p99": "single-query latency p99 (ms, log)",
              "qps": "batch throughput (queries/s, log)"}[cost]
    k = configs[0].k if configs else "k"
    fig = _new_figure(*((11, 6.2) if cost == "p99" else (8, 5.2)))
    ax = fig.add_subplot()
    colours = _colours([c.name for c in configs])
    multi = _policy_count(configs) > 1
    points: dict[str, int] = {}
    noisy = bars = 0
    # recommend() reads its own Configs: the tie set is matched by run and setting, not by identity
    tie_keys = {_config_key(c) for c in ties}
    win_key = _config_key(winner) if winner is not None else None
    for gi, ((name, policy), group) in enumerate(_group(configs).items()):
        xs = np.array([c.worst_recall for c in group])
        ys = np.array([value(c) for c in group])
        # lower is better for the front: QPS is turned into seconds per query
        front = metrics.pareto_front(xs, ys if cost != "qps" else 1.0 / ys)
        _plot_group(ax, xs, ys, front, policy, colours[name], _group_label(name, policy, multi), linewidth=1.4,
                    gid=f"{{}}-{gi}", points=points, label_dominated=True)
        if cost == "p99":
            on = set(front.tolist()) | {i for i, c in enumerate(group) if _config_key(c) in tie_keys}
            bars += _p99_bars(ax, [group[i] for i in sorted(on)], colours[name], f"ci-{gi}")
        rung = [i for i, c in enumerate(group) if c.noisy_steps]
        if rung:
            _ring(ax, _clip_recall(xs[rung]), ys[rung], f"noisy-{gi}", None if noisy else "noisy timings")
            points[f"noisy-{gi}"] = len(rung)
            noisy += len(rung)
    ax.set_yscale("log")
    _plain_log(ax.yaxis)
    _logit_axis(ax, [c.worst_recall for c in configs])
    ax.set_xlabel(f"recall@{k}" + (" (worst search step)" if _is_daily(configs) else "") + " — logit axis")
    ax.set_ylabel(ylabel)
    if cons is not None:
        ax.axvline(cons.min_recall, color="#888888", linestyle="--", linewidth=1)
        ax.annotate(f"min recall {cons.min_recall:g}", (cons.min_recall, 1), xycoords=("data", "axes fraction"),
                    xytext=(3, -12), textcoords="offset points", fontsize=7.5, color="#555555")
        if cost == "p99" and cons.max_p99_ms is not None:
            ax.axhline(cons.max_p99_ms, color="#888888", linestyle="--", linewidth=1)
    if winner is not None and cost in ("p50", "p99", "qps"):
        ax.plot(_clip_recall([winner.worst_recall]), [value(winner)], marker="*", markersize=18,
                markerfacecolor="none", markeredgecolor="#d62728", markeredgewidth=1.6, linestyle="none",
                label="recommended", gid="recommended")
    tied = [c for c in configs if _config_key(c) in tie_keys and _config_key(c) != win_key]
    if tied:
        ax.plot(_clip_recall([c.worst_recall for c in tied]), [value(c) for c in tied], marker="*",
                markersize=11, markerfacecolor="none", markeredgecolor="#d62728", markeredgewidth=1.0,
                linestyle="none", label="tied with it within noise", gid="tied")
    what = {"p50": "p50 latency", "p99": "p99 latency", "qps": "batch QPS"}[cost]
    # over the axes, not the figure: a figure-wide title runs into the legend on the right
    ax.set_title(f"Recall@{k} vs {what} — Pareto front per index" + (" and policy" if multi else ""),
                 fontsize=12, fontweight="bold")
    handles, labels = ax.get_legend_handles_labels()
    marks = ("recommended", "tied with it within noise", "noisy timings")  # after the indexes, not among them
    order = sorted(range(len(labels)), key=lambda i: marks.index(labels[i]) + 1 if labels[i] in marks else 0)
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside right upper", frameon=False,
               title="index · policy" if multi else "index", title_fontsize=8)
    lines = [context, _worst_note(configs) + " Faint points are dominated (another setting of the same "
             "index is at least as good on both axes). " + _clip_note(configs)]
    if bars:
        lines.append(f"Error bars: the 95 % interval of the worst step's p99 (bootstrap over {_rounds_text(configs)} "
                     "and queries, annbench.timing), on each front's points and the recommendation's tie set.")
    if tied:
        lines.append(f"Small stars: {len(tied)} configuration(s) tied with the recommended one within noise — their "
                     "intervals on the ranking figure (a typical step's p99 unless another objective is minimised) "
                     "overlap its; the recommendation picked among them by the secondary criteria.")
    if noisy:
        lines.append(_noisy_note(noisy, len(configs), "configurations, {ringed}, had a search step with noisy "
                                 "timings (a daily scenario's point is the worst step; the ring marks any noisy step)"))
    _footer(fig, lines)
    return fig, points


def _config_key(c: Config) -> tuple[str, str]:
    return c.run_id, json.dumps(c.search_params, sort_keys=True)


def _rounds_text(configs: Sequence[Config]) -> str:
    rounds = sorted({s.rounds for c in configs for s in c.steps})
    return ("rounds" if not rounds else f"{rounds[0]} rounds" if len(rounds) == 1
            else f"{rounds[0]}–{rounds[-1]} rounds")


def _p99_bars(ax: Any, configs: Sequence[Config], colour: Any, gid: str) -> int:
    """Vertical error bars: each configuration's worst step's p99 95 % interval; how many were drawn (a file
    measured before rounds existed has no interval: no bar)."""
    xs, ys, lo, hi = [], [], [], []
    for c in configs:
        y = c.worst_p99_ms
        a, b = c.worst_p99_step.p99_ci
        if all(math.isfinite(v) for v in (y, a, b)) and b > a:
            xs.append(c.worst_recall)
            ys.append(y)
            lo.append(max(y - a, 0.0))
            hi.append(max(b - y, 0.0))
    if not xs:
        return 0
    eb = ax.errorbar(_clip_recall(xs), ys, yerr=[lo, hi], fmt="none", ecolor=colour, elinewidth=1.0, capsize=2.5,
                     alpha=0.75, zorder=2)
    for art in eb.lines[2]:
        art.set_gid(gid)
    for art, end in zip(eb.lines[1], ("lo", "hi"), strict=True):  # the caps: one marker per bar and end
        art.set_gid(f"{gid}-{end}")
    return len(xs)


def _is_daily(configs: Sequence[Config]) -> bool:
    return any(c.workload.timeline == "daily" for c in configs)


OLD_MEMORY = "older result files: RSS after build − before, which counts the dataset's file pages"


def _own_memory(c: Config) -> bool:
    """Whether `c.index_bytes` is the index's own memory (annbench.memory), not an older file's RSS delta."""
    return (c.run.get("memory") or {}).get("index_bytes") is not None


def library_bytes(c: Config) -> tuple[float, str] | None:
    """(bytes, what is counted) of the library's own count of its index's size, when the run recorded one."""
    lib = (c.run.get("memory") or {}).get("library_bytes")
    if isinstance(lib, dict) and isinstance(lib.get("bytes"), (int, float)):
        return float(lib["bytes"]), str(lib.get("what") or "")
    return None


def memory_measure(configs: Sequence[Config]) -> tuple[str, list[str]]:
    """(y label, footer sentences): what the figures' index memory is, for these configurations' files."""
    own = [c for c in configs if _own_memory(c)]
    old = len(configs) - len(own)
    hows = sorted({str((c.run.get("memory") or {}).get("index_bytes_how") or memory.HOW) for c in own})
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


def fig_memory(configs: Sequence[Config], context: str) -> tuple[Any, dict[str, int]]:
    """Recall vs index memory (what the index holds in the run's process, annbench.memory; an older file's
    RSS delta) with the library's own count of its size as a dash ("lib-<group>"), and vs the run's peak RSS."""
    k = configs[0].k if configs else "k"
    fig = _new_figure(12, 5.0)
    axes = fig.subplots(1, 2)
    colours = _colours([c.name for c in configs])
    multi = _policy_count(configs) > 1
    points: dict[str, int] = {}
    floor = 2**20 / 10  # 0.1 MiB: memory deltas of tiny indexes can be ≤ 0 (page reuse); drawn at this floor
    floored = 0
    mem_label, mem_lines = memory_measure(configs)
    for ai, (ax, attr, ylabel) in enumerate(zip(
            axes, ("index_bytes", "peak_bytes"), (mem_label, "peak RSS of the run's process (MiB, log)"),
            strict=True)):
        for gi, ((name, policy), group) in enumerate(_group(configs).items()):
            xs = np.array([c.worst_recall for c in group])
            raw = np.array([getattr(c, attr) for c in group], dtype=np.float64)
            floored += int(np.sum(raw < floor))
            ys = np.maximum(raw, floor) / 2**20
            front = metrics.pareto_front(xs, ys)
            label = _group_label(name, policy, multi) if ai == 0 else None
            _plot_group(ax, xs, ys, front, policy, colours[name], label, linewidth=1.3, gid=f"mem{ai}-{{}}-{gi}",
                        points=points, label_dominated=False)
            lib = [(c.worst_recall, library_bytes(c)) for c in group]
            lib = [(x, b[0]) for x, b in lib if b is not None]
            if ai == 0 and lib:
                ax.plot(_clip_recall([x for x, _ in lib]), [max(b, floor) / 2**20 for _, b in lib], linestyle="none",
                        marker="_", markersize=14, markeredgewidth=2.2, color=colours[name], gid=f"lib-{gi}",
                        zorder=3)
                points[f"lib-{gi}"] = len(lib)
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
        _logit_axis(ax, [c.worst_recall for c in configs])
        ax.set_xlabel(f"recall@{k}" + (" (worst search step)" if _is_daily(configs) else "") + " — logit")
        ax.set_ylabel(ylabel)
    base = [c.baseline_bytes for c in configs if math.isfinite(c.baseline_bytes)]
    fig.suptitle(f"Recall@{k} vs memory", fontsize=12, fontweight="bold")
    handles, labels = axes[0].get_legend_handles_labels()
    has_lib = any(key.startswith("lib-") for key in points)
    if has_lib:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="#444444", marker="_", markersize=14, markeredgewidth=2.2,
                              linestyle="none"))
        labels.append("the library's own\ncount of its size")
    fig.legend(handles, labels, loc="outside right upper", frameon=False,
               title="index · policy" if multi else "index", title_fontsize=8)
    extra = f" RSS before build (Python, libraries, data): median {fmt_bytes(float(np.median(base)))}." if base else ""
    if floored:
        extra += " Index memory ≤ 0.1 MiB is drawn at 0.1 MiB."
    if has_lib:
        extra += (" A dash beside a point is the library's own count of its index's size (e.g. faiss's list sizes), "
                  "which leaves out allocator overhead and the adapter's tables.")
    _footer(fig, [context, *mem_lines, _worst_note(configs) + " Memory is measured once, after the build." + extra
                  + " Saved bytes are in the table."])
    return fig, points


# --- catalog size ---------------------------------------------------------------------------------------
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


def fig_catalog(configs: Sequence[Config], context: str, target: float) -> tuple[Any, dict[str, int]]:
    fig = _new_figure(12.5, 4.8)
    axes = fig.subplots(1, 3)
    data = catalog_points(configs, target)
    colours = _colours(list(data))
    k = configs[0].k if configs else "k"
    points: dict[str, int] = {}
    panels = (("p99 latency (ms, log)", lambda c: c.worst_p99_ms),
              ("index memory (MiB, log)", lambda c: max(c.index_bytes, 2**20 / 10) / 2**20),
              ("build time (s, log)", lambda c: max(c.build_seconds, 1e-4)))
    for ai, (ax, (ylabel, value)) in enumerate(zip(axes, panels, strict=True)):
        for ni, (name, pts) in enumerate(data.items()):
            col = colours[name]
            sizes = np.array([p[0] for p in pts])
            ys = np.array([value(p[1]) for p in pts])
            ok = np.array([p[2] for p in pts])
            ax.plot(sizes, ys, color=col, linewidth=1.1, alpha=0.8)
            if ok.any():
                ax.plot(sizes[ok], ys[ok], color=col, marker="o", linestyle="none", markersize=6,
                        label=name if ai == 0 else None, gid=f"cat{ai}-reach-{ni}")
                points[f"cat{ai}-reach-{ni}"] = int(ok.sum())
            if (~ok).any():
                ax.plot(sizes[~ok], ys[~ok], color=col, marker="x", linestyle="none", markersize=9,
                        markeredgewidth=2, label=None if ok.any() or ai else name, gid=f"cat{ai}-miss-{ni}")
                points[f"cat{ai}-miss-{ni}"] = int((~ok).sum())
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
        ax.set_xlabel("catalog size (vectors, log)")
        ax.set_ylabel(ylabel)
        all_sizes = sorted({p[0] for pts in data.values() for p in pts})
        ax.set_xticks(all_sizes, [f"{s:,}" for s in all_sizes])
        ax.xaxis.set_minor_locator(__import__("matplotlib.ticker", fromlist=["NullLocator"]).NullLocator())
    from matplotlib.lines import Line2D

    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(Line2D([], [], color="#444444", marker="x", linestyle="none", markersize=8, markeredgewidth=2))
    labels.append(f"no setting reaches\nrecall@{k} ≥ {target:g}")
    fig.legend(handles, labels, loc="outside right upper", frameon=False, title="index", title_fontsize=8)
    fig.suptitle(f"Catalog size: cost of the cheapest setting reaching recall@{k} ≥ {target:g}",
                 fontsize=12, fontweight="bold")
    _footer(fig, [context, f"For each index and size: the search setting with the lowest p99 among those with "
                  f"recall@{k} ≥ {target:g}; × marks a size where no setting reaches it (drawn with the "
                  "figures of its highest-recall setting) — where the index stops meeting the target."])
    return fig, points


# --- day by day -----------------------------------------------------------------------------------------
def _shades(colour: str, n: int) -> list[Any]:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    # light → dark with search effort, so the settings of one policy read as one family
    return [(r * t, g * t, b * t) if t <= 1 else (r, g, b) for t in np.linspace(1.0, 0.55, n)] if n > 1 \
        else [(r, g, b)]


def _runbook(runs: Sequence[dict[str, Any]]) -> bool:
    """True when every run replays a big-ann runbook, whose 'days' are the runbook's step numbers."""
    return bool(runs) and all(r["scenario"].get("runbook") for r in runs)


MAX_DAY_LINES = 12  # lines in one row of the day-by-day figure before a big grid is cut to its front
MAX_BUILD_ROWS = 3  # an index name with at most this many builds gets one day-by-day row per build


def _day_lines(mine: list[Config]) -> list[Config]:
    """The configurations of one index drawn day by day: all of them, or for a big build grid those on the
    front of worst-step recall against worst-step p99 (then the highest-recall ones), at most MAX_DAY_LINES."""
    if len(mine) <= MAX_DAY_LINES:
        return mine
    front = metrics.pareto_front([c.worst_recall for c in mine], [c.worst_p99_ms for c in mine])
    keep = sorted((mine[i] for i in front), key=lambda c: -c.worst_recall)[:MAX_DAY_LINES]
    return [c for c in mine if any(c is x for x in keep)]


def fig_days(configs: Sequence[Config], context: str) -> tuple[Any, dict[str, int]]:
    """Rows: index names (builds, for a name with a few). Columns: recall@k, hit@k (with labels), p99, leaked
    ids, per day. Every line is one (build, policy, search setting): nothing is averaged, so a policy that
    degrades shows as a falling line. A day whose timings were noisy has its p99 point ringed in amber
    ("noisy-days-<row>-<n>")."""
    daily = [c for c in configs if c.workload.timeline == "daily"]
    # one row per index name; a name with a few builds (lancedb's IVF_PQ and IVF_HNSW_SQ) gets a row per
    # build, whose lines would otherwise share the policy's colours and be told apart only by the legend
    rows: list[tuple[str, list[Config]]] = []
    for name in sorted({c.name for c in daily}):
        mine = [c for c in daily if c.name == name]
        labels = sorted({c.label for c in mine})
        if 1 < len(labels) <= MAX_BUILD_ROWS:
            rows += [(label, [c for c in mine if c.label == label]) for label in labels]
        else:
            rows.append((name, mine))
    names = [r[0] for r in rows]
    has_hit = any(c.worst_hit is not None for c in daily)
    k = daily[0].k
    cols = [("recall", f"recall@{k}", False)]
    if has_hit:
        cols.append(("hit_at_k", f"hit@{k} (product found)", False))
    cols += [("p99_ms", "p99 latency (ms, log)", True), ("leaks", "leaked ids (deleted, returned)", False)]
    fig = _new_figure(3.3 * len(cols) + 2.6, 2.4 * len(names) + 1.4)
    axes = np.atleast_2d(fig.subplots(len(names), len(cols), squeeze=False))
    points: dict[str, int] = {}
    hidden = noisy = drawn_p99 = 0
    for ri, (name, row) in enumerate(rows):
        mine = _day_lines(row)
        hidden += len(row) - len(mine)
        keys = sorted({(c.label, c.policy) for c in mine})
        for label, policy in keys:
            lines = [c for c in mine if c.label == label and c.policy == policy]
            shades = _shades(POLICY_COLOUR.get(policy, "#7f7f7f"), len(lines))
            for li, c in enumerate(lines):
                days = [s.day for s in c.steps]
                legend = " · ".join(x for x in (label if label != name else "", policy, c.search_text()
                                                if c.search_params else "") if x)
                for ci, (attr, _title, _log) in enumerate(cols):
                    ys = [getattr(s, attr) for s in c.steps]
                    if any(v is None for v in ys):
                        continue
                    gid = f"days-{ri}-{ci}-{len(points)}"
                    axes[ri, ci].plot(days, ys, color=shades[li], linestyle=POLICY_LINE.get(policy, "-"),
                                      marker=SETTING_MARKERS[li % len(SETTING_MARKERS)], markersize=4,
                                      linewidth=1.2, label=legend if ci == 0 else None, gid=gid)
                    points[gid] = len(ys)
                    if attr == "p99_ms":
                        drawn_p99 += len(ys)
                        rung = [s for s in c.steps if s.noise]
                        if rung:
                            ngid = f"noisy-days-{ri}-{len(points)}"
                            _ring(axes[ri, ci], [s.day for s in rung], [s.p99_ms for s in rung], ngid,
                                  None, size=12)
                            points[ngid] = len(rung)
                            noisy += len(rung)
        for ci, (_attr, title, log) in enumerate(cols):
            ax = axes[ri, ci]
            if log:
                ax.set_yscale("log")
                _plain_log(ax.yaxis)
                _min_decade(ax)
            if ri == 0:
                ax.set_title(title)
            if ri == len(names) - 1:
                ax.set_xlabel("day")
            ax.xaxis.get_major_locator().set_params(integer=True)
            if _attr == "leaks":
                top = max([max(ln.get_ydata(), default=0) for ln in ax.get_lines()], default=0)
                ax.set_ylim(-max(0.3, 0.04 * top), max(top * 1.1, 4))
                ax.yaxis.get_major_locator().set_params(integer=True)
                if top == 0:
                    ax.text(0.5, 0.55, "no leaks", transform=ax.transAxes, ha="center", color="#777777")
        # a build's label, "lancedb[index_type=IVF_PQ,max_iterations=10]", one parameter a line
        title = name.replace("[", "\n").replace(",", "\n").rstrip("]")
        axes[ri, 0].set_ylabel(title, fontsize=10 if "\n" not in title else 8, fontweight="bold")
        handles, labels = axes[ri, 0].get_legend_handles_labels()
        axes[ri, -1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                            fontsize=7, handlelength=2.5)
    if _runbook([c.run for c in daily]):
        for ax in axes[-1]:
            ax.set_xlabel("runbook step")
        fig.suptitle("Step by step (runbook), per index and policy — every search setting its own line",
                     fontsize=12, fontweight="bold")
        how = ("x is the runbook's step number; each point is one of its search steps, scored over the tags "
               "live at that step.")
    else:
        fig.suptitle("Day by day, per index and policy — every search setting its own line", fontsize=12,
                     fontweight="bold")
        how = "Day 0 is the initial build; each later day applies deletes, inserts and updates, then searches."
    more = (f" {hidden} configurations of big grids are not drawn: dominated on worst-step recall and p99 "
            "(the tables list them)." if hidden else "")
    lines = [context, f"{how} Line style and colour: policy; shade and marker: search setting. hit@{k} "
             f"uses product labels; leaks count deleted ids returned (summed over queries).{more}"]
    if noisy:
        lines.append(_noisy_note(noisy, drawn_p99, "p99 points, {ringed}, are days whose timings were noisy"))
    _footer(fig, lines)
    return fig, points


def update_costs(run: dict[str, Any]) -> dict[str, dict[int, float]]:
    """Seconds per day of each maintenance op (insert, delete, update, rebuild) of one run, and the build."""
    out: dict[str, dict[int, float]] = {}
    for st in run.get("steps", []):
        # an ingest step's seconds are its write calls (and lock waits), applied while clients searched
        if st["op"] in ("insert", "delete", "update", "ingest", "rebuild", "build", "maintain"):
            secs = st.get("seconds")
            if isinstance(secs, (int, float)):
                day = int(st.get("day") or 0)
                op = "rebuild" if st["op"] == "maintain" else st["op"]  # a database's optimize / reindex / vacuum
                out.setdefault(op, {})
                out[op][day] = out[op].get(day, 0.0) + float(secs)
    return out


def fig_update_cost(runs: Sequence[dict[str, Any]], context: str) -> tuple[Any, dict[str, int]]:
    """One panel per (index name, policy) that ran; lines: seconds per day of each op, log scale, y shared.

    The builds of a build grid share their name's panel (median line, min–max band), so a sweep of hundreds
    of configurations still gives a figure a person can read (and draw in seconds).
    """
    daily = [r for r in runs if r["status"] == "ok" and r["scenario"].get("timeline") == "daily"]
    order = {"native": 0, "tombstone": 1, "rebuild": 2}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in daily:
        name = str(r["index"].get("label") or r["index"]["family"]).split("[")[0]
        groups.setdefault((name, r["index"]["policy"]), []).append(r)
    ok = sorted(groups.items(), key=lambda g: (g[0][0], order.get(g[0][1], 9), g[0][1]))
    ncols = min(4, max(1, len(ok)))
    nrows = max(1, math.ceil(len(ok) / ncols))
    fig = _new_figure(3.4 * ncols + 1.9, 2.3 * nrows + 1.3)
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False, sharey=True))
    points: dict[str, int] = {}
    used_ops: set[str] = set()
    for i, ax in enumerate(axes.flat):
        if i >= len(ok):
            ax.set_visible(False)
            continue
        (name, policy), members = ok[i]
        all_costs = [update_costs(r) for r in members]
        for op in ("build", "rebuild", "insert", "delete", "update", "ingest"):
            per_day: dict[int, list[float]] = {}
            for costs in all_costs:
                for d, secs in costs.get(op, {}).items():
                    per_day.setdefault(d, []).append(max(secs, 1e-6))
            if not per_day:
                continue
            days = sorted(per_day)
            ys = [float(np.median(per_day[d])) for d in days]
            gid = f"cost-{i}-{op}"
            daily_op = op in ("insert", "delete", "update", "ingest")  # every day; builds and rebuilds are events
            ax.plot(days, ys, color=OP_COLOUR[op], marker="s" if op == "build" else ("o" if daily_op else "D"),
                    markersize=4 if daily_op else 6, linestyle="-" if daily_op else "none", linewidth=1.2, gid=gid)
            if len(members) > 1 and daily_op:
                ax.fill_between(days, [min(per_day[d]) for d in days], [max(per_day[d]) for d in days],
                                color=OP_COLOUR[op], alpha=0.15, linewidth=0)
            points[gid] = len(days)
            used_ops.add(op)
        ax.set_yscale("log")
        # a grid's note on a line of its own: beside the name it ran into the next panel's title
        grid = f"\n{len(members)} builds: median, band min–max" if len(members) > 1 else ""
        ax.set_title(f"{name} · {policy}{grid}", fontsize=9 if grid else 11)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if i % ncols == 0:
            ax.set_ylabel("seconds (log)")
        if i >= len(ok) - ncols:
            ax.set_xlabel("runbook step" if _runbook(daily) else "day")
    _plain_log(axes.flat[0].yaxis, subs=(1.0,))
    from matplotlib.lines import Line2D

    events = {"build": "s", "rebuild": "D"}
    handles = [Line2D([], [], color=OP_COLOUR[op], marker=events.get(op, "o"),
                      linestyle="none" if op in events else "-") for op in OP_COLOUR if op in used_ops]
    names = {"build": "initial build (day 0)", "ingest": "ingest (writes beside searches)",
             "rebuild": "rebuild, or the policy's upkeep call"}
    fig.legend(handles, [names.get(op, op) for op in OP_COLOUR if op in used_ops],
               loc="outside right upper", frameon=False, title="operation", title_fontsize=8)
    fig.suptitle("Upkeep per day: seconds spent on each update operation", fontsize=12, fontweight="bold")
    _footer(fig, [context, "One panel per index name and policy (a build grid: median and min–max band); y "
                  "shared (log) so panels compare. Rebuild points appear on the days the rebuild policy rebuilds, "
                  "or a maintenance policy (optimize, reindex, vacuum) calls the database; the initial build is "
                  "shown on day 0 for scale."])
    return fig, points


# --- label metrics --------------------------------------------------------------------------------------
def fig_labels(configs: Sequence[Config], context: str) -> tuple[Any, dict[str, int]]:
    """hit@k and P@k against recall@k: where an index with high recall still misses the product, the
    embedding is to blame, not the index. The exact search's value is drawn as that ceiling."""
    labelled = [c for c in configs if c.worst_hit is not None]
    k = labelled[0].k
    fig = _new_figure(12, 5.0)
    axes = fig.subplots(1, 2)
    colours = _colours([c.name for c in labelled])
    multi = _policy_count(labelled) > 1
    exact = [c for c in labelled if c.family == "faiss-flat"] or [c for c in labelled if c.worst_recall >= 0.999]
    points: dict[str, int] = {}
    for ai, (ax, attr, ylabel) in enumerate(zip(axes, ("worst_hit", "worst_p_at_k"),
                                                (f"hit@{k}: the query's product is in the top {k}",
                                                 f"P@{k}: share of the top {k} that is the product"), strict=True)):
        for gi, ((name, policy), group) in enumerate(_group(labelled).items()):
            xs = _clip_recall([c.worst_recall for c in group])
            ys = [getattr(c, attr) for c in group]
            gid = f"labels{ai}-{gi}"
            ax.plot(xs, ys, linestyle="none", marker=POLICY_MARKER.get(policy, "o"), color=colours[name],
                    markersize=6, alpha=0.85, label=_group_label(name, policy, multi) if ai == 0 else None, gid=gid)
            points[gid] = len(ys)
        if exact:
            ceiling = max(getattr(c, attr) for c in exact)
            ax.axhline(ceiling, color="#444444", linestyle="--", linewidth=1)
            # at the left: low-recall points sit well below the ceiling, the exact point sits on it at the right
            ax.annotate(f"exact search {ceiling:.3f}", (0.01, ceiling), xycoords=("axes fraction", "data"),
                        xytext=(0, 3), textcoords="offset points", ha="left", va="bottom", fontsize=7.5)
            # bottom right is where no point lies (high recall means near the ceiling)
            why = (f"{1 - ceiling:.3f} above it: the embedding's (exact search misses too)" if ai == 0 else
                   f"P@{k} < 1 even for exact search when a product has fewer than {k} images")
            ax.text(0.98, 0.03, f"gap under the dashed line: the index's misses\n{why}",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=7.5, color="#333333",
                    bbox={"boxstyle": "round", "fc": "white", "ec": "#cccccc", "alpha": 0.9})
        _logit_axis(ax, [c.worst_recall for c in labelled])
        ax.set_xlabel(f"recall@{k} (ANN vs exact)" + (" — worst step" if _is_daily(labelled) else "") + ", logit")
        ax.set_ylabel(ylabel)
    fig.suptitle(f"Label metrics: finding the product (hit@{k}, P@{k}) vs finding the exact neighbours "
                 f"(recall@{k})", fontsize=12, fontweight="bold")
    fig.legend(loc="outside right upper", frameon=False, title="index · policy" if multi else "index",
               title_fontsize=8)
    _footer(fig, [context, _worst_note(labelled) + " hit@k and P@k use the dataset's product labels; "
                  "the dashed line is exact search (faiss-flat), the best any index can do with these embeddings."])
    return fig, points


# --- throughput under concurrency -------------------------------------------------------------------------
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


def fig_concurrency(configs: Sequence[Config], context: str) -> tuple[Any, dict[str, int]]:
    """QPS against p99 at each concurrency level: one panel per index name, one line per (policy, setting)
    through its levels, each point labelled with its client threads. Worst step figures."""
    conc = [c for c in configs if c.concurrency_levels]
    names = sorted({c.name for c in conc})
    ncols = min(3, max(1, len(names)))
    nrows = max(1, math.ceil(len(names) / ncols))
    fig = _new_figure(4.3 * ncols + 2.9, 3.3 * nrows + 1.5)
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    points: dict[str, int] = {}
    levels_seen: set[int] = set()
    for ni, ax in enumerate(axes.flat):
        if ni >= len(names):
            ax.set_visible(False)
            continue
        name = names[ni]
        mine = sorted((c for c in conc if c.name == name), key=lambda c: (c.label, c.policy, c.search_text()))
        ratios = []
        for li, c in enumerate(mine):
            same = [x for x in mine if x.label == c.label and x.policy == c.policy]
            shade = _shades(POLICY_COLOUR.get(c.policy, "#7f7f7f"), len(same))[same.index(c)]
            lv = [c.worst_level(t) for t in c.concurrency_levels]
            xs = [v.p99_ms for v in lv if v is not None]
            ys = [v.qps for v in lv if v is not None]
            sc = scaling(c)
            if sc is not None:
                ratios.append(sc[2])
            legend = " · ".join(x for x in (c.label if c.label != name else "", c.policy,
                                            c.search_text() if c.search_params else "") if x)
            legend += f"  ×{sc[2]:.2f}" if sc is not None else ""
            gid = f"conc-{ni}-{li}"
            ax.plot(xs, ys, color=shade, linestyle=POLICY_LINE.get(c.policy, "-"),
                    marker=SETTING_MARKERS[same.index(c) % len(SETTING_MARKERS)], markersize=5, linewidth=1.2,
                    label=legend, gid=gid)
            points[gid] = len(xs)
            for v in lv:
                if v is not None:
                    levels_seen.add(v.threads)
                    ax.annotate(str(v.threads), (v.p99_ms, v.qps), xytext=(3, 3), textcoords="offset points",
                                fontsize=7, color="#333333")
        ax.set_xscale("log")
        _plain_log(ax.xaxis)
        lo, hi = ax.get_xlim()
        if lo > 0 and hi / lo < 10:  # at least a decade, so a small latency change looks small
            mid = math.sqrt(lo * hi)
            ax.set_xlim(mid / math.sqrt(10), mid * math.sqrt(10))
        # linear from 0: a line that stays level is an index that does not scale, visibly
        ax.set_ylim(0, ax.get_ylim()[1] * 1.08)
        ax.set_xlabel("p99 latency under load (ms, log)")
        ax.set_ylabel("QPS, all client threads")
        span = (f"×{min(ratios):.2f}" if len(ratios) == 1 or min(ratios) == max(ratios)
                else f"×{min(ratios):.2f}–{max(ratios):.2f}") if ratios else ""
        ax.set_title(f"{name}" + (f" — QPS {span} from fewest to most threads" if span else ""), fontsize=9.5)
        ax.legend(loc="best", fontsize=6.5, frameon=False)
    fig.suptitle("Throughput under concurrency: QPS against p99 at each number of client threads",
                 fontsize=12, fontweight="bold")
    lv_text = ", ".join(map(str, sorted(levels_seen)))
    _footer(fig, [context, f"Client threads T ∈ {{{lv_text}}} (the number by each point) each send single queries "
                  "through one shared index for a fixed time, the library's own threads at 1. A curve going up and "
                  "right: more throughput, paid in tail latency; a flat one: the index does not scale with client "
                  f"threads (×ratio in the legend; below ×{SCALES:g} counts as not scaling). Worst step per level."])
    return fig, points


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
        half = 0.5 * (1 + min(hi, c.run.get("machine", {}).get("cores") or hi))
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
def _ingest_runs(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    ok = [r for r in runs if r["status"] == "ok" and any(st["op"] == "ingest" for st in r.get("steps", []))]
    return sorted(ok, key=lambda r: (str(r["index"].get("label") or r["index"]["family"]), r["index"]["policy"]))


def _run_name(run: dict[str, Any]) -> str:
    return f"{run['index'].get('label') or run['index']['family']} · {run['index']['policy']}"


def _rest_recall(run: dict[str, Any], day: int, params: dict[str, Any]) -> float | None:
    """Recall of one setting at the day's search step (at rest, after the day's writes)."""
    for st in run["steps"]:
        if st["op"] == "search" and st.get("day") == day:
            for s in st.get("settings", []):
                if s.get("params") == params:
                    return float(s["recall"])
    return None


def fig_ingest(runs: Sequence[dict[str, Any]], context: str) -> tuple[Any, dict[str, int]]:
    """Search while updating, per run: p99 under ingestion vs at rest, ingest rate vs target, snapshot recall."""
    mine = _ingest_runs(runs)
    fig = _new_figure(13.5, 4.6 + 0.12 * len(mine))
    axes = fig.subplots(1, 3)
    points: dict[str, int] = {}
    colours = _colours([_run_name(r) for r in mine])
    targets: set[float] = set()
    for ri, run in enumerate(mine):
        col = colours[_run_name(run)]
        steps = [st for st in run["steps"] if st["op"] == "ingest"]
        rest = [st["at_rest"]["latency_ms"]["p99"] for st in steps]
        under = [st["under_ingest"]["latency_ms"]["p99"] for st in steps]
        axes[0].plot([ri - 0.12] * len(rest), rest, linestyle="none", marker="o", markerfacecolor="none",
                     color=col, gid=f"ingest0-rest-{ri}")
        axes[0].plot([ri + 0.12] * len(under), under, linestyle="none", marker="o", color=col,
                     gid=f"ingest0-under-{ri}")
        points[f"ingest0-rest-{ri}"], points[f"ingest0-under-{ri}"] = len(rest), len(under)
        rates = [st.get("achieved_rate") or 0.0 for st in steps]
        targets.update(float(st["target_rate"]) for st in steps)
        axes[1].plot([ri] * len(rates), rates, linestyle="none", marker="D", color=col, gid=f"ingest1-{ri}")
        points[f"ingest1-{ri}"] = len(rates)
        snap = [s["recall"] for st in steps for sn in st["snapshots"] for s in sn["settings"]
                if s["params"] == st["params"]]
        at_rest = [v for st in steps if (v := _rest_recall(run, st["day"], st["params"])) is not None]
        axes[2].plot([ri + 0.12] * len(snap), snap, linestyle="none", marker="o", color=col,
                     gid=f"ingest2-snap-{ri}")
        axes[2].plot([ri - 0.12] * len(at_rest), at_rest, linestyle="none", marker="o",
                     markerfacecolor="none", color=col, gid=f"ingest2-rest-{ri}")
        points[f"ingest2-snap-{ri}"], points[f"ingest2-rest-{ri}"] = len(snap), len(at_rest)
    for t in sorted(targets):
        axes[1].axhline(t, color="#888888", linestyle="--", linewidth=1)
        axes[1].annotate(f"target {t:,.0f}/s", (0.01, t), xycoords=("axes fraction", "data"), xytext=(0, 3),
                         textcoords="offset points", fontsize=7.5, color="#555555")
    labels = [_run_name(r) for r in mine]
    for ax, ylabel, title in zip(axes, ("p99 latency (ms, log)", "vectors written per second",
                                        "recall@k"),
                                 ("Search p99: at rest ○ vs during ingestion ●", "Ingest rate achieved",
                                  "Recall: at rest ○ vs snapshots during ingestion ●"), strict=True):
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7.5)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
    axes[0].set_yscale("log")
    _plain_log(axes[0].yaxis)
    axes[2].set_ylim(top=1.005)
    axes[1].set_ylim(bottom=0)
    fig.suptitle("Search while updating: one writer thread applies each day's writes at a target rate while "
                 "client threads search", fontsize=12, fontweight="bold")
    _footer(fig, [context, "One point per ingest day (recall: per snapshot). At rest: the same client threads and "
                  "setting right after the day's writes. A library unsafe for concurrent reads and writes is "
                  "guarded by a lock (every library here; pgvector, a server, is not): searches wait for a write "
                  "batch, which shows in the p99 (the table's 'writes' column says which). Snapshot recall is "
                  "scored against the exact neighbours over the live set at that moment."])
    return fig, points


def ingest_table(runs: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    head = ["index · policy", "day", "written", "target /s", "achieved /s", "write s", "lock wait s",
            "search threads", "p50 ms rest → ingest", "p99 ms rest → ingest", "QPS rest → ingest",
            "recall rest", "snapshot recall (min)", "setting", "writes"]
    rows = []
    for run in _ingest_runs(runs):
        for st in (x for x in run["steps"] if x["op"] == "ingest"):
            rest, under = st["at_rest"], st["under_ingest"]
            snaps = [s["recall"] for sn in st["snapshots"] for s in sn["settings"] if s["params"] == st["params"]]
            r = _rest_recall(run, st["day"], st["params"])
            rows.append([_run_name(run), str(st["day"]), f"{st['count']:,}", f"{st['target_rate']:,.0f}",
                         _fmt(st.get("achieved_rate"), ",.0f"), _fmt(st["seconds"], ".3g"),
                         _fmt(st.get("lock_wait_seconds"), ".3g"), str(st["search_threads"]),
                         _pair(rest["latency_ms"]["p50"], under["latency_ms"]["p50"], ".3g"),
                         _pair(rest["latency_ms"]["p99"], under["latency_ms"]["p99"], ".3g"),
                         _pair(rest["qps"], under["qps"], ",.0f"), _fmt(r, ".4f"),
                         _fmt(min(snaps), ".4f") if snaps else "—", params_text(st["params"]),
                         str((st.get("guard") or {}).get("writes", "—"))])
    return head, rows


def _external_total(run: dict[str, Any]) -> int | None:
    """Bytes a database holds outside the process at the last search step (files, server), if it reports any."""
    last = [st for st in run["steps"] if st["op"] == "search" and st.get("external_bytes")]
    return int(sum(last[-1]["external_bytes"].values())) if last else None


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
        calls = [float(st["seconds"]) for st in c.run["steps"] if st["op"] in ("maintain", "rebuild")]
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


# --- the whole report -----------------------------------------------------------------------------------
def _scenario_key(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def plot(results_dir: Path, out_dir: Path | None = None, cons: Constraints | None = None,
         only: Sequence[str] | None = None, write_index: bool | None = None) -> Report:
    """Write every figure (PNG + SVG) and index.html for the results below `results_dir`; return what was written.

    `only` restricts to some figure kinds (pareto-p50, pareto-p99, pareto-qps, memory, catalog, days,
    upkeep, labels) — the thumbnail uses it; index.html is then written only when `write_index` says so.
    """
    import matplotlib

    cons = (cons or Constraints()).validate()
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir / "report"
    loaded = load_runs(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recs, rec_notes = recommend(loaded.runs, cons)
    winners = {r.workload: r.winner for r in recs}
    ties = {r.workload: r.ties for r in recs}
    all_configs, failures = configurations(loaded.runs)
    scenario_reports = []
    with matplotlib.rc_context(_RC):
        by_scen: dict[str, list[dict[str, Any]]] = {}
        for r in loaded.runs:
            by_scen.setdefault(r["scenario"]["name"], []).append(r)
        # daily scenarios first: the question the toolkit exists for
        for name in sorted(by_scen, key=lambda n: (by_scen[n][0]["scenario"].get("timeline") != "daily", n)):
            scenario_reports.append(_scenario_report(name, by_scen[name], all_configs, winners, cons, out_dir, only,
                                                     ties))
    rep = Report(out_dir, out_dir / "index.html", scenario_reports, recs, rec_notes, failures, loaded.bad)
    if write_index if write_index is not None else only is None:
        write_html(rep, results_dir, cons)
    return rep


def _want(only: Sequence[str] | None, kind: str) -> bool:
    return only is None or kind in only


def _scenario_report(name: str, runs: list[dict[str, Any]], all_configs: list[Config],
                     winners: dict[Any, Config | None], cons: Constraints, out_dir: Path,
                     only: Sequence[str] | None, ties: dict[Any, list[Config]] | None = None) -> ScenarioReport:
    # the newest workload of this scenario name (a rerun at another --scale overwrites most, not always all)
    newest = max(runs, key=lambda r: r.get("started_at") or "")
    kept = [r for r in runs if r["scenario"]["hash"] == newest["scenario"]["hash"]]
    notes = []
    if len(kept) < len(runs):
        notes.append(f"{len(runs) - len(kept)} older run(s) of {name} measured a different workload (the scenario "
                     "or --scale changed) and are left out of these figures; the recommendation lists them apart.")
    runs = kept
    configs = [c for c in all_configs if c.workload.scenario == name
               and c.workload.scenario_hash == newest["scenario"]["hash"]]
    timeline = newest["scenario"].get("timeline", "static")
    sizes = sorted({c.workload.size for c in configs if c.workload.size})
    figs: list[FigureInfo] = []
    key = _scenario_key(name)
    # Pareto figures compare one workload: for a static scenario with several sizes, the largest
    pareto = [c for c in configs if not sizes or c.workload.size == sizes[-1]]
    prun = [r for r in runs if not sizes or r["index"].get("size") == sizes[-1]]
    pctx = context_line(prun)
    winner = next((w for wl, w in winners.items() if w is not None and pareto and wl == pareto[0].workload), None)
    tie_set = (ties or {}).get(pareto[0].workload, []) if pareto else []
    if len(tie_set) < 2:
        tie_set = []  # a winner alone is no tie
    if len(sizes) > 1:
        notes.append(f"Recall-vs-cost figures are at the largest size (n={sizes[-1]:,}); "
                     "the catalog-size figure covers every size.")
    ctx_all = context_line(runs)

    jobs: list[tuple[str, str, str, Drawing]] = []

    def emit(kind: str, title: str, caption: str, draw: Drawing) -> None:
        jobs.append((f"{key}-{kind}", title, caption, draw))  # drawn and saved together below

    if pareto:
        for cost, title, cap in (
                ("p99", "Recall vs p99 latency", "Single-query p99 latency (one query per call) against recall."),
                ("p50", "Recall vs p50 latency", "Single-query median latency against recall."),
                ("qps", "Recall vs batch QPS", "All queries in one call: throughput against recall.")):
            if _want(only, f"pareto-{cost}"):
                emit(f"recall-{cost}", title, cap, partial(fig_pareto, pareto, cost, pctx, winner, cons, tie_set))
        if _want(only, "memory"):
            emit("recall-memory", "Recall vs memory", "Index memory (what the index holds in the run's process, "
                 "with the library's own count where it gives one) and peak RSS against recall.",
                 partial(fig_memory, pareto, pctx))
        if any(c.worst_hit is not None for c in pareto) and _want(only, "labels"):
            emit("labels", "Label metrics", "hit@k and P@k beside recall@k.", partial(fig_labels, pareto, pctx))
    if len(sizes) > 1 and _want(only, "catalog"):
        emit("catalog-size", "Catalog size", f"Cost at recall ≥ {cons.min_recall:g} against catalog size.",
             partial(fig_catalog, configs, ctx_all, cons.min_recall))
    if timeline == "daily" and configs:
        if _want(only, "days"):
            emit("days", "Day by day", "Recall, hit@k, p99 and leaks per day.", partial(fig_days, configs, ctx_all))
        if _want(only, "upkeep"):
            emit("upkeep", "Upkeep per day", "Seconds per update operation per day.",
                 partial(fig_update_cost, runs, ctx_all))
    tables = []
    if any(c.concurrency_levels for c in pareto):
        if _want(only, "concurrency"):
            emit("concurrency", "Throughput under concurrency",
                 "QPS against p99 at each number of client threads, per index and setting.",
                 partial(fig_concurrency, pareto, pctx))
        tables.append(("Throughput under concurrency (worst step per level)", *concurrency_table(pareto)))
        notes += scaling_notes(pareto)
    if _ingest_runs(runs):
        if _want(only, "ingest"):
            emit("ingest", "Search while updating",
                 "Latency under ingestion vs at rest, ingest rate vs target, recall on snapshots.",
                 partial(fig_ingest, runs, ctx_all))
        tables.append(("Search while updating (one row per ingest day)", *ingest_table(runs)))
    if timeline == "daily":
        head, rows = upkeep_table(configs)
        if rows:
            tables.append(("Upkeep against native writes on the same build (native → policy)", head, rows))
    for (fkey, title, caption, _draw), pts in zip(jobs, draw_all([(k, d) for k, _t, _c, d in jobs], out_dir),
                                                   strict=True):
        figs.append(FigureInfo(fkey, title, caption, out_dir / f"{fkey}.png", out_dir / f"{fkey}.svg", pts))
    return ScenarioReport(name, timeline, str(newest["scenario"].get("description") or ""), ctx_all, figs,
                          configs, notes + sanity_notes(configs), tables)


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


# --- HTML -----------------------------------------------------------------------------------------------
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1340px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:24px;margin:6px 0 2px} h2{font-size:19px;margin:34px 0 6px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px} .muted{color:#666;font-size:13px}
.rec{background:#fff;border:1px solid #d0d7de;border-left:6px solid #2da44e;border-radius:6px;padding:4px 18px 12px;
 margin:14px 0} .rec.none{border-left-color:#cf222e} .rec h2{border:none;margin:10px 0 4px}
.rectable{border-collapse:collapse;width:100%;margin:8px 0 10px;font-size:14px}
.rectable td{white-space:normal;vertical-align:top;padding:7px 10px;border-bottom:1px solid #eee}
.rectable td:first-child{width:30%} .rectable td.why{color:#333;font-size:13px}
.winner{font-weight:600;color:#116329;font-size:15px} .nowinner{font-weight:600;color:#a40e26}
tr.fail td{background:#fff5f5} .ctx{color:#666;font-size:12px;margin-top:2px}
.constraints{margin:4px 0 10px;padding-left:18px;font-size:13px;color:#333}
.figs{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:16px;margin:10px 0}
figure{margin:0;background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:8px}
figure.wide{grid-column:1/-1} figure img{width:100%;height:auto;display:block}
figcaption{font-size:12.5px;color:#444;margin-top:4px}
.tablewrap{max-height:420px;overflow:auto;border:1px solid #e1e4e8;border-radius:6px;background:#fff;margin:8px 0}
table{border-collapse:collapse;font-size:12.5px;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums} th{background:#f3f4f6;position:sticky;top:0}
td.wrap{white-space:normal;max-width:520px;min-width:230px} tr.win td{background:#e9f7ef}
tr.tie td{background:#fff8e1} .noisy{color:#8a5a00;font-weight:600;font-size:13px;margin-top:4px}
.ties{font-size:12.5px;color:#333;margin-top:4px} .ties li{margin:1px 0}
details{margin:6px 0} summary{cursor:pointer;color:#0969da}
.notes li{font-size:13px;color:#6a4a00} .bad{color:#a40e26}
nav a{margin-right:14px}
"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _html_table(head: list[str], rows: list[list[str]], numeric: set[int] | None = None,
                highlight: int | None = None, wrap: set[int] | None = None, marked: set[int] | None = None) -> str:
    """A table; row `highlight` is the winner's (green), rows in `marked` its ties within noise (amber)."""
    numeric, wrap, marked = numeric or set(), wrap or set(), marked or set()
    out = ["<div class='tablewrap'><table><thead><tr>"]
    out += [f"<th>{_esc(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        out.append("<tr class='win'>" if i == highlight else ("<tr class='tie'>" if i in marked else "<tr>"))
        for j, cell in enumerate(row):
            cls = "num" if j in numeric else ("wrap" if j in wrap else "")
            out.append(f"<td class='{cls}'>{_esc(cell)}</td>" if cls else f"<td>{_esc(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


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
    daily = _is_daily(configs)
    head = (["size"] if multi_size else []) + [
        "index", "build", "search", "policy", f"recall@{k}" + (" worst" if daily else ""),
        *(["recall mean"] if daily else []), f"hit@{k}", f"P@{k}", "p50 ms", "p99 ms [95 %]", "QPS", "noise",
        "index mem", "library's count", *(["index mem last day"] if daily else []),
        "steady RSS", "peak RSS", "saved", "build s", *(["leaks", "upkeep s"] if daily else [])]
    rows = []
    for c in sorted(configs, key=lambda c: (c.workload.size or 0, c.name, c.label, c.policy, c.worst_recall)):
        upkeep = sum(v for op, d in update_costs(c.run).items() if op != "build" for v in d.values())
        lib = library_bytes(c)
        last = (c.run.get("memory") or {}).get("index_bytes_last_day")
        rows.append(([f"{c.workload.size:,}"] if multi_size else []) + [
            c.label, c.build_text(), c.search_text(), c.policy, f"{c.worst_recall:.4f}",
            *([f"{c.mean_recall:.4f}"] if daily else []), _fmt(c.worst_hit), _fmt(c.worst_p_at_k),
            _fmt(c.worst_p50_ms, ".3g"), _p99_ci_text(c), _fmt(c.worst_qps, ",.0f"), c.noise_mark(),
            fmt_bytes(c.index_bytes) + ("" if _own_memory(c) else " (RSS Δ)"),
            fmt_bytes(lib[0]) if lib else "—",
            *([fmt_bytes(float(last)) if isinstance(last, (int, float)) else "—"] if daily else []),
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
    out.append(f"p99 ms: the worst step's p99 (each step's a median over {_rounds_text(configs)}) with its 95 % "
               "interval where the file has one; noise: the configuration's search steps whose timings were noisy "
               f"(rounds disagree by > {timing.ROUND_SPREAD:.0%}, or the timed thread had < "
               f"{timing.MIN_CPU_SHARE:g} of its core) — rerun those on a quiet machine.")
    return out


def _rec_html(rep: Report, cons: Constraints) -> str:
    """The verdict first: one row per workload (daily scenarios first), details folded away below."""
    ks = {c.k for r in rep.recommendations for c in r.ranked} | \
         {c.k for r in rep.recommendations for c, _ in r.rejected}
    k = next(iter(ks)) if len(ks) == 1 else None
    recs = sorted(rep.recommendations, key=lambda r: (r.workload.timeline != "daily", r.workload.scenario,
                                                      r.workload.size or 0))
    none = not any(r.winner for r in recs)
    out = [f"<section id='recommendation' class='rec{' none' if none else ''}'><h2>Recommendation</h2>",
           "<div class='muted'>Constraints used (set them with the same options of <code>annbench plot</code> and "
           "<code>annbench recommend</code>):</div><ul class='constraints'>"]
    out += [f"<li>{_esc(line)}</li>" for line in cons.describe(k)]
    out.append("</ul><table class='rectable'><thead><tr><th>workload</th><th>recommended</th><th>why</th></tr>"
               "</thead><tbody>")
    for rec in recs:
        w = rec.winner
        where = (f"<b>{_esc(rec.workload.title())}</b> <span class='muted'>({_esc(rec.workload.timeline)})</span>"
                 f"<div class='ctx'>{_esc(rec.context)}</div>")
        if w is not None:
            build = f"<div class='ctx'>build: {_esc(w.build_text())}</div>" if w.build_params else ""
            what = f"<span class='winner'>{_esc(w.short())}</span>{build}" + _ties_html(rec)
        else:
            what = "<span class='nowinner'>nothing feasible</span>"
        out.append(f"<tr class='{'ok' if w else 'fail'}'><td>{where}</td><td>{what}</td>"
                   f"<td class='why'>{_esc(rec.why())}</td></tr>")
    out.append("</tbody></table>")
    for note in rep.rec_notes:
        out.append(f"<p class='muted'>{_esc(note)}</p>")
    for rec in recs:
        head, rows = _ranked(rec)
        rhead, rrows = rejected_rows(rec)
        tied = len(rec.ties) > 1
        # open when there is a tie to read or a noisy figure to doubt
        out.append(f"<details{' open' if tied or rec.noisy else ''}><summary>{_esc(rec.workload.title())}: ranked "
                   f"table ({len(rows)} feasible{f', {len(rec.ties)} tied within noise' if tied else ''}) and "
                   f"rejections ({len(rrows)}, with the first constraint each fails)</summary>")
        if rows:
            numeric = {i for i, h in enumerate(head) if h not in ("index", "build", "search", "policy", "noise")}
            out.append(_html_table(head, rows, numeric=numeric, highlight=0,
                                   marked=set(range(1, len(rec.ties))) if tied else None))
        if rrows:
            out.append(_html_table(rhead, rrows, wrap={4}))
        out.append("</details>")
    out.append("</section>")
    return "".join(out)


def _ties_html(rec: Recommendation) -> str:
    """Under the winner: the tie set it was picked from (when there is one) and the NOISY warning."""
    out = []
    if len(rec.ties) > 1:
        out.append(f"<div class='ties'>tied within noise — {len(rec.ties)} configurations whose intervals overlap "
                   "the best figure; the recommended one was picked by the secondary criteria:<ul>"
                   + "".join(f"<li>{_esc(c.short())}{' (recommended)' if i == 0 else ''}</li>"
                             for i, c in enumerate(rec.ties)) + "</ul></div>")
    if rec.noisy:
        which = "; ".join(f"{c.short()}: {len(c.noisy_steps)} of {len(c.steps)} steps" for c in rec.noisy)
        whose = (f"{len(rec.noisy)} of the {len(rec.ties)} tied configurations" if len(rec.ties) > 1
                 else "the recommended configuration")
        out.append(f"<div class='noisy'>NOISY: {_esc(whose)} had search steps with disturbed timings ({_esc(which)}); "
                   "rerun on a quiet machine before trusting the latency ranking.</div>")
    return "".join(out)


def _ranked(rec: Recommendation) -> tuple[list[str], list[list[str]]]:
    from annbench.recommend import ranked_rows

    return ranked_rows(rec)


def write_html(rep: Report, results_dir: Path, cons: Constraints) -> Path:
    n_runs = sum(len({c.run_id for c in s.configs}) for s in rep.scenarios)
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<title>annbench report — {_esc(results_dir)}</title><style>{_CSS}</style></head><body><main>",
             "<h1>annbench report</h1>",
             f"<div class='muted'>Results: <code>{_esc(results_dir)}</code> · {n_runs} ok run(s), "
             f"{len(rep.failures)} failed or timed out, {len(rep.bad)} unreadable · generated "
             f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} · figures link to their SVG</div>"]
    if len(rep.scenarios) > 1:
        parts.append("<nav>" + "".join(f"<a href='#s-{_scenario_key(s.name)}'>{_esc(s.name)}</a>"
                                       for s in rep.scenarios) + "<a href='#failures'>failures</a></nav>")
    parts.append(_rec_html(rep, cons))
    for s in rep.scenarios:
        parts.append(f"<h2 id='s-{_scenario_key(s.name)}'>{_esc(s.name)} <span class='muted'>({_esc(s.timeline)})"
                     f"</span></h2>")
        if s.description:
            parts.append(f"<p>{_esc(s.description)}</p>")
        parts.append(f"<p class='muted'>{_esc(s.context)}</p>")
        if s.figures:
            parts.append("<div class='figs'>")
            for f in s.figures:
                wide = "" if f.key.endswith(("-recall-p50", "-recall-qps")) else " class='wide'"
                parts.append(f"<figure{wide}><a href='{_esc(f.svg.name)}'><img src='{_esc(f.png.name)}' "
                             f"alt='{_esc(f.title)}' loading='lazy'></a><figcaption><b>{_esc(f.title)}.</b> "
                             f"{_esc(f.caption)}</figcaption></figure>")
            parts.append("</div>")
        if s.notes:
            parts.append("<h3>Worth a second look</h3><ul class='notes'>"
                         + "".join(f"<li>{_esc(n)}</li>" for n in s.notes) + "</ul>")
        head, rows = config_table(s.configs)
        if rows:
            numeric = {i for i, h in enumerate(head) if h not in ("size", "index", "build", "search", "policy",
                                                                  "noise")}
            wrap = {head.index("build")}
            parts.append(f"<h3>Configurations ({len(rows)})</h3>" + _html_table(head, rows, numeric=numeric, wrap=wrap)
                         + "".join(f"<p class='muted'>{_esc(n)}</p>" for n in config_table_notes(s.configs)))
        for title, thead, trows in s.tables:
            parts.append(f"<h3>{_esc(title)}</h3>" + _html_table(thead, trows))
    parts.append("<h2 id='failures'>Failed and timed-out runs</h2>")
    if rep.failures:
        rows = [[f.workload.title(), f.label, f.policy, f.status, f.error] for f in rep.failures]
        parts.append(_html_table(["scenario", "index", "policy", "status", "error"], rows, wrap={4}))
    else:
        parts.append("<p class='muted'>None: every run finished.</p>")
    if rep.bad:
        parts.append("<h3 class='bad'>Unreadable result files</h3>"
                     + _html_table(["file", "why"], [[str(p), why] for p, why in rep.bad], wrap={1}))
    parts.append("</main></body></html>")
    tmp = rep.index_html.with_name(".index.html.tmp")
    tmp.write_text("".join(parts), encoding="utf-8")
    tmp.replace(rep.index_html)
    return rep.index_html


def plot_command(results_dir: Path, out_dir: Path | None, cons: Constraints) -> Report:
    """`annbench plot`: write the report and say where it is."""
    rep = plot(results_dir, out_dir, cons)
    print(f"annbench: wrote {len(rep.figures)} figures (PNG + SVG) and {rep.index_html}")
    for rec in rep.recommendations:
        w = rec.winner
        print(f"annbench: {rec.workload.title()}: " + (f"recommended {w.short()}" if w else rec.why()))
    return rep


# --- thumbnail (the README's figure) --------------------------------------------------------------------
def thumbnail(results_dir: Path, out_png: Path, width_px: int = 900, cons: Constraints | None = None) -> Path:
    """Write the main figure — recall vs p99 of the first daily scenario (else the first scenario, at its
    largest size), with the recommendation marked — as a PNG `width_px` wide: the README's thumbnail."""
    import matplotlib

    cons = (cons or Constraints()).validate()
    runs = load_runs(Path(results_dir)).runs
    configs, _ = configurations(runs)
    if not configs:
        raise ConfigError(f"no finished run in {results_dir} to draw")
    scen = min(configs, key=lambda c: (c.workload.timeline != "daily", c.workload.scenario)).workload.scenario
    largest = max((c.workload.size or 0) for c in configs if c.workload.scenario == scen)
    mine = [c for c in configs if c.workload.scenario == scen and (c.workload.size or 0) == largest]
    wl = mine[0].workload
    recs, _ = recommend([r for r in runs if r["scenario"]["name"] == scen], cons)
    winner = next((r.winner for r in recs if r.workload == wl), None)
    ties = next((r.ties for r in recs if r.workload == wl and len(r.ties) > 1), [])
    ctx = context_line([r for r in runs if r["scenario"]["name"] == scen and (r["index"].get("size") or 0) == largest])
    with matplotlib.rc_context(_RC):
        fig, _pts = fig_pareto(mine, "p99", ctx, winner, cons, ties)
        out_png.parent.mkdir(parents=True, exist_ok=True)
        # rendered at the target width (not downscaled): crisp text at any size
        fig.savefig(out_png, dpi=width_px / fig.get_figwidth())
    return out_png


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m annbench.report", description=__doc__.split("\n")[0])
    ap.add_argument("results_dir", type=Path)
    ap.add_argument("--thumbnail", type=Path, default=None, help="write only the main figure, small, to this PNG")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.thumbnail is not None:
        print(f"wrote {thumbnail(args.results_dir, args.thumbnail)}")
    else:
        plot_command(args.results_dir, args.out, Constraints())
    return 0


if __name__ == "__main__":
    sys.exit(main())
