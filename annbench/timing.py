"""Repeated timings and their spread: figures over rounds, 95 % intervals, and the noisy verdict.

Owns the statistics of a timed search measurement repeated in rounds (`search.rounds`), inside a run's
process and again wherever a verdict compares two figures:

- `summarise_rounds`: a step's single-query latencies (rounds × queries) and batch timings per round →
  p50 / p95 / p99 / mean as the **median over rounds** of each round's figure, QPS as the median over
  rounds, and a 95 % interval for each from a bootstrap that resamples rounds and, within each round,
  queries. A median over rounds shrugs off one disturbed round; the bootstrap over both puts the
  round-to-round spread (a scheduler hiccup, a neighbour's burst) *and* the query-to-query spread (a p99
  of 500 queries rests on its 5 slowest) into the interval.
- `noise_verdict`: a step is **noisy** when its rounds disagree (the slowest round's p50 is more than
  `ROUND_SPREAD` above the fastest's, or batch QPS likewise) or when the timed thread did not have its core
  (process CPU time ÷ wall time of a round's timed loop below `MIN_CPU_SHARE`). Both thresholds are stated
  here and recorded with each verdict, so a reader knows what "noisy" meant when the file was written.
- `overlap`: whether two figures with intervals can be told apart — the rule every verdict uses, so a
  winner is never named on a gap smaller than the noise.

Only numpy; no I/O. The bootstrap is seeded, so the same samples always give the same interval.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

# A step's rounds disagree when the slowest round's p50 (or batch time) exceeds the fastest's by this share.
# On a quiet 2-core machine the per-round p50 of 200–500 single queries moves by 2–10 %; a neighbour that
# takes the core for part of a round moves it by 30 % and more.
ROUND_SPREAD = 0.25  # batch calls are timed over ≥ 20 ms a round (annbench.replay), so this holds for them too
# The timed thread had its core when the process used at least this share of the wall time in CPU: a
# single-threaded loop of library calls runs at ~0.97–1.0 alone, ~0.5 when a busy process shares its core.
MIN_CPU_SHARE = 0.85
MIN_JUDGED_S = 0.005  # a timed loop shorter than this is not judged by its CPU share
BOOTSTRAP = 400
CI_LEVEL = 0.95
_PCTS = (50.0, 95.0, 99.0)


def load_average() -> float:
    """The machine's 1-minute load average (NaN where the OS does not tell)."""
    try:
        return float(os.getloadavg()[0])
    except OSError:
        return float("nan")


def cpu_share(cpu_s: float, wall_s: float, cores: int = 1) -> float | None:
    """CPU time ÷ wall time per core a timed loop may use; None for a loop too short to judge.

    Under `MIN_JUDGED_S` the kernel's accounting and one page fault outweigh the loop itself (a batch of 200
    queries on a small index takes 0.2 ms), so such a loop is not judged rather than judged wrongly.
    """
    if not wall_s >= MIN_JUDGED_S:
        return None
    return cpu_s / wall_s / max(cores, 1)


def _interval(samples: np.ndarray) -> list[float]:
    lo, hi = np.quantile(samples, [(1 - CI_LEVEL) / 2, 1 - (1 - CI_LEVEL) / 2])
    return [float(lo), float(hi)]


def median_over_rounds(values: np.ndarray, rng: np.random.Generator | None = None) -> tuple[float, list[float]]:
    """(median, 95 % interval) of one figure measured once per round: a bootstrap over the rounds."""
    vals = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(0) if rng is None else rng
    boot = np.median(vals[rng.integers(0, len(vals), size=(BOOTSTRAP, len(vals)))], axis=1)
    return float(np.median(vals)), _interval(boot)


def summarise_rounds(latency_ns: np.ndarray, batch_seconds: list[float], n_queries: int,
                     seed: int = 0) -> dict[str, Any]:
    """Figures of one search setting at one step, from R rounds of single-query latencies and batch calls.

    `latency_ns` is R × q (round r's single-query loop), `batch_seconds` R batch-call times over
    `n_queries` queries. Returns {"latency_ms": {n, p50, p95, p99, mean, min, max}, "latency_ms_ci95":
    {p50, p95, p99, mean: [lo, hi]}, "qps", "qps_ci95", "batch_seconds", "per_round": [...]}.
    """
    lat = np.asarray(latency_ns, dtype=np.float64) / 1e6
    if lat.ndim != 2 or lat.shape[1] == 0:
        raise ValueError(f"latencies must be rounds × queries, got shape {lat.shape}")
    r, q = lat.shape
    per_round_p = np.percentile(lat, _PCTS, axis=1)  # 3 × R
    per_round_mean = lat.mean(axis=1)
    summary = {"n": int(lat.size)}
    for name, row in zip(("p50", "p95", "p99"), per_round_p, strict=True):
        summary[name] = float(np.median(row))
    summary["mean"] = float(np.median(per_round_mean))
    summary["min"] = float(lat.min())
    summary["max"] = float(lat.max())

    rng = np.random.default_rng(seed)
    pick_rounds = rng.integers(0, r, size=(BOOTSTRAP, r))
    pick_queries = rng.integers(0, q, size=(BOOTSTRAP, r, q))
    boot = lat[pick_rounds[:, :, None], pick_queries]  # B × R × q
    boot_p = np.percentile(boot, _PCTS, axis=2)  # 3 × B × R
    ci = {name: _interval(np.median(boot_p[i], axis=1)) for i, name in enumerate(("p50", "p95", "p99"))}
    ci["mean"] = _interval(np.median(boot.mean(axis=2), axis=1))

    secs = np.asarray(batch_seconds, dtype=np.float64)
    qps_rounds = n_queries / secs
    qps, qps_ci = median_over_rounds(qps_rounds, rng)
    return {
        "latency_ms": summary,
        "latency_ms_ci95": ci,
        "qps": qps,
        "qps_ci95": qps_ci,
        "batch_seconds": float(np.median(secs)),
        "per_round": [{"p50_ms": float(per_round_p[0, i]), "p99_ms": float(per_round_p[2, i]),
                       "mean_ms": float(per_round_mean[i]), "qps": float(qps_rounds[i])} for i in range(r)],
    }


def noise_verdict(per_round: list[dict[str, Any]], cpu_shares: list[float | None],
                  single_loop_s: float = float("inf")) -> dict[str, Any]:
    """{"noisy": bool, "reasons": [...], thresholds and the figures they were applied to} for one step.

    `per_round` holds each round's p50_ms and qps (`summarise_rounds`), `cpu_shares` the CPU ÷ wall share of
    every timed loop of the step (single-query loops and batch calls, per core the call may use; None for a
    loop too short to judge). `single_loop_s` is the shortest round's single-query loop: rounds' p50s are
    compared only when it lasted `MIN_JUDGED_S` (a 1 ms loop of 5 µs queries moves by a quarter with the cache).
    """
    reasons = []
    p50 = np.asarray([x["p50_ms"] for x in per_round], dtype=np.float64)
    qps = np.asarray([x["qps"] for x in per_round], dtype=np.float64)
    p50_spread = float(p50.max() / p50.min() - 1.0) if len(p50) > 1 and p50.min() > 0 else 0.0
    qps_spread = float(qps.max() / qps.min() - 1.0) if len(qps) > 1 and qps.min() > 0 else 0.0
    if p50_spread > ROUND_SPREAD and single_loop_s >= MIN_JUDGED_S:
        reasons.append(f"rounds disagree: p50 {p50.min():.3g}–{p50.max():.3g} ms (+{p50_spread:.0%})")
    if qps_spread > ROUND_SPREAD:
        reasons.append(f"rounds disagree: batch QPS {qps.min():,.0f}–{qps.max():,.0f} (+{qps_spread:.0%})")
    shares = [s for s in cpu_shares if s is not None and np.isfinite(s)]
    min_share = min(shares) if shares else None
    if shares and min_share < MIN_CPU_SHARE:
        reasons.append(f"the timed thread did not have its core: CPU ÷ wall {min_share:.2f} < {MIN_CPU_SHARE}")
    return {"noisy": bool(reasons), "reasons": reasons, "p50_round_spread": p50_spread,
            "qps_round_spread": qps_spread, "min_cpu_share": min_share,
            "thresholds": {"round_spread": ROUND_SPREAD, "min_cpu_share": MIN_CPU_SHARE}}


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two 95 % intervals (lo, hi) overlap: then the gap between their figures is inside the noise."""
    return a[0] <= b[1] and b[0] <= a[1]
