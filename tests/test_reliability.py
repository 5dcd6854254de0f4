"""Crash containment, memory limits, kill-and-resume and Ctrl-C: every finished result survives, intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from annbench import results
from annbench.cli import main
from tests.conftest import REPO

IVF_GRID = [{"name": "ivf", "family": "faiss-ivf", "build": {"nlist": [8, 16, 32]}, "search": {"nprobe": [1, 4]},
             "policies": ["native", "tombstone"]}]


def _docs(out: Path, scenario: str = "small") -> dict[str, dict]:
    """The result files of a sweep, each loaded (checked) and looked at as its plain document."""
    return {p.name: results.dump(results.load(p)) for p in sorted((out / scenario).glob("*.json"))}


def test_memory_limit_and_a_real_faiss_abort_are_contained(tmp_path: Path, scenario_file) -> None:
    path = scenario_file([{"name": "hog", "family": "test-memhog"},
                          {"name": "trap", "family": "test-ivf-idmap2"},
                          {"name": "exact", "family": "test-exact"}])
    res = CliRunner().invoke(main, ["run", "--scenario", str(path), "--out", str(tmp_path / "res"),
                                    "--max-memory-gb", "0.6"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    by_label = {d["index"]["label"]: d for d in _docs(tmp_path / "res").values()}
    assert by_label["hog"]["status"] == "failed"
    assert "memory limit exceeded" in by_label["hog"]["error"]
    # IndexIDMap2 over IVF, then remove_ids: faiss aborts the whole process (the trap DESIGN.md warns of)
    assert by_label["trap"]["status"] == "failed"
    assert "SIGABRT" in by_label["trap"]["error"]
    assert by_label["exact"]["status"] == "ok"


def _start(scenario: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "annbench.cli", "run", "--scenario", str(scenario), "--out",
                             str(out)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_results(out: Path, count: int, proc: subprocess.Popen, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while len(list((out / "small").glob("*.json"))) < count:
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _children(proc: subprocess.Popen) -> list[psutil.Process]:
    """The sweep's run processes (taken before it is signalled: afterwards they would be orphans).

    Waits for a run to be under way, so the test really kills the sweep in the middle of one.
    """
    deadline = time.monotonic() + 30
    while not (found := psutil.Process(proc.pid).children(recursive=True)):
        assert time.monotonic() < deadline, "no run process appeared"
        time.sleep(0.01)
    return found


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    gone, alive = psutil.wait_procs(procs, timeout=5)
    return [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_sigkill_then_rerun_loses_nothing_and_redoes_nothing(tmp_path: Path, scenario_file, monkeypatch) -> None:
    scenario = scenario_file(IVF_GRID)
    out = tmp_path / "res"
    tmp = tmp_path / "tmp"  # the sweeps' temp folder, watched for what the killed one leaves
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    proc = _start(scenario, out)
    _wait_for_results(out, 2, proc)
    runs = _children(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not _alive(runs), "a run's process outlived the killed sweep"
    left = list(tmp.glob("annbench-run-*"))  # the killed run's work folder, with its private TMPDIR
    assert len(left) == 1 and (left[0] / "tmp").is_dir()
    finished = finished_results(out)
    assert 2 <= len(finished) < 6
    rerun_loses_nothing([sys.executable, "-m", "annbench.cli", "run", "--scenario", str(scenario), "--out",
                         str(out)], out, finished, 6)
    assert not list(tmp.glob("annbench-run-*")), "the rerun did not sweep the killed sweep's work folder"


def interrupt_exits_130(proc: subprocess.Popen, out: Path) -> None:
    """Ctrl-C a running sweep: exit 130, one message saying what finished, no traceback, results loadable."""
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "finished this time and are saved" in err
    assert "Traceback" not in err
    assert results.load_dir(out).bad == []


def finished_results(out: Path) -> dict[Path, bytes]:
    """The result files a killed sweep left, by content; nothing half-written where a loader would read it."""
    assert not [p for p in (out / "small").iterdir() if not p.name.endswith(".json")]
    assert results.load_dir(out).bad == []
    return {p: p.read_bytes() for p in (out / "small").glob("*.json")}


def rerun_loses_nothing(cmd: list[str], out: Path, finished: dict[Path, bytes], total: int) -> None:
    """Rerun the killed sweep: it skips the finished runs, leaving them byte-identical, and completes the rest."""
    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(finished)} skipped" in rerun.stdout
    docs = _docs(out)
    assert len(docs) == total and all(d["status"] == "ok" for d in docs.values())
    for p, blob in finished.items():
        assert p.read_bytes() == blob, f"{p.name} was redone or modified"


def test_ctrl_c_stops_cleanly_says_what_finished_and_exits_130(tmp_path: Path, scenario_file) -> None:
    scenario = scenario_file(IVF_GRID)
    out = tmp_path / "res"
    proc = _start(scenario, out)
    _wait_for_results(out, 1, proc)
    runs = _children(proc)
    interrupt_exits_130(proc, out)
    assert not _alive(runs)


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="POSIX process groups")
@pytest.mark.parametrize("where", ["scenario", "index"])
def test_timeout_kills_the_whole_run(tmp_path: Path, scenario_file, where: str, monkeypatch) -> None:
    # the scenario's limit, or one index's own (`indexes[i].timeout_s`, which wins over the scenario's)
    mark = tmp_path / "hang-folder"
    monkeypatch.setenv("ANNBENCH_TEST_HANG_MARK", str(mark))
    if where == "scenario":
        path = scenario_file([{"name": "hang", "family": "test-hang"}], timeout_s=2)
    else:
        path = scenario_file([{"name": "hang", "family": "test-hang", "timeout_s": 2}], timeout_s=600)
    t0 = time.monotonic()
    res = CliRunner().invoke(main, ["run", "--scenario", str(path), "--out", str(tmp_path / "res")])
    assert res.exit_code == 0, res.output
    assert time.monotonic() - t0 < 60
    (doc,) = _docs(tmp_path / "res").values()
    assert doc["status"] == "timeout" and "time limit of 2 s" in doc["error"]
    # what the killed run left in its temp folder (a database's files) went with the run's private TMPDIR
    assert mark.read_text().startswith("/") and not Path(mark.read_text()).exists()
