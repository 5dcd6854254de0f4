"""annbench.memory end to end: the index memory a run records is the index's, and tells indexes apart.

A static run on a 20,000 × 128 catalog (l2, so faiss keeps IVF-PQ's precomputed distance table), each
index in its own process as a user's sweep runs it. Each recorded figure must be within ±25 % of the
index's analytic size, and indexes whose analytic sizes differ clearly must be ordered as those sizes are —
the old figure (steady RSS − RSS before build) carried a fixed ~30 MiB and the memory-mapped dataset's
pages, and put IVF-PQ level with a flat index.
"""

from __future__ import annotations

import math
from pathlib import Path

from click.testing import CliRunner

from annbench import results
from annbench.cli import main
from annbench.recommend import configurations

N, D, M_HNSW, NLIST, PQ_M = 20_000, 128, 16, 256, 8
def _analytic() -> dict[str, float]:
    flat = N * D * 4
    links = N * 2 * M_HNSW * 4 + N * 16  # level-0 links, plus levels, offsets and the upper layers' few
    return {
        "exact": flat,
        "ivf-flat": N * (D * 4 + 8) + NLIST * D * 4,
        # codes and ids, centroids, codebooks, and the table faiss precomputes under L2: nlist·m·256·4
        "ivf-pq": N * (PQ_M + 8) + NLIST * D * 4 + 256 * D * 4 + NLIST * PQ_M * 256 * 4,
        "faiss-hnsw": flat + links,
        # + the label per element, and what hnswlib (hnswalg.h) allocates beside the graph: a std::mutex (40 B)
        # and a label-map entry (~40 B) per element, and 65,536 label-operation mutexes (2.5 MiB) in all
        "hnswlib": flat + links + N * (8 + 40 + 40) + 65_536 * 40,
    }


def test_index_memory_is_the_index_own_within_25_percent_and_ordered(tmp_path: Path, scenario_file) -> None:
    path = scenario_file(
        [{"name": "exact", "family": "faiss-flat"},
         {"name": "ivf-flat", "family": "faiss-ivf", "build": {"nlist": NLIST, "encoding": "Flat"}},
         {"name": "ivf-pq", "family": "faiss-ivf", "build": {"nlist": NLIST, "encoding": f"PQ{PQ_M}"}},
         {"name": "faiss-hnsw", "family": "faiss-hnsw", "build": {"M": M_HNSW, "efConstruction": 40}},
         {"name": "hnswlib", "family": "hnswlib", "build": {"M": M_HNSW, "ef_construction": 40}}],
        name="memsize", metric="l2",
        dataset={"name": "catalog", "params": {"seed": 0, "n": N, "dim": D, "n_queries": 50}},
        queries={"count": 50, "deleted_products": "keep"},
        timeline={"kind": "static"}, policies=["native"])
    res = CliRunner().invoke(main, ["run", "--scenario", str(path), "--out", str(tmp_path / "res")],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    runs = [results.load(p) for p in sorted((tmp_path / "res" / "memsize").glob("*.json"))]
    docs = [results.dump(r) for r in runs]
    configs, failures = configurations(runs)
    assert not failures
    measured = {c.label: c.index_bytes for c in configs}
    analytic = _analytic()
    assert set(measured) == set(analytic)
    for name, want in analytic.items():
        got = measured[name]
        assert math.isfinite(got) and abs(got / want - 1) <= 0.25, \
            f"{name}: {got / 2**20:.2f} MiB recorded, analytic {want / 2**20:.2f} MiB"
    # ordered as the sizes are, wherever the analytic sizes differ by more than the tolerance
    names = sorted(analytic)
    for a in names:
        for b in names:
            if analytic[a] * 1.6 < analytic[b]:
                assert measured[a] < measured[b], f"{a} ({measured[a]:.0f} B) should be below {b} ({measured[b]:.0f} B)"
    for doc in docs:
        mem = doc["memory"]
        assert "smaps_rollup" in mem["index_bytes_how"]
        # the old RSS figure counted the dataset's file pages and the allocator's leftovers: never smaller
        assert mem["index_rss_bytes"] >= 0
    lib = {d["index"]["label"]: d["memory"]["library_bytes"] for d in docs}
    assert lib["ivf-pq"] is not None and "precomputed" in lib["ivf-pq"]["what"]
    assert abs(lib["ivf-pq"]["bytes"] / analytic["ivf-pq"] - 1) < 0.1
