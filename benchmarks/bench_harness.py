"""P4 and P5: the whole `annbench run` as a user starts it — its wall time, where that goes, its memory.

Both start the real command (`annbench run …`, the installed console script of this interpreter) in a
child process with a temporary results folder and a fresh cache, and timestamp its progress lines as
they arrive (PYTHONUNBUFFERED), which splits the run into CLI start, dataset materialisation, ground
truth and the sweep without touching annbench.

P4 then reads the result files (`results.load_dir`: typed records): per run, the build, update and
timed-search seconds the run recorded, and its wall time in the sweep; what remains of a run's wall time
is process start, loading, warm-up, recall computation, the memory pass, saving the index and writing
JSON. Process start is measured separately (a fresh interpreter importing what a run imports) and so is
what each run's process reads before its first build (its workload file, the op log the parent stored,
the prepared arrays and the ground truth: `_child_setup_seconds`, on the run's own cache), so the
remainder is split as far as can be without a profiler.

P5 writes a 1M × 128 float32 .npy (512 MB) and a one-index static scenario over it, runs it, and polls
the parent's /proc/<pid>/status (VmHWM, the kernel's own peak, plus RssAnon / RssFile) every few ms.
The index's process is a child with its own RSS: not counted, as the target says.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import Line, annbench_command, median, proc_status, repo_root


class Watched:
    """A child process whose stdout lines are timestamped as they arrive, and whose memory can be polled."""

    def __init__(self, args: list[str], cwd: Path, stderr_path: Path) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.t0 = time.perf_counter()
        self._stderr = open(stderr_path, "wb")  # tqdm's bar: to a file, so a full pipe never blocks the run
        self.proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=self._stderr, env=env,
                                     stdin=subprocess.DEVNULL, text=True, bufsize=1)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.perf_counter() - self.t0, line.rstrip("\n")))

    def wait(self) -> tuple[int, float]:
        rc = self.proc.wait()
        wall = time.perf_counter() - self.t0
        self._reader.join()
        self._stderr.close()
        return rc, wall

    def stamp(self, needle: str) -> float | None:
        """Seconds from start to the first stdout line containing `needle`."""
        return next((t for t, line in self.lines if needle in line), None)


def _child_start_seconds(modules: list[str], repeats: int = 3) -> dict[str, float]:
    """Median seconds for a fresh interpreter to import annbench.replay and one adapter module."""
    out = {}
    for mod in modules:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", f"import annbench.replay, {mod}"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - t)
        out[mod] = median(times)
    return out


def _child_setup_seconds(scenario: Path, scale: float, cache_dir: Path, tmp: Path, repeats: int = 3) -> float:
    """Median seconds a run's process spends reading its inputs before its first build, as
    `annbench.replay.run` does: `Workload.load` of the workload file the parent wrote, the prepared
    arrays (base memory-mapped, queries, labels), the per-step ground truth's distances and the op log the
    parent stored (`oplog.load_ops`). The child no longer reads the scenario nor recomputes the op log.

    The workload is the first run's of the scenario, made by the harness (`make_workload`) over the
    command's own cache (`cache_dir`: prepared again here, every file already there). Not counted here:
    the adapter's library import (`load_library`; in process start) and the index's construction.
    """
    from annbench import adapters, harness
    from annbench.oplog import load_ops
    from annbench.scenarios import load_scenario
    from annbench.workload import Workload

    sc = load_scenario(scenario, scale=scale)
    prep = harness.prepare(sc, cache_dir)
    path = tmp / "workload.json"
    harness.make_workload(prep, next(iter(sc.runs()))).dump(path)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        w = Workload.load(path)
        data = Path(w.data_dir)
        pool = np.load(data / "base.npy", mmap_mode="r")
        queries = np.load(data / "queries.npy")
        labels = [np.load(data / name, mmap_mode="r" if name.startswith("base") else None)
                  for name in ("base_labels.npy", "query_labels.npy") if (data / name).exists()]
        with np.load(w.gt_path) as gt:
            gt_d = gt["dists"]
        ops = load_ops(Path(w.ops_path))
        adapters.get(w.family)
        times.append(time.perf_counter() - t)
        del pool, queries, labels, gt_d, ops
    return median(times)


def measure_run(scenario: str, scale: float, limit_s: float) -> list[Line]:
    """P4: wall time of `annbench run --scenario <scenario>` with defaults, fresh cache, and its profile."""
    from annbench import adapters, results

    root = repo_root()
    with tempfile.TemporaryDirectory(prefix="annbench-p4-") as tmp_s:
        tmp = Path(tmp_s)
        args = [*annbench_command(), "run", "--scenario", scenario, "--out", str(tmp / "out")]
        if scale != 1.0:
            args += ["--scale", str(scale)]
        w = Watched(args, root, tmp / "stderr.txt")
        rc, wall = w.wait()
        if rc != 0:
            err = (tmp / "stderr.txt").read_text(errors="replace")[-2000:]
            return [Line("P4", f"annbench run --scenario {scenario}: exited {rc}", float("nan"), " s", "<=",
                         limit_s, raw={"stdout": w.lines, "stderr_tail": err}, sound=False)]
        t_mat = w.stamp("materialising dataset")
        t_gt = w.stamp("exact ground truth")
        t_runs = w.stamp(" runs (")
        loaded = results.load_dir(tmp / "out")  # the cache (out/.cache) is a dot-folder: not read
        runs = loaded.runs
        scenario_path = root / "configs" / "scenarios" / f"{scenario}.yaml"
        setup = _child_setup_seconds(scenario_path, scale, tmp / "out" / ".cache", tmp) * len(runs)

    rec = _recorded_seconds(runs)
    families = rec.pop("families")
    statuses = rec.pop("statuses")
    modules = sorted({adapters.get(f).__module__ for f in families})
    start_by_module = _child_start_seconds(modules)
    process_start = sum(start_by_module[adapters.get(f).__module__] * c for f, c in families.items())
    run_walls = rec["run_walls"]
    sweep = wall - t_runs if t_runs is not None else float("nan")
    recorded = sum(v for key, v in rec.items() if key not in ("run_walls",))
    rest = run_walls - recorded - process_start - setup
    parts = [
        ("CLI start (interpreter, imports, scenario validation)", t_mat if t_mat is not None else float("nan")),
        ("prepare: materialise dataset (.npy in cache)", (t_gt - t_mat) if t_gt and t_mat else float("nan")),
        ("prepare: exact ground truth of every search step", (t_runs - t_gt) if t_runs and t_gt else float("nan")),
        (f"runs: process start ({len(runs)} × fresh interpreter + library import)", process_start),
        ("runs: reading workload, op log, arrays, GT in each run's process", setup),
        ("runs: build", rec["build"]),
        ("runs: insert / delete / update", rec["updates"]),
        ("runs: rebuild / maintain (policies' upkeep)", rec["upkeep"]),
        ("runs: timed search, single-query loops", rec["singles"]),
        ("runs: timed search, batch calls (each round's repeated for ≥ 20 ms)", rec["batches"]),
        ("runs: concurrency levels (client threads, free-core control, batch)", rec["concurrency"]),
        ("runs: day-7 ingest under load (paced writes, snapshots, at rest)", rec["ingest"]),
        ("runs: rest, not recorded (warm-up, recall, freshness, memory pass, save, JSON)", rest),
        ("sweep: parent between runs (spawn, result files)", sweep - run_walls),
    ]
    profile = "\n".join(f"  {name:<70} {secs:8.1f} s  {100 * secs / wall:5.1f} %" for name, secs in parts)
    slowest = sorted(runs, key=lambda r: -(r.wall_seconds or 0.0))[:8]
    by_run = "\n".join(f"  {r.run_id:<70} {r.wall_seconds or 0.0:8.1f} s  {100 * (r.wall_seconds or 0.0) / wall:5.1f} %"
                       for r in slowest)
    profile = (f"where the {wall:.0f} s of `annbench run --scenario {scenario}` went (result files' recorded "
               f"seconds, the harness's wall time per run, the command's progress lines):\n{profile}\n"
               f"the {len(slowest)} longest of {len(runs)} runs (wall time recorded by the harness):\n{by_run}")
    return [Line(
        "P4", f"annbench run --scenario {scenario} (defaults, fresh cache)"
        + (f" --scale {scale:g}" if scale != 1.0 else ""), wall, " s", "<=", limit_s,
        raw={"wall_seconds": wall, "runs": len(runs), "statuses": statuses, "families": families,
             "progress_lines": w.lines, "profile": dict(parts), "recorded_seconds": rec,
             "child_start_seconds_by_module": start_by_module, "child_setup_seconds_per_run": setup / max(1, len(runs)),
             "sum_run_wall_seconds": run_walls, "bad_result_files": loaded.bad_lines},
        profile=profile, sound=statuses.get("ok", 0) == len(runs) and bool(runs) and not loaded.bad)]


def _recorded_seconds(runs: list[Any]) -> dict[str, Any]:
    """Seconds the result records (`results.RunRecord`) themselves hold, summed over runs, by what they were spent on.

    Only fields a run measured with its own clock are used (step `seconds`, single-query latencies,
    batch repeats, each concurrency level's client window and batch repeats, the ingest step's paced
    window, pauses and at-rest load); the free-core control before each client level is a fixed
    `concurrency.CONTROL_SECONDS` per level and is counted as such.
    """
    from annbench.concurrency import CONTROL_SECONDS

    out: dict[str, Any] = {"run_walls": 0.0, "build": 0.0, "updates": 0.0, "upkeep": 0.0, "singles": 0.0,
                           "batches": 0.0, "concurrency": 0.0, "ingest": 0.0, "families": {}, "statuses": {}}

    def level_seconds(level: Any) -> float:  # a results.ClientLoad
        batch = level.batch
        reused = batch is not None and batch.from_ is not None  # the search step's own batch figure: counted
        seconds_all = (batch.seconds_all if batch is not None else None) or []
        return (level.seconds + CONTROL_SECONDS
                # batch_qps makes one untimed warm call before its timed repeats: counted as their median
                + (0.0 if reused else sum(seconds_all) + median(seconds_all or [0.0])))

    for run in runs:
        out["run_walls"] += run.wall_seconds or 0.0
        out["statuses"][run.status] = out["statuses"].get(run.status, 0) + 1
        family = run.index.family
        out["families"][family] = out["families"].get(family, 0) + 1
        for step in run.steps:
            op = step.op
            if op == "search":
                for s in step.settings:
                    out["singles"] += sum(s.latency_ns) / 1e9
                    # each round's batch call is repeated (per_round[i].batch_calls); seconds are per call
                    batch_all = s.batch_seconds_all or []
                    calls = [1 if r.batch_calls is None else r.batch_calls for r in s.per_round]
                    calls = calls or [1] * len(batch_all)
                    out["batches"] += sum(b * c for b, c in zip(batch_all, calls, strict=False))
                    out["concurrency"] += sum(level_seconds(lv) for lv in s.concurrency or [])
            elif op == "ingest":
                out["ingest"] += ((step.wall_seconds or 0.0) + (step.paused_seconds or 0.0)
                                  + (step.at_rest.seconds if step.at_rest is not None else 0.0) + CONTROL_SECONDS)
            elif op == "build":
                out["build"] += step.seconds
            elif op in ("rebuild", "maintain"):
                out["upkeep"] += step.seconds
            else:
                out["updates"] += step.seconds
    return out


def _write_npy(path: Path, n: int, dim: int, seed: int) -> None:
    """n × dim float32 Gaussian rows, written block by block (this process never holds the whole array)."""
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for s in range(0, n, 65_536):
        e = min(n, s + 65_536)
        out[s:e] = rng.standard_normal((e - s, dim), dtype=np.float32)
    out.flush()
    del out


def measure_memory(n: int, dim: int = 128, n_queries: int = 100) -> list[Line]:
    """P5: peak RSS of the `annbench run` parent on an n × dim memory-mapped .npy ÷ the dataset's bytes."""
    import psutil
    import yaml

    with tempfile.TemporaryDirectory(prefix="annbench-p5-") as tmp_s:
        tmp = Path(tmp_s)
        _write_npy(tmp / "base.npy", n, dim, 0)
        np.save(tmp / "queries.npy", np.random.default_rng(1).standard_normal((n_queries, dim), dtype=np.float32))
        data_bytes = n * dim * 4
        scenario = {
            "name": "p5_mmap", "description": "P5: the harness's memory on a large memory-mapped catalog",
            "dataset": {"path": "base.npy", "queries": "queries.npy"}, "metric": "l2", "k": 10, "threads": 1,
            "timeout_s": 1800, "queries": {"count": n_queries}, "timeline": {"kind": "static"},
            "indexes": [{"name": "ivf", "family": "faiss-ivf", "build": {"nlist": 256}, "search": {"nprobe": [4]}}],
        }
        (tmp / "p5.yaml").write_text(yaml.safe_dump(scenario, sort_keys=False))
        w = Watched([*annbench_command(), "run", "--scenario", str(tmp / "p5.yaml"), "--out", str(tmp / "out")],
                    tmp, tmp / "stderr.txt")
        parent = psutil.Process(w.proc.pid)
        samples: list[tuple[float, int, int, int]] = []  # (t, rss, anon, file)
        hwm = 0
        child_peak = 0
        while w.proc.poll() is None:
            try:
                st = proc_status(w.proc.pid)
                hwm = max(hwm, st.get("VmHWM", 0))
                samples.append((time.perf_counter() - w.t0, st["VmRSS"], st.get("RssAnon", 0), st.get("RssFile", 0)))
                for c in parent.children(recursive=True):
                    child_peak = max(child_peak, c.memory_info().rss)
            except (OSError, KeyError, psutil.Error):
                pass  # the process is exiting between poll() and the read
            time.sleep(0.005)
        rc, wall = w.wait()
        if rc != 0 or not samples:
            err = (tmp / "stderr.txt").read_text(errors="replace")[-2000:]
            return [Line("P5", f"annbench run on {n:,} × {dim} .npy: exited {rc}", float("nan"), "×", "<=", 1.2,
                         raw={"stdout": w.lines, "stderr_tail": err}, sound=False)]

    peak = max(hwm, max(s[1] for s in samples))  # VmHWM is the kernel's peak; the samples back it up
    # Where the peak happened: the phase (from the progress lines) of the largest sample.
    marks = [(0.0, "CLI start")] + [(t, line.removeprefix("annbench: ")[:60]) for t, line in w.lines]
    phases: dict[str, tuple[int, int, int]] = {}
    for t, rss, anon, file in samples:
        phase = [m for m in marks if m[0] <= t][-1][1]
        old = phases.get(phase, (0, 0, 0))
        if rss > old[0]:
            phases[phase] = (rss, anon, file)
    prof = "parent RSS by phase (max sample: total = anonymous + file-backed pages):\n" + "\n".join(
        f"  {name:<62} {rss / 2**20:7.0f} MiB = {anon / 2**20:5.0f} anon + {file / 2**20:5.0f} file"
        for name, (rss, anon, file) in phases.items())
    return [Line(
        "P5", f"harness parent peak RSS on {n:,} × {dim} mmapped .npy ÷ {data_bytes / 1e6:.0f} MB",
        peak / data_bytes, "×", "<=", 1.2,
        raw={"n": n, "dim": dim, "dataset_bytes": data_bytes, "parent_vmhwm_bytes": hwm,
             "parent_max_sampled_rss_bytes": max(s[1] for s in samples),
             "parent_max_anon_bytes": max(s[2] for s in samples), "parent_max_file_bytes": max(s[3] for s in samples),
             "index_process_peak_rss_sampled_bytes": child_peak, "wall_seconds": wall, "samples": len(samples),
             "progress_lines": w.lines, "by_phase": {k: list(v) for k, v in phases.items()}},
        profile=prof)]
