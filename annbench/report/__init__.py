"""The report: matplotlib figures (PNG + SVG) and an `index.html` that shows them with their tables.

`annbench plot RESULTS_DIR [--out DIR]` runs `plot_command`; `annbench plot RESULTS_DIR --thumbnail FILE`
runs `thumbnail` (the README's figure). The report reads result files through
`annbench.recommend.configurations` and never writes to them: every derived figure (Pareto fronts,
worst steps, the recommendation) is computed from them. Every file it writes goes through
`annbench.atomic`.

One module per concern:
- `build`: which figures and tables each scenario gets; `plot`, `plot_command`, `thumbnail`;
- `figures`: the matplotlib figures (`fig_*`) and how one is drawn and saved;
- `tables`: the derived data: tables, notes, catalog-size points, and the `Report` record;
- `page`: index.html, from a jinja2 template with autoescaping;
- `pool`: the fork pool that draws the figures in parallel.

This package re-exports what the command line and the tests use.
"""

from __future__ import annotations

from annbench.report.build import FIGURE_KINDS, plot, plot_command, thumbnail
from annbench.report.figures import (
    fig_catalog,
    fig_concurrency,
    fig_days,
    fig_ingest,
    fig_labels,
    fig_memory,
    fig_pareto,
    fig_update_cost,
)
from annbench.report.tables import (
    FigureInfo,
    Report,
    ScenarioReport,
    catalog_points,
    concurrency_table,
    config_table,
    config_table_notes,
    ingest_table,
    library_bytes,
    memory_measure,
    sanity_notes,
    scaling_notes,
    update_costs,
    upkeep_table,
)

__all__ = [
    "FIGURE_KINDS", "FigureInfo", "Report", "ScenarioReport", "catalog_points", "concurrency_table", "config_table",
    "config_table_notes", "fig_catalog", "fig_concurrency", "fig_days", "fig_ingest", "fig_labels", "fig_memory",
    "fig_pareto", "fig_update_cost", "ingest_table", "library_bytes", "memory_measure", "plot", "plot_command",
    "sanity_notes", "scaling_notes", "thumbnail", "update_costs", "upkeep_table",
]
