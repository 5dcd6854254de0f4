"""What is specific to the pgvector adapter (annbench/adapters/pgvector_.py): a real PostgreSQL server.

The conformance suite (tests/test_adapters.py) checks the adapter contract; this module checks the
database around it: autovacuum off on the benchmark table, explicit VACUUM / REINDEX that never bring
deleted rows back, the footprint outside the process, a server that listens on its Unix socket only and
runs unprivileged, a server that never outlives its run (close, and a SIGKILLed run), IVFFlat, and a
daily scenario with the maintenance policies through `annbench run` and `annbench plot`.

What these tests do to the machine is in README.md ("PostgreSQL + pgvector").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

from annbench.adapters.base import Metric, prepare_vectors
from annbench.adapters.pgvector_ import PgVector, sweep_orphans
from annbench.errors import CapabilityError, ConfigError
from tests.conftest import run_db_smoke

N, DIM = 2_000, 32
_rng = np.random.default_rng(7)
_centres = _rng.normal(size=(30, DIM)) + 1.0
X = prepare_vectors(_centres[_rng.integers(30, size=N)] + _rng.normal(size=(N, DIM)), Metric.L2)
IDS = 1_000_003 + 13 * np.arange(N, dtype=np.int64)
QUERIES = prepare_vectors(_centres[_rng.integers(30, size=100)] + _rng.normal(size=(100, DIM)), Metric.L2)


def _truth(keep: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    d = ((queries[:, None, :] - X[keep][None, :, :]) ** 2).sum(-1)
    return IDS[keep][np.argsort(d, axis=1)[:, :k]]


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k].tolist()) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)]))


def _built(**build: object) -> PgVector:
    index = PgVector(Metric.L2, DIM, **build)
    index.build(X, IDS)
    return index


@pytest.fixture(scope="module")
def index() -> Iterator[PgVector]:
    """One server for the read-only checks; tests that write build their own."""
    ix = _built()
    yield ix
    ix.close()


def _sql(ix: PgVector, query: str) -> list[tuple]:
    return ix._conn().execute(query).fetchall()


def test_autovacuum_is_off_on_the_benchmark_table(index: PgVector) -> None:
    (options,), = _sql(index, f"SELECT reloptions FROM pg_class WHERE relname = '{index.table}'")
    assert "autovacuum_enabled=false" in options


def test_searches_use_the_vector_index(index: PgVector) -> None:
    # the planner prefers an exact sequential scan on a small table; the adapter must measure the index
    conn = index._conn()
    plan = "\n".join(r[0] for r in conn.execute(
        f"EXPLAIN SELECT id FROM {index.table} ORDER BY embedding <-> %s::vector LIMIT 10", (str(X[0].tolist()),)))
    assert f"Index Scan using {index.index_name}" in plan, plan


@pytest.mark.parametrize("op", ["vacuum", "reindex"])
def test_maintenance_frees_dead_rows_and_deleted_rows_never_return(op: str) -> None:
    ix = _built()
    try:
        gone = np.arange(0, N, 4)  # a quarter of the rows
        ix.delete(IDS[gone])
        _sql(ix, "SELECT pg_stat_force_next_flush()")  # the DELETE's counts reach the shared stats now
        (dead,), = _sql(ix, f"SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = '{ix.table}'")
        assert dead == len(gone)
        ix.maintain(op)
        (dead,), = _sql(ix, f"SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = '{ix.table}'")
        assert dead == 0
        for queries in (X[gone], QUERIES):
            assert not np.isin(ix.search(queries, 50), IDS[gone]).any(), f"a deleted row came back after {op}"
        keep = np.setdiff1d(np.arange(N), gone)
        assert _recall(ix.search(QUERIES, 10), _truth(keep, QUERIES)) >= 0.95
        assert (ix.search(X[keep[::20]], 1)[:, 0] == IDS[keep[::20]]).mean() >= 0.95
        with pytest.raises(CapabilityError):
            ix.maintain("optimize")
    finally:
        ix.close()


def test_dead_rows_shorten_hnsw_answers_until_maintenance_or_iterative_scan() -> None:
    """HNSW returns at most ef_search candidates, dead ones included; the adapter must not hide it."""
    ix = _built(m=8, ef_construction=32)
    try:
        near = np.argsort(((X - X[0]) ** 2).sum(1))[:300]  # the 300 rows nearest one query
        ix.delete(IDS[near[1:]])
        ix.set_search_params(ef_search=40)
        short = ix.search(X[:1], 40)
        assert (short == -1).any(), "dead tuples among the candidates should leave the answer short"
        ix.set_search_params(ef_search=40, iterative_scan=True)
        full = ix.search(X[:1], 40)
        assert (full >= 0).all() and not np.isin(full, IDS[near[1:]]).any()
        ix.set_search_params(ef_search=40)
        ix.maintain("reindex")
        assert (ix.search(X[:1], 40) >= 0).all()
    finally:
        ix.close()


def test_pgvector_limits_are_refused_before_anything_starts() -> None:
    with pytest.raises(ConfigError, match="ef_construction"):
        PgVector(Metric.L2, DIM, m=16, ef_construction=20)
    with pytest.raises(ConfigError, match="2000"):
        PgVector(Metric.L2, 2001)


def test_ef_search_below_k_is_raised_to_k(index: PgVector) -> None:
    index.set_search_params(ef_search=5)
    try:
        found = index.search(QUERIES[:20], 30)
        assert (found >= 0).all()  # pgvector alone would return 5 rows
        assert _recall(found, _truth(np.arange(N), QUERIES[:20], 30)) >= 0.9
    finally:
        index.set_search_params()


def test_footprint_has_relation_bytes_and_server_memory(index: PgVector) -> None:
    fp = index.footprint()
    assert set(fp) == {"relation_bytes", "server_pss_bytes"}
    (total,), = _sql(index, f"SELECT pg_total_relation_size('{index.table}')")
    assert fp["relation_bytes"] == total > N * DIM * 4  # heap + primary key + vector index
    assert 10 * 2**20 < fp["server_pss_bytes"] < 2**30


def test_server_listens_on_its_unix_socket_only_and_runs_unprivileged(index: PgVector) -> None:
    server = index.server
    assert server is not None
    (addresses,), = _sql(index, "SHOW listen_addresses")
    assert addresses == ""
    procs = server.processes()
    assert len(procs) > 3
    for p in procs:
        assert not [c for c in p.net_connections(kind="inet")], f"{p.name()} holds a TCP/UDP socket"
    sock = server.data / ".s.PGSQL.5432"
    assert sock.is_socket() and (sock.stat().st_mode & 0o777) == 0o700
    assert (server.data.stat().st_mode & 0o777) == 0o700
    users = {p.username() for p in procs}
    if os.geteuid() == 0:
        assert users == {os.environ.get("ANNBENCH_PG_USER", "nobody")}
    else:
        assert users == {psutil.Process().username()}


def test_close_stops_the_server_and_removes_its_folder() -> None:
    """Adapters alive in one process share its server; the last close stops it and removes its folder.

    In a fresh process, because this one's other tests keep adapters (and so the server) alive.
    """
    code = """if True:
        import numpy as np, psutil
        from annbench.adapters.pgvector_ import PgVector
        x = np.random.default_rng(0).random((500, 8), dtype=np.float32)
        a, b = PgVector('l2', 8), PgVector('l2', 8)
        a.build(x, np.arange(500)); b.build(x[::-1], np.arange(500))
        assert a.server is b.server and a.table != b.table
        server, table = a.server, a.table
        pids, top = [p.pid for p in server.processes()], server.top
        a.close(); a.close()  # idempotent
        assert top.is_dir() and server.proc.poll() is None  # b still uses it...
        assert (b.search(x[-1:], 1) == [[0]]).all()
        assert b._conn().execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None  # ...a's table is gone
        b.close(); b.close()
        assert not top.exists()
        assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != 'zombie']
        print('ok')
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-800:]


def test_a_killed_run_leaves_no_server_behind(tmp_path: Path) -> None:
    """A run SIGKILLed on its time limit runs no cleanup: its server must die, and its folder is swept."""
    code = ("import numpy as np, sys; from annbench.adapters.pgvector_ import PgVector\n"
            "ix = PgVector('l2', 8); ix.build(np.random.default_rng(0).random((500, 8), dtype=np.float32),"
            " np.arange(500))\n"
            "print(ix.server.pid, ix.server.top, flush=True); sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pid_text, top = child.stdout.readline().split()
        postmaster, top_path = int(pid_text), Path(top)
        assert psutil.pid_exists(postmaster)
        shmid = (top_path / "data" / "postmaster.pid").read_text().splitlines()[6].split()[-1]
        workers = [p.pid for p in psutil.Process(postmaster).children()]
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 10
        alive = [postmaster, *workers]
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
            time.sleep(0.05)
        assert not alive, "the server outlived its run"
        segments = Path("/proc/sysvipc/shm").read_text().split("\n")[1:]
        assert shmid not in {line.split()[1] for line in segments if line.strip()}, "its SysV segment leaked"
        assert top_path.exists()  # nothing ran in the killed process...
        assert top_path in sweep_orphans()  # ...so the next start removes its folder
        assert not top_path.exists()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_ivfflat_probes_trade_recall_and_deletes_hold() -> None:
    ix = _built(index="ivfflat", lists=20)
    try:
        truth = _truth(np.arange(N), QUERIES)
        ix.set_search_params(probes=1)
        low = _recall(ix.search(QUERIES, 10), truth)
        ix.set_search_params(probes=20)
        assert _recall(ix.search(QUERIES, 10), truth) == 1.0  # every list: exact
        assert low < 0.95
        ix.delete(IDS[:500])
        ix.maintain("vacuum")
        assert not np.isin(ix.search(X[:500], 20), IDS[:500]).any()
        ix.update(X[600:610] * -1, IDS[500:510])
        assert (ix.search(X[600:610] * -1, 1)[:, 0] == IDS[500:510]).all()
    finally:
        ix.close()


def test_daily_scenario_with_vacuum_and_reindex_runs_and_plots(tmp_path: Path) -> None:
    results = run_db_smoke(tmp_path, "pg_smoke", DIM, ["native", "vacuum", "reindex"],
                           {"name": "pgvector", "family": "pgvector", "build": {"m": 8, "ef_construction": 32},
                            "search": {"ef_search": [10, 40]}})
    for result in results.values():
        steps = result["steps"]
        assert all(s["seconds"] > 0 for s in steps if s["op"] == "maintain")
        searches = [s for s in steps if s["op"] == "search"]
        assert len(searches) == 3
        for s in searches:
            assert s["external_bytes"]["relation_bytes"] > 0 and s["external_bytes"]["server_pss_bytes"] > 0
        assert result["memory"]["external_bytes"]["relation_bytes"] > 0
        for s in searches:
            assert all(setting["leaks"] == 0 for setting in s["settings"])
        for s in searches[1:]:  # new and updated rows are found under every policy
            assert all(setting["freshness"] >= 0.95 for setting in s["settings"])
