"""ann-benchmarks interop: annbench results written as ann-benchmarks' per-run HDF5 files.

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

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annbench import results
from annbench.errors import ConfigError

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


def _has_answers(doc: dict[str, Any]) -> bool:
    searches = [s for s in doc["steps"] if s["op"] == "search"]
    return bool(searches) and all("answers" in st and "query_indices" in st for s in searches for st in s["settings"])


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
    groups: dict[tuple[str, float, str, str], list[dict[str, Any]]] = {}
    for doc in loaded.runs:
        what = f"{doc['scenario']['name']}/{doc['run_id']}"
        if doc["status"] != "ok":
            rep.skipped.append(f"{what}: status {doc['status']}")
        elif not _has_answers(doc):
            rep.skipped.append(f"{what}: no answers kept (set keep_answers: true in the scenario and rerun)")
        else:
            key = (doc["scenario"]["path"], float(doc["scenario"].get("scale", 1.0)), doc["scenario"]["hash"],
                   doc["dataset"]["hash"])
            groups.setdefault(key, []).append(doc)
    if not groups:
        why = f"{len(rep.skipped)} run(s) skipped, e.g. {rep.skipped[0]}" if rep.skipped else "no result files"
        raise ConfigError(f"nothing to export from {results_dir} ({why}); ann-benchmarks files need every returned "
                          "id, which a result keeps only when its scenario sets keep_answers: true")
    if cache_dir is None:
        cands = [results_dir / ".cache", results_dir.parent / ".cache"]
        cache_dir = next((c for c in cands if c.is_dir()), cands[0])
    written_data: set[Path] = set()
    for (path_text, scale, sc_hash, ds_hash), docs in groups.items():
        prep, ds = _prepare(path_text, scale, sc_hash, ds_hash, docs[0], results_dir, cache_dir, progress)
        for doc in docs:
            _export_run(doc, prep, ds, out_dir, rep, written_data)
    return rep


def _prepare(path_text: str, scale: float, sc_hash: str, ds_hash: str, doc: dict[str, Any], results_dir: Path,
             cache_dir: Path, progress: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """The harness's prepared data and ground truth for a group of runs, checked against their hashes."""
    from annbench import harness
    from annbench.scenarios import load_scenario

    path = _resolve(path_text, results_dir)
    source = doc["dataset"].get("source")
    sc = load_scenario(path, scale=scale)
    if sc.content_hash() != sc_hash:
        raise ConfigError(f"{path} changed since its runs (workload hash differs); rerun them before exporting")
    prep = harness.prepare(sc, cache_dir, progress)
    if prep.dataset_info["hash"] != ds_hash and source and Path(source).is_file():
        # the runs were made with --dataset: the scenario names another file
        sc = load_scenario(path, scale=scale, dataset_path=source)
        prep = harness.prepare(sc, cache_dir, progress)
    if prep.dataset_info["hash"] != ds_hash:
        raise ConfigError(f"the dataset of {doc['scenario']['name']} ({source}) changed since its runs "
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
    from annbench.scenarios import op_log

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


def _index_bytes(memory: dict[str, Any]) -> float:
    """The index's own memory (annbench.memory), or the RSS delta a file written before it recorded."""
    own = memory.get("index_bytes")
    return float(own) if own is not None else float(memory.get("index_rss_bytes", 0))


def _params(p: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items())


def _export_run(doc: dict[str, Any], prep: Any, data: dict[str, Any], out_dir: Path, rep: ExportReport,
                written_data: set[Path]) -> None:
    from annbench.adapters.base import Metric
    from annbench.groundtruth import true_distances

    idx, sc_rec = doc["index"], doc["scenario"]
    metric = Metric(doc["dataset"]["metric"])
    k = int(sc_rec["k"])
    size = idx.get("size")
    with np.load(prep.gt_paths[size]) as z:  # exact top-k over each search step's live set, all queries
        gt_d, gt_i = np.array(z["dists"]), np.array(z["ids"])
    maps = _live_maps(prep, data, size)
    build = next((s for s in doc["steps"] if s["op"] == "build"), {})
    memory = doc.get("memory") or {}
    algo = _safe(idx["label"] if idx["policy"] == "native" else f"{idx['label']}-{idx['policy']}")
    searches = [s for s in doc["steps"] if s["op"] == "search"]
    if len(searches) != len(maps):
        raise ConfigError(f"{doc.get('_path')}: {len(searches)} search steps but the scenario's op log has "
                          f"{len(maps)}; rerun it before exporting")
    for i, step in enumerate(searches):
        ds_name = _safe(f"{sc_rec['name']}.{doc['dataset']['name']}" + (f".n{size}" if size else "")
                        + (f".day{step['day']}" if sc_rec.get("timeline") == "daily" else ""))
        live = maps[i]
        for st in step["settings"]:
            qidx = np.asarray(st["query_indices"], dtype=np.int64)
            queries = np.ascontiguousarray(data["queries"][qidx])
            found = np.asarray(st["answers"], dtype=np.int64).reshape(len(qidx), k)
            rows = _rows(found, live)  # a deleted id (a leak) has no live row: -1 and +inf, never counted
            dists = true_distances(queries, data["pool"], rows, metric)
            gt_file = out_dir / "data" / f"{ds_name}.hdf5"
            if gt_file not in written_data:
                _write_gt(gt_file, queries, _rows(gt_i[i][qidx], live), gt_d[i][qidx], metric)
                written_data.add(gt_file)
                rep.datasets.append(gt_file)
            # rounds of the same queries, one after another: a query's time is its median over rounds
            times = np.median(np.asarray(st["latency_ns"], dtype=np.float64).reshape(-1, len(qidx)), axis=0) / 1e9
            attrs = {
                "algo": algo,
                "name": f"{idx['family']}({_params(idx['build_params'])}; {_params(st['params'])}; {idx['policy']})",
                "build_time": float(build.get("seconds", 0.0)),
                "index_size": max(0.0, float(_index_bytes(memory))) / 1024.0,
                "best_search_time": float(times.mean()) if len(times) else float("inf"),
                "count": k,
                "distance": _DISTANCE[metric.value],
                "dataset": ds_name,
                "batch_mode": False,
                "run_count": 1,
                "candidates": float((rows >= 0).sum(1).mean()),
                "expect_extra": False,
                "annbench_run_id": doc["run_id"],
                "annbench_scenario": sc_rec["name"],
                "annbench_policy": idx["policy"],
                "annbench_day": int(step["day"]),
                "annbench_build_params": json.dumps(idx["build_params"], sort_keys=True),
                "annbench_search_params": json.dumps(st["params"], sort_keys=True),
                "annbench_recall": float(st["recall"]),
            }
            stem = _safe(json.dumps([idx["build_params"], st["params"], idx["policy"]], sort_keys=True))
            target = out_dir / "results" / ds_name / str(k) / algo / f"{stem}.hdf5"
            _write_run(target, attrs, times, rows, dists)
            rep.files.append(target)


def _write_run(path: Path, attrs: dict[str, Any], times: np.ndarray, rows: np.ndarray, dists: np.ndarray) -> None:
    import h5py

    from annbench.atomic import atomic_path

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for key, value in attrs.items():
                f.attrs[key] = value
            f.create_dataset("times", data=times.astype(np.float32))
            f.create_dataset("neighbors", data=rows.astype(np.int32))  # ann-benchmarks stores 'i'
            f.create_dataset("distances", data=dists.astype(np.float32))


def _write_gt(path: Path, queries: np.ndarray, rows: np.ndarray, dists: np.ndarray, metric: Any) -> None:
    import h5py

    from annbench.atomic import atomic_path

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["distance"] = _DISTANCE[metric.value]
            f.attrs["point_type"] = "float"
            f.attrs["dimension"] = int(queries.shape[1])
            f.create_dataset("test", data=queries.astype(np.float32))
            f.create_dataset("neighbors", data=rows.astype(np.int32))
            f.create_dataset("distances", data=dists.astype(np.float32))
