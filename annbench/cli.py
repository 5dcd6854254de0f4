"""The `annbench` command line (click): run, list, datasets, results, and the report and gate commands.

Exit status of every command: 0 done; 1 a verdict went against you (a regression, no configuration
meets the constraints, corrupt results); 2 the input or the command line is wrong; 3 the environment
failed (a full disk, a read-only or forbidden folder) — never 1, which CI reads as a regression;
130 interrupted (SIGINT), 143 terminated (SIGTERM). Errors are one line on stderr, never a traceback.
Paths come from options with defaults relative to the current folder.
"""

from __future__ import annotations

import errno
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from annbench import (
    adapters,
    check,
    concurrency,
    executors,
    export,
    hardness,
    harness,
    outlock,
    projection,
    recommend,
    report,
    results,
    runbook,
)
from annbench.datasets import open_dataset, save_dataset
from annbench.errors import (
    EXIT_VERDICT,
    AnnbenchError,
    ConfigError,
    fault_from,
    is_environment_fault,
    reason,
    writing,
)
from annbench.recommend import constraint_options, memory_option
from annbench.scenarios import load_scenario, resolve_scenario_path

EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 128 + signal.SIGINT, 128 + signal.SIGTERM

# Set by SIGTERM's handler so that the interruption it causes says so and exits 143, not 130.
_terminated = threading.Event()


def _stopped(detail: str = "") -> NoReturn:
    """The end of an interrupted command: one line, then 130 (Ctrl-C) or 143 (SIGTERM: CI, kill, a timeout)."""
    if _terminated.is_set():
        click.echo(f"annbench: interrupted (SIGTERM){detail}", err=True)
        sys.exit(EXIT_TERMINATED)
    click.echo(f"annbench: interrupted{detail}", err=True)
    sys.exit(EXIT_INTERRUPTED)


@contextmanager
def _sigterm_as_sigint() -> Iterator[None]:
    """While the command runs, SIGTERM does what Ctrl-C would do at that moment, and `_terminated` is set.

    Whatever handles SIGINT then (Python's KeyboardInterrupt, or the sweep's flag polled at safe points,
    annbench.harness) handles SIGTERM too, so a terminated sweep kills its runs and keeps its finished
    results exactly as an interrupted one does: SIGTERM's default would end the process on the spot.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread (e.g. click's test runner in a thread)
        return

    def on_term(_signum: int, frame: Any) -> None:
        _terminated.set()
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:  # SIGINT ignored (a job started with & by a non-interactive shell): SIGTERM must still stop
            raise KeyboardInterrupt

    _terminated.clear()
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# click >= 8.2 raises this for a group called without a command; 8.1 printed the help and exited 0 itself
_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _Group(click.Group):
    """One line on stderr for every error, with the exit status that says whose fault it is (see above)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("standalone_mode", None)
        try:
            with _sigterm_as_sigint():
                return super().main(*args, standalone_mode=False, **kwargs)
        except _NO_ARGS_IS_HELP as e:  # `annbench` alone asks what there is: not an error
            click.echo(e.ctx.get_help())
            sys.exit(0)
        except click.UsageError as e:  # click would print its whole usage block; one line says enough
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            click.echo(f"annbench: error: {e.format_message()}{hint}", err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as e:
            click.echo(f"annbench: error: {e.format_message()}", err=True)
            sys.exit(EXIT_USAGE)
        except click.Abort:
            _stopped()

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AnnbenchError as e:  # EnvironmentFault included: its exit_status is 3
            click.echo(f"annbench: error: {e}", err=True)
            sys.exit(e.exit_status)
        except OSError as e:
            if not is_environment_fault(e):
                raise  # any other OSError here is a bug of annbench: its traceback is wanted
            # an access no command wraps in errors.writing: still the machine's fault, and still one line
            # (only a write meets a full disk or a read-only mount; a permission also stops a read)
            fault = fault_from(e, "cannot write" if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
                               else "cannot access")
            click.echo(f"annbench: error: {fault}", err=True)
            sys.exit(fault.exit_status)
        except KeyboardInterrupt:
            _stopped()


# Every command: -h as well as --help; a group called without a command prints its help (exit 0).
CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(package_name="annbench")
def main() -> None:
    """Benchmark approximate-nearest-neighbour indexes on your own embeddings."""


# --- run ---------------------------------------------------------------------------------------------
@main.command(short_help="Run a scenario: each configuration in its own process.")
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
@click.option("--queries", "queries_path", default=None,
              help="Queries file for the dataset file (the scenario's dataset.path, or --dataset).")
@click.option("--holdout-queries", type=click.IntRange(min=1), default=None,
              help="Take N base vectors of the dataset file (random rows, seed 0) out of the base as the queries.")
@click.option("--scale", type=float, default=1.0, show_default=True, help="Multiply the catalog sizes.")
@click.option("--indexes", default=None, help="Comma-separated index names or families to run (default: all).")
@click.option("--force", is_flag=True, help="Rerun runs that already have a result.")
@click.option("--retry-failed", is_flag=True, help="Rerun runs whose earlier result failed or timed out.")
@memory_option("Kill a run whose process RSS exceeds this many GiB (2^30 bytes); it is recorded as failed.")
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path), default=None,
              help="Cache for materialised datasets and ground truth [default: <out>/.cache].")
@click.option("--executor", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="Where runs execute: one at a time here, or one task per run on a Dask cluster "
                   "(pip install 'annbench[dask]'; see the README).")
@click.option("--scheduler", default=None,
              help="With --executor dask: the scheduler's address (tcp://HOST:8786) [default: a local cluster].")
@click.option("--wait-for-lock", is_flag=True,
              help="When another sweep is writing into --out, wait for it to end instead of stopping (exit 2).")
def run(scenario_spec: str | None, runbook_path: Path | None, runbook_key: str | None, out_dir: Path,
        configs_dir: Path, dataset_path: str | None, scale: float, indexes: str | None, force: bool,
        retry_failed: bool, max_memory_gib: float | None, cache_dir: Path | None, executor: str,
        scheduler: str | None, wait_for_lock: bool, queries_path: str | None, holdout_queries: int | None) -> None:
    """Run a scenario: every index configuration × policy, each in its own process."""
    if max_memory_gib is not None and not max_memory_gib > 0:
        raise ConfigError(f"--max-memory-gib must be a positive number, got {max_memory_gib}")
    if scheduler is not None and executor != "dask":
        raise ConfigError("--scheduler needs --executor dask")
    wanted = [s.strip() for s in indexes.split(",") if s.strip()] if indexes else None
    cache = cache_dir or out_dir / ".cache"
    if runbook_path is not None:
        # every run's process re-reads its scenario, so the runbook's becomes a file (annbench.runbook)
        base = resolve_scenario_path(scenario_spec, configs_dir) if scenario_spec else None
        with writing("cannot write the runbook's scenario in the cache", cache / "runbooks"):
            path = runbook.write_scenario(runbook_path, cache / "runbooks", dataset=dataset_path, key=runbook_key,
                                          scenario=base, families=None if base else wanted)
        dataset_path, wanted = None, (wanted if base else None)
    elif scenario_spec is None:
        raise ConfigError("give --scenario NAME or --runbook FILE.yaml")
    else:
        if runbook_key is not None:
            raise ConfigError("--runbook-dataset needs --runbook")
        path = resolve_scenario_path(scenario_spec, configs_dir)
    sc = load_scenario(path, scale=scale, dataset_path=dataset_path, indexes=wanted, queries_path=queries_path,
                       holdout_queries=holdout_queries)
    t0 = time.perf_counter()
    ex = executors.make_executor(executor, scheduler, sc)  # a cluster that cannot be used fails before any work
    try:
        results.ensure_writable(out_dir)
        # one sweep at a time per results folder, from before its data are prepared (annbench.outlock)
        with outlock.hold(out_dir, sc.name, wait=wait_for_lock,
                          on_wait=lambda m: click.echo(f"annbench: {m}", err=True)):
            _run_sweep(sc, ex, out_dir, cache, force, retry_failed, max_memory_gib, t0)
    finally:
        ex.close()


def _run_sweep(sc: Any, ex: Any, out_dir: Path, cache: Path, force: bool, retry_failed: bool,
               max_memory_gib: float | None, t0: float) -> None:
    from tqdm import tqdm  # deferred: a third-party import of ~17 ms that only `run` needs, not every command

    with writing("cannot prepare the data and ground truth in the cache", cache):
        prep = harness.prepare(sc, cache, progress=lambda m: click.echo(f"annbench: {m}"))
    runs = list(sc.runs())
    click.echo(f"annbench: {sc.name}: {len(runs)} runs ({prep.dataset_info['n']} vectors × "
               f"{prep.dataset_info['dim']}, k={sc.k}, {sc.threads} thread(s)) → {out_dir / sc.name}")
    if not isinstance(ex, executors.LocalExecutor):
        click.echo(f"annbench: executor {ex.describe()}")
    # A progress bar only on a terminal: in a CI log or a file its carriage-return redraws are noise, and
    # the per-run summary lines (written either way) already say how far the sweep is.
    bar = tqdm(total=len(runs), unit="run", dynamic_ncols=True, file=sys.stderr, disable=not _is_terminal())
    done: list[harness.RunOutcome] = []

    def on_done(outcome: harness.RunOutcome) -> None:
        done.append(outcome)
        bar.update(1)
        bar.write(harness.summary_line(outcome))

    try:
        with writing("cannot write results", out_dir / sc.name):
            harness.run_sweep(prep, out_dir, force=force, retry_failed=retry_failed, on_done=on_done, executor=ex,
                              max_memory_bytes=None if max_memory_gib is None else int(max_memory_gib * 2**30))
    except KeyboardInterrupt:
        bar.close()
        finished = sum(o.status != "skipped" for o in done)
        _stopped(f"; {finished} run(s) finished this time and are saved, {len(runs) - len(done)} not run "
                 "(rerun the same command to resume)")
    except BaseException:
        bar.close()
        raise
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


def _is_terminal() -> bool:
    """Both streams on a terminal: `annbench run 2>&1 | tee log` or a CI job gets no progress-bar redraws."""
    return all(getattr(f, "isatty", lambda: False)() for f in (sys.stdout, sys.stderr))


# --- list --------------------------------------------------------------------------------------------
@main.command("list", short_help="Index families: parameters, defaults, capabilities.")
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
@main.group(short_help="Inspect or generate datasets.")
def datasets() -> None:
    """Inspect or generate datasets."""


@datasets.command("info", short_help="Size, dim, metric, memory and hardness of a dataset.")
@click.argument("spec")
@click.option("--queries", default=None, help="Queries file, for a base file without them.")
def datasets_info(spec: str, queries: str | None) -> None:
    """Size, dim, metric, memory and hardness (LID, relative contrast) of NAME (catalog) or PATH."""
    ds = open_dataset(spec, queries=queries)
    info = hardness.info(ds)  # describe's figures, a degenerate set said in one line, reference sets beside
    for key, value in info.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        click.echo(f"{key:>22}: {value}")


@datasets.command("generate", short_help="Generate the synthetic reseller catalog and save it.")
@click.argument("name", type=click.Choice(["catalog"]))
@click.option("--n", type=click.IntRange(min=1), default=None, help="Number of catalog images.")
@click.option("--dim", type=click.IntRange(min=2), default=None, help="Embedding dimension.")
@click.option("--queries", "n_queries", type=click.IntRange(min=0), default=None, help="Number of queries.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed: the same seed and sizes give the same vectors.")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="FILE.npz or FILE.h5")
def datasets_generate(name: str, n: int | None, dim: int | None, n_queries: int | None, seed: int,
                      out: Path) -> None:
    """Generate the synthetic reseller catalog and save it."""
    params = {k: v for k, v in {"n": n, "dim": dim, "n_queries": n_queries}.items() if v is not None}
    ds = open_dataset(name, seed=seed, **params)
    with writing("cannot write the dataset", out):
        save_dataset(ds, out)
    click.echo(f"annbench: wrote {ds.n} × {ds.dim} vectors and {ds.nq} queries to {out}")


# --- results -----------------------------------------------------------------------------------------
@main.group("results", short_help="Export or verify result files.")
def results_group() -> None:
    """Export or verify result files."""


@results_group.command("export", short_help="One CSV row per run, step and search setting.")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), required=True,
              help="The CSV file to write (replaced whole, never half-written).")
def results_export(results_dir: Path, csv_path: Path) -> None:
    """One CSV row per (run, step, search setting), for pandas."""
    with writing("cannot write the CSV", csv_path):
        n, skipped = export.export_csv(results_dir, csv_path)
    for why in skipped:
        click.echo(f"annbench: skipped {why}", err=True)
    click.echo(f"annbench: wrote {n} rows to {csv_path}")


@results_group.command("export-ann-benchmarks", short_help="ann-benchmarks' per-run HDF5 files.")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Folder for results/<dataset>/<k>/<algo>/<params>.hdf5 and data/<dataset>.hdf5.")
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path), default=None,
              help="The runs' cache of data and ground truth [default: RESULTS_DIR/.cache or its parent's].")
def results_export_ann_benchmarks(results_dir: Path, out_dir: Path, cache_dir: Path | None) -> None:
    """ann-benchmarks' per-run HDF5 files of runs whose scenario set keep_answers: true (annbench/export.py)."""
    with writing("cannot write the ann-benchmarks files", out_dir):
        rep = export.export_ann_benchmarks(results_dir, out_dir, cache_dir,
                                           progress=lambda m: click.echo(f"annbench: {m}"))
    for why in rep.skipped:
        click.echo(f"annbench: skipped {why}", err=True)
    click.echo(f"annbench: wrote {len(rep.files)} run file(s) and {len(rep.datasets)} ground-truth file(s) "
               f"to {out_dir}")


@results_group.command("verify", short_help="List corrupt result files (exit 1 if any).")
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
@main.group("baseline", short_help="Save the figures `annbench check` gates on.")
def baseline_group() -> None:
    """Save the figures `annbench check` gates on."""


@baseline_group.command("save", short_help="Write the baseline `annbench check` gates on.")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="Baseline file to write, e.g. configs/baselines/NAME.json.")
@click.option("--scenario", default=None, help="The scenario to baseline, when RESULTS_DIR holds several.")
def baseline_save(results_dir: Path, out: Path, scenario: str | None) -> None:
    """Write a small, reviewable baseline (recall, hit@k, latency quantiles) of a scenario's ok runs."""
    with writing("cannot write the baseline", out):
        rep = check.save_baseline(results_dir, out, scenario)
    for what in rep.skipped:
        click.echo(f"annbench: warning: not baselined (not ok): {what}", err=True)
    for why in rep.bad_files:
        click.echo(f"annbench: warning: unreadable result file: {why}", err=True)
    click.echo(f"annbench: wrote {rep.entries} entries of {rep.configs} configuration(s) of {rep.scenario} "
               f"to {rep.path}")


@main.command("check", short_help="The CI gate: compare results with a baseline.")
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
    # The files first, the verdict last: a PASS on screen followed by a failed write (and a non-zero exit)
    # would read as both; when a file cannot be written, the one error line is all that is said.
    for path, what, render in ((markdown_path, "the markdown summary", check.render_markdown),
                               (junit_path, "the JUnit XML", check.render_junit)):
        if path is not None:
            _write_rendering(path, what, render(cmp))
    click.echo(check.render_text(cmp))
    sys.exit(cmp.exit_code)


def _write_rendering(path: Path, what: str, text: str) -> None:
    """Write one of check's renderings; any failure is one line: exit 3 for the machine's, else 2."""
    try:
        with writing(f"cannot write {what}", path):
            check.write_text(path, text)
    except OSError as e:  # a folder where the file should be, a path under a file: the path given is wrong
        culprit = f" ({e.filename})" if e.filename is not None and Path(e.filename) != Path(path) else ""
        raise ConfigError(f"cannot write {what} ({path}): {reason(e)}{culprit}") from None


# --- plot and recommend: the report and the verdict (logic in annbench/report/ and annbench/recommend.py) --
@main.command("plot", short_help="Figures and an index.html, recommendation on top.")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for the figures and index.html [default: RESULTS_DIR/report].")
@click.option("--thumbnail", "thumbnail_png", type=click.Path(path_type=Path), default=None,
              help="Instead of the report, write only its main figure (recall vs p99, the recommendation marked), "
                   "900 px wide, to this PNG: the README's thumbnail.")
@click.option("--at-n", "at_n", type=click.IntRange(min=1), default=None,
              help="Extend each catalog-size figure's curves to catalog size N as forecasts (dashed, with 95 % "
                   "bands and the held-out check; see annbench forecast).")
@constraint_options
def plot_cmd(results_dir: Path, out_dir: Path | None, thumbnail_png: Path | None, at_n: int | None,
             **constraints: Any) -> None:
    """Figures (PNG + SVG) and an index.html, with the recommendation on top, from RESULTS_DIR."""
    cons = recommend.constraints_from_options(**constraints)
    if thumbnail_png is None:
        with writing("cannot write the report", out_dir or Path(results_dir) / "report"):
            report.plot_command(results_dir, out_dir, cons, at_n=at_n)
        return
    if out_dir is not None or at_n is not None:
        raise ConfigError("--thumbnail writes one file: give it without --out or --at-n")
    with writing("cannot write the thumbnail", thumbnail_png):
        written = report.thumbnail(results_dir, thumbnail_png, cons=cons)
    click.echo(f"annbench: wrote {written}")


# --- concurrency: which libraries release the GIL (logic in annbench/concurrency.py) ------------------------
@main.command("concurrency", short_help="Which libraries release the GIL when searching.")
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


@main.command("recommend", short_help="The configuration meeting every constraint.")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--scenario", default=None, help="Only this scenario's results [default: every scenario].")
@click.option("--at-n", "at_n", type=click.IntRange(min=1), default=None,
              help="Rank on figures FORECAST at this catalog size, from configurations measured at 3 or more sizes "
                   "(see annbench forecast).")
@click.option("--target-qps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="With --at-n: the cores the winner needs for this many single queries a second at that size, "
                   "from its measured scaling across client threads.")
@constraint_options
def recommend_cmd(results_dir: Path, scenario: str | None, at_n: int | None, target_qps: float | None,
                  **constraints: Any) -> None:
    """Rank the configurations meeting every constraint at every step; exit 1 when none does."""
    cons = recommend.constraints_from_options(**constraints)
    if at_n is None:
        if target_qps is not None:
            raise ConfigError("--target-qps goes with --at-n N (the catalog size it is asked at)")
        text, code = recommend.run_command(results_dir, cons, scenario)
    else:
        report = recommend.load_runs(results_dir)
        for why in report.bad_lines:
            click.echo(f"annbench: skipped {why}", err=True)
        text, code = projection.recommend_at(report.runs, cons, at_n, target_qps, scenario)
    click.echo(text, nl=False)
    sys.exit(code)


@main.command("forecast", short_help="Each figure forecast at a catalog size not measured.")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--n", "sizes", type=click.IntRange(min=1), multiple=True, required=True,
              help="The catalog size to forecast at; repeat for several (--n 3000000 --n 10000000).")
@click.option("--scenario", default=None, help="Only this scenario's results [default: every scenario].")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="Also write every forecast, its interval, law, self-check and inputs as JSON to this file.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None,
              help="Also write them as CSV, one row per (configuration, figure, --n), to this file.")
def forecast_cmd(results_dir: Path, sizes: tuple[int, ...], scenario: str | None, json_path: Path | None,
                 csv_path: Path | None) -> None:
    """For each configuration measured at 3 or more catalog sizes: index memory, saved bytes, build time,
    p50, p99, QPS and recall forecast at each --n, with a 95 % prediction interval, the growth law chosen
    (by leave-one-out error), the other laws the sizes cannot rule out, and a self-check (the largest size
    predicted from the others)."""
    report = recommend.load_runs(results_dir)
    for why in report.bad_lines:
        click.echo(f"annbench: skipped {why}", err=True)
    runs = [r for r in report.runs if scenario is None or r.scenario.name == scenario]
    configs, _failures = recommend.configurations(runs)
    records = []
    for n in sizes:
        projections, notes = projection.project(configs, n)
        if not projections:
            raise ConfigError(f"nothing to forecast in {results_dir}: no configuration measured at 3 or more catalog "
                              "sizes (run a size sweep: timeline.kind static with sizes, e.g. catalog_size_1m)")
        click.echo(projection.render_text(projections, notes))
        records += projection.forecast_records(projections)
    with writing("cannot write the forecasts", json_path or csv_path):
        export.export_forecasts(records, json_path, csv_path)
    for path in (json_path, csv_path):
        if path is not None:
            click.echo(f"annbench: wrote {len(records)} forecasts to {path}")


if __name__ == "__main__":
    main()
