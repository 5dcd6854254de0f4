"""Tests of third-party adapters registered through the entry-point group `annbench.adapters`.

The plugin is the example adapter of CONTRIBUTING.md, taken from the file itself, "installed" as a
distribution on a folder put on the path (a module plus a .dist-info with entry_points.txt: what pip
would leave, without pip). A second distribution holds broken entry points. Checked: `annbench list`
shows the plugin with its parameters and capabilities and every broken one as unavailable with its
reason, in this process and in a fresh one; a sweep runs the plugin; the conformance suite passes on
it through ANNBENCH_EXTRA_FAMILIES, as CONTRIBUTING.md tells authors to run it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from annbench import adapters
from annbench.cli import main

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("annbench_my_exact", "annbench_not_adapters")


def _example_source() -> str:
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(\"\"\"my-exact:.*?)```", text, re.S)
    assert match, "CONTRIBUTING.md lost its example adapter"
    return match.group(1)


def _distribution(site: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str]) -> None:
    """What `pip install` leaves for a tiny package: its modules and a .dist-info with its entry points."""
    site.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source, encoding="utf-8")
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(
        "[annbench.adapters]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()), encoding="utf-8")


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    good, bad = tmp_path / "good", tmp_path / "bad"
    _distribution(good, "annbench-my-exact", {"annbench_my_exact": _example_source()},
                  {"my-exact": "annbench_my_exact:MyExact"})
    _distribution(bad, "annbench-bad-plugins", {"annbench_not_adapters": "THING = 42\n"}, {
        "broken-one": "annbench_no_such_module:Index",  # fails to import
        "not-an-adapter": "annbench_not_adapters:THING",
        "wrong-name": "annbench_my_exact:MyExact",  # the class says my-exact
        "hnswlib": "annbench_my_exact:MyExact",  # a built-in's name
    })
    yield good, bad
    for site in (good, bad):
        if str(site) in sys.path:
            sys.path.remove(str(site))
    for name in MODULES:
        sys.modules.pop(name, None)
    adapters.discover_plugins(refresh=True)
    assert "my-exact" not in adapters.names()


def test_list_shows_the_plugin_and_every_broken_one_as_unavailable(sites: tuple[Path, Path]) -> None:
    good, bad = sites
    sys.path[:0] = [str(good), str(bad)]
    adapters.discover_plugins(refresh=True)
    assert "annbench_my_exact" not in sys.modules  # discovery reads metadata only
    res = CliRunner().invoke(main, ["list"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = res.output
    assert "my-exact  — Exact search over a numpy matrix" in out
    block = out[out.index("my-exact  —"):]
    assert "capabilities: add native, delete native, update native" in block
    assert "build:  block: int=1024 [1..]" in block
    assert re.search(r"broken-one: unavailable \(.*ModuleNotFoundError.*annbench_no_such_module", out)
    assert re.search(r"not-an-adapter: unavailable \(.*not an annbench Adapter subclass", out)
    assert re.search(r"wrong-name: unavailable \(.*declares name 'my-exact'", out)
    assert re.search(r"annbench-bad-plugins:hnswlib: unavailable \(.*reuses the name of a built-in", out)
    assert adapters.get("hnswlib").__module__ == "annbench.adapters.hnswlib_"  # the built-in still wins
    assert "usearch  —" in out and "voyager  —" in out


def test_plugin_in_a_fresh_process_a_sweep_and_the_conformance_suite(sites: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    good, bad = sites
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(good), str(bad), str(ROOT)]))
    listed = subprocess.run([sys.executable, "-m", "annbench.cli", "list"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "my-exact  — " in listed.stdout and "broken-one: unavailable" in listed.stdout

    scenario = tmp_path / "plug.yaml"
    scenario.write_text(yaml.safe_dump({
        "name": "plug", "dataset": {"name": "catalog", "params": {"n": 1000, "dim": 16, "n_queries": 20}},
        "k": 10, "timeline": {"kind": "daily", "days": 1}, "indexes": [{"family": "my-exact"}],
    }))
    run = subprocess.run([sys.executable, "-m", "annbench.cli", "run", "--scenario", str(scenario), "--out",
                          str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr + run.stdout
    (result,) = (tmp_path / "out" / "plug").glob("*.json")
    doc = json.loads(result.read_text())
    assert doc["status"] == "ok" and doc["index"]["family"] == "my-exact"
    assert doc["libraries"]["annbench-my-exact"] == "0.1"  # the plugin's version is recorded
    assert all(s["settings"][0]["recall"] == 1.0 for s in doc["steps"] if s["op"] == "search")

    env_suite = dict(os.environ, PYTHONPATH=os.pathsep.join([str(good), str(ROOT)]),
                     ANNBENCH_EXTRA_FAMILIES="my-exact:0.99")
    suite = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(ROOT / "tests" / "test_adapters.py"), "-k", "my-exact"],
                           env=env_suite, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert suite.returncode == 0, suite.stdout[-2000:]
    passed = int(re.search(r"(\d+) passed", suite.stdout).group(1))
    assert passed >= 19 and "failed" not in suite.stdout  # every family-parametrised test, both metrics
