"""The whole report: which figures and tables each scenario gets, drawing them, and the page.

Owns `plot` (what `annbench plot RESULTS_DIR [--out DIR]` runs), `plot_command` (the same, saying what it
wrote) and `thumbnail` (`annbench plot RESULTS_DIR --thumbnail FILE`: the README's figure). Reads result
files through `annbench.recommend` and never writes to them. Per scenario it picks the figures
(`annbench.report.figures`) and tables (`annbench.report.tables`) that apply, then draws every figure of
every scenario in one go through the fork pool (`annbench.report.pool`) and writes index.html
(`annbench.report.page`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import annbench.report.figures as figures  # by module: a figure function is looked up when the plan is made
from annbench.errors import ConfigError
from annbench.recommend import Config, Constraints, configurations, context_line, load_runs, recommend
from annbench.report.page import write_html
from annbench.report.pool import run_tasks
from annbench.report.tables import (
    CatalogForecast,
    FigureInfo,
    Report,
    ScenarioReport,
    catalog_forecasts,
    concurrency_table,
    forecast_note,
    ingest_runs,
    ingest_table,
    sanity_notes,
    scaling_notes,
    scenario_key,
    upkeep_table,
)
from annbench.results import RunRecord

# a figure's drawing time relative to a recall-vs-cost figure's, by the end of its key (measured on ci_smoke:
# days 2.0 s, upkeep 1.0 s, recall-p99 0.7 s with its error bars, the others ~0.35 s)
DRAW_COST = {"days": 6.0, "upkeep": 3.0, "concurrency": 2.0, "ingest": 2.0, "size": 2.0, "p99": 2.0}
FIGURE_KINDS = ("pareto-p50", "pareto-p99", "pareto-qps", "memory", "catalog", "days", "upkeep", "labels", "transforms",
                "concurrency", "ingest")


def plot(results_dir: Path, out_dir: Path | None = None, cons: Constraints | None = None,
         only: Sequence[str] | None = None, write_index: bool | None = None,
         workers: int | None = None, at_n: int | None = None) -> Report:
    """Write every figure (PNG + SVG) and index.html for the results below `results_dir`; return what was written.

    `only` restricts to some figure kinds (`FIGURE_KINDS`); index.html is then written only when
    `write_index` says so. `workers`: processes drawing figures (None: one per core; 1: in this process).
    `at_n` (`annbench plot --at-n N`): each catalog-size figure's curves go on to size N as forecasts
    (`annbench.forecast`), with their 95 % bands and held-out checks.
    """
    cons = (cons or Constraints()).validate()
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir / "report"
    loaded = load_runs(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recs, rec_notes = recommend(loaded.runs, cons)
    winners = {r.workload: r.winner for r in recs}
    ties = {r.workload: r.ties for r in recs}
    all_configs, failures = configurations(loaded.runs)
    by_scen: dict[str, list[RunRecord]] = {}
    for r in loaded.runs:
        by_scen.setdefault(r.scenario.name, []).append(r)
    scenario_reports: list[ScenarioReport] = []
    tasks: list[Callable[[], dict[str, int]]] = []
    costs: list[float] = []
    # daily scenarios first: the question the toolkit exists for
    for name in sorted(by_scen, key=lambda n: (by_scen[n][0].scenario.timeline != "daily", n)):
        srep, jobs = _scenario_report(name, by_scen[name], all_configs, winners, ties, cons, out_dir, only, at_n)
        scenario_reports.append(srep)
        tasks += [partial(figures.draw_and_save, key, draw, out_dir) for key, draw in jobs]
        costs += [DRAW_COST.get(key.rsplit("-", 1)[-1], 1.0) for key, _draw in jobs]
    # every figure of every scenario in one pool: drawing is nearly all of a report's time. The slowest
    # figures go first, so that no worker starts the day-by-day figure while the others run out of work
    order = sorted(range(len(tasks)), key=lambda i: -costs[i])
    drawn = dict(zip(order, run_tasks([tasks[i] for i in order], workers), strict=True))
    points = (drawn[i] for i in range(len(tasks)))
    for srep in scenario_reports:
        for info in srep.figures:
            info.points = next(points)
    rep = Report(out_dir, out_dir / "index.html", scenario_reports, recs, rec_notes, failures, loaded.bad)
    if write_index if write_index is not None else only is None:
        write_html(rep, results_dir, cons)
    return rep


def _want(only: Sequence[str] | None, kind: str) -> bool:
    return only is None or kind in only


def _scenario_report(name: str, runs: list[RunRecord], all_configs: list[Config],
                     winners: dict[Any, Config | None], ties: dict[Any, list[Config]], cons: Constraints,
                     out_dir: Path, only: Sequence[str] | None, at_n: int | None = None
                     ) -> tuple[ScenarioReport, list[tuple[str, figures.Drawing]]]:
    """One scenario's section of the report, its figures not drawn yet, and the (key, drawing) of each."""
    # the newest workload of this scenario name (a rerun at another --scale overwrites most, not always all)
    newest = max(runs, key=lambda r: r.started_at)
    kept = [r for r in runs if r.scenario.hash == newest.scenario.hash]
    notes = []
    if len(kept) < len(runs):
        notes.append(f"{len(runs) - len(kept)} older run(s) of {name} measured a different workload (the scenario "
                     "or --scale changed) and are left out of these figures; the recommendation lists them apart.")
    runs = kept
    configs = [c for c in all_configs if c.workload.scenario == name
               and c.workload.scenario_hash == newest.scenario.hash]
    timeline = newest.scenario.timeline
    sizes = sorted({c.workload.size for c in configs if c.workload.size})
    key = scenario_key(name)
    # Pareto figures compare one workload: for a static scenario with several sizes, the largest
    pareto = [c for c in configs if not sizes or c.workload.size == sizes[-1]]
    prun = [r for r in runs if not sizes or r.index.size == sizes[-1]]
    pctx = context_line(prun)
    winner = next((w for wl, w in winners.items() if w is not None and pareto and wl == pareto[0].workload), None)
    tie_set = ties.get(pareto[0].workload, []) if pareto else []
    if len(tie_set) < 2:
        tie_set = []  # a winner alone is no tie
    if len(sizes) > 1:
        notes.append(f"Recall-vs-cost figures are at the largest size (n={sizes[-1]:,}); "
                     "the catalog-size figure covers every size.")
    ctx_all = context_line(runs)

    figs: list[FigureInfo] = []
    jobs: list[tuple[str, figures.Drawing]] = []

    def emit(kind: str, title: str, caption: str, draw: figures.Drawing) -> None:
        fkey = f"{key}-{kind}"
        figs.append(FigureInfo(fkey, title, caption, out_dir / f"{fkey}.png", out_dir / f"{fkey}.svg"))
        jobs.append((fkey, draw))  # drawn later, with every other scenario's figures

    if pareto:
        for cost, title, cap in (
                ("p99", "Recall vs p99 latency", "Single-query p99 latency (one query per call) against recall."),
                ("p50", "Recall vs p50 latency", "Single-query median latency against recall."),
                ("qps", "Recall vs batch QPS", "All queries in one call: throughput against recall.")):
            if _want(only, f"pareto-{cost}"):
                emit(f"recall-{cost}", title, cap,
                     partial(figures.fig_pareto, pareto, cost, pctx, winner, cons, tie_set))
        if _want(only, "memory"):
            emit("recall-memory", "Recall vs memory", "Index memory (what the index holds in the run's process, "
                 "with the library's own count where it gives one) and peak RSS against recall.",
                 partial(figures.fig_memory, pareto, pctx))
        if any(c.worst_hit is not None for c in pareto) and _want(only, "labels"):
            emit("labels", "Label metrics", "hit@k and P@k beside recall@k.",
                 partial(figures.fig_labels, pareto, pctx))
        if figures.has_transforms(pareto) and _want(only, "transforms"):
            emit("transforms", "Embedding transforms", "PCA, stored precision and re-ranking: recall against the "
                 "original embeddings' exact neighbours and P@k, against the memory of the index, the kept vectors "
                 "and the PCA.", partial(figures.fig_transforms, pareto, pctx))
    if len(sizes) > 1 and _want(only, "catalog"):
        caption = f"Cost at recall ≥ {cons.min_recall:g} against catalog size."
        fcs: dict[str, CatalogForecast] = {}
        missing: list[str] = []
        if at_n is not None:
            fcs, missing = catalog_forecasts(configs, cons.min_recall, at_n)
            caption += " " + forecast_note(at_n, sizes[-1], missing)
        emit("catalog-size", "Catalog size", caption,
             partial(figures.fig_catalog, configs, ctx_all, cons.min_recall, fcs, missing, at_n))
    if timeline == "daily" and configs:
        if _want(only, "days"):
            emit("days", "Day by day", "Recall, hit@k, p99 and leaks per day.",
                 partial(figures.fig_days, configs, ctx_all))
        if _want(only, "upkeep"):
            emit("upkeep", "Upkeep per day", "Seconds per update operation per day.",
                 partial(figures.fig_update_cost, runs, ctx_all))
    tables = []
    if any(c.concurrency_levels for c in pareto):
        if _want(only, "concurrency"):
            emit("concurrency", "Throughput under concurrency",
                 "QPS against p99 at each number of client threads, per index and setting.",
                 partial(figures.fig_concurrency, pareto, pctx))
        tables.append(("Throughput under concurrency (worst step per level)", *concurrency_table(pareto)))
        notes += scaling_notes(pareto)
    if ingest_runs(runs):
        if _want(only, "ingest"):
            emit("ingest", "Search while updating",
                 "Latency under ingestion vs at rest, ingest rate vs target, recall on snapshots.",
                 partial(figures.fig_ingest, runs, ctx_all))
        tables.append(("Search while updating (one row per ingest day)", *ingest_table(runs)))
    if timeline == "daily":
        head, rows = upkeep_table(configs)
        if rows:
            tables.append(("Upkeep against native writes on the same build (native → policy)", head, rows))
    srep = ScenarioReport(name, timeline, ctx_all, figs, configs, notes + sanity_notes(configs), tables)
    return srep, jobs


def plot_command(results_dir: Path, out_dir: Path | None, cons: Constraints, workers: int | None = None,
                 at_n: int | None = None) -> Report:
    """`annbench plot [--at-n N]`: write the report and say where it is."""
    rep = plot(results_dir, out_dir, cons, workers=workers, at_n=at_n)
    if at_n is not None and not any(f.key.endswith("-catalog-size") for f in rep.figures):
        print("annbench: --at-n: no catalog-size figure to extend (it needs a static scenario measured at "
              "several sizes)", file=sys.stderr)
    for _path, why in rep.bad:  # listed on the page too; said here so a skipped file is never a surprise
        print(f"annbench: skipped {why}", file=sys.stderr)
    print(f"annbench: wrote {len(rep.figures)} figures (PNG + SVG) and {rep.index_html}")
    for rec in rep.recommendations:
        w = rec.winner
        print(f"annbench: {rec.workload.title()}: " + (f"recommended {w.short()}" if w else rec.why()))
    return rep


# --- thumbnail (the README's figure) --------------------------------------------------------------------
def thumbnail(results_dir: Path, out_png: Path, width_px: int = 900, cons: Constraints | None = None) -> Path:
    """Write the main figure — recall vs p99 of the first daily scenario (else the first scenario, at its
    largest size), with the recommendation marked — as a PNG `width_px` wide: the README's thumbnail."""
    import matplotlib  # deferred: heavy (see annbench.report.figures)

    cons = (cons or Constraints()).validate()
    runs = load_runs(Path(results_dir)).runs
    configs, _ = configurations(runs)
    if not configs:
        raise ConfigError(f"no finished run in {results_dir} to draw")
    scen = min(configs, key=lambda c: (c.workload.timeline != "daily", c.workload.scenario)).workload.scenario
    largest = max((c.workload.size or 0) for c in configs if c.workload.scenario == scen)
    mine = [c for c in configs if c.workload.scenario == scen and (c.workload.size or 0) == largest]
    wl = mine[0].workload
    recs, _ = recommend([r for r in runs if r.scenario.name == scen], cons)
    winner = next((r.winner for r in recs if r.workload == wl), None)
    ties = next((r.ties for r in recs if r.workload == wl and len(r.ties) > 1), [])
    ctx = context_line([r for r in runs if r.scenario.name == scen and (r.index.size or 0) == largest])
    out_png = Path(out_png)
    with matplotlib.rc_context(figures.RC):
        fig, _pts = figures.fig_pareto(mine, "p99", ctx, winner, cons, ties)
        # rendered at the target width (not downscaled): crisp text at any size
        figures.save(fig, out_png, dpi=width_px / fig.get_figwidth())
    return out_png
