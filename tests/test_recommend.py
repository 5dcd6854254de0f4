"""recommend: constraints on every step, the known winner, rejections with their first failed constraint,
exit 1 when nothing is feasible, exit 2 on bad arguments.

tests/fixtures/recommend/ holds hand-built result documents whose winner is known by construction
(see the comments in the table below); tests/fixtures/results/ holds real runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from annbench import recommend, results
from annbench.cli import main
from annbench.errors import ConfigError
from annbench.recommend import Constraints
from annbench.results import load_dir

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REC = FIXTURES / "recommend"
DAILY = REC / "daily"
# By construction (tests/fixtures/recommend/daily/fx_daily):
#   hnswlib ef=32 native   recall .97/.96/.95   worst p99 0.35 ms  200 MB  build 2.0 s   ← winner on latency
#   hnswlib ef=64 native   recall .99/.99/.985  worst p99 0.70 ms  200 MB  build 2.0 s   ← memory winner (tie → recall)
#   ivf-flat nprobe=4      recall .99/.80/.99   worst p99 0.10 ms  150 MB              ← mean .927 passes, day 1 fails
#   exact                  recall 1/1/1         worst p99 2.0 ms   500 MB  build 0.1 s   ← winner on build
#   annoy rebuild          recall .93/.94/.93   worst p99 0.5 ms   3 GB    build 1.0 s
#   scann                  failed (SIGSEGV)


def _runs(path: Path = DAILY) -> list[results.RunRecord]:
    return load_dir(path).runs


def _only(recs: list[recommend.Recommendation]) -> recommend.Recommendation:
    assert len(recs) == 1
    return recs[0]


def test_known_winner_and_ranking_on_worst_day_latency():
    rec = _only(recommend.recommend(_runs(), Constraints(min_recall=0.9))[0])
    assert [(c.label, c.search_text(), c.policy) for c in rec.ranked] == [
        ("hnswlib", "ef=32", "native"), ("annoy", "search_k=2000", "rebuild"), ("hnswlib", "ef=64", "native"),
        ("exact", "—", "native")]
    assert rec.winner is not None and rec.winner.worst_p99_ms == pytest.approx(0.35)
    why = rec.why()
    # ranked on a typical step's p99 (median over the 3 days: 0.32 ms); these old files carry no intervals, so
    # every gap is outside the noise and there is no tie
    assert "lowest p99 latency of a typical search step" in why and "(0.32 ms)" in why
    assert "4 configurations" in why and "runner-up annoy" in why and "outside the noise" in why
    assert rec.ties == [rec.winner]


def test_average_passes_but_one_day_fails_is_rejected():
    rec = _only(recommend.recommend(_runs(), Constraints(min_recall=0.9))[0])
    ivf = [(c, why) for c, why in rec.rejected if c.label == "ivf-flat"]
    assert len(ivf) == 1
    c, why = ivf[0]
    assert c.mean_recall > 0.9  # the average would have passed …
    assert why.startswith("recall@10 0.800 < 0.9 on worst day 1")  # … but day 1 does not
    assert "mean over 3 steps 0.927" in why
    assert all(x.label != "ivf-flat" for x in rec.ranked)


def test_failed_run_is_listed_with_its_error_never_ranked():
    rec = _only(recommend.recommend(_runs(), Constraints())[0])
    assert [(f.label, f.status) for f in rec.failed] == [("scann", "failed")]
    assert "SIGSEGV" in rec.failed[0].error
    _head, rows = recommend.rejected_rows(rec)
    assert any(r[0] == "scann" and "run failed" in r[4] and "SIGSEGV" in r[4] for r in rows)


def test_p99_and_memory_constraints_name_the_first_failure():
    rec = _only(recommend.recommend(_runs(), Constraints(min_recall=0.9, max_p99_ms=1.0, max_memory_gib=1.0))[0])
    reasons = {(c.label, c.search_text()): why for c, why in rec.rejected}
    assert reasons[("exact", "—")] == "p99 2 ms > 1 ms on worst day 0"
    assert reasons[("annoy", "search_k=2000")] == "index memory 2.79 GiB > 1 GiB"  # 3e9 bytes
    # recall is checked first: ivf fails on recall although it also meets p99 and memory
    assert reasons[("ivf-flat", "nprobe=4")].startswith("recall@10")
    assert [c.search_text() for c in rec.ranked] == ["ef=32", "ef=64"]


def test_minimise_memory_and_build():
    by_memory = _only(recommend.recommend(_runs(), Constraints(min_recall=0.9, minimise="memory"))[0])
    # both hnswlib settings share one build (200 MB): tied on memory, the tie goes to the lower latency
    assert by_memory.winner.search_text() == "ef=32"
    assert {c.search_text() for c in by_memory.ties} == {"ef=32", "ef=64"}
    assert "tied within noise" in by_memory.why() and "picked by p99 latency" in by_memory.why()
    by_build = _only(recommend.recommend(_runs(), Constraints(min_recall=0.9, minimise="build"))[0])
    assert by_build.winner.label == "exact"


def test_needs_updates_leaves_static_scenarios_out():
    runs = _runs(REC)  # the daily and the static fixture together
    recs, notes = recommend.recommend(runs, Constraints(min_recall=0.9))
    assert sorted(r.workload.scenario for r in recs) == ["fx_daily", "fx_static"]
    recs, notes = recommend.recommend(runs, Constraints(min_recall=0.9, needs_updates=True))
    assert [r.workload.scenario for r in recs] == ["fx_daily"]
    assert recs[0].winner.search_text() == "ef=32"
    assert any("fx_static" in n and "--needs updates" in n for n in notes)


def test_cli_prints_winner_and_rejections_exit_0():
    res = CliRunner().invoke(main, ["recommend", str(REC), "--min-recall", "0.9", "--needs", "updates"])
    assert res.exit_code == 0, res.output
    assert "Winner: hnswlib · ef=32 · native" in res.output
    assert "recall@10 0.800 < 0.9 on worst day 1" in res.output
    assert "Constraints: recall@10 ≥ 0.9 on every search step" in res.output


def test_cli_no_feasible_configuration_exits_1_with_explanation():
    res = CliRunner().invoke(main, ["recommend", str(DAILY), "--min-recall", "0.999", "--max-p99-ms", "1"])
    assert res.exit_code == 1, res.output
    assert "No feasible configuration" in res.output
    assert "Nothing meets every constraint on every step" in res.output
    assert "p99 2 ms > 1 ms on worst day 0" in res.output  # the exact index: recall ok, too slow
    # for each constraint, the configuration that comes closest to it
    assert "Closest to each constraint" in res.output
    assert "recall ≥ 0.999: closest exact · native, worst-step recall@10 1.000" in res.output
    assert "p99 ≤ 1 ms: closest ivf-flat · nprobe=4 · native, worst-step p99 0.1 ms" in res.output


@pytest.mark.parametrize("args", [
    ["--min-recall", "0"], ["--min-recall", "1.5"], ["--max-p99-ms", "-1"], ["--max-memory-gb", "0"],
    ["--minimise", "speed"], ["--needs", "everything"], ["--scenario", "nope"], ["--min-p-at-k", "0"],
    ["--min-p-at-k", "1.01"],
])
def test_cli_bad_arguments_exit_2(args):
    res = CliRunner().invoke(main, ["recommend", str(DAILY), *args])
    assert res.exit_code == 2, res.output


def test_cli_missing_or_empty_results_dir_exit_2(tmp_path):
    assert CliRunner().invoke(main, ["recommend", str(tmp_path / "nope")]).exit_code == 2
    res = CliRunner().invoke(main, ["recommend", str(tmp_path)])
    assert res.exit_code == 2 and "no result files" in res.output


def test_constraints_validate():
    with pytest.raises(ConfigError):
        Constraints(min_recall=-0.1).validate()
    with pytest.raises(ConfigError):
        Constraints(minimise="speed").validate()


def test_real_runs_every_ranked_configuration_meets_recall_on_every_step():
    runs = load_dir(FIXTURES / "results" / "ci_smoke").runs
    rec = _only(recommend.recommend(runs, Constraints(min_recall=0.95))[0])
    assert rec.ranked, "the ci_smoke fixture has configurations above 0.95 on every day"
    for c in rec.ranked:
        raw = [s.recall for st in c.run.search_steps for s in st.settings
               if json.dumps(s.params, sort_keys=True) == json.dumps(c.search_params, sort_keys=True)]
        assert len(raw) == 4 and min(raw) >= 0.95
    for c, why in rec.rejected:
        assert c.worst_recall < 0.95 and why.startswith("recall@10")


def _with(runs: list[results.RunRecord], label: str, edit) -> list[results.RunRecord]:  # noqa: ANN001
    """The runs with `edit(setting, step)` applied to the plain documents of `label`'s, parsed back (checked)."""
    out = []
    for run in runs:
        doc = results.dump(run)
        if doc["index"]["label"] == label:
            for step in doc["steps"]:
                for s in step.get("settings", []):
                    edit(s, step)
        out.append(results.parse(doc))
    return out


def test_a_gap_inside_the_intervals_is_a_tie_broken_by_memory_and_said():
    def wide(s: dict, _step: dict) -> None:  # intervals that reach the other's figures
        s["latency_ms_ci95"] = {"p50": [0.01, 1.0], "p95": [0.1, 0.9], "p99": [0.2, 0.9]}
    runs = _with(_with(_runs(), "hnswlib", wide), "annoy", wide)
    rec = _only(recommend.recommend(runs, Constraints(min_recall=0.9))[0])
    assert {(c.label, c.search_text()) for c in rec.ties} >= {("hnswlib", "ef=32"), ("annoy", "search_k=2000")}
    # memory decides inside the tie: hnswlib's 200 MB against annoy's 3 GB
    assert rec.winner.label == "hnswlib"
    why = rec.why()
    assert why.startswith("tied within noise") and "picked by index memory, then build time" in why
    _head, rows = recommend.ranked_rows(rec)
    assert all(r[-1].startswith("tie") for r in rows[:len(rec.ties)])


def test_noisy_steps_are_said_in_the_verdict_and_the_table():
    def disturbed(s: dict, step: dict) -> None:
        if step.get("day") == 1:
            s["noise"] = {"noisy": True, "reasons": ["the timed thread did not have its core: CPU ÷ wall 0.48 < 0.85"]}
    rec = _only(recommend.recommend(_with(_runs(), "hnswlib", disturbed), Constraints(min_recall=0.9))[0])
    assert "NOISY" in rec.why() and "did not have its core" in rec.why()
    _head, rows = recommend.ranked_rows(rec)
    assert rows[0][-1] == "noisy (1/3 steps)"


def test_a_rejection_names_the_worst_step_not_the_first_failing_one():
    def slow_day_2(s: dict, step: dict) -> None:
        if step.get("day") == 2:
            s["latency_ms"]["p99"] = 7.4
            s["latency_ms_ci95"] = {"p50": [0.01, 0.05], "p95": [1.0, 3.0], "p99": [5.0, 9.0]}
    rec = _only(recommend.recommend(_with(_runs(), "exact", slow_day_2),
                                    Constraints(min_recall=0.9, max_p99_ms=1.0))[0])
    reasons = {c.label: why for c, why in rec.rejected}
    assert reasons["exact"] == "p99 7.4 ms [95 % 5–9] > 1 ms on worst day 2"


def test_min_p_at_k_is_a_constraint_on_the_worst_step() -> None:
    gold = FIXTURES / "golden" / "ci_smoke"
    configs, _ = recommend.configurations(load_dir(gold).runs)
    labelled = sorted(c.worst_p_at_k for c in configs if c.worst_p_at_k is not None)
    cut = labelled[len(labelled) // 2]
    res = CliRunner().invoke(main, ["recommend", str(gold), "--min-recall", "0.01", "--min-p-at-k", str(cut)])
    assert res.exit_code in (0, 1), res.output
    assert f"P@10 (answers of the query's own product) ≥ {cut:g} on every search step" in res.output
    rejected = [c for c in configs if c.worst_p_at_k is not None and c.worst_p_at_k < cut]
    assert rejected and res.output.count(f"< {cut:g} on its worst") >= 1
    none = CliRunner().invoke(main, ["recommend", str(gold), "--min-recall", "0.01", "--min-p-at-k", "1"])
    assert none.exit_code == 1 and "P@k ≥ 1: closest" in none.output
