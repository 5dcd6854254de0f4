"""Results as files for other tools: ann-benchmarks' per-run HDF5 files, a CSV for pandas, and forecasts as
JSON and CSV.

Owns the mapping from one annbench run (scenario × index configuration × policy) to the files
ann-benchmarks' plotting and tooling read: one file per search setting and search step, at
`OUT/results/<dataset>/<k>/<algo>/<params>.hdf5` (ann-benchmarks' own layout), with

- attributes `algo`, `name`, `build_time` (s), `index_size` (kB the index holds, annbench.memory;
  ann-benchmarks' unit), `best_search_time` (mean single-query latency, s), `count` (k), `distance`
  (`euclidean` or `angular`), plus `dataset`, `batch_mode`, `run_count`, `candidates`, `expect_extra`
  and `annbench_*` provenance (run id, policy, day, params, annbench's own recall);
- datasets `times` (per-query seconds: each query's median over `search.rounds`), `neighbors` (int32
  base rows, -1 padded) and `distances` (float32 true distances recomputed from the vectors, +inf padded).

ann-benchmarks scores recall against its dataset file's ground truth, so the exact answers of every
exported step are written too, at `OUT/data/<dataset>.hdf5` (`test`, `neighbors`, `distances`; no
`train`: the base vectors are the user's own file). In an update scenario every search step has its
own live set and so its own `<dataset>` name (`….day<N>`).

The answers are needed: a result keeps them only when its scenario sets `keep_answers: true`. Runs
without them are listed as skipped; when no run has them the export is refused. The ground truth and
the id → row mapping are recomputed with the harness's own code (`harness.prepare`, `op_log`), so the
scenario and dataset files must still be there, unchanged (their hashes are checked).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annbench import harness, results
from annbench.atomic import atomic_path
from annbench.errors import ConfigError
from annbench.groundtruth import true_distances
from annbench.oplog import op_log
from annbench.projection import FORECAST_FIELDS
from annbench.results import RunRecord
from annbench.scenarios import load_scenario
from annbench.vectors import Metric

_WORD = re.compile(r"\W+")
_DISTANCE = {"l2": "euclidean", "cosine": "angular"}  # annbench's cosine is 1 - cos, ann-benchmarks' angular


@dataclass
class ExportReport:
    files: list[Path] = field(default_factory=list)  # run files written
    datasets: list[Path] = field(default_factory=list)  # ground-truth files written
    skipped: list[str] = field(default_factory=list)  # one line per run left out, with why


def _safe(text: str) -> str:
    """ann-benchmarks' file-name rule (non-word characters to '_'), for every path component."""
    return _WORD.sub("_", text).strip("_") or "_"


def _has_answers(run: RunRecord) -> bool:
    searches = run.search_steps
    return bool(searches) and all(st.answers is not None and st.query_indices is not None
                                  for s in searches for st in s.settings)


def _resolve(path_text: str, results_dir: Path) -> Path:
    """A recorded scenario path: as recorded (relative to where the run started), else next to the results."""
    path = Path(path_text)
    for cand in (path, results_dir.parent / path, results_dir.parent.parent / path):
        if cand.is_file():
            return cand
    raise ConfigError(f"scenario file {path_text} recorded in the results is not found (tried from here and from "
                      f"{results_dir.parent}); run the export from the folder the runs were started in")


def export_ann_benchmarks(results_dir: Path, out_dir: Path, cache_dir: Path | None = None,
                          progress: Callable[[str], None] = lambda _m: None) -> ExportReport:
    """Write ann-benchmarks HDF5 files for every ok run below `results_dir` that kept its answers."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    loaded = results.load_dir(results_dir)
    rep = ExportReport()
    rep.skipped.extend(loaded.bad_lines)
    groups: dict[tuple[str, float, str, str], list[RunRecord]] = {}
    for run in loaded.runs:
        what = f"{run.scenario.name}/{run.run_id}"
        if not run.ok:
            rep.skipped.append(f"{what}: status {run.status}")
        elif not _has_answers(run):
            rep.skipped.append(f"{what}: no answers kept (set keep_answers: true in the scenario and rerun)")
        elif run.scenario.path is None:
            rep.skipped.append(f"{what}: no scenario path recorded (written by an older annbench)")
        else:
            key = (run.scenario.path, 1.0 if run.scenario.scale is None else float(run.scenario.scale),
                   run.scenario.hash, run.dataset.hash)
            groups.setdefault(key, []).append(run)
    if not groups:
        why = f"{len(rep.skipped)} run(s) skipped, e.g. {rep.skipped[0]}" if rep.skipped else "no result files"
        raise ConfigError(f"nothing to export from {results_dir} ({why}); ann-benchmarks files need every returned "
                          "id, which a result keeps only when its scenario sets keep_answers: true")
    if cache_dir is None:
        cands = [results_dir / ".cache", results_dir.parent / ".cache"]
        cache_dir = next((c for c in cands if c.is_dir()), cands[0])
    written_data: set[Path] = set()
    for (path_text, scale, sc_hash, ds_hash), runs in groups.items():
        prep, ds = _prepare(path_text, scale, sc_hash, ds_hash, runs[0], results_dir, cache_dir, progress)
        for run in runs:
            _export_run(run, prep, ds, out_dir, rep, written_data)
    return rep


def _prepare(path_text: str, scale: float, sc_hash: str, ds_hash: str, run: RunRecord, results_dir: Path,
             cache_dir: Path, progress: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """The harness's prepared data and ground truth for a group of runs, checked against their hashes."""
    path = _resolve(path_text, results_dir)
    source = run.dataset.source
    sc = load_scenario(path, scale=scale)
    if sc.content_hash() != sc_hash:
        raise ConfigError(f"{path} changed since its runs (workload hash differs); rerun them before exporting")
    prep = harness.prepare(sc, cache_dir, progress)
    if prep.dataset_info["hash"] != ds_hash and source and Path(source).is_file():
        # the runs were made with --dataset: the scenario names another file
        sc = load_scenario(path, scale=scale, dataset_path=source)
        prep = harness.prepare(sc, cache_dir, progress)
    if prep.dataset_info["hash"] != ds_hash:
        raise ConfigError(f"the dataset of {run.scenario.name} ({source}) changed since its runs "
                          "(content hash differs); rerun them before exporting")
    d = prep.data_dir
    data = {
        "pool": np.load(d / "base.npy", mmap_mode="r"),
        "queries": np.load(d / "queries.npy"),
        "ids": np.load(d / "ids.npy"),
        "base_labels": np.load(d / "base_labels.npy") if (d / "base_labels.npy").exists() else None,
        "query_labels": np.load(d / "query_labels.npy") if (d / "query_labels.npy").exists() else None,
    }
    return prep, data


def _live_maps(prep: Any, data: dict[str, Any], size: int | None) -> list[dict[int, int]]:
    """Per search step of the op log: id → base row of its current vector (the harness's op log, replayed)."""
    sc = prep.scenario
    ops = op_log(sc, data["ids"], data["base_labels"], data["query_labels"], len(data["queries"]), size)
    live: dict[int, int] = {}
    out = []
    for op in ops:
        if op.kind in ("build", "insert", "update"):
            if op.kind == "build":
                live = {}
            live.update(zip(op.ids.tolist(), op.rows.tolist(), strict=True))
        elif op.kind == "delete":
            for i in op.ids.tolist():
                live.pop(i, None)
        elif op.kind == "search":
            out.append(dict(live))
    return out


def _rows(ids: np.ndarray, live: dict[int, int]) -> np.ndarray:
    get = live.get
    return np.asarray([get(i, -1) for i in ids.ravel().tolist()], dtype=np.int64).reshape(ids.shape)


def _export_run(run: RunRecord, prep: Any, data: dict[str, Any], out_dir: Path, rep: ExportReport,
                written_data: set[Path]) -> None:
    idx, sc_rec = run.index, run.scenario
    metric = Metric(run.dataset.metric)
    k = sc_rec.k
    size = idx.size
    with np.load(prep.gt_paths[size]) as z:  # exact top-k over each search step's live set, all queries
        gt_d, gt_i = np.array(z["dists"]), np.array(z["ids"])
    maps = _live_maps(prep, data, size)
    build = next((s for s in run.steps if s.op == "build"), None)
    own_bytes = run.memory.own_bytes
    algo = _safe(idx.label if idx.policy == "native" else f"{idx.label}-{idx.policy}")
    build_text = results.format_params(idx.build_params, empty="")
    searches = run.search_steps
    if len(searches) != len(maps):
        raise ConfigError(f"{run.path}: {len(searches)} search steps but the scenario's op log has "
                          f"{len(maps)}; rerun it before exporting")
    for i, step in enumerate(searches):
        ds_name = _safe(f"{sc_rec.name}.{run.dataset.name}" + (f".n{size}" if size else "")
                        + (f".day{step.day}" if sc_rec.timeline == "daily" else ""))
        live = maps[i]
        for st in step.settings:
            qidx = np.asarray(st.query_indices, dtype=np.int64)
            queries = np.ascontiguousarray(data["queries"][qidx])
            found = np.asarray(st.answers, dtype=np.int64).reshape(len(qidx), k)
            rows = _rows(found, live)  # a deleted id (a leak) has no live row: -1 and +inf, never counted
            dists = true_distances(queries, data["pool"], rows, metric)
            gt_file = out_dir / "data" / f"{ds_name}.hdf5"
            if gt_file not in written_data:
                _write_gt(gt_file, queries, _rows(gt_i[i][qidx], live), gt_d[i][qidx], metric)
                written_data.add(gt_file)
                rep.datasets.append(gt_file)
            # rounds of the same queries, one after another: a query's time is its median over rounds
            times = np.median(np.asarray(st.latency_ns, dtype=np.float64).reshape(-1, len(qidx)), axis=0) / 1e9
            attrs = {
                "algo": algo,
                "name": f"{idx.family}({build_text}; {results.format_params(st.params, empty='')}; {idx.policy})",
                "build_time": float(build.seconds) if build is not None else 0.0,
                "index_size": max(0.0, float(own_bytes or 0.0)) / 1024.0,
                "best_search_time": float(times.mean()) if len(times) else float("inf"),
                "count": k,
                "distance": _DISTANCE[metric.value],
                "dataset": ds_name,
                "batch_mode": False,
                "run_count": 1,
                "candidates": float((rows >= 0).sum(1).mean()),
                "expect_extra": False,
                "annbench_run_id": run.run_id,
                "annbench_scenario": sc_rec.name,
                "annbench_policy": idx.policy,
                "annbench_day": step.day,
                "annbench_build_params": json.dumps(idx.build_params, sort_keys=True),
                "annbench_search_params": json.dumps(st.params, sort_keys=True),
                "annbench_recall": float(st.recall),
            }
            stem = _safe(json.dumps([idx.build_params, st.params, idx.policy], sort_keys=True))
            target = out_dir / "results" / ds_name / str(k) / algo / f"{stem}.hdf5"
            _write_run(target, attrs, times, rows, dists)
            rep.files.append(target)


def _write_run(path: Path, attrs: dict[str, Any], times: np.ndarray, rows: np.ndarray, dists: np.ndarray) -> None:
    import h5py  # deferred: only an export needs it

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for key, value in attrs.items():
                f.attrs[key] = value
            f.create_dataset("times", data=times.astype(np.float32))
            f.create_dataset("neighbors", data=rows.astype(np.int32))  # ann-benchmarks stores 'i'
            f.create_dataset("distances", data=dists.astype(np.float32))


def _write_gt(path: Path, queries: np.ndarray, rows: np.ndarray, dists: np.ndarray, metric: Any) -> None:
    import h5py  # deferred: only an export needs it

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["distance"] = _DISTANCE[metric.value]
            f.attrs["point_type"] = "float"
            f.attrs["dimension"] = int(queries.shape[1])
            f.create_dataset("test", data=queries.astype(np.float32))
            f.create_dataset("neighbors", data=rows.astype(np.int32))
            f.create_dataset("distances", data=dists.astype(np.float32))


# -- CSV: one row per (run, step, search setting) ----------------------------------------------------------
CSV_FIELDS = (
    "scenario", "run_id", "family", "build_params", "policy", "size", "status", "step", "op", "day",
    "count", "live", "seconds", "search_params", "recall", "hit_at_k", "p_at_k", "leaks", "freshness",
    "p50_ms", "p95_ms", "p99_ms", "qps", "rss_steady_bytes", "saved_bytes",
    # since the cost-figures work: build parameters as used, the index's own memory, intervals and noise
    "build_params_used", "index_bytes", "library_bytes", "p99_ms_lo", "p99_ms_hi", "qps_lo", "qps_hi", "rounds",
    "noisy",
    # since the faults issue: which index (the scenario's name for it), the workload's k and metric, threads,
    # and why a run failed (a failed or timed-out run is one row with its status)
    "label", "k", "metric", "threads", "error",
    # since the embedding transforms: the PCA's bytes and the kept original vectors' (inside index_bytes)
    "transform_bytes", "kept_vectors_bytes",
)


def _spread_fields(s: results.SearchSetting) -> dict[str, Any]:
    """The CSV's interval and noise columns of one search setting (empty for a file measured without rounds)."""
    p99 = s.p99_ci or [None, None]
    qps = s.qps_ci95 or [None, None]
    return {"p99_ms_lo": p99[0], "p99_ms_hi": p99[1], "qps_lo": qps[0], "qps_hi": qps[1],
            "rounds": s.rounds, "noisy": None if s.noise is None else s.noise.noisy}


def export_csv(results_dir: Path, out: Path) -> tuple[int, list[str]]:
    """Write one CSV row per (run, step, search setting), and one for a run with no step (failed before
    measuring): (rows written, one line per file skipped)."""
    loaded = results.load_dir(results_dir)
    rows = 0
    with atomic_path(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for run in loaded.runs:
            idx, mem = run.index, run.memory
            base = {
                "scenario": run.scenario.name, "run_id": run.run_id, "family": idx.family,
                "build_params": json.dumps(idx.build_params, sort_keys=True),
                "policy": idx.policy, "size": idx.size, "status": run.status,
                "rss_steady_bytes": mem.rss_steady_bytes, "saved_bytes": mem.saved_bytes,
                "build_params_used": None if idx.build_params_used is None
                else json.dumps(idx.build_params_used, sort_keys=True),
                "index_bytes": mem.index_bytes,
                "library_bytes": None if mem.library_bytes is None else mem.library_bytes.bytes,
                "label": idx.label, "k": run.scenario.k, "metric": run.dataset.metric, "threads": run.threads,
                "error": run.error, "transform_bytes": mem.transform_bytes,
                "kept_vectors_bytes": mem.kept_vectors_bytes,
            }
            if not run.steps:  # a run that failed or timed out before measuring anything: its status is the row
                w.writerow(base)
                rows += 1
            for i, step in enumerate(run.steps):
                common = {**base, "step": i, "op": step.op, "day": step.day, "count": step.count,
                          "live": step.live, "seconds": step.seconds}
                if step.op != "search":
                    w.writerow(common)
                    rows += 1
                    continue
                for s in step.settings:
                    lat = s.latency_ms
                    w.writerow({**common, "search_params": json.dumps(s.params, sort_keys=True),
                                "recall": s.recall, "hit_at_k": s.hit_at_k, "p_at_k": s.p_at_k,
                                "leaks": s.leaks, "freshness": s.freshness,
                                "p50_ms": lat.p50, "p95_ms": lat.p95, "p99_ms": lat.p99,
                                "qps": s.qps, **_spread_fields(s)})
                    rows += 1
    return rows, loaded.bad_lines


def export_forecasts(records: list[dict[str, Any]], json_path: Path | None, csv_path: Path | None) -> None:
    """Write `annbench forecast`'s records (projection.forecast_records): the JSON as a list of them, the CSV
    one row per (configuration, figure, n) with the parameter, alternative-law and input columns as JSON text.
    Non-finite numbers — an interval a fit with no degree of freedom cannot give, or a measured input that was
    not finite (the forecast skipped it) — are written as null / empty, at any depth."""
    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return None if isinstance(v, float) and not np.isfinite(v) else v

    rows = [clean(r) for r in records]
    if json_path is not None:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(rows, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    if csv_path is not None:
        with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=FORECAST_FIELDS)
            w.writeheader()
            for r in rows:
                w.writerow({k: json.dumps(v, sort_keys=True, allow_nan=False) if isinstance(v, dict | list) else v
                            for k, v in r.items()})
