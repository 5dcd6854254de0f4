"""report: every figure from the committed fixture results, checked for content (pixels, plotted points read back
from the SVG), the Pareto front as a pure function, index.html in headless Chromium, and the fixtures as golden
files of the results schema.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from annbench import memory, metrics, recommend, report, results, timing
from annbench.cli import main
from annbench.recommend import Constraints
from annbench.report import pool

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RESULTS = FIXTURES / "results"
CHROMIUM = Path("/usr/bin/chromium")
SVG_NS = "{http://www.w3.org/2000/svg}"


# --- the fixtures are golden files of the results schema ----------------------------------------------
def test_every_fixture_loads_and_validates():
    files = sorted(RESULTS.rglob("*.json")) + sorted((FIXTURES / "recommend").rglob("*.json"))
    assert len(files) >= 30
    timelines = {}
    for path in files:
        run = results.load(path)  # raises on any schema violation
        assert run.schema == results.SCHEMA
        timelines.setdefault(run.scenario.name, set()).add(run.scenario.timeline)
    assert timelines["ci_smoke"] == {"daily"} and timelines["catalog_size"] == {"static"}
    sizes = {results.load(p).index.size for p in (RESULTS / "catalog_size").glob("*.json")}
    assert len(sizes) >= 3
    assert sum(f.stat().st_size for f in RESULTS.rglob("*.json")) < 2_000_000


# --- the Pareto front (metrics.pareto_front) is a pure function ------------------------------------------
def test_pareto_front_excludes_dominated_points():
    # (recall, latency): higher recall and lower latency are better
    pts = [(0.90, 1.0), (0.95, 2.0), (0.99, 5.0), (0.94, 3.0), (0.80, 1.5), (0.99, 6.0)]
    assert metrics.pareto_front(pts).tolist() == [0, 1, 2]


def test_pareto_front_keeps_ties_and_orders_by_recall():
    pts = [(0.99, 5.0), (0.90, 1.0), (0.99, 5.0), (0.95, 2.0), (0.90, 1.0)]
    assert metrics.pareto_front(pts).tolist() == [1, 4, 3, 0, 2]


def test_pareto_front_equal_recall_or_equal_cost_keeps_only_the_better():
    assert metrics.pareto_front([0.9, 0.9], [2.0, 1.0]).tolist() == [1]  # same recall: the faster
    assert metrics.pareto_front([0.9, 0.95], [1.0, 1.0]).tolist() == [1]  # same cost: the more accurate


def test_pareto_front_nan_and_empty():
    assert metrics.pareto_front([0.9, np.nan, 0.99], [1.0, 0.1, np.nan]).tolist() == [0]
    assert metrics.pareto_front(np.empty(0), np.empty(0)).tolist() == []


def test_pareto_front_matches_brute_force():
    rng = np.random.default_rng(0)
    x = rng.choice([0.8, 0.9, 0.95, 0.99], 60)
    y = rng.choice([1.0, 2.0, 3.0, 4.0], 60)
    dominated = {i for i in range(60) for j in range(60)
                 if x[j] >= x[i] and y[j] <= y[i] and (x[j] > x[i] or y[j] < y[i])}
    assert set(metrics.pareto_front(x, y).tolist()) == set(range(60)) - dominated


# --- the whole report from the committed fixtures ----------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """`annbench plot COPY` with no other argument (default out: COPY/report), on a copy of the fixtures."""
    root = tmp_path_factory.mktemp("report")
    res = root / "results"
    shutil.copytree(RESULTS, res)
    before = _digest(res)
    out = CliRunner().invoke(main, ["plot", str(res)])
    assert out.exit_code == 0, out.output
    assert _digest(res, skip="report") == before, "plot must never write to result files"
    return res, res / "report", out.output


def _digest(folder: Path, skip: str | None = None) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and not (skip and p.relative_to(folder).parts[0] == skip)}


EXPECTED = [f"ci_smoke-{k}" for k in ("recall-p99", "recall-p50", "recall-qps", "recall-memory", "labels", "days",
                                      "upkeep")] + \
           [f"catalog_size-{k}" for k in ("recall-p99", "recall-p50", "recall-qps", "recall-memory", "labels",
                                          "catalog-size")]


def _svg_points(svg: Path, gid_pattern: str) -> dict[str, int]:
    """Markers (<use> elements) inside each group whose id matches: the points actually drawn."""
    tree = ET.parse(svg)
    out = {}
    for g in tree.iter(f"{SVG_NS}g"):
        gid = g.get("id", "")
        if re.fullmatch(gid_pattern, gid):
            out[gid] = sum(1 for _ in g.iter(f"{SVG_NS}use"))
    return out


def test_every_figure_exists_as_png_and_svg_and_is_not_blank(built):
    _res, out, _ = built
    for key in EXPECTED:
        png, svg = out / f"{key}.png", out / f"{key}.svg"
        assert png.stat().st_size > 20_000 and svg.stat().st_size > 20_000, key
        img = imread(png)
        h, w = img.shape[:2]
        assert w >= 700 and h >= 450, (key, w, h)
        assert img[..., :3].std() > 0.05, f"{key} looks blank"
        text = svg.read_text()
        # every figure states dataset, size, k, machine and threads
        assert all(w in text for w in ("dataset catalog", "k=10", "EPYC", "cores", "thread")), key


def _docs(folder: Path) -> list[dict]:
    """The result files below `folder` as JSON documents, for a test to change before `results.parse`."""
    return [results.dump(r) for r in results.load_dir(folder).runs]


def _configs(scenario: str, size: int | None = None) -> list[recommend.Config]:
    runs = results.load_dir(RESULTS / scenario).runs
    cs, _ = recommend.configurations(runs)
    return [c for c in cs if size is None or c.workload.size == size]


def test_pareto_figures_plot_every_configuration_once(built):
    _res, out, _ = built
    for scenario, size in (("ci_smoke", None), ("catalog_size", 10_000)):
        n = len(_configs(scenario, size))
        for cost in ("p99", "p50", "qps"):
            pts = _svg_points(out / f"{scenario}-recall-{cost}.svg", r"(front|dominated)-\d+")
            assert sum(pts.values()) == n, (scenario, cost, pts)
            assert any(k.startswith("front") for k in pts)
            assert _svg_points(out / f"{scenario}-recall-{cost}.svg", "recommended") == {"recommended": 1}
        mem = _svg_points(out / f"{scenario}-recall-memory.svg", r"mem\d-(front|dominated)-\d+")
        assert sum(mem.values()) == 2 * n  # two panels: index memory and peak RSS


def test_pareto_front_in_the_figure_is_the_front_of_the_data():
    cs = _configs("ci_smoke")
    hnsw = [c for c in cs if c.name == "hnswlib" and c.policy == "native"]
    fig, pts = report.fig_pareto(cs, "p99", "ctx")
    groups = sorted({(c.name, c.policy) for c in cs})
    gi = groups.index(("hnswlib", "native"))
    front = metrics.pareto_front([c.worst_recall for c in hnsw], [c.worst_p99_ms for c in hnsw])
    assert pts.get(f"front-{gi}") == len(front)
    assert pts.get(f"front-{gi}", 0) + pts.get(f"dominated-{gi}", 0) == len(hnsw)


def test_day_by_day_draws_every_setting_and_policy_as_its_own_line(built):
    _res, out, _ = built
    cs = _configs("ci_smoke")
    pts = _svg_points(out / "ci_smoke-days.svg", r"days-\d+-\d+-\d+")
    # 4 panels (recall, hit@k, p99, leaks) × one line per (build, policy, setting) × one point per day
    assert len(pts) == 4 * len(cs)
    assert set(pts.values()) == {4}
    upkeep = _svg_points(out / "ci_smoke-upkeep.svg", r"cost-\d+-\w+")
    runs = {c.run_id for c in cs}
    assert sum(1 for k in upkeep if k.endswith("-insert")) == len(runs)
    assert sum(1 for k in upkeep if k.endswith("-rebuild")) == 1  # only annoy runs under the rebuild policy


def test_day_by_day_gives_each_build_of_a_small_grid_its_own_row():
    runs = []
    for doc in _docs(RESULTS / "ci_smoke"):  # hnswlib becomes a grid of two builds
        for m in ((8, 16) if doc["index"]["label"] == "hnswlib" else (None,)):
            r = copy.deepcopy(doc)
            if m is not None:
                r["index"]["label"], r["run_id"] = f"hnswlib[M={m}]", f"{r['run_id']}-{m}"
                r["index"]["build_params"] = {**r["index"]["build_params"], "M": m}
            runs.append(results.parse(r))
    configs, _ = recommend.configurations(runs)
    fig, pts = report.fig_days(configs, "context")
    rows = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel() and ax.get_subplotspec().colspan.start == 0]
    assert rows == ["annoy", "exact", "faiss-hnsw", "hnswlib\nM=16", "hnswlib\nM=8", "ivf-flat", "scann"]
    assert len(pts) == 4 * len(configs)  # every (build, policy, setting) is still drawn, once


def test_catalog_size_figure_marks_where_an_index_stops_reaching_the_target(built):
    _res, out, _ = built
    cs = _configs("catalog_size")
    names = {c.name for c in cs}
    pts = _svg_points(out / "catalog_size-catalog-size.svg", r"cat\d-(reach|miss)-\d+")
    assert sum(v for k, v in pts.items() if k.startswith("cat0-")) == 4 * len(names)  # 4 sizes per index
    # with a target only some settings reach, the misses are drawn as such
    data = report.catalog_points(cs, 0.99)
    missed = sum(not ok for pts_ in data.values() for _s, _c, ok in pts_)
    assert 0 < missed < 4 * len(names)
    fig, fpts = report.fig_catalog(cs, "ctx", 0.99)
    assert sum(v for k, v in fpts.items() if k.startswith("cat0-miss")) == missed
    for name, rows in data.items():  # the chosen setting is the cheapest one that reaches the target
        for size, c, ok in rows:
            same = [x for x in cs if x.name == name and x.workload.size == size]
            if ok:
                assert c.worst_p99_ms == min(x.worst_p99_ms for x in same if x.worst_recall >= 0.99)
            else:
                assert all(x.worst_recall < 0.99 for x in same)


def test_label_metrics_figure_draws_hit_and_precision_for_every_configuration(built):
    _res, out, _ = built
    n = len(_configs("ci_smoke"))
    pts = _svg_points(out / "ci_smoke-labels.svg", r"labels\d-\d+")
    assert sum(pts.values()) == 2 * n
    assert "exact search" in (out / "ci_smoke-labels.svg").read_text()


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.imgs.append(dict(attrs)["src"] or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _page(html: str) -> _Page:
    p = _Page()
    p.feed(html)
    return p


def test_index_html_has_recommendation_figures_and_tables(built):
    _res, out, output = built
    page = _page((out / "index.html").read_text())
    text = " ".join(page.text)
    assert sorted(Path(s).stem for s in page.imgs) == sorted(EXPECTED)
    assert all((out / s).exists() for s in page.imgs)
    assert "Recommendation" in text and "recall@10 ≥ 0.9 on every search step" in text
    winner = recommend.recommend(results.load_dir(RESULTS / "ci_smoke").runs, Constraints())[0][0].winner
    assert winner.short() in text and "recommended " + winner.short() in output
    assert "Failed and timed-out runs" in text and "Configurations (13)" in text


def test_upkeep_table_sets_each_policy_beside_native_on_the_same_build(built):
    _res, out, _output = built
    runs = results.load_dir(RESULTS / "ci_smoke").runs
    head, rows = report.upkeep_table(recommend.configurations(runs)[0])
    col = {h: i for i, h in enumerate(head)}
    by = {(r.index.label, r.index.policy): r for r in runs}
    expected = [(label, p) for (label, pol) in by for p in by[(label, pol)].index.search_grid
                if pol != "native" and (label, "native") in by]
    assert len(rows) == len(expected) > 0
    for row in rows:
        native, policy = by[(row[col["index"]], "native")], by[(row[col["index"]], row[col["policy"]])]
        last = [[s for s in st.settings if recommend.params_text(s.params) == row[col["setting"]]][0]
                for run in (native, policy) for st in run.search_steps]
        n = len(last) // 2
        before, after = (float(x) for x in row[col["recall last day"]].split(" → "))
        assert (before, after) == (round(last[n - 1].recall, 4), round(last[-1].recall, 4))
        worst = [float(x) for x in row[col["worst-day recall"]].split(" → ")]
        assert worst == [round(min(s.recall for s in last[:n]), 4), round(min(s.recall for s in last[n:]), 4)]
        calls = [st for st in policy.steps if st.op in ("maintain", "rebuild")]
        assert row[col["upkeep calls"]] == str(len(calls))
    assert "Upkeep against native writes on the same build" in (out / "index.html").read_text()


def test_figures_drawn_by_forked_workers_equal_those_drawn_one_by_one(tmp_path):
    # `annbench plot` in its own process draws in parallel (forked workers); here, in-process, one by one
    serial = tmp_path / "serial"
    report.plot(RESULTS, serial, Constraints(), workers=1)
    forked = tmp_path / "forked"
    proc = subprocess.run([sys.executable, "-m", "annbench.cli", "plot", str(RESULTS), "--out", str(forked)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    pngs = sorted(p.name for p in serial.glob("*.png"))
    assert pngs == sorted(p.name for p in forked.glob("*.png")) and len(pngs) == len(EXPECTED)
    for name in pngs:
        assert np.array_equal(imread(serial / name), imread(forked / name)), name
        svg = name.replace(".png", ".svg")
        assert _svg_points(serial / svg, r".+") == _svg_points(forked / svg, r".+"), svg


def test_failed_runs_are_listed_with_their_errors(tmp_path):
    out = tmp_path / "r"
    rep = report.plot(FIXTURES / "recommend", out, Constraints(min_recall=0.9), only=["pareto-p99"],
                      write_index=True)
    html = (out / "index.html").read_text()
    assert "SIGSEGV" in html and "failed" in html
    assert [f.label for f in rep.failures] == ["scann"]


def test_plot_exit_2_on_bad_constraint(tmp_path):
    res = CliRunner().invoke(main, ["plot", str(RESULTS), "--out", str(tmp_path), "--min-recall", "2"])
    assert res.exit_code == 2


def test_thumbnail_is_generated_small(tmp_path):
    png = report.thumbnail(RESULTS, tmp_path / "thumb.png", width_px=600)
    img = imread(png)
    assert 300 <= img.shape[1] <= 600 and img[..., :3].std() > 0.05


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium not installed (apt-get install chromium)")
def test_index_html_renders_in_headless_chromium(built):
    _res, out, _ = built
    url = (out / "index.html").resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    shot = out / "screenshot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([str(CHROMIUM), *flags, f"--user-data-dir={profile}", f"--screenshot={shot}",
                        "--window-size=1400,2400", url], check=True, capture_output=True, timeout=60)
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([str(CHROMIUM), *flags, f"--user-data-dir={profile}", "--dump-dom", url],
                             check=True, capture_output=True, timeout=60, text=True).stdout
    img = imread(shot)
    assert img.shape[:2] == (2400, 1400)
    rgb = img[..., :3]
    assert rgb.std() > 0.05, "screenshot is blank"
    assert len(np.unique((rgb[::8, ::8] * 15).round(), axis=0)) > 1
    page = _page(dom)
    assert len(page.imgs) == len(EXPECTED) and all((out / s).exists() for s in page.imgs)
    assert "Recommended" in dom or "recommended" in dom
    assert "Recommendation" in dom and "recall@10 ≥ 0.9 on every search step" in dom


# --- noisy timings, intervals and what memory counts (issue 14) ------------------------------------------
NOISE = {"noisy": True, "reasons": ["rounds disagree: p50 0.1–0.2 ms (+100%)"], "p50_round_spread": 1.0,
         "qps_round_spread": 0.0, "min_cpu_share": 0.97, "thresholds": {"round_spread": 0.25, "min_cpu_share": 0.85}}


def _measured_like_now(runs: list[results.RunRecord], noisy_label: str | None = None,
                       noisy_days: set[int] | None = None, spread: float = 0.1) -> list[results.RunRecord]:
    """The fixture runs as a run writes them now: every timed setting with rounds, 95 % intervals (±`spread`)
    and a noise verdict — noisy for every setting of the runs of index `noisy_label` (on `noisy_days`, or on
    every day) — and the index's own memory with the library's count beside it."""
    out = []
    for r in (results.dump(run) for run in runs):
        for st in r["steps"]:
            if st["op"] != "search":
                continue
            for s in st["settings"]:
                lat = s["latency_ms"]
                s["latency_ms_ci95"] = {q: [lat[q] * (1 - spread), lat[q] * (1 + spread)]
                                        for q in ("p50", "p95", "p99", "mean") if q in lat}
                s["qps_ci95"] = [s["qps"] * (1 - spread), s["qps"] * (1 + spread)]
                s["rounds"] = 3
                hit = r["index"]["label"] == noisy_label and (noisy_days is None or st.get("day") in noisy_days)
                s["noise"] = copy.deepcopy(NOISE) if hit else {"noisy": False, "reasons": []}
        mem = r.get("memory") or {}
        if r["status"] == "ok":
            r["memory"] = {**mem, "index_bytes": 3 * 2**20, "index_bytes_how": memory.HOW,
                           "library_bytes": {"bytes": 2 * 2**20, "what": "test: codes + ids"},
                           "index_bytes_last_day": 4 * 2**20}
        out.append(results.parse(r))
    return out


def _footer_text(fig) -> str:
    """The figure's own texts (title, footer) as one line: the footer is wrapped to the figure's width."""
    return " ".join(" ".join(t.get_text() for t in fig.texts).split())


def _saved_svg_points(fig, tmp_path: Path, pattern: str) -> dict[str, int]:
    svg = tmp_path / "figure.svg"
    fig.savefig(svg)
    return _svg_points(svg, pattern)


def test_pareto_figures_ring_the_noisy_configurations_and_say_why(tmp_path):
    runs = results.load_dir(RESULTS / "ci_smoke").runs
    quiet, _ = recommend.configurations(_measured_like_now(runs))
    noisy, _ = recommend.configurations(_measured_like_now(runs, noisy_label="hnswlib"))
    n_noisy = sum(1 for c in noisy if c.noisy_steps)
    assert n_noisy == sum(1 for c in noisy if c.label == "hnswlib") > 0
    for cost in ("p99", "p50", "qps"):
        fig, pts = report.fig_pareto(noisy, cost, "ctx")
        rings = _saved_svg_points(fig, tmp_path, r"noisy-\d+")
        # one ringed group per hnswlib policy
        assert sum(rings.values()) == n_noisy and len(rings) == len({c.policy for c in noisy if c.noisy_steps})
        assert {k: v for k, v in pts.items() if k.startswith("noisy-")} == rings
        foot = _footer_text(fig)
        assert f"NOISY: {n_noisy} of {len(noisy)} configurations" in foot and "rerun on a quiet machine" in foot
        assert f"{timing.ROUND_SPREAD:.0%}" in foot and f"{timing.MIN_CPU_SHARE:g}" in foot
        # every point is still drawn once: the ring is a mark, not a point of its own
        assert sum(v for k, v in pts.items() if re.fullmatch(r"(front|dominated)-\d+", k)) == len(noisy)
        fig, pts = report.fig_pareto(quiet, cost, "ctx")
        assert not _saved_svg_points(fig, tmp_path, r"noisy-.*") and not any(k.startswith("noisy") for k in pts)
        assert "NOISY" not in _footer_text(fig)


def test_p99_figure_draws_the_worst_steps_interval_on_the_fronts(tmp_path):
    runs = results.load_dir(RESULTS / "ci_smoke").runs
    cs, _ = recommend.configurations(_measured_like_now(runs))
    fig, pts = report.fig_pareto(cs, "p99", "ctx")
    bars = _saved_svg_points(fig, tmp_path, r"ci-\d+-(lo|hi)")  # a cap at each end of a bar
    fronts = sum(v for k, v in pts.items() if k.startswith("front-"))
    assert sum(v for k, v in bars.items() if k.endswith("-hi")) == sum(v for k, v in bars.items()
                                                                        if k.endswith("-lo")) == fronts
    assert "95 % interval of the worst step's p99" in _footer_text(fig)
    fig, _ = report.fig_pareto(cs, "p50", "ctx")  # only where the p99 is drawn
    assert not _saved_svg_points(fig, tmp_path, r"ci-.*")
    old, _ = recommend.configurations(runs)  # a file without rounds has no interval: no bar, no claim
    fig, _ = report.fig_pareto(old, "p99", "ctx")
    assert not _saved_svg_points(fig, tmp_path, r"ci-.*") and "95 %" not in _footer_text(fig)


def test_day_by_day_rings_the_noisy_days_p99(tmp_path):
    runs = results.load_dir(RESULTS / "ci_smoke").runs
    cs, _ = recommend.configurations(_measured_like_now(runs, noisy_label="annoy", noisy_days={1, 3}))
    annoy = [c for c in cs if c.label == "annoy"]
    fig, pts = report.fig_days(cs, "ctx")
    rings = _saved_svg_points(fig, tmp_path, r"noisy-days-\d+-\d+")
    assert len(rings) == len(annoy) and set(rings.values()) == {2}  # days 1 and 3 of every annoy line
    assert sum(v for k, v in pts.items() if k.startswith("noisy-days")) == 2 * len(annoy)
    p99_points = sum(len(c.steps) for c in cs)
    assert f"NOISY: {2 * len(annoy)} of {p99_points} p99 points" in _footer_text(fig)
    fig, pts = report.fig_days(recommend.configurations(_measured_like_now(runs))[0], "ctx")
    assert not any(k.startswith("noisy") for k in pts) and "NOISY" not in _footer_text(fig)


def test_memory_figure_says_what_index_memory_counts(tmp_path):
    runs = results.load_dir(RESULTS / "ci_smoke").runs
    old, _ = recommend.configurations(runs)
    fig, _ = report.fig_memory(old, "ctx")
    label = fig.axes[0].get_ylabel()
    assert "RSS after build − before" in label and "older" in label
    assert "counts the dataset's file pages" in _footer_text(fig)
    now, _ = recommend.configurations(_measured_like_now(runs))
    fig, pts = report.fig_memory(now, "ctx")
    label = fig.axes[0].get_ylabel()
    assert "held by the index in the run's process" in label and "RSS" not in label
    assert memory.HOW in _footer_text(fig) and "older result files" not in _footer_text(fig)
    assert "library's own count" in _footer_text(fig)
    lib = _saved_svg_points(fig, tmp_path, r"lib-\d+")
    assert sum(lib.values()) == len(now) == sum(v for k, v in pts.items() if k.startswith("lib-"))
    fig, _ = report.fig_memory(old + now, "ctx")  # old and new files together: the label says they differ
    assert "two measures" in fig.axes[0].get_ylabel() and "not comparable" in _footer_text(fig)
    pq = [c for c in now if c.label == "ivf-flat"]
    pq = [dataclasses.replace(c, label="ivf-pq") for c in pq]
    fig, _ = report.fig_memory(pq, "ctx")
    assert "precomputed distance table (nlist·m·256·4 bytes)" in _footer_text(fig)


def test_configuration_table_shows_intervals_noise_and_the_librarys_count():
    runs = results.load_dir(RESULTS / "ci_smoke").runs
    cs, _ = recommend.configurations(_measured_like_now(runs, noisy_label="hnswlib"))
    head, rows = report.config_table(cs)
    col = {h: i for i, h in enumerate(head)}
    for h in ("p99 ms [95 %]", "noise", "index mem", "library's count", "index mem last day"):
        assert h in col
    assert col["library's count"] == col["index mem"] + 1
    for row in rows:
        assert re.fullmatch(r"[\d.e+-]+ \[[\d.e+-]+–[\d.e+-]+\]", row[col["p99 ms [95 %]"]]), row
        assert row[col["noise"]].startswith("noisy (4/4") == (row[col["index"]] == "hnswlib")
        assert row[col["library's count"]] == "2.0 MiB" and row[col["index mem last day"]] == "4.0 MiB"
    old_head, old_rows = report.config_table(recommend.configurations(runs)[0])
    assert all(r[old_head.index("index mem")].endswith("(RSS Δ)") for r in old_rows)
    assert all(r[old_head.index("library's count")] == "—" for r in old_rows)
    notes = " ".join(report.config_table_notes(cs))
    assert "test: codes + ids" in notes and memory.HOW in notes


def test_build_parameters_are_printed_as_the_library_used_them():
    docs = _docs(RESULTS / "ci_smoke")
    for r in docs:
        if r["index"]["label"] == "ivf-flat":
            r["index"]["build_params_used"] = {**r["index"]["build_params"], "nlist": 894}
    runs = [results.parse(r) for r in docs]
    cs, _ = recommend.configurations(runs)
    head, rows = report.config_table(cs)
    builds = [row[head.index("build")] for row in rows if row[head.index("index")] == "ivf-flat"]
    assert builds and all("nlist=" in b and "→ 894" in b for b in builds), builds


def test_index_html_shows_the_tie_set_and_the_noisy_warning(tmp_path):
    runs = _measured_like_now(results.load_dir(RESULTS / "ci_smoke").runs, noisy_label="hnswlib", spread=0.9)
    res = tmp_path / "results" / "ci_smoke"
    res.mkdir(parents=True)
    for r in runs:
        results.write(res / f"{r.run_id}.json", r)
    rec = recommend.recommend(results.load_dir(res).runs, Constraints())[0][0]
    assert len(rec.ties) > 1 and rec.noisy  # intervals ±90 % overlap; the hnswlib settings are noisy
    out = tmp_path / "report"
    rep = report.plot(tmp_path / "results", out, Constraints(), only=["pareto-p99"], write_index=True)
    page = (out / "index.html").read_text()
    text = " ".join(_page(page).text)
    assert "tied within noise" in text and "NOISY" in text and "rerun on a quiet machine" in text
    for c in rec.ties:
        assert page.count(html.escape(c.short())) >= 2  # listed under the winner and in the ranked table
    assert page.count("<tr class='tie'>") == len(rec.ties) - 1 and "<details open>" in page
    assert any("noisy timings" in n for n in rep.scenarios[0].notes)
    tied = _svg_points(out / "ci_smoke-recall-p99.svg", "tied")
    assert tied == {"tied": len([c for c in rec.ties if c.workload == rep.scenarios[0].configs[0].workload]) - 1}


# --- the fork pool (annbench.report.pool) ----------------------------------------------------------------------
def _square(x: int) -> int:
    return x * x


def _fail(x: int) -> int:
    if x == 3:
        raise ValueError(f"figure {x} cannot be drawn")
    return x


def _die(x: int) -> int:
    if x == 2:
        os._exit(3)  # a worker killed mid-figure (a segfault in a C library looks the same to the parent)
    return x


def test_the_fork_pool_returns_results_in_order_and_raises_a_tasks_error_here():
    tasks = [functools.partial(_square, i) for i in range(9)]
    assert pool.run_tasks(tasks, workers=1) == [i * i for i in range(9)]
    assert pool._forked(tasks, 2) == [i * i for i in range(9)]  # the forked path, whatever this session loaded
    with pytest.raises(ValueError, match="figure 3 cannot be drawn") as info:
        pool._forked([functools.partial(_fail, i) for i in range(6)], 2)
    assert isinstance(info.value.__cause__, pool.WorkerError) and "_fail" in str(info.value.__cause__)
    with pytest.raises(pool.WorkerError, match="exited with code 3 while running task 2"):
        pool._forked([functools.partial(_die, i) for i in range(5)], 2)
