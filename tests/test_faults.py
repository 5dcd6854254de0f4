"""Faults found from outside (issue 16): two sweeps into one folder, a full disk, a killed materialisation.

- the results folder's lock (annbench.outlock): a second sweep stops with exit 2 naming the holder, or
  waits with --wait-for-lock and then skips what the first finished; a killed holder leaves no lock;
- a full disk while the dataset is materialised is one line and exit 3, never a SIGBUS, and leaves no
  temp folder; the space is reserved before any data is written, and nothing is memory-mapped;
- the same for the ground-truth cache and the op log: one line, nothing half-written;
- a killed materialisation's temp folder is removed by the next run, a live one's is kept;
- a finished run whose result cannot be written is kept in the system temp folder and the sweep stops
  (exit 3), or, when even that fails, its figures are printed.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from annbench import executors, harness, outlock, results, tempdirs
from annbench.adapters import register
from annbench.scenarios import load_scenario
from tests.conftest import REPO
from tests.fake_adapters import _Exact

GATE_ENV = "ANNBENCH_TEST_GATE"


@register
class Gated(_Exact):
    """Builds only once the file named by $ANNBENCH_TEST_GATE exists (or after 60 s): a sweep the test
    holds in the middle of its run for as long as it needs, then lets finish."""

    name = "test-gated"

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        gate = os.environ.get(GATE_ENV)
        deadline = time.monotonic() + 60
        while gate and not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        super().build(vectors, ids)


def run_cli(*args: str) -> Any:
    from click.testing import CliRunner  # the CLI only here: a run's process imports this module for `Gated`

    from annbench.cli import main

    return CliRunner().invoke(main, list(args))


def error_lines(res: Any) -> list[str]:
    return [ln for ln in res.stderr.splitlines() if ln.startswith("annbench: error:")]


def no_space(path: Any = None) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), None if path is None else str(path))


# --- 1. one sweep at a time per results folder -------------------------------------------------------------
_SWEEP = "import tests.test_faults; from annbench.cli import main; main()"


def _sweep_cmd(scenario: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", _SWEEP, "run", "--scenario", str(scenario), "--out", str(out), *extra]


def _wait_until(cond: Any, what: str, proc: subprocess.Popen | None = None, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        assert proc is None or proc.poll() is None, f"the process ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_second_sweep_into_the_same_folder_stops_or_waits(tmp_path: Path, scenario_file) -> None:
    scenario = scenario_file([{"name": "gated", "family": "test-gated"}])
    out, gate = tmp_path / "res", tmp_path / "gate"
    env = {**os.environ, GATE_ENV: str(gate), "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(_sweep_cmd(scenario, out), cwd=REPO, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    waiting = None
    try:
        lock = outlock.lock_path(out)
        _wait_until(lambda: lock.exists() and f"pid {first.pid} " in lock.read_text(), "the first sweep's lock",
                    first)

        second = subprocess.run(_sweep_cmd(scenario, out), cwd=REPO, env=env, text=True, capture_output=True,
                                timeout=120)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
        assert f"pid {first.pid} on " in lines[0] and "since " in lines[0] and "scenario small" in lines[0]
        assert "materialising" not in second.stdout  # it stopped before preparing anything

        # with --wait-for-lock it waits for the first, then finds the first's result and skips it
        log = tmp_path / "waiting.err"
        with open(log, "w") as err:
            waiting = subprocess.Popen(_sweep_cmd(scenario, out, "--wait-for-lock"), cwd=REPO, env=env, text=True,
                                       stdout=subprocess.PIPE, stderr=err)
        _wait_until(lambda: "waiting for it to end" in log.read_text(), "the waiting sweep's line", waiting)
        assert f"pid {first.pid} on " in log.read_text()
        assert first.poll() is None and waiting.poll() is None
        assert not list((out / "small").glob("*.json"))  # the first is still inside its run

        gate.touch()
        _, first_err = first.communicate(timeout=120)
        assert first.returncode == 0, first_err
        (result,) = (out / "small").glob("*.json")
        written = result.read_bytes()
        waited_out, _ = waiting.communicate(timeout=120)
        assert waiting.returncode == 0, log.read_text()
        assert "already done" in waited_out and "0 ok, 1 skipped" in waited_out, waited_out
        assert result.read_bytes() == written
        assert outlock.lock_path(out).read_text() == ""  # released: no holder named
    finally:
        gate.touch()
        for proc in (first, waiting):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()


_HOLDER = """
import sys, time
from pathlib import Path
from annbench import outlock
with outlock.hold(Path(sys.argv[1]), "held"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_killed_sweep_leaves_no_stale_lock(tmp_path: Path, scenario_file) -> None:
    prep = harness.prepare(load_scenario(scenario_file([{"name": "exact", "family": "test-exact"}])),
                           tmp_path / "cache")
    out = tmp_path / "res"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(outlock.FolderBusy, match=f"pid {holder.pid} on .* since .* scenario held"):
            with outlock.hold(out, "mine"):
                pass
        # a library caller of run_sweep is stopped the same way, before any run
        with pytest.raises(outlock.FolderBusy, match=f"pid {holder.pid} on "):
            harness.run_sweep(prep, out, executor=executors.LocalExecutor())
        assert not (out / "small").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with outlock.hold(out, "mine"):  # at once: the kernel released the dead process's flock
        assert f"pid {os.getpid()} on " in outlock.lock_path(out).read_text()
        with outlock.hold(out, "mine"):  # the same thread again (the CLI, then run_sweep): a re-entry
            pass
        assert outlock.lock_path(out).read_text()  # still held, still named after the inner block
    assert outlock.lock_path(out).read_text() == ""


# --- 2. a full disk while preparing ----------------------------------------------------------------------
def _leftovers(root: Path) -> list[Path]:
    """Temp files and folders of annbench's writers under `root` (materialisation, atomic writes)."""
    return [p for p in root.rglob("*") if p.name.startswith((".tmp-", ".staging-")) or p.name.endswith(".tmp")]


def test_a_full_disk_while_materialising_is_one_line_and_exit_3(tmp_path: Path, scenario_file,
                                                                 monkeypatch) -> None:
    def full(fd: int, offset: int, length: int) -> None:
        raise no_space()

    monkeypatch.setattr(os, "posix_fallocate", full)
    out = tmp_path / "res"
    res = run_cli("run", "--scenario", str(scenario_file([{"name": "exact", "family": "test-exact"}])),
                  "--out", str(out))
    assert res.exit_code == 3, res.output
    (line,) = error_lines(res)
    assert "no space left on device" in line.lower() and "needs" in line and str(out / ".cache" / "data") in line
    assert "Traceback" not in res.output
    data = out / ".cache" / "data"
    assert list(data.iterdir()) == []  # no temp folder, and no half-made data folder
    assert not list(out.glob("small/*"))


def _private_tmpfs_works() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not _private_tmpfs_works(), reason="needs `unshare -rm` (user and mount namespaces)")
def test_a_really_full_disk_is_not_a_sigbus(tmp_path: Path) -> None:
    """The issue's case for real: the cache on a 4 MiB tmpfs (mounted in a private namespace, so nothing of
    the machine's disks fills) that a 50,000 × 64 catalog (12 MiB) does not fit. It was exit 135 (SIGBUS),
    nothing printed, a .tmp-* folder left."""
    scenario = tmp_path / "full.yaml"
    scenario.write_text(
        "name: full\n"
        "dataset: {name: catalog, params: {seed: 3, n: 50000, dim: 64, n_queries: 60}}\n"
        "metric: cosine\nk: 5\nthreads: 1\ntimeout_s: 60\nqueries: {count: 60, deleted_products: keep}\n"
        "timeline: {kind: static}\npolicies: [native]\nindexes: [{name: exact, family: faiss-flat}]\n")
    small = tmp_path / "small"
    small.mkdir()
    # inside the namespace: mount, run annbench, then list what is left in the cache (the tmpfs goes with it)
    script = ('d="$1"; shift; mount -t tmpfs -o size=4m tmpfs "$d" || exit 99; "$@"; rc=$?; '
              'echo "left: $(ls -A "$d/cache/data")"; exit $rc')
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(small), sys.executable, "-m",
                           "annbench.cli", "run", "--scenario", str(scenario), "--out", str(small / "res"),
                           "--cache", str(small / "cache")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("annbench: error:") and "no space left on device" in line.lower(), line
    assert "needs 13 MiB free" in line, line
    assert proc.stdout.strip().splitlines()[-1] == "left:", proc.stdout  # no .tmp-* folder, no data folder


def test_materialising_reserves_every_file_before_writing_and_maps_nothing(tmp_path: Path, scenario_file,
                                                                            monkeypatch) -> None:
    sc = load_scenario(scenario_file([{"name": "exact", "family": "test-exact"}]))
    ds = harness.open_scenario_dataset(sc)
    metric = harness.resolve_metric(sc, ds)
    reserved: list[str] = []
    real_reserve = os.posix_fallocate

    def reserve(fd: int, offset: int, length: int) -> None:
        # at every reservation, no file holds any data yet: only headers, then zeros
        for f in (tmp_path / "cache").rglob("*.npy"):
            raw = f.read_bytes()
            header = 10 + int.from_bytes(raw[8:10], "little")
            name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
            assert not any(raw[header:]), f"{f.name} was written before {name} was reserved"
        reserved.append(Path(os.readlink(f"/proc/self/fd/{fd}")).name)
        real_reserve(fd, offset, length)

    def no_mapping(*_a: Any, **_k: Any) -> None:
        raise AssertionError("the materialisation memory-maps a file")

    monkeypatch.setattr(os, "posix_fallocate", reserve)
    monkeypatch.setattr(mmap, "mmap", no_mapping)
    data_dir = tmp_path / "cache" / "data" / "ds"
    harness._materialise(ds, metric, data_dir)
    monkeypatch.undo()
    assert sorted(reserved) == ["base.npy", "base_labels.npy", "ids.npy", "queries.npy", "query_labels.npy"]
    # the files are what np.save would have written, byte for byte
    from annbench.vectors import prepare_vectors

    expected = {"base.npy": prepare_vectors(ds.base, metric), "queries.npy": prepare_vectors(ds.queries, metric),
                "ids.npy": np.asarray(ds.base_ids(), np.int64), "base_labels.npy": np.asarray(ds.base_labels, np.int64),
                "query_labels.npy": np.asarray(ds.query_labels, np.int64)}
    for name, arr in expected.items():
        np.save(tmp_path / name, arr)
        assert (data_dir / name).read_bytes() == (tmp_path / name).read_bytes(), name
    assert sorted(p.name for p in data_dir.iterdir()) == sorted([*expected, "done"])  # no owner mark left
    assert not _leftovers(tmp_path / "cache")


@pytest.mark.parametrize("which", ["gt-", "ops-"])
def test_a_full_disk_while_caching_ground_truth_or_op_log_leaves_nothing_half_written(
        tmp_path: Path, scenario_file, monkeypatch, which: str) -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        # atomic.py's temp file of the ground truth (".gt-….npz.….tmp") or of the op log (".ops-…"): disk full
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith("." + which):
            raise no_space()
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "res"
    res = run_cli("run", "--scenario", str(scenario_file([{"name": "exact", "family": "test-exact"}])),
                  "--out", str(out))
    assert res.exit_code == 3, res.output
    (line,) = error_lines(res)
    assert "no space left on device" in line.lower() and "Traceback" not in res.output
    assert not _leftovers(out)
    assert not list(out.rglob(f"{which}*"))  # no file of that kind at all: none half-written
    assert not list(out.glob("small/*"))


# --- 3. a killed materialisation's leftovers ------------------------------------------------------------------
def test_the_next_run_removes_a_dead_materialisations_folder_and_keeps_a_live_ones(tmp_path: Path,
                                                                                   scenario_file) -> None:
    data = tmp_path / "cache" / "data"
    data.mkdir(parents=True)
    code = ("import sys; from pathlib import Path; from annbench import harness, tempdirs; "
            "f = tempdirs.make(harness.MATERIALISING, Path(sys.argv[1])); (f / 'base.npy').write_bytes(b'0' * 4096)")
    subprocess.run([sys.executable, "-c", code, str(data)], check=True)  # its maker has exited: a dead one's
    (dead,) = data.glob(".tmp-*")
    live = tempdirs.make(harness.MATERIALISING, data)  # this process's: a live sweep's, still writing
    harness.prepare(load_scenario(scenario_file([{"name": "exact", "family": "test-exact"}])), tmp_path / "cache")
    assert not dead.exists()
    assert live.is_dir() and (live / tempdirs.OWNER).is_file()
    (made,) = [p for p in data.iterdir() if p != live]
    assert (made / "done").is_file() and not (made / tempdirs.OWNER).exists()


def test_a_materialisation_finished_meanwhile_by_another_sweep_is_kept(tmp_path: Path, scenario_file) -> None:
    """Two sweeps sharing a cache (--cache) may materialise the same data at once: the second to finish keeps
    the first's folder, which the first's runs may be reading, and drops its own."""
    sc = load_scenario(scenario_file([{"name": "exact", "family": "test-exact"}]))
    ds = harness.open_scenario_dataset(sc)
    data_dir = tmp_path / "data" / "ds"
    data_dir.mkdir(parents=True)
    (data_dir / "done").write_text("ok\n")
    (data_dir / "theirs").touch()
    harness._materialise(ds, harness.resolve_metric(sc, ds), data_dir)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["ds"]
    assert sorted(p.name for p in data_dir.iterdir()) == ["done", "theirs"]


# --- 4. a finished run's result when the results folder cannot take it ------------------------------------------
def _system_tmp(monkeypatch, tmp_path: Path) -> Path:
    """A system temp folder of the test's own (tempfile.gettempdir: the fallback's, and the runs' work folders)."""
    systmp = tmp_path / "systmp"
    systmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(systmp))
    return systmp


def _refuse_writes_under(monkeypatch, root: Path, err: int = errno.ENOSPC) -> None:
    real_write = results.write

    def write(path: Path, record: results.RunRecord) -> None:
        if Path(path).is_relative_to(root):
            raise OSError(err, os.strerror(err), str(path))
        real_write(path, record)

    monkeypatch.setattr(results, "write", write)


TWO = [{"name": "one", "family": "test-exact"}, {"name": "two", "family": "test-exact"}]


def test_a_result_the_disk_cannot_take_is_kept_elsewhere_and_the_sweep_stops(tmp_path: Path, scenario_file,
                                                                              monkeypatch) -> None:
    scenario, out = scenario_file(TWO), tmp_path / "res"
    _system_tmp(monkeypatch, tmp_path)
    _refuse_writes_under(monkeypatch, out / "small")
    res = run_cli("run", "--scenario", str(scenario), "--out", str(out))
    assert res.exit_code == 3, res.output
    (line,) = error_lines(res)
    (kept,) = (tmp_path / "systmp").glob("annbench-unsaved-*/small/*.json")
    target = out / "small" / kept.name
    assert f"kept in {kept}" in line and f"mv {kept} {target}" in line and "sweep stops" in line, line
    assert "Traceback" not in res.output
    assert len(list((tmp_path / "systmp").rglob("*.json"))) == 1  # the sweep stopped: the second never ran
    assert results.load(kept).status == "ok"
    assert not (out / "small").exists() or not list((out / "small").iterdir())  # nothing half-written

    # once there is room: move it back as told, rerun; the kept run is skipped, the other one runs
    monkeypatch.undo()
    target.parent.mkdir(parents=True, exist_ok=True)
    kept.rename(target)
    res = run_cli("run", "--scenario", str(scenario), "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "1 ok, 1 skipped" in res.stdout


def test_when_even_the_fallback_fails_the_figures_are_printed(tmp_path: Path, scenario_file, monkeypatch) -> None:
    _system_tmp(monkeypatch, tmp_path)
    _refuse_writes_under(monkeypatch, tmp_path, errno.EROFS)
    res = run_cli("run", "--scenario", str(scenario_file(TWO)), "--out", str(tmp_path / "res"))
    assert res.exit_code == 3, res.output
    (line,) = error_lines(res)
    assert "read-only file system" in line.lower() and "nor keep it in" in line
    assert re.search(r"its figures: ✓ (one|two) \[native\] .*recall@5 1\.000", line), line
    assert res.output.count("✓") == 1  # in the error line; the second run never ran
    assert not list((tmp_path / "systmp").rglob("*.json"))
