"""Bad input, one line each: the real `annbench` command line on every kind of wrong input a user can give.

Each case writes its files into an empty folder, runs `python -m annbench.cli …` there in a subprocess
(what a user sees, not what click's test runner sees), and requires: exit status 2, exactly one line on
stderr naming the problem, no traceback, and no result file written. Adding a case is one line in CASES:
an id, a function that sets up files in the folder and returns the command line, and a substring the
message must contain. Run with `-s` to print every case's message.

The data are tiny (300 × 8 vectors, 20 queries) and the index is faiss-flat, so each case costs little
more than starting Python; the test-only adapters are not registered in a subprocess.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import yaml

from annbench import adapters
from annbench.errors import ConfigError
from annbench.scenarios import load_scenario
from tests.conftest import REPO

Setup = Callable[[Path], list[str]]

_rng = np.random.default_rng(6)
BASE = _rng.standard_normal((300, 8)).astype(np.float32)
QUERIES = _rng.standard_normal((20, 8)).astype(np.float32)

SCENARIO: dict[str, Any] = {
    "name": "bad",
    "dataset": {"path": "emb.npy"},
    "metric": "l2",
    "k": 5,
    "threads": 1,
    "timeout_s": 60,
    "timeline": {"kind": "static"},
    "indexes": [{"family": "faiss-flat"}],
}
DAILY = {"kind": "daily", "initial_fraction": 0.8, "days": 2, "insert_fraction": 0.02, "delete_fraction": 0.02,
         "update_fraction": 0.01, "delete_rule": "random"}
IVF = [{"family": "faiss-ivf", "build": {"nlist": 4}, "search": {"nprobe": 2}}]


# --- file writers ---------------------------------------------------------------------------------------
def _with(arr: np.ndarray, row: int, col: int, value: float) -> np.ndarray:
    out = arr.copy()
    out[row, col] = value
    return out


def _fbin(arr: np.ndarray, cut: int = 0) -> bytes:
    data = np.array(arr.shape, dtype="<u4").tobytes() + np.ascontiguousarray(arr, dtype="<f4").tobytes()
    return data[: len(data) - cut]


def _truncated_h5(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("train", data=BASE)
        f.create_dataset("test", data=QUERIES)
        f.attrs["distance"] = "euclidean"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _write(path: Path, content: Any) -> None:
    if content is None:
        return
    if isinstance(content, np.ndarray):
        np.save(path, content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        content(path)


def _apply(doc: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys ('timeline.days': 3) on a copy of the scenario; the value `...` deletes the key."""
    doc = yaml.safe_load(yaml.safe_dump(doc))
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = doc
        for key in parents:
            node = node.setdefault(key, {})
        if value is ...:
            node.pop(last, None)
        else:
            node[last] = value
    return doc


# --- setups: each returns the command line, run with the case's folder as the current folder -----------
def run(*extra: str, data: dict[str, Any] | None = None, **changes: Any) -> Setup:
    """`annbench run` on the default scenario with `changes` (dotted keys as `a__b`) and these data files."""
    files = {"emb.npy": BASE, "emb.queries.npy": QUERIES, **(data or {})}

    def setup(tmp: Path) -> list[str]:
        for name, content in files.items():
            _write(tmp / name, content)
        doc = _apply(SCENARIO, {k.replace("__", "."): v for k, v in changes.items()})
        (tmp / "s.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        return ["run", "--scenario", "s.yaml", "--out", "out", *extra]

    return setup


def yaml_text(text: str | bytes) -> Setup:
    """`annbench run` on a scenario file with exactly this text (or these bytes)."""
    def setup(tmp: Path) -> list[str]:
        run()(tmp)
        _write(tmp / "s.yaml", text)
        return ["run", "--scenario", "s.yaml", "--out", "out"]

    return setup


def cli(*args: str, files: dict[str, Any] | None = None) -> Setup:
    """Any command line, after writing `files` (name → array, bytes, text or writer)."""
    def setup(tmp: Path) -> list[str]:
        for name, content in (files or {}).items():
            _write(tmp / name, content)
        return list(args)

    return setup


def check_fixtures(scenario: str) -> Setup:
    """`annbench check` of a copy of committed results against the ci_smoke baseline."""
    def setup(tmp: Path) -> list[str]:
        shutil.copytree(REPO / "tests" / "fixtures" / "results" / scenario, tmp / "res" / scenario)
        return ["check", "res", "--baseline", str(REPO / "configs" / "baselines" / "ci_smoke.json")]

    return setup


CASES = [
    # vectors and files
    ("nan", run(data={"emb.npy": _with(BASE, 3, 1, np.nan)}), "base row 3 holds NaN"),
    ("inf", run(data={"emb.queries.npy": _with(QUERIES, 7, 0, -np.inf)}), "queries row 7 holds inf"),
    ("dim-base-vs-queries", run(data={"emb.queries.npy": QUERIES[:, :7]}), "queries have 7 dims"),
    ("dim-dataset-vs-scenario-catalog", run(dataset={"name": "catalog", "params": {"n": 300, "dim": 8},
                                                     "dim": 16}), "dataset.dim is 16"),
    ("dim-dataset-vs-scenario-file", run(dataset__dim=16), "dataset.dim is 16"),
    ("duplicate-ids", run(data={"emb.ids.npy": np.r_[np.arange(299), 7]}), "id 7 repeats"),
    ("float-ids", run(data={"emb.ids.npy": np.arange(300.0)}), "only integer labels/ids"),
    ("labels-length", run(data={"emb.labels.npy": np.arange(299)}), "299 entries but base has 300"),
    ("missing-dataset", run(dataset__path="absent.npy"), "no such file"),
    ("unreadable-dataset", run(data={"emb.npy": Path.mkdir}), "is not a regular file"),
    ("truncated-hdf5", run(dataset__path="emb.hdf5", data={"emb.hdf5": _truncated_h5}), "truncated"),
    ("truncated-fbin", run(dataset__path="e.fbin", data={"e.fbin": _fbin(BASE, cut=5)}), "but the file has"),
    ("string-dtype", run(data={"emb.npy": np.array([["a", "b"]] * 10)}), "dtype <U1"),
    ("complex-dtype", run(data={"emb.npy": BASE.astype(np.complex64)}), "dtype complex64"),
    ("zero-queries", run(data={"emb.queries.npy": np.zeros((0, 8), np.float32)}), "queries is empty"),
    ("no-queries", run(data={"emb.queries.npy": None}), "has no queries"),
    ("unknown-extension", run(dataset__path="emb.csv", data={"emb.csv": "1,2\n"}), "unknown extension '.csv'"),
    # the scenario file
    ("missing-scenario", cli("run", "--scenario", "nope.yaml"), "'nope.yaml' does not exist"),
    ("unreadable-scenario", cli("run", "--scenario", "dir.yaml", files={"dir.yaml": Path.mkdir}), "is a directory"),
    ("malformed-yaml", yaml_text("name: [unclosed\nk: 5\n"), "malformed YAML"),
    ("duplicate-key", yaml_text(yaml.safe_dump(SCENARIO) + "k: 7\n"), "duplicate key 'k'"),
    ("not-a-mapping", yaml_text("- just\n- a list\n"), "top level must be a mapping"),
    ("yaml-bad-tag", yaml_text("name: x\nk: !!int ten\n"), "line 2: !!int cannot be made from 'ten'"),
    ("yaml-list-as-key", yaml_text("name: x\n? [k]\n: 5\n"), "keys must be plain names"),
    ("not-utf8", yaml_text(b"name: caf\xe9\n"), "cannot read scenario file (UnicodeDecodeError"),
    ("unknown-key", run(bogus=1), "bogus is not a known key"),
    ("unknown-metric", run(metric="hamming"), "unknown metric 'hamming'"),
    ("k-wrong-type", run(k="ten"), "k must be int, got 'ten'"),
    ("k-above-live", run(k=100, timeline={**DAILY, "initial_fraction": 1.0, "insert_fraction": 0.0,
                                          "update_fraction": 0.0, "delete_fraction": 0.5}),
     "k=100 is larger than the 75 vectors live on day 2"),
    ("deletes-more-than-live", run(timeline={**DAILY, "delete_fraction": 1.5}), "timeline.delete_fraction is 1.5"),
    ("reserve-exhausted", run(timeline={**DAILY, "days": 30, "insert_fraction": 0.5}), "reserve vectors"),
    ("static-size-too-big", run(timeline={"kind": "static", "sizes": [5000]}), "asks for 5000 vectors"),
    ("catalog-param-inf", run(dataset={"name": "catalog", "params": {"n": float("inf")}}), "must be a finite number"),
    ("catalog-too-big", run(dataset={"name": "catalog", "params": {"n": 10**12, "dim": 8}}), "GiB of RAM"),
    # indexes and policies
    ("unknown-family", run(indexes=[{"family": "faiss-lsh"}]), "unknown index family 'faiss-lsh'"),
    ("unknown-parameter", run(indexes=[{"family": "faiss-ivf", "build": {"nlistt": 4}}]),
     "unknown build parameter 'nlistt'"),
    ("parameter-wrong-type", run(indexes=[{**IVF[0], "build": {"nlist": "four"}}]), "'nlist'"),
    ("parameter-out-of-range", run(indexes=[{**IVF[0], "search": {"nprobe": 0}}]), "'nprobe'"),
    ("policy-unsupported", run(timeline=DAILY, indexes=[{"family": "annoy", "policies": ["native"]}]),
     "annoy cannot run policy 'native'"),
    ("policy-unknown", run(timeline=DAILY, policies=["sometimes"]), "allowed: native, tombstone, rebuild"),
    ("indexes-not-in-scenario", run("--indexes", "hnswlib"), "--indexes: 'hnswlib' is not in"),
    # command-line values and folders
    ("scale-zero", run("--scale", "0"), "--scale must be a positive number, got 0.0"),
    ("scale-negative", run("--scale", "-1"), "--scale must be a positive number, got -1.0"),
    ("scale-nan", run("--scale", "nan"), "--scale must be a positive number, got nan"),
    ("scale-above-file", run("--scale", "2"), "asks for more vectors than"),
    ("out-not-writable", run("--out", "blocker/results", data={"blocker": "a file, not a folder"}),
     "results folder blocker/results is not writable"),
    ("executor-unknown", run("--executor", "ray"), "'ray' is not one of 'local', 'dask'"),
    ("scheduler-without-dask", run("--scheduler", "tcp://127.0.0.1:8786"), "--scheduler needs --executor dask"),
    # names that could escape the project
    ("scenario-name-dotdot", cli("run", "--scenario", ".."), "'..' is not a plain name"),
    ("scenario-path-dotdot", cli("run", "--scenario", "../x"), "scenario file '../x' does not exist"),
    ("scenario-name-escapes", run(name="../../evil"), "name '../../evil' must be letters"),
    ("dataset-name-escapes", run(dataset={"name": "../etc"}), "dataset.name is '../etc'; allowed: catalog"),
    # results and baselines
    ("baseline-other-scenario", check_fixtures("catalog_size"), "no results of scenario 'ci_smoke'"),
    ("verify-missing-folder", cli("results", "verify", "nowhere"), "results folder nowhere does not exist"),
    ("datasets-info-nan", cli("datasets", "info", "x.npy", files={"x.npy": _with(BASE, 0, 0, np.nan)}), "NaN"),
]


def _json_files(root: Path) -> set[Path]:
    return set(root.rglob("*.json"))


@pytest.mark.parametrize("setup, expected", [pytest.param(s, e, id=i, marks=m) for i, s, e, *m in CASES])
def test_bad_input_is_one_line_exit_2(tmp_path: Path, setup: Setup, expected: str) -> None:
    args = setup(tmp_path)
    before = _json_files(tmp_path)  # fixtures copied in by the setup are not results of this command
    proc = subprocess.run([sys.executable, "-m", "annbench.cli", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    print(f"\n{'|'.join(args)} → {proc.stderr.strip()}")
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("annbench: error: "), lines[0]
    assert expected in lines[0], lines[0]
    assert _json_files(tmp_path) == before, "a result file was written"


def test_a_family_whose_library_is_missing_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # every library is installed here, so a missing one is simulated in-process: its import fails
    def missing() -> type:
        raise ModuleNotFoundError("No module named 'faiss'")

    monkeypatch.setitem(adapters._REGISTRY, "faiss-flat", missing)
    run()(tmp_path)
    with pytest.raises(ConfigError, match=r"indexes\[0\]\.family: 'faiss-flat' needs a library") as e:
        load_scenario(tmp_path / "s.yaml")
    assert "\n" not in str(e.value)


# --- issue 16: environment faults and the command line ---------------------------------------------------
# A full disk, a read-only or forbidden folder while annbench writes: one line naming the file or folder,
# exit 3 (never 1, which CI reads as a regression; never a traceback). The machine's refusal is simulated
# in-process (the tests may run as root, whom permissions do not stop, and no small full filesystem is at
# hand): os.open / os.mkdir refuse to create anything under a folder, or os.fsync says the disk is full.
# Then SIGTERM, the help and option texts, and the progress bar off a terminal.
import errno  # noqa: E402  (this block's own imports, kept with it)
import os  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import click  # noqa: E402
from click.testing import CliRunner, Result  # noqa: E402

from annbench import check as check_mod  # noqa: E402
from annbench import results as results_mod  # noqa: E402
from annbench.cli import main as cli_main  # noqa: E402


def _refuse_writes(monkeypatch: pytest.MonkeyPatch, root: Path, err: int, at: str = "open") -> None:
    """Make the machine refuse writes under `root` with `err`: at "open" (creating a file or folder there,
    as a read-only mount or a forbidden folder does) or at "fsync" (the data do not fit: a full disk,
    and then the OSError names no file, as a failed write() or fsync() does)."""
    root = root.resolve()
    real_open, real_mkdir, real_fsync = os.open, os.mkdir, os.fsync

    def inside(path: Any) -> bool:
        return Path(os.fsdecode(path)).resolve().is_relative_to(root)

    def refused(path: Any = None) -> OSError:
        return OSError(err, os.strerror(err), *([os.fsdecode(path)] if path is not None else []))

    if at == "open":
        def fake_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
                raise refused(path)
            return real_open(path, flags, mode, dir_fd=dir_fd)

        def fake_mkdir(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
            if inside(path) and not os.path.exists(path):  # an existing folder says EEXIST first, as Linux does
                raise refused(path)
            real_mkdir(path, mode, dir_fd=dir_fd)

        monkeypatch.setattr(os, "open", fake_open)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)
    else:
        def fake_fsync(fd: int) -> None:
            if inside(os.readlink(f"/proc/self/fd/{fd}")):
                raise refused()
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fake_fsync)


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli_main, list(args))


def _fault_line(res: Result, status: int, *expected: str) -> str:
    """The command ended with `status` and one error line holding every `expected`, no traceback."""
    lines = res.stderr.strip().splitlines()
    print(f"\n→ {res.stderr.strip()}")
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    assert res.exit_code == status, (res.exit_code, res.output)
    assert len(lines) == 1 and lines[0].startswith("annbench: error: "), res.stderr
    for text in expected:
        assert text.lower() in lines[0].lower(), lines[0]  # the system's words, capitalised or not
    return lines[0]


def _no_temp_files(root: Path) -> None:
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")], "a half-written temp file was left"


@pytest.fixture
def ci_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The committed ci_smoke results in res/, with a baseline saved from them (b.json): `check` passes."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(REPO / "tests" / "fixtures" / "results" / "ci_smoke", tmp_path / "res" / "ci_smoke")
    check_mod.save_baseline(tmp_path / "res", tmp_path / "b.json")
    return tmp_path


# -- A. writing results, the CSV, a baseline, a dataset, the report
def test_disk_full_while_writing_a_result_is_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = run()(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the sweep keeps a result it cannot write
    _refuse_writes(monkeypatch, tmp_path / "out" / "bad", errno.ENOSPC, at="fsync")
    _fault_line(_invoke(*args), 3, "no space left on device", "out/bad/", "kept in")
    assert not list((tmp_path / "out" / "bad").glob("*.json"))
    _no_temp_files(tmp_path / "out")


def test_read_only_results_folder_is_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = run()(tmp_path)
    (tmp_path / "out").mkdir()
    _refuse_writes(monkeypatch, tmp_path / "out", errno.EROFS)
    _fault_line(_invoke(*args), 3, "cannot write results", "(out)", "read-only file system")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o500 folder: permissions do not stop it")
def test_results_folder_without_write_permission_is_exit_3(tmp_path: Path) -> None:
    args = run()(tmp_path)
    (tmp_path / "out").mkdir(mode=0o500)
    try:
        proc = subprocess.run([sys.executable, "-m", "annbench.cli", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
    finally:
        (tmp_path / "out").chmod(0o700)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "permission denied" in proc.stderr


def test_cache_not_writable_is_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = run()(tmp_path)
    _refuse_writes(monkeypatch, tmp_path / "cache", errno.EACCES)
    _fault_line(_invoke(*args, "--cache", "cache"), 3, "cannot prepare", "cache", "permission denied")


def test_disk_full_while_exporting_the_csv_is_exit_3(ci_results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (ci_results / "exports").mkdir()
    _refuse_writes(monkeypatch, ci_results / "exports", errno.ENOSPC, at="fsync")
    _fault_line(_invoke("results", "export", "res", "--csv", "exports/runs.csv"), 3,
                "cannot write the CSV (exports/runs.csv): no space left on device")
    assert not list((ci_results / "exports").iterdir())  # no CSV, not even half of one


def test_quota_exceeded_while_saving_a_baseline_is_exit_3(ci_results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _refuse_writes(monkeypatch, ci_results / "baselines", errno.EDQUOT, at="fsync")
    _fault_line(_invoke("baseline", "save", "res", "--out", "baselines/new.json"), 3,
                "cannot write the baseline (baselines/new.json): disk quota exceeded")
    assert not (ci_results / "baselines" / "new.json").exists()
    _no_temp_files(ci_results)


def test_read_only_folder_for_a_generated_dataset_is_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ro").mkdir()
    _refuse_writes(monkeypatch, tmp_path / "ro", errno.EROFS)
    _fault_line(_invoke("datasets", "generate", "catalog", "--n", "200", "--dim", "8", "--out", "ro/c.npz"), 3,
                "cannot write the dataset", "ro/", "read-only file system")


def test_report_folder_not_permitted_is_exit_3(ci_results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _refuse_writes(monkeypatch, ci_results / "report", errno.EPERM)
    _fault_line(_invoke("plot", "res", "--out", "report"), 3, "cannot write the report", "report",
                "operation not permitted")


def test_an_unwrapped_environment_oserror_is_still_one_line_exit_3(ci_results: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # a write no command wraps (here: simulated inside `results verify`) still says which file, exit 3
    def full(_folder: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "res/.somewhere.json.abc123.tmp")

    monkeypatch.setattr(results_mod, "load_dir", full)
    _fault_line(_invoke("results", "verify", "res"), 3, "(res/somewhere.json): no space left on device")


# -- B. check never prints PASS and then fails
@pytest.mark.parametrize("option, name, err, expected", [
    ("--markdown", "check.md", errno.ENOSPC,
     "cannot write the markdown summary (out/check.md): no space left on device"),
    ("--junit", "junit.xml", errno.EROFS, "cannot write the JUnit XML (out/junit.xml): read-only file system"),
])
def test_check_cannot_write_its_file_exit_3_and_no_pass(ci_results: Path, monkeypatch: pytest.MonkeyPatch,
                                                       option: str, name: str, err: int, expected: str) -> None:
    _refuse_writes(monkeypatch, ci_results / "out", err, at="fsync" if err == errno.ENOSPC else "open")
    res = _invoke("check", "res", "--baseline", "b.json", option, f"out/{name}")
    _fault_line(res, 3, expected)
    assert "PASS" not in res.stdout and res.stdout == ""


def test_check_file_under_a_file_is_exit_2_and_no_pass(ci_results: Path) -> None:
    res = _invoke("check", "res", "--baseline", "b.json", "--markdown", "b.json/check.md")
    _fault_line(res, 2, "cannot write the markdown summary (b.json/check.md)")
    assert "PASS" not in res.stdout
    ok = _invoke("check", "res", "--baseline", "b.json", "--markdown", "check.md", "--junit", "junit.xml")
    assert ok.exit_code == 0 and "PASS" in ok.stdout  # the same gate, writable: the files, then the verdict
    assert (ci_results / "check.md").is_file() and (ci_results / "junit.xml").is_file()


# -- C. SIGTERM is handled as Ctrl-C is: the runs killed, finished results kept, one line; 143 (130 for SIGINT)
@pytest.mark.parametrize("sig, status, says", [(signal.SIGTERM, 143, "annbench: interrupted (SIGTERM); "),
                                               (signal.SIGINT, 130, "annbench: interrupted; ")])
def test_a_signal_mid_sweep_keeps_finished_results(tmp_path: Path, sig: int, status: int, says: str) -> None:
    args = run(indexes=[{"family": "faiss-flat"}, {"family": "hnswlib", "build": {"M": [4, 6, 8, 10, 12, 16]}}],
               data={"emb.npy": np.tile(BASE, (4, 1)) + _rng.standard_normal((1200, 8)).astype(np.float32)})(tmp_path)
    work = tmp_path / "systmp"  # the runs' work folders: a killed run's must go with it
    work.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "annbench.cli", *args], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "TMPDIR": str(work)})
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").glob("bad/*.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    print(f"\n→ {err.strip()}")
    assert proc.returncode == status, (proc.returncode, err)
    assert err.strip().splitlines() == [err.strip()] and err.startswith(says), err
    assert "Traceback" not in out + err and "\r" not in out + err
    saved = list((tmp_path / "out" / "bad").glob("*.json"))
    assert 1 <= len(saved) < 7 and f"{len(saved)} run(s) finished this time and are saved" in err
    for path in saved:
        assert results_mod.load(path).ok
    _no_temp_files(tmp_path / "out")
    assert not [p for p in work.rglob("*") if p.name.startswith(("annbench-run-", ".staging-"))], \
        "a killed run's work folder was left"


# -- D. the help
def _commands(group: click.Group = cli_main, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out: list[tuple[tuple[str, ...], click.Command]] = [(path, group)]
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out += _commands(cmd, (*path, name))
        else:
            out.append(((*path, name), cmd))
    return out


@pytest.mark.parametrize("args", [[], ["datasets"], ["results"], ["baseline"]], ids=lambda a: " ".join(a) or "alone")
def test_a_group_alone_prints_its_help_not_an_error(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "annbench.cli", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith("Usage: ") and "Commands:" in proc.stdout and "error" not in proc.stdout


def test_dash_h_is_help_everywhere() -> None:
    for path, _cmd in _commands():
        res = _invoke(*path, "-h")
        assert res.exit_code == 0 and res.stdout.startswith("Usage: "), (path, res.output)
        assert "-h, --help" in res.stdout, path


@pytest.mark.parametrize("width", [80, 50])
def test_no_command_list_line_is_cut(width: int) -> None:
    for path, cmd in _commands():
        if isinstance(cmd, click.Group):
            res = CliRunner().invoke(cli_main, [*path, "--help"], terminal_width=width)
            listing = res.stdout.split("Commands:", 1)[1]
            assert "…" not in listing and "..." not in listing, (path, listing)


def test_every_option_has_help_text() -> None:
    missing = [f"{' '.join(path) or 'annbench'} {p.opts[0]}" for path, cmd in _commands() for p in cmd.params
               if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    assert missing == []


def test_max_memory_is_gib_under_one_name_everywhere(ci_results: Path) -> None:
    for command in ("run", "plot", "recommend"):
        text = _invoke(command, "--help").stdout
        assert "--max-memory-gib GIB" in text and "GiB" in text and "--max-memory-gb" not in text, command
    # the old name is still read, as the same number of GiB
    new = _invoke("recommend", "res", "--min-recall", "0.5", "--max-memory-gib", "0.001")
    old = _invoke("recommend", "res", "--min-recall", "0.5", "--max-memory-gb", "0.001")
    assert (new.exit_code, new.stdout) == (old.exit_code, old.stdout)
    assert "index memory ≤ 0.001 GiB" in new.stdout, new.stdout


# -- E. no progress bar in a log
def test_a_run_into_a_pipe_writes_no_carriage_returns(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "annbench.cli", *run()(tmp_path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stdout + proc.stderr
    assert "✓ faiss-flat [native]" in proc.stdout and "annbench: done in" in proc.stdout  # the summary lines stay


# --- issue 16: sizes, queries and datasets ---------------------------------------------------------------
# Unbounded sizes are refused before anything is expanded or allocated, and every message stays one short
# line whatever the user wrote; a vectors-only file without queries names the two ways to give them
# (run --queries FILE, run --holdout-queries N); a degenerate set is said, not printed as -inf.
import re  # noqa: E402  (this block's own imports, kept with it)

from annbench.datasets import Holdout, open_dataset  # noqa: E402


def _alias_bomb(depth: int) -> str:
    """A scenario whose `build` is ten aliases of ten aliases … `depth` deep: 10^(depth+1) strings expanded."""
    lines = ["name: bomb", "dataset: {path: emb.npy}", "metric: l2", "a_0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a_{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, depth + 1)]
    return "\n".join(lines + ["indexes:", "  - family: faiss-flat", f"    build: *a{depth}", ""])


_HUNDRED = list(range(1, 101))
NO_QUERIES = {"emb.queries.npy": None}
SIZE_CASES = [
    # (id, setup, every text the line must hold, seconds it may take at most)
    ("alias-bomb", yaml_text(_alias_bomb(8)), ["expands to more than 1,000,000 nodes"], 20),
    ("alias-below-the-limit-echoed-short", yaml_text(_alias_bomb(4)),
     ["indexes[0].build must be a mapping or a list of mappings"], 20),
    ("long-unknown-key", yaml_text(yaml.safe_dump({**SCENARIO, "k" * 100_000: 1})), ["is not a known key"], 20),
    ("grid-of-10^8", run(indexes=[{"family": "faiss-ivf", "build": {"nlist": 4},
                                   "search": {"nprobe": _HUNDRED, "a": _HUNDRED, "b": _HUNDRED, "c": _HUNDRED}}]),
     ["indexes[0].search expands to 100,000,000 combinations", "at most 10,000"], 20),
    ("build-grid-over-the-cap", run(indexes=[{"family": "faiss-ivf", "build": {"nlist": _HUNDRED,
                                                                               "metric_type": _HUNDRED * 2}}]),
     ["indexes[0].build expands to 20,000 combinations"], 20),
    ("generate-n-1e11", cli("datasets", "generate", "catalog", "--n", "100000000000", "--out", "c.npz"),
     ["n=100,000,000,000", "needs", "available"], 20),
    ("generate-zero-queries", cli("datasets", "generate", "catalog", "--n", "1000", "--queries", "0", "--out",
                                  "c.npz"), ["'n_queries' is 0; must be ≥ 1"], 20),
    ("npy-without-queries", run(data=NO_QUERIES), ["has no queries", "--queries FILE", "--holdout-queries N"], 20),
    ("holdout-larger-than-base", run("--holdout-queries", "300", data=NO_QUERIES),
     ["holds 300 vectors", "hold out at most 299"], 30),
    ("queries-option-wrong-dim", run("--queries", "q7.npy", data={**NO_QUERIES, "q7.npy": QUERIES[:, :7]}),
     ["queries have 7 dims"], 30),
    ("queries-and-holdout-both", run("--queries", "q.npy", "--holdout-queries", "5", data={"q.npy": QUERIES}),
     ["--queries FILE or --holdout-queries N, not both"], 20),
    ("queries-option-with-the-catalog", run("--queries", "q.npy", dataset={"name": "catalog"},
                                            data={"q.npy": QUERIES}), ["--queries needs a dataset file"], 20),
    ("holdout-key-and-queries-key", run(dataset={"path": "emb.npy", "queries": "emb.queries.npy",
                                                 "holdout_queries": 5}), ["dataset.holdout_queries and"], 20),
]


@pytest.mark.parametrize("setup, expected, seconds", [pytest.param(s, e, t, id=i) for i, s, e, t in SIZE_CASES])
def test_sizes_and_queries_are_one_short_line_exit_2(tmp_path: Path, setup: Setup, expected: list[str],
                                                     seconds: float) -> None:
    args = setup(tmp_path)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "annbench.cli", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    took = time.perf_counter() - t0
    lines = proc.stderr.strip().splitlines()
    print(f"\n{'|'.join(a[:40] for a in args)} → {proc.stderr.strip()[:700]} ({took:.1f} s)")
    assert "Traceback" not in proc.stderr + proc.stdout and "MemoryError" not in proc.stderr, proc.stderr[:2000]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[:2000])
    assert len(lines) == 1 and lines[0].startswith("annbench: error: "), proc.stderr[:2000]
    assert len(lines[0]) <= 600, f"a {len(lines[0])}-character line"
    for text in expected:
        assert text in lines[0], lines[0]
    assert took < seconds, f"took {took:.1f} s"
    assert not list(tmp_path.rglob("*.json")) and not (tmp_path / "c.npz").exists()


def _run_ok(tmp: Path, args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "annbench.cli", *args], cwd=tmp, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp / "out" / "bad").glob("*.json"))) == 1, "no result written"


def test_a_npy_without_queries_runs_with_the_queries_option(tmp_path: Path) -> None:
    args = run("--queries", "uploads.npy", data={**NO_QUERIES, "uploads.npy": QUERIES})(tmp_path)
    _run_ok(tmp_path, args)
    (data,) = (tmp_path / "out" / ".cache" / "data").iterdir()
    assert np.load(data / "queries.npy").shape == QUERIES.shape


def test_held_out_queries_leave_the_base(tmp_path: Path) -> None:
    args = run("--holdout-queries", "30", data=NO_QUERIES)(tmp_path)
    _run_ok(tmp_path, args)
    (data,) = (tmp_path / "out" / ".cache" / "data").iterdir()
    base, queries, ids = np.load(data / "base.npy"), np.load(data / "queries.npy"), np.load(data / "ids.npy")
    assert base.shape == (270, 8) and queries.shape == (30, 8)
    # every held-out row is a row of the file, and none of them is left in the base (recall would be trivially 1)
    rows = [int(np.nonzero((BASE == q).all(axis=1))[0][0]) for q in queries]
    assert not (base[:, None, :] == queries[None, :, :]).all(axis=2).any()
    assert sorted(set(rows) | set(ids.tolist())) == list(range(300)) and not set(rows) & set(ids.tolist())
    # the same split from Python, and from the scenario key
    ds = open_dataset(tmp_path / "emb.npy", queries=Holdout(30))
    assert np.array_equal(ds.queries, queries) and np.array_equal(ds.ids, ids)
    (tmp_path / "key").mkdir()
    args = run(data=NO_QUERIES, dataset={"path": "emb.npy", "holdout_queries": 30})(tmp_path / "key")
    _run_ok(tmp_path / "key", args)


def test_datasets_info_says_a_degenerate_set_in_one_line(tmp_path: Path) -> None:
    np.save(tmp_path / "same.npy", np.tile(_rng.standard_normal((1, 8)).astype(np.float32), (300, 1)))
    proc = subprocess.run([sys.executable, "-m", "annbench.cli", "datasets", "info", "same.npy"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    print(proc.stdout)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr  # no numpy warning either
    said = [line for line in proc.stdout.splitlines() if "degenerate" in line]
    assert len(said) == 1 and "distance 0" in said[0], proc.stdout
    assert not re.search(r"-?inf\b|\bnan\b", proc.stdout), proc.stdout
    assert re.search(r"^\s+lid: undefined$", proc.stdout, re.M), proc.stdout
