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
