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


# --- keys -------------------------------------------------------------------------------------------
def config_key(index: dict[str, Any]) -> ConfigKey:
    """A configuration is matched by value: changing a build parameter makes it a different index."""
    return (index["family"], index["label"], json.dumps(index.get("build_params", {}), sort_keys=True),
            index["policy"], index.get("size"))


def _entry_key(entry: dict[str, Any]) -> EntryKey:
    return (entry["family"], entry["label"], json.dumps(entry["build_params"], sort_keys=True), entry["policy"],
            entry.get("size"), int(entry["step"]), int(entry["setting"]))


def _sort_key(key: EntryKey) -> tuple[Any, ...]:
    fam, label, build, policy, size, step, setting = key
    return (label, fam, build, policy, -1 if size is None else size, step, setting)


def fmt_params(params: dict[str, Any] | None) -> str:
    if not params:
        return "(default)"
    return ",".join(f"{k}={v}" for k, v in params.items())


def entry_name(e: dict[str, Any]) -> str:
    """How an entry is named in every output: configuration, policy, size, day, setting position."""
    size = f" n={e['size']}" if e.get("size") is not None else ""
    return f"{e['label']} [{e['policy']}]{size} day {e.get('day', '?')} #{e['setting']}"


def _entries_of(run: dict[str, Any]) -> Iterable[tuple[EntryKey, dict[str, Any]]]:
    """Every (key, measured entry) of one ok run: search steps by ordinal, settings by grid position."""
    idx = run["index"]
    ck = config_key(idx)
    search_i = 0
    for step in run["steps"]:
        if step["op"] != "search":
            continue
        for pos, s in enumerate(step.get("settings", [])):
            lat = np.asarray(s.get("latency_ns", []), dtype=np.int64)
            e: dict[str, Any] = {
                "family": idx["family"], "label": idx["label"], "build_params": idx.get("build_params", {}),
                "policy": idx["policy"], "size": idx.get("size"), "step": search_i, "day": step.get("day"),
                "setting": pos, "params": s.get("params", {}), "recall": float(s["recall"]),
            }
            if s.get("hit_at_k") is not None:
                e["hit_at_k"] = float(s["hit_at_k"])
            if len(lat):
                e["p50_ms"] = float(np.median(lat)) / 1e6
            e["_latency_ns"] = lat  # raw samples for the test; never written to a baseline
            yield (*ck, search_i, pos), e
        search_i += 1


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


def _scenario_runs(results_dir: Path, scenario: str | None) -> tuple[str, list[dict[str, Any]], list[str]]:
    report = results.load_dir(results_dir)
    names = sorted({r["scenario"]["name"] for r in report.runs})
    bad = [why for _p, why in report.bad]
    if not names:
        raise ConfigError(f"no result files in {results_dir}")
    if scenario is None:
        if len(names) > 1:
            raise ConfigError(f"{results_dir} holds results of several scenarios ({', '.join(names)}); "
                              f"pick one with --scenario")
        scenario = names[0]
    elif scenario not in names:
        raise ConfigError(f"no results of scenario {scenario!r} in {results_dir} (it holds: {', '.join(names)})")
    return scenario, [r for r in report.runs if r["scenario"]["name"] == scenario], bad


def _single_hash(runs: list[dict[str, Any]], what: str, results_dir: Path) -> dict[str, Any]:
    """The one scenario/dataset record all runs share; mixed hashes mean stale files from another workload."""
    hashes = sorted({r[what]["hash"] for r in runs})
    if len(hashes) > 1:
        raise ConfigError(f"{results_dir} mixes results of different {what} hashes "
                          f"({', '.join(h[:12] for h in hashes)}); rerun into an empty folder")
    return runs[0][what]


def save_baseline(results_dir: Path, out: Path, scenario: str | None = None) -> SaveReport:
    """Write the baseline of one scenario's ok runs in `results_dir` to `out` (atomically)."""
    name, runs, bad = _scenario_runs(Path(results_dir), scenario)
    sc = _single_hash(runs, "scenario", results_dir)
    ds = _single_hash(runs, "dataset", results_dir)
    ok = [r for r in runs if r["status"] == "ok"]
    skipped = sorted(f"{r['index']['label']} [{r['index']['policy']}]: {r['status']}" for r in runs
                     if r["status"] != "ok")
    if not ok:
        raise ConfigError(f"no ok results of scenario {name!r} in {results_dir}; nothing to baseline")
    entries: dict[EntryKey, dict[str, Any]] = {}
    latency: dict[EntryKey, dict[str, Any]] = {}
    seen: dict[ConfigKey, str] = {}
    for run in ok:
        ck = config_key(run["index"])
        if ck in seen:
            raise ConfigError(f"two results for the same configuration: {seen[ck]} and {run['_path']}")
        seen[ck] = run["_path"]
        for key, e in _entries_of(run):
            lat = e.pop("_latency_ns")
            p50 = e.pop("p50_ms", None)
            e["recall"] = round(e["recall"], DIGITS)
            if "hit_at_k" in e:
                e["hit_at_k"] = round(e["hit_at_k"], DIGITS)
            entries[key] = e
            if p50 is not None:
                latency[key] = {"key": list(key), "p50_ms": round(p50, 4), "ns": latency_points(lat)}
    if not entries:
        raise ConfigError(f"the ok results of scenario {name!r} in {results_dir} have no search step")
    machine = ok[0].get("machine") or {}
    header = {
        "format": BASELINE_FORMAT,
        "kind": "annbench-baseline",
        "annbench_version": annbench.__version__,
        "scenario": {"name": name, "hash": sc["hash"], "k": sc.get("k"), "scale": sc.get("scale")},
        "dataset": {"name": ds.get("name"), "hash": ds["hash"]},
        "machine": {"cpu": machine.get("cpu"), "cores": machine.get("cores")},
        "latency_format": {"unit": "ns", "points": LATENCY_POINTS,
                           "what": "per entry key, p50 and the quantiles at (i+0.5)/points of its raw "
                                   "single-query latencies (for the rank test of --latency-factor)"},
        "refresh": f"annbench run --scenario {name} --out DIR && annbench baseline save DIR --out {out}",
    }
    order = sorted(entries, key=_sort_key)
    _write_baseline(Path(out), header, [entries[k] for k in order], [latency[k] for k in order if k in latency])
    return SaveReport(Path(out), name, len(entries), len(seen), skipped, bad)


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


def load_baseline(path: Path) -> dict[str, Any]:
    """Read and validate a baseline file; every problem is one ConfigError line."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"baseline {path}: cannot read ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"baseline {path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("kind") != "annbench-baseline":
        raise ConfigError(f"baseline {path}: not an annbench baseline (write one with `annbench baseline save`)")
    if doc.get("format") != BASELINE_FORMAT:
        raise ConfigError(f"baseline {path}: format {doc.get('format')!r}; this annbench reads {BASELINE_FORMAT}")
    need = ("family", "label", "build_params", "policy", "step", "setting", "params", "recall")
    for i, e in enumerate(doc.get("entries") or []):
        missing = [k for k in need if k not in e] if isinstance(e, dict) else ["(not an object)"]
        if missing:
            raise ConfigError(f"baseline {path}: entry {i} lacks {missing[0]!r}")
    if not doc.get("entries"):
        raise ConfigError(f"baseline {path}: no entries")
    for key in ("scenario", "dataset"):
        if not isinstance(doc.get(key), dict) or "hash" not in doc[key]:
            raise ConfigError(f"baseline {path}: no {key} hash")
    lat: dict[EntryKey, dict[str, Any]] = {}
    for i, item in enumerate(doc.get("latency") or []):
        if not (isinstance(item, dict) and isinstance(item.get("key"), list) and len(item["key"]) == 7
                and isinstance(item.get("ns"), list)):
            raise ConfigError(f"baseline {path}: latency item {i} needs a 7-part 'key' and 'ns' samples")
        k = item["key"]
        lat[(k[0], k[1], k[2], k[3], k[4], int(k[5]), int(k[6]))] = item
    for e in doc["entries"]:
        if (item := lat.get(_entry_key(e))) is not None:
            e["p50_ms"], e["latency_ns"] = item.get("p50_ms"), item["ns"]
    return doc


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


def _hash_mismatch(base: dict[str, Any], runs: list[dict[str, Any]], baseline_path: Path, results_dir: Path) -> None:
    """Refuse to compare different workloads, naming every hash that differs (dataset first)."""
    problems = []
    for what in ("dataset", "scenario"):
        want = base[what]["hash"]
        got = sorted({r[what]["hash"] for r in runs} - {want})
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
    name = base["scenario"]["name"]
    report = results.load_dir(Path(results_dir))
    runs = [r for r in report.runs if r["scenario"]["name"] == name]
    if not runs:
        held = sorted({r["scenario"]["name"] for r in report.runs})
        raise ConfigError(f"no results of scenario {name!r} (the baseline's) in {results_dir}; it holds: "
                          f"{', '.join(held) or 'no valid result file'}")
    _hash_mismatch(base, runs, Path(baseline_path), Path(results_dir))

    by_config: dict[ConfigKey, dict[str, Any]] = {}
    for run in runs:
        ck = config_key(run["index"])
        if ck in by_config:
            raise ConfigError(f"two results for the same configuration: {by_config[ck]['_path']} and {run['_path']}")
        by_config[ck] = run
    now: dict[EntryKey, dict[str, Any]] = {}
    for run in by_config.values():
        if run["status"] == "ok":
            for key, e in _entries_of(run):
                # compared at the baseline's stored precision, so an unchanged figure has a delta of exactly 0
                e["recall"] = round(e["recall"], DIGITS)
                if "hit_at_k" in e:
                    e["hit_at_k"] = round(e["hit_at_k"], DIGITS)
                now[key] = e

    rows: list[Row] = []
    baselined: set[EntryKey] = set()
    for e in base["entries"]:
        key = _entry_key(e)
        baselined.add(key)
        rows.append(_compare_entry(name, e, now.get(key), by_config.get(key[:5]), tolerance, latency_factor, alpha))
    for key in sorted(set(now) - baselined, key=_sort_key):
        n = now[key]
        rows.append(Row(entry_name(n), "new", None, n["params"], recall_now=n["recall"], hit_now=n.get("hit_at_k"),
                        p50_now=n.get("p50_ms"), note="not in the baseline; refresh it to gate this entry",
                        classname=_classname(name, n)))
    order = {v: i for i, v in enumerate(VERDICTS)}
    # worst drop first among regressions; otherwise the baseline's order (stable sort)
    rows.sort(key=lambda r: (order[r.verdict], r.delta if r.verdict == "regression" and r.delta is not None else 0))
    notes = [f"unreadable result file: {why}" for _p, why in report.bad]
    if base.get("annbench_version") != annbench.__version__:
        notes.append(f"baseline saved by annbench {base.get('annbench_version')}, checking with "
                     f"{annbench.__version__}")
    return Comparison(name, str(baseline_path), str(results_dir), tolerance, latency_factor, rows, notes)


def _classname(scenario: str, e: dict[str, Any]) -> str:
    size = f".n{e['size']}" if e.get("size") is not None else ""
    return f"annbench.{scenario}.{e['label']}[{e['policy']}]{size}"


def _compare_entry(scenario: str, e: dict[str, Any], n: dict[str, Any] | None, run: dict[str, Any] | None,
                   tolerance: float, latency_factor: float | None, alpha: float) -> Row:
    row = Row(entry_name(e), "ok", e["params"], None, recall_base=e["recall"], hit_base=e.get("hit_at_k"),
              p50_base=e.get("p50_ms"), classname=_classname(scenario, e))
    if run is None:
        row.verdict = "missing"
        row.note = f"no result for this configuration (build {fmt_params(e['build_params'])})"
        return row
    if run["status"] != "ok":
        row.verdict = run["status"] if run["status"] in FAILING else "failed"
        row.note = f"run {run['status']}: {run.get('error') or 'no error recorded'}"
        return row
    if n is None:
        row.verdict = "missing"
        row.note = "the run has no such search step or search-grid position"
        return row
    row.params_now, row.recall_now, row.hit_now, row.p50_now = n["params"], n["recall"], n.get("hit_at_k"), n.get(
        "p50_ms")
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
    if latency_factor is not None and e.get("latency_ns") and len(n["_latency_ns"]) and row.p50_base:
        slower = row.p50_now > latency_factor * row.p50_base
        p = mann_whitney_greater(n["_latency_ns"], latency_factor * np.asarray(e["latency_ns"], np.float64))
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
