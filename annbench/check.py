"""The CI recall gate: save a baseline from a results folder, and check a results folder against it.

This module owns the baseline file (a small JSON, one line per entry, so a refresh reads as a diff), the
rule that maps a run's measurements onto baseline entries, the verdicts, the latency significance test,
and the text / markdown / JUnit renderings. It is pure logic over result documents: the CLI only parses
options, calls `save_baseline` or `compare`, prints, and exits with `Comparison.exit_code`.

An entry is one (index configuration, policy, catalog size, search step, search-setting position). The
configuration is matched by value (family, label, build parameters); the search setting by its POSITION in
the index's search grid, not by its values, so that a run with a changed search parameter (a lower `ef`)
is compared with the baseline figure it replaces and reported as a recall drop with the parameter change
shown, instead of as one missing entry plus one unrelated new one. configs/baselines/README.md explains
the rule and the tolerance.

Input mistakes raise ConfigError (the CLI's exit 2): an unreadable baseline, results of another
scenario, or results whose scenario or dataset hash differs from the baseline's (the message names
which one) — comparing different workloads would be meaningless.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import annbench
from annbench import results
from annbench.atomic import atomic_path
from annbench.errors import ConfigError

BASELINE_FORMAT = 1  # bump when an entry's fields change meaning
DEFAULT_TOLERANCE = 0.01
LATENCY_POINTS = 16  # latency quantiles kept per entry: enough for a rank test, small enough for a diff
LATENCY_ALPHA = 0.01  # one-sided significance level of the latency test
DIGITS = 6  # recall and hit@k are stored, and compared, at this precision (1e-6 ≪ one answer in 2,000)
_EPS = 1e-9  # float slack so that a drop of exactly the tolerance passes

# Verdicts, in the order rows are shown: what fails the gate first, then what is merely reported.
FAILING = ("failed", "timeout", "missing", "regression", "slower")
VERDICTS = (*FAILING, "improved", "new", "ok")

ConfigKey = tuple[str, str, str, str, int | None]  # family, label, build params (JSON), policy, size
EntryKey = tuple[str, str, str, str, int | None, int, int]  # ConfigKey + search step ordinal + setting position


# --- entries ---------------------------------------------------------------------------------------
@dataclass
class Entry:
    """One gated figure set: a search setting's recall (and hit@k) at one search step of one configuration.

    The baseline file's `entries` are these, as written; a run's measured entries carry its raw latency
    samples beside (never written to a baseline)."""

    family: str
    label: str
    build_params: dict[str, Any]
    policy: str
    step: int
    setting: int
    params: dict[str, Any]
    recall: float
    size: int | None = None
    day: int | None = None
    hit_at_k: float | None = None
    p50_ms: float | None = field(default=None, metadata={"transient": True})
    latency_ns: Any = field(default=None, repr=False, metadata={"transient": True})

    @property
    def key(self) -> EntryKey:
        return (self.family, self.label, json.dumps(self.build_params, sort_keys=True), self.policy, self.size,
                self.step, self.setting)

    @property
    def name(self) -> str:
        """How an entry is named in every output: configuration, policy, size, day, setting position."""
        size = f" n={self.size}" if self.size is not None else ""
        day = "?" if self.day is None else self.day
        return f"{self.label} [{self.policy}]{size} day {day} #{self.setting}"

    def rounded(self) -> Entry:
        """Recall and hit@k at the baseline's stored precision, so an unchanged figure has a delta of 0."""
        self.recall = round(self.recall, DIGITS)
        if self.hit_at_k is not None:
            self.hit_at_k = round(self.hit_at_k, DIGITS)
        return self

    def as_json(self) -> dict[str, Any]:
        doc = results.encode(self)
        if self.hit_at_k is None:
            doc.pop("hit_at_k")
        return doc


@dataclass
class LatencyItem:
    key: list[Any]
    ns: list[int]
    p50_ms: float | None = None


@dataclass
class ScenarioRef:
    name: str
    hash: str
    k: int | None = None
    scale: float | None = None


@dataclass
class DatasetRef:
    hash: str
    name: str | None = None


@dataclass
class Baseline:
    """A baseline file (`annbench baseline save`): the header, the entries, their latency samples."""

    format: int
    kind: str
    scenario: ScenarioRef
    dataset: DatasetRef
    entries: list[Entry]
    latency: list[LatencyItem] = field(default_factory=list)
    annbench_version: str | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    latency_format: dict[str, Any] = field(default_factory=dict)
    refresh: str | None = None


def config_key(index: results.IndexInfo) -> ConfigKey:
    """A configuration is matched by value: changing a build parameter makes it a different index."""
    return (index.family, index.label, json.dumps(index.build_params, sort_keys=True), index.policy, index.size)


def _sort_key(key: EntryKey) -> tuple[Any, ...]:
    fam, label, build, policy, size, step, setting = key
    return (label, fam, build, policy, -1 if size is None else size, step, setting)


def fmt_params(params: dict[str, Any] | None) -> str:
    return results.format_params(params or {}, empty="(default)", sep=",")


def _entries_of(run: results.RunRecord) -> Iterable[Entry]:
    """Every measured entry of one ok run: search steps by ordinal, settings by grid position."""
    idx = run.index
    for search_i, step in enumerate(run.search_steps):
        for pos, s in enumerate(step.settings):
            lat = np.asarray(s.latency_ns, dtype=np.int64)
            yield Entry(idx.family, idx.label, idx.build_params, idx.policy, search_i, pos, s.params,
                        float(s.recall), size=idx.size, day=step.day,
                        hit_at_k=None if s.hit_at_k is None else float(s.hit_at_k),
                        p50_ms=float(np.median(lat)) / 1e6 if len(lat) else None, latency_ns=lat)


def latency_points(samples: np.ndarray, n: int = LATENCY_POINTS) -> list[int]:
    """`n` quantiles at the mid-points (i + ½)/n: a stratified stand-in for the raw samples."""
    if len(samples) == 0:
        return []
    return [int(round(v)) for v in np.quantile(np.asarray(samples, np.float64), (np.arange(n) + 0.5) / n)]


# --- baseline save ----------------------------------------------------------------------------------
@dataclass
class SaveReport:
    path: Path
    scenario: str
    entries: int
    configs: int
    skipped: list[str] = field(default_factory=list)  # configurations not baselined (failed / timeout)
    bad_files: list[str] = field(default_factory=list)


def _scenario_runs(results_dir: Path, scenario: str | None) -> tuple[str, list[results.RunRecord], list[str]]:
    report = results.load_dir(results_dir)
    names = sorted({r.scenario.name for r in report.runs})
    if not names:
        raise ConfigError(f"no result files in {results_dir}")
    if scenario is None:
        if len(names) > 1:
            raise ConfigError(f"{results_dir} holds results of several scenarios ({', '.join(names)}); "
                              f"pick one with --scenario")
        scenario = names[0]
    elif scenario not in names:
        raise ConfigError(f"no results of scenario {scenario!r} in {results_dir} (it holds: {', '.join(names)})")
    return scenario, [r for r in report.runs if r.scenario.name == scenario], report.bad_lines


def _single_hash(runs: list[results.RunRecord], what: str, results_dir: Path) -> Any:
    """The one scenario/dataset record all runs share; mixed hashes mean stale files from another workload."""
    hashes = sorted({getattr(r, what).hash for r in runs})
    if len(hashes) > 1:
        raise ConfigError(f"{results_dir} mixes results of different {what} hashes "
                          f"({', '.join(h[:12] for h in hashes)}); rerun into an empty folder")
    return getattr(runs[0], what)


def _by_config(runs: list[results.RunRecord]) -> dict[ConfigKey, results.RunRecord]:
    """Runs by configuration; two files of one configuration (a copy, a rerun into another name) is an error."""
    out: dict[ConfigKey, results.RunRecord] = {}
    for run in runs:
        ck = config_key(run.index)
        if ck in out:
            raise ConfigError(f"two results for the same configuration: {out[ck].path} and {run.path}")
        out[ck] = run
    return out


def save_baseline(results_dir: Path, out: Path, scenario: str | None = None) -> SaveReport:
    """Write the baseline of one scenario's ok runs in `results_dir` to `out` (atomically)."""
    name, runs, bad = _scenario_runs(Path(results_dir), scenario)
    sc = _single_hash(runs, "scenario", results_dir)
    ds = _single_hash(runs, "dataset", results_dir)
    ok = [r for r in runs if r.ok]
    skipped = sorted(f"{r.index.label} [{r.index.policy}]: {r.status}" for r in runs if not r.ok)
    if not ok:
        raise ConfigError(f"no ok results of scenario {name!r} in {results_dir}; nothing to baseline")
    entries: dict[EntryKey, Entry] = {}
    latency: dict[EntryKey, dict[str, Any]] = {}
    configs = _by_config(ok)
    for run in configs.values():
        for e in _entries_of(run):
            entries[e.key] = e.rounded()
            if e.p50_ms is not None:
                latency[e.key] = {"key": list(e.key), "p50_ms": round(e.p50_ms, 4), "ns": latency_points(e.latency_ns)}
    if not entries:
        raise ConfigError(f"the ok results of scenario {name!r} in {results_dir} have no search step")
    machine = ok[0].machine
    header = {
        "format": BASELINE_FORMAT,
        "kind": "annbench-baseline",
        "annbench_version": annbench.__version__,
        "scenario": {"name": name, "hash": sc.hash, "k": sc.k, "scale": sc.scale},
        "dataset": {"name": ds.name, "hash": ds.hash},
        "machine": {"cpu": machine.cpu, "cores": machine.cores},
        "latency_format": {"unit": "ns", "points": LATENCY_POINTS,
                           "what": "per entry key, p50 and the quantiles at (i+0.5)/points of its raw "
                                   "single-query latencies (for the rank test of --latency-factor)"},
        "refresh": f"annbench run --scenario {name} --out DIR && annbench baseline save DIR --out {out}",
    }
    order = sorted(entries, key=_sort_key)
    _write_baseline(Path(out), header, [entries[k].as_json() for k in order],
                    [latency[k] for k in order if k in latency])
    return SaveReport(Path(out), name, len(entries), len(configs), skipped, bad)


def _write_baseline(path: Path, header: dict[str, Any], entries: list[dict[str, Any]],
                    latency: list[dict[str, Any]]) -> None:
    """Sorted keys, one line per entry, the noisy latency apart: a refresh that changes no recall
    changes no line of `entries`, so the recall part of the diff stays readable."""
    def block(name: str, items: list[dict[str, Any]], last: bool) -> list[str]:
        body = [f"  {json.dumps(e, sort_keys=True)}{',' if i < len(items) - 1 else ''}" for i, e in enumerate(items)]
        return [f' "{name}": [', *body, " ]" if last else " ],"]

    lines = ["{"]
    lines += [f" {json.dumps(k)}: {json.dumps(header[k], sort_keys=True)}," for k in sorted(header)]
    lines += block("entries", entries, False) + block("latency", latency, True) + ["}", ""]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")


def load_baseline(path: Path) -> Baseline:
    """Read and check a baseline file (every number finite: a gate fails closed); every problem is one line."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"baseline {path}: cannot read ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ConfigError(f"baseline {path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("kind") != "annbench-baseline":
        raise ConfigError(f"baseline {path}: not an annbench baseline (write one with `annbench baseline save`)")
    if doc.get("format") != BASELINE_FORMAT:
        raise ConfigError(f"baseline {path}: format {doc.get('format')!r}; this annbench reads {BASELINE_FORMAT}")
    try:
        base = results.decode(Baseline, doc, f"baseline {path}")
    except results.ResultError as e:
        raise ConfigError(str(e)) from None
    if not base.entries:
        raise ConfigError(f"baseline {path}: no entries")
    lat: dict[EntryKey, LatencyItem] = {}
    for i, item in enumerate(base.latency):
        k = item.key
        if len(k) != 7 or not all(isinstance(x, int) and not isinstance(x, bool) for x in k[5:]):
            raise ConfigError(f"baseline {path}: latency[{i}].key needs 7 parts, the last two integers")
        lat[(k[0], k[1], k[2], k[3], k[4], k[5], k[6])] = item
    for e in base.entries:
        if (item := lat.get(e.key)) is not None:
            e.p50_ms, e.latency_ns = item.p50_ms, item.ns
    return base


# --- the latency test -------------------------------------------------------------------------------
def mann_whitney_greater(x: np.ndarray, y: np.ndarray) -> float:
    """One-sided p-value that `x` is stochastically greater than `y` (Mann-Whitney U, normal approximation
    with tie and continuity corrections — what scipy's `mannwhitneyu(..., method="asymptotic")` gives)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return 1.0
    both = np.concatenate([x, y])
    _, inv, counts = np.unique(both, return_inverse=True, return_counts=True)
    mid = np.cumsum(counts) - (counts - 1) / 2.0  # average rank of each group of ties
    u1 = mid[inv][:n1].sum() - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    ties = float((counts.astype(np.float64) ** 3 - counts).sum())
    var = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0  # every value equal: no evidence either way
    z = (u1 - n1 * n2 / 2.0 - 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


# --- compare ----------------------------------------------------------------------------------------
@dataclass
class Row:
    """One entry's comparison: what the baseline says, what the run measured, and the verdict."""

    name: str
    verdict: str
    params_base: dict[str, Any] | None
    params_now: dict[str, Any] | None
    recall_base: float | None = None
    recall_now: float | None = None
    hit_base: float | None = None
    hit_now: float | None = None
    p50_base: float | None = None
    p50_now: float | None = None
    note: str = ""
    classname: str = ""

    @property
    def delta(self) -> float | None:
        if self.recall_base is None or self.recall_now is None:
            return None
        return self.recall_now - self.recall_base

    @property
    def failing(self) -> bool:
        return self.verdict in FAILING

    def params_text(self) -> str:
        if self.params_now is not None and self.params_base is not None and self.params_now != self.params_base:
            return f"{fmt_params(self.params_base)} → {fmt_params(self.params_now)}"
        return fmt_params(self.params_base if self.params_base is not None else self.params_now)


@dataclass
class Comparison:
    scenario: str
    baseline_path: str
    results_dir: str
    tolerance: float
    latency_factor: float | None
    rows: list[Row]
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if any(r.failing for r in self.rows) else 0

    def count(self, verdict: str) -> int:
        return sum(r.verdict == verdict for r in self.rows)


def _hash_mismatch(base: Baseline, runs: list[results.RunRecord], baseline_path: Path, results_dir: Path) -> None:
    """Refuse to compare different workloads, naming every hash that differs (dataset first)."""
    problems = []
    for what in ("dataset", "scenario"):
        want = getattr(base, what).hash
        got = sorted({getattr(r, what).hash for r in runs} - {want})
        if got:
            problems.append(f"{what} hash differs (baseline {want[:12]}, results {', '.join(g[:12] for g in got)})")
    if problems:
        raise ConfigError(f"{'; '.join(problems)}: {results_dir} was not run on the workload {baseline_path} was "
                          f"saved from; refusing to compare (if the change is intended, save a new baseline)")


def compare(results_dir: Path, baseline_path: Path, tolerance: float = DEFAULT_TOLERANCE,
            latency_factor: float | None = None, alpha: float = LATENCY_ALPHA) -> Comparison:
    """Compare the runs in `results_dir` with the baseline; the Comparison's exit_code is the verdict."""
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ConfigError(f"--tolerance must be ≥ 0, got {tolerance}")
    if latency_factor is not None and not (math.isfinite(latency_factor) and latency_factor > 0):
        raise ConfigError(f"--latency-factor must be > 0, got {latency_factor}")
    base = load_baseline(baseline_path)
    name = base.scenario.name
    report = results.load_dir(Path(results_dir))
    runs = [r for r in report.runs if r.scenario.name == name]
    if not runs:
        held = sorted({r.scenario.name for r in report.runs})
        raise ConfigError(f"no results of scenario {name!r} (the baseline's) in {results_dir}; it holds: "
                          f"{', '.join(held) or 'no valid result file'}")
    _hash_mismatch(base, runs, Path(baseline_path), Path(results_dir))

    by_config = _by_config(runs)
    now = {e.key: e.rounded() for run in by_config.values() if run.ok for e in _entries_of(run)}

    rows: list[Row] = []
    baselined: set[EntryKey] = set()
    for e in base.entries:
        baselined.add(e.key)
        rows.append(_compare_entry(name, e, now.get(e.key), by_config.get(e.key[:5]), tolerance, latency_factor,
                                   alpha))
    for key in sorted(set(now) - baselined, key=_sort_key):
        n = now[key]
        rows.append(Row(n.name, "new", None, n.params, recall_now=n.recall, hit_now=n.hit_at_k,
                        p50_now=n.p50_ms, note="not in the baseline; refresh it to gate this entry",
                        classname=_classname(name, n)))
    order = {v: i for i, v in enumerate(VERDICTS)}
    # worst drop first among regressions; otherwise the baseline's order (stable sort)
    rows.sort(key=lambda r: (order[r.verdict], r.delta if r.verdict == "regression" and r.delta is not None else 0))
    notes = [f"unreadable result file: {why}" for why in report.bad_lines]
    if base.annbench_version != annbench.__version__:
        notes.append(f"baseline saved by annbench {base.annbench_version}, checking with "
                     f"{annbench.__version__}")
    return Comparison(name, str(baseline_path), str(results_dir), tolerance, latency_factor, rows, notes)


def _classname(scenario: str, e: Entry) -> str:
    size = f".n{e.size}" if e.size is not None else ""
    return f"annbench.{scenario}.{e.label}[{e.policy}]{size}"


def _compare_entry(scenario: str, e: Entry, n: Entry | None, run: results.RunRecord | None,
                   tolerance: float, latency_factor: float | None, alpha: float) -> Row:
    row = Row(e.name, "ok", e.params, None, recall_base=e.recall, hit_base=e.hit_at_k,
              p50_base=e.p50_ms, classname=_classname(scenario, e))
    if run is None:
        row.verdict = "missing"
        row.note = f"no result for this configuration (build {fmt_params(e.build_params)})"
        return row
    if not run.ok:
        row.verdict = run.status if run.status in FAILING else "failed"
        row.note = f"run {run.status}: {run.error or 'no error recorded'}"
        return row
    if n is None:
        row.verdict = "missing"
        row.note = "the run has no such search step or search-grid position"
        return row
    row.params_now, row.recall_now, row.hit_now, row.p50_now = n.params, n.recall, n.hit_at_k, n.p50_ms
    if row.params_now != row.params_base:
        row.note = "search params changed at this grid position"
    drops = []
    if row.recall_base - row.recall_now > tolerance + _EPS:
        drops.append(f"recall dropped {row.recall_base - row.recall_now:.4f} > tolerance {tolerance:g}")
    if row.hit_base is not None and row.hit_now is not None and row.hit_base - row.hit_now > tolerance + _EPS:
        drops.append(f"hit@k dropped {row.hit_base - row.hit_now:.4f} > tolerance {tolerance:g}")
    if drops:
        row.verdict = "regression"
        row.note = "; ".join(drops + ([row.note] if row.note else []))
        return row
    if latency_factor is not None and e.latency_ns and len(n.latency_ns) and row.p50_base and row.p50_now:
        slower = row.p50_now > latency_factor * row.p50_base
        p = mann_whitney_greater(n.latency_ns, latency_factor * np.asarray(e.latency_ns, np.float64))
        if slower and p < alpha:
            row.verdict = "slower"
            row.note = (f"p50 {row.p50_now:.3f} ms > {latency_factor:g}× baseline {row.p50_base:.3f} ms "
                        f"(Mann-Whitney p={p:.2g} < {alpha:g})")
            return row
    gained = [row.recall_now - row.recall_base > tolerance + _EPS]
    if row.hit_base is not None and row.hit_now is not None:
        gained.append(row.hit_now - row.hit_base > tolerance + _EPS)
    if any(gained):
        row.verdict = "improved"
        row.note = "better than the baseline by more than the tolerance" + (f"; {row.note}" if row.note else "")
    return row


# --- renderings -------------------------------------------------------------------------------------
def _num(v: float | None, fmt: str = ".4f") -> str:
    return "—" if v is None else format(v, fmt)


def _delta(v: float | None) -> str:
    return "—" if v is None else f"{v:+.4f}"


HEADERS = ("verdict", "entry", "search params", "recall base", "recall now", "Δ", "hit@k base", "hit@k now",
           "p50 ms base", "p50 ms now", "note")


def _cells(r: Row) -> list[str]:
    return [r.verdict.upper(), r.name, r.params_text(), _num(r.recall_base), _num(r.recall_now), _delta(r.delta),
            _num(r.hit_base), _num(r.hit_now), _num(r.p50_base, ".3f"), _num(r.p50_now, ".3f"), r.note]


def summary(cmp: Comparison) -> str:
    counts = ", ".join(f"{cmp.count(v)} {v}" for v in VERDICTS if cmp.count(v))
    outcome = "FAIL" if cmp.exit_code else "PASS"
    return f"{outcome}: {cmp.scenario}: {len(cmp.rows)} entries ({counts}); tolerance {cmp.tolerance:g}" + (
        f", latency factor {cmp.latency_factor:g}" if cmp.latency_factor is not None else ", latency not checked")


def hints(cmp: Comparison) -> list[str]:
    out = []
    if cmp.count("improved") or cmp.count("new"):
        out.append(f"{cmp.count('improved')} improved and {cmp.count('new')} new entries: if the change is "
                   f"intended, refresh the baseline: annbench baseline save {cmp.results_dir} "
                   f"--out {cmp.baseline_path} --scenario {cmp.scenario}")
    return out


def render_text(cmp: Comparison) -> str:
    """An aligned table, regressions first, then the notes, the summary line and the hints."""
    table = [list(HEADERS)] + [_cells(r) for r in cmp.rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADERS) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
             for row in table]
    lines = [ln.rstrip() for ln in lines]
    lines += [f"note: {n}" for n in cmp.notes]
    lines.append(summary(cmp))
    lines += hints(cmp)
    return "\n".join(lines)


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def render_markdown(cmp: Comparison) -> str:
    """A GitHub-flavoured markdown report: heading with the outcome, the table, notes and hints."""
    icon = {"ok": "✅", "improved": "⬆️", "new": "🆕"}
    lines = [f"### annbench check: {cmp.scenario} — {'❌ FAIL' if cmp.exit_code else '✅ PASS'}", "",
             f"Baseline `{cmp.baseline_path}`, results `{cmp.results_dir}`.", "", summary(cmp), "",
             "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for r in cmp.rows:
        cells = _cells(r)
        cells[0] = f"{icon.get(r.verdict, '❌')} {r.verdict}"
        lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    extra = [f"- note: {n}" for n in cmp.notes] + [f"- {h}" for h in hints(cmp)]
    return "\n".join(lines + ([""] + extra if extra else []) + [""])


def render_junit(cmp: Comparison) -> str:
    """JUnit XML: one testsuite, one testcase per entry, a <failure> for each failing verdict."""
    failures = sum(r.failing for r in cmp.rows)
    suites = ET.Element("testsuites", name="annbench check", tests=str(len(cmp.rows)), failures=str(failures))
    suite = ET.SubElement(suites, "testsuite", name=f"annbench.check.{cmp.scenario}", tests=str(len(cmp.rows)),
                          failures=str(failures), errors="0", skipped="0")
    for r in cmp.rows:
        case = ET.SubElement(suite, "testcase", classname=r.classname or f"annbench.{cmp.scenario}",
                             name=f"{r.name} {r.params_text()}", time="0")
        detail = (f"recall {_num(r.recall_base)} → {_num(r.recall_now)} ({_delta(r.delta)}); "
                  f"hit@k {_num(r.hit_base)} → {_num(r.hit_now)}; p50 {_num(r.p50_base, '.3f')} → "
                  f"{_num(r.p50_now, '.3f')} ms; {r.note}")
        if r.failing:
            fail = ET.SubElement(case, "failure", message=f"{r.verdict}: {r.note}", type=r.verdict)
            fail.text = detail
        else:
            ET.SubElement(case, "system-out").text = f"{r.verdict}: {detail}"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def write_text(path: Path, text: str) -> None:
    """A rendering (markdown, JUnit) written whole or not at all: a CI step never reads half a report."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
