"""The `annbench` command line (click): run, list, datasets, results, and the report and gate commands.

Exit status of every command: 0 done; 1 a verdict went against you (a regression, no configuration
meets the constraints, corrupt results); 2 the input or the command line is wrong (one line on stderr,
no traceback); 130 interrupted. Paths come from options with defaults relative to the current folder.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click

from annbench import (
    adapters,
    check,
    concurrency,
    executors,
    export,
    hardness,
    harness,
    recommend,
    report,
    results,
    runbook,
)
from annbench.datasets import open_dataset, save_dataset
from annbench.errors import AnnbenchError, ConfigError
from annbench.recommend import constraint_options
from annbench.scenarios import load_scenario, resolve_scenario_path

EXIT_VERDICT, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class _Group(click.Group):
    """Turn every AnnbenchError and command-line mistake into one line and exit 2, and Ctrl-C into 130."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("standalone_mode", None)
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as e:  # click would print its whole usage block; one line says enough
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            click.echo(f"annbench: error: {e.format_message()}{hint}", err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as e:
            click.echo(f"annbench: error: {e.format_message()}", err=True)
            sys.exit(EXIT_USAGE)
        except click.Abort:
            click.echo("annbench: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AnnbenchError as e:
            click.echo(f"annbench: error: {e}", err=True)
            sys.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("annbench: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)


@click.group(cls=_Group)
@click.version_option(package_name="annbench")
def main() -> None:
    """Benchmark approximate-nearest-neighbour indexes on your own embeddings."""


# --- run ---------------------------------------------------------------------------------------------
@main.command()
@click.option("--scenario", "scenario_spec", default=None,
              help="A scenario name from --configs (e.g. reseller_daily_updates) or a path to a YAML file.")
@click.option("--runbook", "runbook_path", type=click.Path(path_type=Path), default=None,
              help="Replay a big-ann-benchmarks streaming runbook (YAML) on --dataset: with --scenario, as that "
                   "scenario's timeline; alone, with the --indexes families [default: hnswlib,usearch,voyager].")
@click.option("--runbook-dataset", "runbook_key", default=None,
              help="The runbook's dataset key, when its file holds several.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Results folder; each run writes <out>/<scenario>/<run>.json.")
@click.option("--configs", "configs_dir", type=click.Path(path_type=Path), default=Path("configs/scenarios"),
              show_default=True, help="Where scenario names are looked up.")
@click.option("--dataset", "dataset_path", default=None, help="Use this embeddings file instead of the scenario's.")
@click.option("--scale", type=float, default=1.0, show_default=True, help="Multiply the catalog sizes.")
@click.option("--indexes", default=None, help="Comma-separated index names or families to run (default: all).")
@click.option("--force", is_flag=True, help="Rerun runs that already have a result.")
@click.option("--retry-failed", is_flag=True, help="Rerun runs whose earlier result failed or timed out.")
@click.option("--max-memory-gb", type=float, default=None,
              help="Kill a run whose process RSS exceeds this many GiB (recorded as failed).")
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path), default=None,
              help="Cache for materialised datasets and ground truth [default: <out>/.cache].")
@click.option("--executor", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="Where runs execute: one at a time here, or one task per run on a Dask cluster "
                   "(pip install 'annbench[dask]'; see the README).")
@click.option("--scheduler", default=None,
              help="With --executor dask: the scheduler's address (tcp://HOST:8786) [default: a local cluster].")
def run(scenario_spec: str | None, runbook_path: Path | None, runbook_key: str | None, out_dir: Path,
        configs_dir: Path, dataset_path: str | None, scale: float, indexes: str | None, force: bool,
        retry_failed: bool, max_memory_gb: float | None, cache_dir: Path | None, executor: str,
        scheduler: str | None) -> None:
    """Run a scenario: every index configuration × policy, each in its own process."""
    if max_memory_gb is not None and not max_memory_gb > 0:
        raise ConfigError(f"--max-memory-gb must be a positive number, got {max_memory_gb}")
    if scheduler is not None and executor != "dask":
        raise ConfigError("--scheduler needs --executor dask")
    wanted = [s.strip() for s in indexes.split(",") if s.strip()] if indexes else None
    if runbook_path is not None:
        # every run's process re-reads its scenario, so the runbook's becomes a file (annbench.runbook)
        base = resolve_scenario_path(scenario_spec, configs_dir) if scenario_spec else None
        path = runbook.write_scenario(runbook_path, (cache_dir or out_dir / ".cache") / "runbooks",
                                      dataset=dataset_path, key=runbook_key, scenario=base,
                                      families=None if base else wanted)
        dataset_path, wanted = None, (wanted if base else None)
    elif scenario_spec is None:
        raise ConfigError("give --scenario NAME or --runbook FILE.yaml")
    else:
        if runbook_key is not None:
            raise ConfigError("--runbook-dataset needs --runbook")
        path = resolve_scenario_path(scenario_spec, configs_dir)
    sc = load_scenario(path, scale=scale, dataset_path=dataset_path, indexes=wanted)
    t0 = time.perf_counter()
    ex = executors.make_executor(executor, scheduler, sc)  # a cluster that cannot be used fails before any work
    try:
        results.ensure_writable(out_dir)
        _run_sweep(sc, ex, out_dir, cache_dir, force, retry_failed, max_memory_gb, t0)
    finally:
        ex.close()


def _run_sweep(sc: Any, ex: Any, out_dir: Path, cache_dir: Path | None, force: bool, retry_failed: bool,
               max_memory_gb: float | None, t0: float) -> None:
    from tqdm import tqdm  # deferred: a third-party import of ~17 ms that only `run` needs, not every command

    prep = harness.prepare(sc, cache_dir or out_dir / ".cache", progress=lambda m: click.echo(f"annbench: {m}"))
    runs = list(sc.runs())
    click.echo(f"annbench: {sc.name}: {len(runs)} runs ({prep.dataset_info['n']} vectors × "
               f"{prep.dataset_info['dim']}, k={sc.k}, {sc.threads} thread(s)) → {out_dir / sc.name}")
    if not isinstance(ex, executors.LocalExecutor):
        click.echo(f"annbench: executor {ex.describe()}")
    bar = tqdm(total=len(runs), unit="run", dynamic_ncols=True, file=sys.stderr)
    done: list[harness.RunOutcome] = []

    def on_done(outcome: harness.RunOutcome) -> None:
        done.append(outcome)
        bar.update(1)
        bar.write(harness.summary_line(outcome))

    try:
        harness.run_sweep(prep, out_dir, force=force, retry_failed=retry_failed, on_done=on_done, executor=ex,
                          max_memory_bytes=None if max_memory_gb is None else int(max_memory_gb * 2**30))
    except KeyboardInterrupt:
        bar.close()
        finished = [o for o in done if o.status != "skipped"]
        click.echo(f"annbench: interrupted; {len(finished)} run(s) finished this time and are saved, "
                   f"{len(runs) - len(done)} not run (rerun the same command to resume)", err=True)
        sys.exit(EXIT_INTERRUPTED)
    bar.close()
    counts = {s: sum(o.status == s for o in done) for s in ("ok", "skipped", "failed", "timeout")}
    tally = ", ".join(f"{v} {k}" for k, v in counts.items())
    click.echo(f"annbench: done in {time.perf_counter() - t0:.0f} s: {tally}; results in {out_dir / sc.name}")
    noisy = sum(harness.noisy_settings(o.record) > 0 for o in done if o.status == "ok" and o.record)
    if noisy:
        click.echo(f"annbench: {noisy} run(s) had noisy timing steps (rounds that disagree, or a timed thread "
                   "without its core): their latency figures are marked; rerun them on a quiet machine (--force)")
    click.echo(f"annbench: next: annbench plot {shlex.quote(str(out_dir))}   ·   "
               f"annbench recommend {shlex.quote(str(out_dir))} --min-recall 0.9")


# --- list --------------------------------------------------------------------------------------------
@main.command("list")
def list_() -> None:
    """Every index family with its parameters, defaults and update capabilities."""
    for name in adapters.names():
        try:
            cls = adapters.get(name)
        except ImportError as e:
            click.echo(f"{name}: unavailable ({e})")
            continue
        info = cls.info()
        caps = ", ".join(f"{k} {v}" for k, v in info.capabilities.as_dict().items())
        click.echo(f"{name}  — {info.description}")
        click.echo(f"  capabilities: {caps}")
        click.echo("  build:  " + ("; ".join(p.describe() for p in info.build_params) or "(none)"))
        click.echo("  search: " + ("; ".join(p.describe() for p in info.search_params) or "(none)"))
        if info.maintenance:
            click.echo("  maintenance policies: " + ", ".join(info.maintenance))


# --- datasets ----------------------------------------------------------------------------------------
@main.group()
def datasets() -> None:
    """Inspect or generate datasets."""


@datasets.command("info")
@click.argument("spec")
@click.option("--queries", default=None, help="Queries file, for a base file without them.")
def datasets_info(spec: str, queries: str | None) -> None:
    """Size, dim, metric, memory and hardness (LID, relative contrast) of NAME (catalog) or PATH."""
    ds = open_dataset(spec, queries=queries)
    info = hardness.describe(ds)
    for key, value in info.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        click.echo(f"{key:>22}: {value}")


@datasets.command("generate")
@click.argument("name", type=click.Choice(["catalog"]))
@click.option("--n", type=click.IntRange(min=1), default=None, help="Number of catalog images.")
@click.option("--dim", type=click.IntRange(min=2), default=None, help="Embedding dimension.")
@click.option("--queries", "n_queries", type=click.IntRange(min=0), default=None, help="Number of queries.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="FILE.npz or FILE.h5")
def datasets_generate(name: str, n: int | None, dim: int | None, n_queries: int | None, seed: int,
                      out: Path) -> None:
    """Generate the synthetic reseller catalog and save it."""
    params = {k: v for k, v in {"n": n, "dim": dim, "n_queries": n_queries}.items() if v is not None}
    ds = open_dataset(name, seed=seed, **params)
    save_dataset(ds, out)
    click.echo(f"annbench: wrote {ds.n} × {ds.dim} vectors and {ds.nq} queries to {out}")


# --- results -----------------------------------------------------------------------------------------
@main.group("results")
def results_group() -> None:
    """Export or verify result files."""


@results_group.command("export")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), required=True)
def results_export(results_dir: Path, csv_path: Path) -> None:
    """One CSV row per (run, step, search setting), for pandas."""
    n, skipped = export.export_csv(results_dir, csv_path)
    for why in skipped:
        click.echo(f"annbench: skipped {why}", err=True)
    click.echo(f"annbench: wrote {n} rows to {csv_path}")


@results_group.command("export-ann-benchmarks")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Folder for results/<dataset>/<k>/<algo>/<params>.hdf5 and data/<dataset>.hdf5.")
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path), default=None,
              help="The runs' cache of data and ground truth [default: RESULTS_DIR/.cache or its parent's].")
def results_export_ann_benchmarks(results_dir: Path, out_dir: Path, cache_dir: Path | None) -> None:
    """ann-benchmarks' per-run HDF5 files of runs whose scenario set keep_answers: true (annbench/export.py)."""
    rep = export.export_ann_benchmarks(results_dir, out_dir, cache_dir, progress=lambda m: click.echo(f"annbench: {m}"))
    for why in rep.skipped:
        click.echo(f"annbench: skipped {why}", err=True)
    click.echo(f"annbench: wrote {len(rep.files)} run file(s) and {len(rep.datasets)} ground-truth file(s) "
               f"to {out_dir}")


@results_group.command("verify")
@click.argument("results_dir", type=click.Path(path_type=Path))
def results_verify(results_dir: Path) -> None:
    """Re-read every result file and list the corrupt ones (exit 1 if any)."""
    loaded = results.load_dir(results_dir)
    for _path, why in loaded.bad:
        click.echo(f"BAD  {why}")
    click.echo(f"annbench: {len(loaded.runs)} valid, {len(loaded.bad)} bad result file(s) in {results_dir}")
    if loaded.bad:
        sys.exit(EXIT_VERDICT)


# --- baseline save and check: the CI recall gate (logic in annbench/check.py) -----------------------
@main.group("baseline")
def baseline_group() -> None:
    """Save the figures `annbench check` gates on."""


@baseline_group.command("save")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="Baseline file to write, e.g. configs/baselines/NAME.json.")
@click.option("--scenario", default=None, help="The scenario to baseline, when RESULTS_DIR holds several.")
def baseline_save(results_dir: Path, out: Path, scenario: str | None) -> None:
    """Write a small, reviewable baseline (recall, hit@k, latency quantiles) of a scenario's ok runs."""
    rep = check.save_baseline(results_dir, out, scenario)
    for what in rep.skipped:
        click.echo(f"annbench: warning: not baselined (not ok): {what}", err=True)
    for why in rep.bad_files:
        click.echo(f"annbench: warning: unreadable result file: {why}", err=True)
    click.echo(f"annbench: wrote {rep.entries} entries of {rep.configs} configuration(s) of {rep.scenario} "
               f"to {rep.path}")


@main.command("check")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--baseline", "baseline_path", type=click.Path(path_type=Path), required=True,
              help="A baseline written by `annbench baseline save`.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.01, show_default=True,
              help="Largest allowed drop of recall@k or hit@k at any entry.")
@click.option("--latency-factor", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Also fail when p50 latency is significantly worse than this many times the baseline's "
                   "[default: latency not checked].")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path), default=None,
              help="Also write the table as markdown (e.g. to $GITHUB_STEP_SUMMARY).")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path), default=None,
              help="Also write JUnit XML, one test case per entry.")
def check_cmd(results_dir: Path, baseline_path: Path, tolerance: float, latency_factor: float | None,
              markdown_path: Path | None, junit_path: Path | None) -> None:
    """Compare RESULTS_DIR with a baseline: exit 0 within tolerance, 1 on a regression, 2 if not comparable."""
    cmp = check.compare(results_dir, baseline_path, tolerance, latency_factor)
    click.echo(check.render_text(cmp))
    if markdown_path is not None:
        check.write_text(markdown_path, check.render_markdown(cmp))
    if junit_path is not None:
        check.write_text(junit_path, check.render_junit(cmp))
    sys.exit(cmp.exit_code)


# --- plot and recommend: the report and the verdict (logic in annbench/report/ and annbench/recommend.py) --
@main.command("plot")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for the figures and index.html [default: RESULTS_DIR/report].")
@click.option("--thumbnail", "thumbnail_png", type=click.Path(path_type=Path), default=None,
              help="Instead of the report, write only its main figure (recall vs p99, the recommendation marked), "
                   "900 px wide, to this PNG: the README's thumbnail.")
@constraint_options
def plot_cmd(results_dir: Path, out_dir: Path | None, thumbnail_png: Path | None, **constraints: Any) -> None:
    """Figures (PNG + SVG) and an index.html, with the recommendation on top, from RESULTS_DIR."""
    cons = recommend.constraints_from_options(**constraints)
    if thumbnail_png is None:
        report.plot_command(results_dir, out_dir, cons)
        return
    if out_dir is not None:
        raise ConfigError("--thumbnail writes one file: give it without --out")
    click.echo(f"annbench: wrote {report.thumbnail(results_dir, thumbnail_png, cons=cons)}")


# --- concurrency: which libraries release the GIL (logic in annbench/concurrency.py) ------------------------
@main.command("concurrency")
@click.option("--n", type=click.IntRange(min=1000), default=50_000, show_default=True,
              help="Catalog size (dim 128).")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Seconds per client-thread level.")
@click.option("--families", default=None,
              help="Comma-separated index families [default: faiss-flat,faiss-ivf,faiss-hnsw,hnswlib,annoy,scann].")
def concurrency_cmd(n: int, seconds: float, families: str | None) -> None:
    """Measure per index family how far its search releases the GIL, and QPS at 1 and 2 client threads."""
    wanted = [f.strip() for f in families.split(",") if f.strip()] if families else None
    for line in concurrency.library_table(n, seconds, wanted):
        click.echo(line)


@main.command("recommend")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--scenario", default=None, help="Only this scenario's results [default: every scenario].")
@constraint_options
def recommend_cmd(results_dir: Path, scenario: str | None, **constraints: Any) -> None:
    """Rank the configurations meeting every constraint at every step; exit 1 when none does."""
    text, code = recommend.run_command(results_dir, recommend.constraints_from_options(**constraints), scenario)
    click.echo(text, nl=False)
    sys.exit(code)


if __name__ == "__main__":
    main()
