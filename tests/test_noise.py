"""Noisy timings are found and said: a CPU hog on the run's core marks its steps noisy, a quiet core does not.

The run's processes and the hog are pinned to one core (children inherit the test's CPU affinity), so the
hog takes about half of that core whatever the machine has besides: the timed thread then gets ~0.5 of
its wall time in CPU, under annbench.timing.MIN_CPU_SHARE.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from annbench import recommend, results
from annbench.cli import main

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")


@contextmanager
def _pinned(cpu: int) -> Iterator[None]:
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextmanager
def _hog(cpu: int) -> Iterator[None]:
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))  # noqa: PLW1509
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def _run(tmp_path: Path, scenario_file, out: str) -> tuple[str, list[dict]]:
    # faiss Flat on 20,000 × 64: a single query takes ~0.2 ms, so every timed loop is long enough to judge
    path = scenario_file([{"name": "exact", "family": "faiss-flat"}], name="noise",
                         dataset={"name": "catalog", "params": {"seed": 1, "n": 20000, "dim": 64, "n_queries": 150}},
                         queries={"count": 150, "deleted_products": "keep"},
                         timeline={"kind": "daily", "initial_fraction": 0.9, "days": 1, "insert_fraction": 0.02,
                                   "delete_fraction": 0.01, "delete_rule": "random", "update_fraction": 0.01})
    res = CliRunner().invoke(main, ["run", "--scenario", str(path), "--out", str(tmp_path / out)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    docs = [results.dump(results.load(p)) for p in sorted((tmp_path / out / "noise").glob("*.json"))]
    assert docs and all(d["status"] == "ok" for d in docs)
    return res.output, docs


def _settings(docs: list[dict]) -> list[dict]:
    return [s for d in docs for st in d["steps"] if st["op"] == "search" for s in st["settings"]]


def test_a_cpu_hog_on_the_run_core_marks_steps_noisy_and_a_quiet_core_does_not(tmp_path: Path,
                                                                                scenario_file) -> None:
    cpu = max(os.sched_getaffinity(0))
    with _pinned(cpu):
        quiet_out, quiet = _run(tmp_path, scenario_file, "quiet")
        with _hog(cpu):
            busy_out, busy = _run(tmp_path, scenario_file, "busy")

    for s in _settings(quiet):
        assert not s["noise"]["noisy"], s["noise"]
        assert s["noise"]["min_cpu_share"] >= 0.85
    assert "NOISY" not in quiet_out

    noisy = [s for s in _settings(busy) if s["noise"]["noisy"]]
    assert len(noisy) == len(_settings(busy)), [s["noise"] for s in _settings(busy)]
    assert all(any("core" in r for r in s["noise"]["reasons"]) for s in noisy)
    assert all(s["noise"]["min_cpu_share"] < 0.7 for s in noisy)
    assert "NOISY" in busy_out and "noisy timing steps" in busy_out

    # the report rings the disturbed points and says why under the figures and in index.html
    from annbench import report

    for docs_, name in ((quiet, "quiet"), (busy, "busy")):
        configs, _ = recommend.configurations([results.parse(d) for d in docs_])
        _fig, points = report.fig_pareto(configs, "p99", "context")
        rings = sum(v for k, v in points.items() if k.startswith("noisy-"))
        assert rings == (len(configs) if name == "busy" else 0), points
    res = CliRunner().invoke(main, ["plot", str(tmp_path / "busy")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    html = next((tmp_path / "busy").rglob("index.html")).read_text()
    # the page names a noisy step's first reason: the lost core, or (as well) rounds that disagree
    assert "noisy" in html and ("did not have its core" in html or "rounds disagree" in html)

    # recommend says so instead of naming an outright winner on disturbed figures
    recs, _notes = recommend.recommend([results.parse(d) for d in busy], recommend.Constraints(min_recall=0.5))
    assert recs[0].winner is not None and "NOISY" in recs[0].why()
    recs, _notes = recommend.recommend([results.parse(d) for d in quiet], recommend.Constraints(min_recall=0.5))
    assert "NOISY" not in recs[0].why()
