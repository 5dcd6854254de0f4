"""Result files: the schema, atomic writes, loading and validation, and the CSV export.

One JSON file per run under `<out>/<scenario>/<run_id>.json`, written once (temp file in the same
folder + fsync + rename) and never modified afterwards. Derived figures (Pareto fronts, averages,
recommendations) are computed at report time, never written back.

Schema history (bump SCHEMA and add a migration in `_MIGRATIONS` when a field changes meaning):
  1 — first version: run metadata, build figures, steps with per-search-setting metrics and raw latencies.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annbench.atomic import atomic_path
from annbench.errors import AnnbenchError, ConfigError

SCHEMA = 1
STATUSES = ("ok", "failed", "timeout")
REQUIRED = ("schema", "annbench_version", "run_id", "scenario", "dataset", "index", "status", "steps")
_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class ResultError(AnnbenchError):
    """A result file is corrupt, of an unknown schema, or cannot be written."""


def result_path(out_dir: Path, scenario: str, run_id: str) -> Path:
    return Path(out_dir) / scenario / f"{run_id}.json"


def ensure_writable(out_dir: Path) -> None:
    """Fail early, before any run, when the results folder cannot be created or written."""
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".probe-", delete=True):
            pass
    except OSError as e:
        raise ConfigError(f"results folder {out_dir} is not writable ({e.strerror or e})") from None


def write_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON so that a reader sees either no file or the whole file, never a partial one."""
    data = json.dumps(payload, indent=1, sort_keys=False, allow_nan=False, default=json_default)
    with atomic_path(path) as tmp:
        tmp.write_text(data, encoding="utf-8")


def json_default(obj: Any) -> Any:
    """`json.dumps(default=...)` for numpy scalars and arrays and paths; anything else is a TypeError."""
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def validate(doc: Any, where: str) -> dict[str, Any]:
    """Check a loaded result against the schema (migrating old versions); raise ResultError if invalid."""
    if not isinstance(doc, dict):
        raise ResultError(f"{where}: not a result object")
    version = doc.get("schema")
    if not isinstance(version, int):
        raise ResultError(f"{where}: no integer 'schema' field")
    while version in _MIGRATIONS:
        doc = _MIGRATIONS[version](doc)
        version = doc["schema"]
    if version != SCHEMA:
        raise ResultError(f"{where}: unknown schema version {version} (this annbench reads {SCHEMA})")
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise ResultError(f"{where}: missing field {missing[0]!r}")
    if doc["status"] not in STATUSES:
        raise ResultError(f"{where}: status {doc['status']!r} is not one of {', '.join(STATUSES)}")
    if not isinstance(doc["steps"], list):
        raise ResultError(f"{where}: 'steps' must be a list")
    for i, step in enumerate(doc["steps"]):
        if not isinstance(step, dict) or "op" not in step:
            raise ResultError(f"{where}: step {i} has no 'op'")
        for s in step.get("settings", []) if step["op"] == "search" else []:
            if not isinstance(s, dict) or not isinstance(s.get("recall"), (int, float)):
                raise ResultError(f"{where}: step {i} has a search setting without a numeric recall")
    for key in ("scenario", "dataset"):
        if not isinstance(doc[key], dict) or "hash" not in doc[key]:
            raise ResultError(f"{where}: {key} has no hash")
    return doc


def load(path: Path) -> dict[str, Any]:
    """Load and validate one result file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ResultError(f"{path}: cannot read ({e})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultError(f"{path}: corrupt JSON ({e.msg} at line {e.lineno})") from None
    return validate(doc, str(path))


def iter_files(results_dir: Path) -> Iterator[Path]:
    """Every result file below `results_dir`, skipping temp files and dot-folders (caches)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ConfigError(f"results folder {results_dir} does not exist")
    for path in sorted(root.rglob("*.json")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        yield path


@dataclass
class LoadReport:
    runs: list[dict[str, Any]]
    bad: list[tuple[Path, str]]


def load_dir(results_dir: Path) -> LoadReport:
    """Load every valid result below `results_dir`; invalid ones are listed, not fatal."""
    runs, bad = [], []
    for path in iter_files(results_dir):
        try:
            doc = load(path)
        except ResultError as e:
            bad.append((path, str(e)))
            continue
        doc["_path"] = str(path)
        runs.append(doc)
    return LoadReport(runs, bad)


def machine_info() -> dict[str, Any]:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "hostname": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("annbench", "numpy", "faiss-cpu", "hnswlib", "annoy", "scann", "usearch", "voyager", "h5py",
                 "threadpoolctl"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    for ep in metadata.entry_points(group="annbench.adapters"):  # third-party adapters (plugins)
        if ep.dist is not None:
            out.setdefault(ep.dist.name, ep.dist.version)
    return out


CSV_FIELDS = (
    "scenario", "run_id", "family", "build_params", "policy", "size", "status", "step", "op", "day",
    "count", "live", "seconds", "search_params", "recall", "hit_at_k", "p_at_k", "leaks", "freshness",
    "p50_ms", "p95_ms", "p99_ms", "qps", "rss_steady_bytes", "saved_bytes",
    # since the cost-figures work: build parameters as used, the index's own memory, intervals and noise
    "build_params_used", "index_bytes", "library_bytes", "p99_ms_lo", "p99_ms_hi", "qps_lo", "qps_hi", "rounds",
    "noisy",
)


def _spread_fields(setting: dict[str, Any]) -> dict[str, Any]:
    """The CSV's interval and noise columns of one search setting (empty for a file measured without rounds)."""
    p99 = (setting.get("latency_ms_ci95") or {}).get("p99") or [None, None]
    qps = setting.get("qps_ci95") or [None, None]
    noise = setting.get("noise")
    return {"p99_ms_lo": p99[0], "p99_ms_hi": p99[1], "qps_lo": qps[0], "qps_hi": qps[1],
            "rounds": setting.get("rounds"), "noisy": None if noise is None else bool(noise.get("noisy"))}


def export_csv(results_dir: Path, out: Path) -> int:
    """Write one CSV row per (run, step, search setting); return the number of rows."""
    report = load_dir(results_dir)
    rows = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for run in report.runs:
            base = {
                "scenario": run["scenario"]["name"], "run_id": run["run_id"], "family": run["index"]["family"],
                "build_params": json.dumps(run["index"]["build_params"], sort_keys=True),
                "policy": run["index"]["policy"], "size": run["index"].get("size"), "status": run["status"],
                "rss_steady_bytes": (run.get("memory") or {}).get("rss_steady_bytes"),
                "saved_bytes": (run.get("memory") or {}).get("saved_bytes"),
                "build_params_used": json.dumps(run["index"].get("build_params_used"), sort_keys=True)
                if run["index"].get("build_params_used") is not None else None,
                "index_bytes": (run.get("memory") or {}).get("index_bytes"),
                "library_bytes": ((run.get("memory") or {}).get("library_bytes") or {}).get("bytes"),
            }
            for i, step in enumerate(run["steps"]):
                common = {**base, "step": i, "op": step["op"], "day": step.get("day"), "count": step.get("count"),
                          "live": step.get("live"), "seconds": step.get("seconds")}
                if step["op"] != "search":
                    w.writerow(common)
                    rows += 1
                    continue
                for s in step["settings"]:
                    lat = s.get("latency_ms", {})
                    w.writerow({**common, "search_params": json.dumps(s["params"], sort_keys=True),
                                "recall": s["recall"], "hit_at_k": s.get("hit_at_k"), "p_at_k": s.get("p_at_k"),
                                "leaks": s.get("leaks"), "freshness": s.get("freshness"),
                                "p50_ms": lat.get("p50"), "p95_ms": lat.get("p95"), "p99_ms": lat.get("p99"),
                                "qps": s.get("qps"), **_spread_fields(s)})
                    rows += 1
    os.replace(tmp, out)
    return rows
