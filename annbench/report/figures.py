"""The report's figures: matplotlib drawings of configurations and runs, each saved as PNG and SVG.

Owns how every figure looks and what it marks; what the figures show is computed in
`annbench.report.tables` (fronts are `annbench.metrics.pareto_front`). Each `fig_*` function returns the
matplotlib Figure and the number of points it plotted per SVG group id (`gid`), which the tests read back
from the SVG. `draw_and_save` makes one figure and writes it through `annbench.atomic`; it is what the
fork pool (`annbench.report.pool`) runs for each figure.

Figures, per scenario (each states the dataset, its size, k, the machine and the threads):
- recall vs single-query p50 and p99 latency, and vs batch QPS: one Pareto front per index name and
  policy, dominated points fainter, recall on a logit axis;
- recall vs memory (index memory = what the index holds in the run's process: anonymous memory after the
  build − just before, annbench.memory; an older result file's RSS delta; the library's own count of its
  size beside it, where it reports one), and the run's peak RSS;
- catalog size curves (static scenarios with several sizes): latency, memory and build time at a recall
  target, with the sizes where an index stops reaching it marked (with `plot --at-n N`, each curve goes on
  to N as a dashed forecast with its 95 % band and a hollow marker for the held-out check);
- day by day (daily scenarios): recall@k, hit@k, p99 and leaked ids, every (policy, setting) its own line;
  and the upkeep per day (insert, delete, update, rebuild seconds);
- label metrics (when the dataset has product labels): hit@k and P@k beside recall@k, with the exact
  search's value as the ceiling the embedding sets;
- throughput under concurrency (`search.concurrency`): QPS against p99 at each client-thread level, one
  line per setting through its levels (VectorDBBench's curve), every index;
- search while updating (`timeline.concurrent_updates`): latency under ingestion against at rest, the
  ingest rate achieved against its target, and recall on the snapshots taken during ingestion.

For a daily scenario each point of a recall-vs-cost figure is a setting's *worst* search step (lowest
recall, highest latency, lowest QPS over the days): the same rule `recommend` applies.

A configuration with a search step whose timings were noisy (rounds that disagree, or a timed thread
without its core) is ringed in amber in every recall-vs-cost figure (SVG group "noisy-<group>"), as is each
noisy day's p99 in the day-by-day figure ("noisy-days-<row>-<n>"), and the figure's footer says how many
and what noisy means. The p99 figure draws the worst step's 95 % interval as an error bar on the points of
each front and of the recommendation's tie set ("ci-<group>"); the tie set's other members carry a small
hollow star ("tied").

matplotlib is imported inside the functions that draw, not at the top: it costs ~0.3 s, and the CLI,
which imports this package for `annbench plot`, should not pay it for every other command.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from annbench import metrics, timing
from annbench.atomic import atomic_path
from annbench.recommend import Config, Constraints, fmt_bytes
from annbench.report.tables import (
    SCALES,
    CatalogForecast,
    catalog_points,
    config_key,
    forecast_note,
    ingest_days,
    ingest_runs,
    is_daily,
    is_runbook,
    library_bytes,
    memory_measure,
    rounds_text,
    run_name,
    scaling,
    update_costs,
)
from annbench.results import RunRecord
from annbench.transforms import KEY as TRANSFORM_KEY

RECALL_CLIP = 1e-4  # recall 1.0 (and 0.0) cannot sit on a logit axis: drawn at 1 − 1e-4 (1e-4)
# the generic policies, then the databases' maintenance policies (optimize, reindex, vacuum)
POLICY_MARKER = {"native": "o", "tombstone": "s", "rebuild": "^", "optimize": "v", "reindex": "D", "vacuum": "P"}
POLICY_LINE = {"native": "-", "tombstone": "--", "rebuild": ":", "optimize": "-.", "reindex": ":", "vacuum": "-."}
POLICY_COLOUR = {"native": "#1f77b4", "tombstone": "#ff7f0e", "rebuild": "#2ca02c", "optimize": "#8c564b",
                 "reindex": "#e377c2", "vacuum": "#17becf"}
OP_COLOUR = {"insert": "#1f77b4", "delete": "#d62728", "update": "#9467bd", "rebuild": "#2ca02c",
             "ingest": "#8c564b", "build": "#000000"}
SETTING_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DPI = 100
RC = {
    "svg.fonttype": "none",  # text stays text in the SVG: smaller files, searchable
    "svg.hashsalt": "annbench",  # stable ids, so regenerated SVGs diff cleanly
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


def _clip_recall(x: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(x, dtype=np.float64), RECALL_CLIP, 1 - RECALL_CLIP)


def _colours(names: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps  # deferred: heavy (module docstring)

    ordered = sorted(set(names))
    cmap = colormaps["tab10" if len(ordered) <= 10 else "tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(ordered)}


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # deferred: heavy (module docstring)

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
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # deferred: heavy (module docstring)

    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.10g}" if v >= 1e-3 else f"{v:.0e}"))
    axis.set_minor_formatter(NullFormatter())


def save(fig: Any, path: Path, dpi: float = DPI) -> Path:
    """Write `fig` to `path` in the format its suffix names (.png, .svg), all or nothing (annbench.atomic).

    PNG and SVG are printed by their canvas directly, not through `Figure.savefig`: savefig draws a
    constrained-layout figure twice — once with drawing switched off, only to run the layout, then for
    real with the layout switched off — where the canvas's own draw runs the same layout, with the same
    renderer, and draws once. The files are the same, byte for byte (tests/test_report_save.py compares
    them with savefig's); drawing is nearly all of a report's time, and a file takes three passes over
    every axes of its figure (the layout's two, the draw) instead of four. Another format goes through
    savefig.
    """
    # the temp file's own suffix is .tmp: the format comes from the target's (PNG when it has none)
    fmt = path.suffix.lstrip(".").lower() or "png"
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # deferred: heavy (module docstring)
    from matplotlib.backends.backend_svg import FigureCanvasSVG  # deferred: heavy (module docstring)

    canvas_class = {"png": FigureCanvasAgg, "svg": FigureCanvasSVG}.get(fmt)
    with atomic_path(path) as tmp:
        if canvas_class is None:
            fig.savefig(tmp, format=fmt, dpi=dpi)
            return path
        # what savefig sets around its printing: the figure's dpi and a canvas of the format's backend
        # (print_svg leaves the figure at 72 dpi), both restored after
        canvas, figure_dpi = fig.canvas, fig.dpi
        try:
            fig.dpi = dpi
            printer = canvas_class(fig)
            if fmt == "png":
                printer.print_png(tmp)
            else:
                printer.print_svg(tmp)
        finally:
            fig.dpi = figure_dpi
            fig.set_canvas(canvas)
    return path


Drawing = Callable[[], tuple[Any, dict[str, int]]]  # makes one figure: (matplotlib Figure, SVG gid → points)


def draw_and_save(key: str, draw: Drawing, out_dir: Path) -> dict[str, int]:
    """Make one figure and save it as out_dir/key.png and .svg; return its plotted points per SVG gid.

    The report's style (`RC`) is set here, around both the drawing and the saving (the SVG options are
    read when saving), so the result is the same in this process and in a forked worker.
    """
    import matplotlib  # deferred: heavy (module docstring)

    with matplotlib.rc_context(RC):
        fig, points = draw()
        save(fig, out_dir / f"{key}.png")
        save(fig, out_dir / f"{key}.svg")
    return points


def _logit_axis(ax: Any, xs: Sequence[float]) -> None:
    ax.set_xscale("logit")
    lo = float(np.min(_clip_recall(xs))) if len(xs) else 0.5
    # widen by a margin in logit space so the lowest point is not on the frame
    lo_logit = math.log(lo / (1 - lo)) - 0.4
    ax.set_xlim(min(0.5, 1 / (1 + math.exp(-lo_logit))), 1 - RECALL_CLIP / 2)
    from matplotlib.ticker import FixedLocator, NullLocator  # deferred: heavy (module docstring)

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


def _group(configs: Sequence[Config], key: Callable[[Config], tuple[str, str]] = lambda c: (c.name, c.policy)
           ) -> dict[tuple[str, str], list[Config]]:
    """Configurations by `key` (index name and policy unless told), in key order."""
    out: dict[tuple[str, str], list[Config]] = {}
    for c in configs:
        out.setdefault(key(c), []).append(c)
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
    tie_keys = {config_key(c) for c in ties}
    win_key = config_key(winner) if winner is not None else None
    for gi, ((name, policy), group) in enumerate(_group(configs).items()):
        xs = np.array([c.worst_recall for c in group])
        ys = np.array([value(c) for c in group])
        # lower is better for the front: QPS is turned into seconds per query
        front = metrics.pareto_front(xs, ys if cost != "qps" else 1.0 / ys)
        _plot_group(ax, xs, ys, front, policy, colours[name], _group_label(name, policy, multi), linewidth=1.4,
                    gid=f"{{}}-{gi}", points=points, label_dominated=True)
        if cost == "p99":
            on = set(front.tolist()) | {i for i, c in enumerate(group) if config_key(c) in tie_keys}
            bars += _p99_bars(ax, [group[i] for i in sorted(on)], colours[name], f"ci-{gi}")
        rung = [i for i, c in enumerate(group) if c.noisy_steps]
        if rung:
            _ring(ax, _clip_recall(xs[rung]), ys[rung], f"noisy-{gi}", None if noisy else "noisy timings")
            points[f"noisy-{gi}"] = len(rung)
            noisy += len(rung)
    ax.set_yscale("log")
    _plain_log(ax.yaxis)
    _logit_axis(ax, [c.worst_recall for c in configs])
    ax.set_xlabel(f"recall@{k}" + (" (worst search step)" if is_daily(configs) else "") + " — logit axis")
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
    tied = [c for c in configs if config_key(c) in tie_keys and config_key(c) != win_key]
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
        lines.append(f"Error bars: the 95 % interval of the worst step's p99 (bootstrap over {rounds_text(configs)} "
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


# --- memory -------------------------------------------------------------------------------------------
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
        ax.set_xlabel(f"recall@{k}" + (" (worst search step)" if is_daily(configs) else "") + " — logit")
        ax.set_ylabel(ylabel)
    base = [c.baseline_bytes for c in configs if math.isfinite(c.baseline_bytes)]
    fig.suptitle(f"Recall@{k} vs memory", fontsize=12, fontweight="bold")
    handles, labels = axes[0].get_legend_handles_labels()
    has_lib = any(key.startswith("lib-") for key in points)
    if has_lib:
        from matplotlib.lines import Line2D  # deferred: heavy (module docstring)

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
def fig_catalog(configs: Sequence[Config], context: str, target: float,
                forecasts: dict[str, CatalogForecast] | None = None, missing: Sequence[str] = (),
                at_n: int | None = None) -> tuple[Any, dict[str, int]]:
    """Latency, index memory and build time against catalog size: for each index and size, the cheapest
    setting reaching recall `target` (`tables.catalog_points`); × where none does.

    With `at_n` and its `forecasts` (`tables.catalog_forecasts`, `annbench plot --at-n N`), each curve goes on
    to N as a dashed line ("forecast-<name>-<panel>") from its largest measured size, with the 95 % interval
    as a translucent band, and a hollow marker at the largest size where the fit without it predicts it
    ("holdout-…"); `missing` names the curves with no forecast."""
    from matplotlib.lines import Line2D  # deferred: heavy (module docstring)
    from matplotlib.patches import Patch  # deferred: heavy (module docstring)
    from matplotlib.ticker import NullLocator  # deferred: heavy (module docstring)

    fig = _new_figure(12.5, 4.8)
    axes = fig.subplots(1, 3)
    data = catalog_points(configs, target)
    colours = _colours(list(data))
    k = configs[0].k if configs else "k"
    points: dict[str, int] = {}
    forecasts = forecasts or {}
    panels = (("p99 latency (ms, log)", "p99_ms", lambda c: c.worst_p99_ms, lambda v: v),
              ("index memory (MiB, log)", "index_bytes", lambda c: c.index_bytes, lambda v: max(v, 2**20 / 10) / 2**20),
              ("build time (s, log)", "build_seconds", lambda c: c.build_seconds, lambda v: max(v, 1e-4)))
    for ai, (ax, (ylabel, figure, raw, scale)) in enumerate(zip(axes, panels, strict=True)):
        floor = math.inf  # the smallest value drawn in this panel: where a band with no lower end stops
        for ni, (name, pts) in enumerate(data.items()):
            col = colours[name]
            sizes = np.array([p[0] for p in pts])
            ys = np.array([scale(raw(p[1])) for p in pts])
            floor = min(floor, float(np.nanmin(ys)) if np.isfinite(ys).any() else math.inf)
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
        for name, fc in forecasts.items():
            if name in data:
                _forecast_curve(ax, fc, figure, scale(raw(data[name][-1][1])), raw(data[name][-1][1]), scale,
                                colours[name], f"{_gid_part(name)}-{ai}", floor / 2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
        ax.set_xlabel("catalog size (vectors, log)")
        ax.set_ylabel(ylabel)
        all_sizes = sorted({p[0] for pts in data.values() for p in pts})
        ticks = [(s, f"{s:,}") for s in all_sizes]
        if at_n is not None and at_n not in all_sizes:
            ticks = sorted([*ticks, (at_n, f"{at_n:,}\n(forecast)")])
        ax.set_xticks([t for t, _ in ticks], [lbl for _, lbl in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(Line2D([], [], color="#444444", marker="x", linestyle="none", markersize=8, markeredgewidth=2))
    labels.append(f"no setting reaches\nrecall@{k} ≥ {target:g}")
    if forecasts:
        handles += [(Patch(color="#444444", alpha=0.15, linewidth=0), Line2D([], [], color="#444444",
                                                                             linestyle="--", linewidth=1.3)),
                    Line2D([], [], color="#444444", marker="o", markerfacecolor="none", linestyle="none",
                           markersize=6)]
        labels += [f"forecast to n={at_n:,}\n(95 % band)", "largest size predicted\nfrom the others"]
    fig.legend(handles, labels, loc="outside right upper", frameon=False, title="index", title_fontsize=8)
    fig.suptitle(f"Catalog size: cost of the cheapest setting reaching recall@{k} ≥ {target:g}",
                 fontsize=12, fontweight="bold")
    lines = [context, f"For each index and size: the search setting with the lowest p99 among those with "
             f"recall@{k} ≥ {target:g}; × marks a size where no setting reaches it (drawn with the "
             "figures of its highest-recall setting) — where the index stops meeting the target."]
    if at_n is not None:
        largest = max((p[0] for pts in data.values() for p in pts), default=0)
        lines.append(forecast_note(at_n, largest, missing) + " Each forecast follows the setting drawn at its "
                     "curve's largest size; a value at or below zero is drawn at the panel's floor.")
    _footer(fig, lines)
    return fig, points


def _gid_part(name: str) -> str:
    """`name` as a piece of an SVG id: letters, digits, '-' and '_' only."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _interp_log(x0: float, x1: float, y0: float, y1: float, xs: np.ndarray) -> np.ndarray:
    """y at xs on the straight line from (x0, y0) to (x1, y1) in log–log coordinates (the figure's)."""
    t = (np.log(xs) - math.log(x0)) / (math.log(x1) - math.log(x0))
    return np.exp(math.log(y0) + t * (math.log(y1) - math.log(y0)))


def _forecast_curve(ax: Any, fc: CatalogForecast, figure: str, y_start: float, raw_start: float,
                    scale: Callable[[float], float], colour: Any, gid: str, floor: float) -> None:
    """One curve's dashed forecast to fc.n, its 95 % band and its held-out check (see `fig_catalog`)."""
    f, f0 = fc.at_n.forecasts.get(figure), fc.at_start.forecasts.get(figure)
    if f is None or not math.isfinite(f.value) or fc.n == fc.start:
        return
    # a value at or below zero (a fitted line crossing zero; a band's lower end) has no place on a log axis:
    # it is drawn at the panel's floor, half its smallest measured value
    def at(v: float) -> float:
        return scale(v) if v > 0 and scale(v) > 0 else floor

    x0, x1 = float(fc.start), float(fc.n)
    ax.plot([x0, x1], [y_start if y_start > 0 else floor, at(f.value)], color=colour, linestyle="--",
            linewidth=1.3, alpha=0.9, gid=f"forecast-{gid}")
    ends = [(f0.lo, f0.hi) if f0 is not None else (math.nan, math.nan), (f.lo, f.hi)]
    if all(math.isfinite(v) for pair in ends for v in pair):
        (lo0, hi0), (lo1, hi1) = [(at(lo), at(hi)) for lo, hi in ends]
        xs = np.geomspace(min(x0, x1), max(x0, x1), 32)
        a, b = (x0, x1) if x0 < x1 else (x1, x0)
        la, lb = (lo0, lo1) if x0 < x1 else (lo1, lo0)
        ha, hb = (hi0, hi1) if x0 < x1 else (hi1, hi0)
        ax.fill_between(xs, _interp_log(a, b, la, lb, xs), _interp_log(a, b, ha, hb, xs), color=colour,
                        alpha=0.15, linewidth=0, gid=f"forecast-band-{gid}")
    if f.holdout_error is not None and math.isfinite(f.holdout_error) and f.holdout_n == fc.start:
        predicted = raw_start + f.holdout_error if figure == "recall" else raw_start * (1 + f.holdout_error)
        ax.plot([x0], [at(predicted)], marker="o", markersize=6, markerfacecolor="none", markeredgecolor=colour,
                markeredgewidth=1.2, linestyle="none", gid=f"holdout-{gid}")


# --- day by day -----------------------------------------------------------------------------------------
def _shades(colour: str, n: int) -> list[Any]:
    from matplotlib.colors import to_rgb  # deferred: heavy (module docstring)

    r, g, b = to_rgb(colour)
    # light → dark with search effort, so the settings of one policy read as one family
    return [(r * t, g * t, b * t) if t <= 1 else (r, g, b) for t in np.linspace(1.0, 0.55, n)] if n > 1 \
        else [(r, g, b)]


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
    if is_runbook([c.run for c in daily]):
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


# --- upkeep per day ------------------------------------------------------------------------------------
def fig_update_cost(runs: Sequence[RunRecord], context: str) -> tuple[Any, dict[str, int]]:
    """One panel per (index name, policy) that ran; lines: seconds per day of each op, log scale, y shared.

    The builds of a build grid share their name's panel (median line, min–max band), so a sweep of hundreds
    of configurations still gives a figure a person can read (and draw in seconds).
    """
    daily = [r for r in runs if r.ok and r.scenario.timeline == "daily"]
    order = {"native": 0, "tombstone": 1, "rebuild": 2}
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for r in daily:
        name = (r.index.label or r.index.family).split("[")[0]
        groups.setdefault((name, r.index.policy), []).append(r)
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
            ax.set_xlabel("runbook step" if is_runbook(daily) else "day")
    _plain_log(axes.flat[0].yaxis, subs=(1.0,))
    from matplotlib.lines import Line2D  # deferred: heavy (module docstring)

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
        ax.set_xlabel(f"recall@{k} (ANN vs exact)" + (" — worst step" if is_daily(labelled) else "") + ", logit")
        ax.set_ylabel(ylabel)
    fig.suptitle(f"Label metrics: finding the product (hit@{k}, P@{k}) vs finding the exact neighbours "
                 f"(recall@{k})", fontsize=12, fontweight="bold")
    fig.legend(loc="outside right upper", frameon=False, title="index · policy" if multi else "index",
               title_fontsize=8)
    _footer(fig, [context, _worst_note(labelled) + " hit@k and P@k use the dataset's product labels; "
                  "the dashed line is exact search (faiss-flat), the best any index can do with these embeddings."])
    return fig, points


# --- embedding transforms ---------------------------------------------------------------------------------
def transform_text(c: Config) -> str:
    """The configuration's embedding transform in a few words ("none", "PCA 32 + re-rank 40", "float16")."""
    spec = c.build_params.get(TRANSFORM_KEY) or {}
    parts = []
    if spec.get("pca"):
        parts.append(f"PCA {spec['pca']}")
    if spec.get("normalize"):
        parts.append("L2-normalised")
    if spec.get("precision", "float32") != "float32":
        parts.append(str(spec["precision"]))
    if spec.get("rerank"):
        parts.append(f"re-rank {spec['rerank']}")
    return " + ".join(parts) or "none"


def has_transforms(configs: Sequence[Config]) -> bool:
    """True when the configurations differ in their embedding transform (a figure compares them)."""
    return len({transform_text(c) for c in configs if TRANSFORM_KEY in c.build_params}) > 1


def fig_transforms(configs: Sequence[Config], context: str) -> tuple[Any, dict[str, int]]:
    """Recall@k (against the ORIGINAL embeddings' exact neighbours) and P@k against memory, one marker per
    transform and one colour per index: what PCA, precision and re-ranking buy and cost. Memory is the whole
    configuration's (the index, the kept original vectors and the PCA), since all of it must be served."""
    mine = [c for c in configs if TRANSFORM_KEY in c.build_params]
    k = mine[0].k
    kinds = sorted({transform_text(c) for c in mine}, key=lambda t: (t != "none", t))
    markers = dict(zip(kinds, "osD^vP*Xhp<>" * 4, strict=False))
    colours = _colours([c.name for c in mine])
    labelled = any(c.worst_p_at_k is not None for c in mine)
    fig = _new_figure(12 if labelled else 7, 5.2)
    axes = fig.subplots(1, 2 if labelled else 1, squeeze=False)[0]
    points: dict[str, int] = {}
    panels = [("worst_recall", f"recall@{k} (truth: original embeddings)")]
    if labelled:
        panels.append(("worst_p_at_k", f"P@{k} (share of top {k} that is the product)"))
    for ai, (ax, (attr, ylabel)) in enumerate(zip(axes, panels, strict=True)):
        for gi, ((name, kind), group) in enumerate(_group(mine, lambda c: (c.name, transform_text(c))).items()):
            pts = [(c.index_bytes / 2**20, getattr(c, attr)) for c in group
                   if getattr(c, attr) is not None and math.isfinite(c.index_bytes)]
            if not pts:
                continue
            gid = f"transform{ai}-{gi}"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle="none", marker=markers[kind],
                    color=colours[name], markersize=7, alpha=0.85, gid=gid,
                    markerfacecolor="none" if "re-rank" not in kind else colours[name])
            points[gid] = len(pts)
        ax.set_xscale("log")
        _plain_log(ax.xaxis)
        ax.set_xlabel("memory (MiB, log): index + kept original vectors + PCA")
        ax.set_ylabel(ylabel + (", worst step" if is_daily(mine) else ""))
    from matplotlib.lines import Line2D  # deferred: heavy (module docstring)

    handles = ([Line2D([], [], color=colours[n], marker="o", linestyle="none") for n in sorted(colours)]
               + [Line2D([], [], color="#555555", marker=markers[t], linestyle="none",
                         markerfacecolor="#555555" if "re-rank" in t else "none") for t in kinds])
    fig.legend(handles, [*sorted(colours), *kinds], loc="outside right upper", frameon=False,
               title="index · transform", title_fontsize=8)
    fig.suptitle("Embedding transforms: PCA, stored precision and re-ranking against memory",
                 fontsize=12, fontweight="bold")
    _footer(fig, [context, _worst_note(mine) + " Recall is scored against the exact neighbours of the untransformed "
                  "embeddings (the truth a user cares about), not of the space the index was given. Filled markers "
                  "re-rank with the original vectors kept beside the index; their memory is counted. Every search "
                  "setting and policy is a point."])
    return fig, points


# --- throughput under concurrency -------------------------------------------------------------------------
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


# --- search while updating -----------------------------------------------------------------------------------
def fig_ingest(runs: Sequence[RunRecord], context: str) -> tuple[Any, dict[str, int]]:
    """Search while updating, per run: p99 under ingestion vs at rest, ingest rate vs target, snapshot recall."""
    mine = ingest_runs(runs)
    fig = _new_figure(13.5, 4.6 + 0.12 * len(mine))
    axes = fig.subplots(1, 3)
    points: dict[str, int] = {}
    colours = _colours([run_name(r) for r in mine])
    targets: set[float] = set()
    for ri, run in enumerate(mine):
        col = colours[run_name(run)]
        days = ingest_days(run)
        rest = [d.at_rest.latency_ms.p99 for d in days]
        under = [d.under_ingest.latency_ms.p99 for d in days]
        axes[0].plot([ri - 0.12] * len(rest), rest, linestyle="none", marker="o", markerfacecolor="none",
                     color=col, gid=f"ingest0-rest-{ri}")
        axes[0].plot([ri + 0.12] * len(under), under, linestyle="none", marker="o", color=col,
                     gid=f"ingest0-under-{ri}")
        points[f"ingest0-rest-{ri}"], points[f"ingest0-under-{ri}"] = len(rest), len(under)
        rates = [d.step.achieved_rate or 0.0 for d in days]
        targets.update(d.step.target_rate for d in days if d.step.target_rate is not None)
        axes[1].plot([ri] * len(rates), rates, linestyle="none", marker="D", color=col, gid=f"ingest1-{ri}")
        points[f"ingest1-{ri}"] = len(rates)
        snap = [r for d in days for r in d.snapshot_recalls]
        at_rest = [d.rest_recall for d in days if d.rest_recall is not None]
        axes[2].plot([ri + 0.12] * len(snap), snap, linestyle="none", marker="o", color=col,
                     gid=f"ingest2-snap-{ri}")
        axes[2].plot([ri - 0.12] * len(at_rest), at_rest, linestyle="none", marker="o",
                     markerfacecolor="none", color=col, gid=f"ingest2-rest-{ri}")
        points[f"ingest2-snap-{ri}"], points[f"ingest2-rest-{ri}"] = len(snap), len(at_rest)
    for t in sorted(targets):
        axes[1].axhline(t, color="#888888", linestyle="--", linewidth=1)
        axes[1].annotate(f"target {t:,.0f}/s", (0.01, t), xycoords=("axes fraction", "data"), xytext=(0, 3),
                         textcoords="offset points", fontsize=7.5, color="#555555")
    labels = [run_name(r) for r in mine]
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
