"""`annbench run --executor dask` (annbench/executors.py) on a real Dask LocalCluster started here, on loopback.

The cluster (2 worker processes × 1 thread, each offering the resource cores=1, dashboard off) is bound to
127.0.0.1 and shared by the tests of this module; the test that kills a worker runs last, and the nanny
restarts the worker anyway. Runs use the real libraries (faiss, hnswlib) and the test-only failure
adapters of tests/fake_adapters.py; nothing of Dask is mocked.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from click.testing import CliRunner
from distributed import Client, LocalCluster

from annbench import results
from annbench.adapters.base import Metric
from annbench.cli import main
from annbench.executors import DaskExecutor
from annbench.supervisor import Task
from annbench.workload import Workload
from tests import test_bad_input as bad
from tests.conftest import REPO
from tests.test_reliability import (
    _wait_for_results,
    finished_results,
    interrupt_exits_130,
    rerun_loses_nothing,
)

# Few runs: each is a fresh Python process importing numpy and faiss, seconds on a loaded 2-core machine.
IVF = {"name": "ivf", "family": "faiss-ivf", "build": {"nlist": [8, 16]}, "search": {"nprobe": [1, 4]},
       "policies": ["native", "tombstone"]}  # 4 runs
IVF1 = {**IVF, "build": {"nlist": 8}, "policies": ["native"]}  # 1 run
HNSW = {"name": "hnsw", "family": "hnswlib", "build": {"M": 8, "ef_construction": 40}, "search": {"ef": [10, 40]},
        "policies": ["native"]}
# The client as a user runs it, plus the test-only adapters (a subprocess does not see conftest's import).
CLIENT = [sys.executable, "-c", "import tests.fake_adapters; from annbench.cli import main; main()"]

# What differs between two executions of the same run, whoever executes it: when and how fast it ran
# (timings), where (host) and which process (pid), and how much memory the process happened to hold
# (RSS differs by a few hundred KiB between two local reruns too). Everything else must be identical.
TIMING_KEYS = {"started_at", "wall_seconds", "seconds", "vectors_per_s", "qps", "batch_seconds",
               "batch_seconds_all", "latency_ms", "latency_ns",
               # rounds (annbench.timing): intervals, each round's figures, and the noise verdict drawn from them
               "latency_ms_ci95", "qps_ci95", "per_round", "noise"}
HOST_KEYS = {"hostname", "pid"}
RSS_KEYS = {"rss_baseline_bytes", "rss_peak_bytes", "rss_steady_bytes", "index_rss_bytes", "index_bytes",
            "index_bytes_last_day"}


def strip_measurements(doc: Any) -> Any:
    """`doc` without timings, host and pid (and RSS) fields, everything else kept for an equality check.

    `threadpools` is compared as a set: its order is the order native libraries were loaded, which
    follows Python's per-process hash seed (it differs between two local reruns as well).
    """
    if isinstance(doc, dict):
        out = {k: strip_measurements(v) for k, v in doc.items() if k not in TIMING_KEYS | HOST_KEYS | RSS_KEYS}
        if "threadpools" in out:
            out["threadpools"] = sorted(out["threadpools"], key=lambda t: json.dumps(t, sort_keys=True))
        return out
    if isinstance(doc, list):
        return [strip_measurements(v) for v in doc]
    return doc


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      resources={"cores": 1}, memory_limit=0, silence_logs=logging.ERROR) as c:
        print(f"\nLocalCluster (2 workers) started in {time.perf_counter() - t0:.2f} s")
        # everything on loopback: the scheduler, and every worker and nanny it knows of
        assert c.scheduler_address.startswith("tcp://127.0.0.1:"), c.scheduler_address
        assert all(w.startswith("tcp://127.0.0.1:") for w in c.scheduler_info["workers"]), c.scheduler_info
        # and every socket listening in this process or its children (scheduler, its HTTP health routes,
        # nannies, workers) listens on 127.0.0.1 only
        procs = [psutil.Process(), *psutil.Process().children(recursive=True)]
        listening = [(p.pid, conn.laddr) for p in procs for conn in p.net_connections("inet")
                     if conn.status == psutil.CONN_LISTEN]
        assert listening and all(addr.ip == "127.0.0.1" for _, addr in listening), listening
        yield c


def _docs(out: Path, scenario: str = "small") -> dict[str, dict]:
    """The result files of a sweep, each loaded (checked) and compared as its plain document."""
    return {p.name: results.dump(results.load(p)) for p in sorted((out / scenario).glob("*.json"))}


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _replays() -> list[psutil.Process]:
    """The `annbench.replay` processes below this test process (the cluster's workers are its children)."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "annbench.replay" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:
            pass
    return found


def _family(replay: psutil.Process) -> str | None:
    try:
        return json.loads(Path(replay.cmdline()[-2]).read_text())["family"]  # [..., WORKLOAD.json, OUT.json]
    except (psutil.Error, OSError, ValueError, KeyError):
        return None


def _wait_gone(limit_s: float = 15) -> None:
    deadline = time.monotonic() + limit_s
    while [p for p in _replays() if p.status() != psutil.STATUS_ZOMBIE]:
        assert time.monotonic() < deadline, "a run's replay process outlived its cancelled task"
        time.sleep(0.1)


def test_dask_results_equal_local_results_but_for_timings_and_host(tmp_path: Path, scenario_file,
                                                                    cluster: LocalCluster) -> None:
    path = scenario_file([{**IVF, "build": {"nlist": 8}}, HNSW], keep_answers=True)
    cache = tmp_path / "cache"  # one cache: the second sweep reads the same prepared files
    local = _invoke("run", "--scenario", str(path), "--out", str(tmp_path / "local"), "--cache", str(cache))
    assert local.exit_code == 0, local.output
    dask = _invoke("run", "--scenario", str(path), "--out", str(tmp_path / "dask"), "--cache", str(cache),
                   "--executor", "dask", "--scheduler", cluster.scheduler_address)
    assert dask.exit_code == 0, dask.output
    assert "executor dask" in dask.output and "3 ok" in dask.output
    a, b = _docs(tmp_path / "local"), _docs(tmp_path / "dask")
    assert len(a) == 3 and a.keys() == b.keys()  # same files under the same names
    for name in a:
        assert a[name]["status"] == "ok"
        left, right = strip_measurements(a[name]), strip_measurements(b[name])
        assert "recall" in json.dumps(left) and "answers" in json.dumps(left)  # the comparison has teeth
        assert left == right, name
    # and the Dask results went through the same atomic writer: no temp file left behind
    assert not [p for p in (tmp_path / "dask" / "small").iterdir() if not p.name.endswith(".json")]


def test_crash_abort_and_memory_limit_on_a_worker_are_that_runs_failure(tmp_path: Path, scenario_file,
                                                                         cluster: LocalCluster) -> None:
    path = scenario_file([{"name": "abort", "family": "test-abort"}, {"name": "segv", "family": "test-segfault"},
                          {"name": "hog", "family": "test-memhog"}, {"name": "exact", "family": "test-exact"},
                          IVF1])
    res = _invoke("run", "--scenario", str(path), "--out", str(tmp_path / "res"), "--max-memory-gb", "0.6",
                  "--executor", "dask", "--scheduler", cluster.scheduler_address)
    assert res.exit_code == 0, res.output
    by_label = {f"{d['index']['label']}/{d['index']['policy']}": d for d in _docs(tmp_path / "res").values()}
    assert len(by_label) == 5
    assert by_label["abort/native"]["status"] == "failed" and "SIGABRT" in by_label["abort/native"]["error"]
    assert by_label["segv/native"]["status"] == "failed" and "SIGSEGV" in by_label["segv/native"]["error"]
    assert by_label["hog/native"]["status"] == "failed"
    assert "memory limit exceeded" in by_label["hog/native"]["error"]
    others = {k: d["status"] for k, d in by_label.items() if k.split("/")[0] not in ("abort", "segv", "hog")}
    assert set(others.values()) == {"ok"}, others


def test_the_default_is_a_local_cluster_on_loopback(tmp_path: Path, scenario_file) -> None:
    path = scenario_file([IVF1])
    res = _invoke("run", "--scenario", str(path), "--out", str(tmp_path / "res"), "--executor", "dask")
    assert res.exit_code == 0, res.output
    assert "executor dask: a local cluster" in res.output
    assert [d["status"] for d in _docs(tmp_path / "res").values()] == ["ok"]


def _start(scenario: Path, out: Path, cluster: LocalCluster) -> subprocess.Popen:
    return subprocess.Popen([*CLIENT, "run", "--scenario", str(scenario), "--out", str(out), "--executor", "dask",
                             "--scheduler", cluster.scheduler_address],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_of_the_client_then_rerun_loses_nothing_and_redoes_nothing(tmp_path: Path, scenario_file,
                                                                            cluster: LocalCluster) -> None:
    # 4 runs on 2 single-core workers: killed at the first result, at least 2 are unfinished
    scenario = scenario_file([IVF])
    out = tmp_path / "res"
    proc = _start(scenario, out, cluster)
    _wait_for_results(out, 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _wait_gone()  # the scheduler drops a dead client's tasks; their workers kill the replays
    finished = finished_results(out)
    assert 1 <= len(finished) < 4
    rerun_loses_nothing([*CLIENT, "run", "--scenario", str(scenario), "--out", str(out), "--executor", "dask",
                         "--scheduler", cluster.scheduler_address], out, finished, 4)


def test_ctrl_c_cancels_outstanding_tasks_keeps_finished_results_and_exits_130(tmp_path: Path, scenario_file,
                                                                                cluster: LocalCluster) -> None:
    scenario = scenario_file([{"name": "hang", "family": "test-hang"}, IVF1])
    out = tmp_path / "res"
    proc = _start(scenario, out, cluster)
    _wait_for_results(out, 1, proc)
    interrupt_exits_130(proc, out)
    assert "hang" not in " ".join(p.name for p in (out / "small").glob("*.json"))
    _wait_gone()  # the hanging run's replay was killed on its worker, not left to its 120 s time limit


def test_a_worker_killed_mid_run_is_that_runs_failure_and_the_rest_finish(tmp_path: Path, scenario_file,
                                                                          cluster: LocalCluster) -> None:
    scenario = scenario_file([{"name": "hang", "family": "test-hang"}, {**IVF, "policies": ["native"]}])
    out = tmp_path / "res"
    proc = _start(scenario, out, cluster)
    deadline = time.monotonic() + 60
    while not (hung := [p for p in _replays() if _family(p) == "test-hang"]):
        assert proc.poll() is None and time.monotonic() < deadline, "the hanging run never started"
        time.sleep(0.05)
    worker = hung[0].parent()  # the worker process executing the run (its nanny restarts it)
    worker.send_signal(signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert not hung[0].is_running() or hung[0].status() == psutil.STATUS_ZOMBIE, "the run outlived its worker"
    docs = {f"{d['index']['label']}/{d['index']['policy']}": d for d in _docs(out).values()}
    assert len(docs) == 3
    assert docs["hang/native"]["status"] == "failed"
    assert "worker running this run died" in docs["hang/native"]["error"]
    assert {d["status"] for k, d in docs.items() if k != "hang/native"} == {"ok"}


# --- bad input: one line on stderr, exit 2, no traceback, nothing written (as tests/test_bad_input.py) ------
def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on return: nothing listens there


def _bad(tmp: Path, argv: list[str], expected: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("annbench: error: "), proc.stderr
    assert expected in lines[0], lines[0]
    assert not list(tmp.rglob("*.json")), "a result file was written"
    assert not (tmp / "out" / ".cache").exists(), "the sweep prepared data before failing"


def test_dask_not_importable_is_one_line(tmp_path: Path) -> None:
    args = bad.run("--executor", "dask")(tmp_path)
    hide = "import sys; sys.modules['dask'] = sys.modules['distributed'] = None; "  # import now raises
    _bad(tmp_path, [sys.executable, "-c", hide + "from annbench.cli import main; main()", *args],
         "--executor dask needs Dask: pip install 'annbench[dask]'")


def test_unreachable_scheduler_is_one_line(tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{_free_loopback_port()}"
    args = bad.run("--executor", "dask", "--scheduler", address)(tmp_path)
    _bad(tmp_path, [sys.executable, "-m", "annbench.cli", *args], f"cannot reach the Dask scheduler {address}",
         env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"})  # dask's own setting; its default is 30 s


def test_a_cluster_without_enough_cores_is_an_input_error(tmp_path: Path, cluster: LocalCluster,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # in-process (the message's one-line form is the CLI's, tested above): starting Python costs seconds here
    monkeypatch.chdir(tmp_path)
    args = bad.run("--executor", "dask", "--scheduler", cluster.scheduler_address, threads=2)(tmp_path)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert "offers the resource cores=2 a run of this scenario reserves" in res.output
    assert not list(tmp_path.rglob("*.json")) and not (tmp_path / "out").exists()


def test_a_worker_that_cannot_read_the_cache_says_so(tmp_path: Path, cluster: LocalCluster) -> None:
    # what a worker without the shared folder sees: the task's paths do not exist there
    absent = tmp_path / "not-shared"
    work = Workload(family="test-exact", adapter_module="tests.fake_adapters", build_params={}, search_grid=[{}],
                    policy="native", metric=Metric.L2, k=10, seed=0, threads=1, timeline="static", rebuild_every=1,
                    maintain_every=1, rounds=1, warmup=False, keep_answers=False, concurrency=None,
                    concurrent_updates=None, data_dir=str(absent), gt_path=str(absent / "gt.npz"),
                    ops_path=str(absent / "ops.npz"))
    task = Task("r", work, 10)
    with Client(cluster.scheduler_address) as client:
        [(run_id, execution)] = list(DaskExecutor(client, None, 1).execute([task], threading.Event()))
    assert run_id == "r" and execution.status == "failed"
    assert "is not readable on" in execution.error and "a path every machine shares" in execution.error


def test_a_run_reserves_the_cores_its_threads_use() -> None:
    from annbench.executors import cores_needed
    from annbench.scenarios import load_scenario

    configs = REPO / "configs" / "scenarios"
    assert cores_needed(load_scenario(configs / "ci_smoke.yaml")) == 1  # threads: 1
    # concurrency levels (1, 2) and 2 clients searching while 1 writer writes: 3 threads at once
    assert cores_needed(load_scenario(configs / "reseller_daily_updates.yaml")) == 3
