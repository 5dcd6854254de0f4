"""LanceDB adapter: a real embedded vector database (Rust engine, Lance files on disk) behind the contract.

Owns one database directory per adapter (a fresh temp folder under TMPDIR, removed by `close`, or by a
finaliser if the adapter is dropped unclosed; in a harness run TMPDIR is the run's private folder, which
the harness removes even when it kills the run), the table schema (`id` int64, `vector` float32[dim]), the
index configuration, the predicate deletes, the upserts, the maintenance calls (`optimize`, `reindex`)
and the on-disk footprint. Facts measured here with lancedb 0.40.0 (2-core x86_64, loaded machine):

- IVF_PQ and IVF_HNSW_SQ both build with `create_index("vector", config=IvfPq(...) / IvfHnswSq(...))`; the
  `create_index(metric=...)` call is deprecated. 100 rows are enough to train either.
- Rows added after the index was built are found at once: the table searches its unindexed rows by a
  flat scan and merges them with the index's answer (`fast_search()` would skip them). Freshness stays
  at 1.0 under plain native writes; the cost shows as growing latency day after day.
- `delete("id IN (...)")` writes a deletion vector: deleted rows never come back, but their bytes stay on
  disk (and in the index) until `optimize` compacts the fragments. `merge_insert("id")` upserts the same
  way (old row marked deleted, new row appended, unindexed). Both are declared TOMBSTONE: the database,
  not annbench, hides the dead rows, and the saved / on-disk bytes grow rather than shrink.
- `optimize()` compacts fragments and folds new rows into the existing index without retraining its
  centroids or codebooks. On an IVF_PQ index it lowers recall at the same search settings, even when
  there is nothing new to index (35k × 128 catalog, refine_factor 10: 0.886 → 0.646 with no new rows,
  cosine; 0.892 → 0.656 with l2; the plain call and this adapter's, which also prunes old versions, drop
  alike). In reseller_daily_updates it took recall 0.926 → 0.705 (refine 10), 0.77 → 0.50 (refine 3)
  after the first nightly call, flat from then on. IVF_HNSW_SQ kept 0.998 through the same nights.
  `create_index(..., replace=True)` retrains on the live rows (the `reindex` call).
- Under native writes the rows added since indexing are scanned exactly, so recall creeps *up* as
  they accumulate (IVF_PQ, refine 1: 0.476 on day 0 → 0.675 on day 7) while p50 latency grows
  (5.4 → 20.4 ms) and batch QPS falls (474 → 39), on the loaded 2-core machine.
- With `distance_type="dot"` IVF_PQ recall was far lower than with "cosine" or "l2" on the same
  L2-normalised vectors (35k × 128 catalog, PQ16, nprobes 16: 0.28 vs 0.47), so the cosine metric uses
  "cosine" (same ranking as inner product on normalised vectors; the engine normalises again).
- A query whose projection does not select `_distance` prints a deprecation warning on stderr every
  time: the distance column is always selected.
- One query through the Python API costs ≈ 3–6 ms whatever the index; a 2-D query array is one
  multi-vector query (result column `query_index`), ≈ 0.2–4 ms a query depending on nprobes: `search`
  sends the whole batch in one call. With `refine_factor` the cost per query grows with the batch
  (2,000 × 32, refine_factor 5: 1.5 ms a query in batches of 50–100, 6.5 ms at 1,000, 11 ms at 1,900):
  re-ranked searches go in batches of 64.
- The engine logs index-training warnings ("training 7 of the 8 requested IVF partitions") on stderr
  through its Rust logger, configured once at import from `LANCEDB_LOG`: lancedb is imported with that
  variable set to "error" unless the user set it.
- Importing lancedb starts a background event-loop thread and registers a fork hook that restarts it in
  the child and warns "lancedb fork support is experimental" on stderr at every fork: the sweep's parent,
  which imports adapter modules for their declarations and forks every run's subprocess, must never
  import it. lancedb is imported by `load_library` (a run's process calls it before anything is timed;
  `import lancedb` took 2–20 s wall on the loaded machine) or on first use, never with this module.
- Threads: the engine's compute pool ("lance-cpu" threads) is sized from `LANCE_CPU_THREADS` when the
  process first uses it: measured, threads=1 gives 1 worker (+1 helper), threads=2 gives 2 (+1). So
  `set_threads` takes effect only before the first database call of the process (the harness runs each
  configuration in a fresh process and sets threads first); later calls are recorded but cannot resize
  the pool. Not limited: the lancedb async runtime ("lancedb-tokio-w", 8–11 threads seen on 2 cores,
  IO and plumbing) and the IO pool (`LANCE_IO_THREADS`); pyarrow's pool only converts the inputs.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import warnings
import weakref
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa

from annbench.adapters.base import (
    Adapter,
    Capabilities,
    Metric,
    Param,
    Safety,
    Support,
    as_ids,
    as_vectors,
    check_k,
    folder_bytes,
    pad_ids,
)
from annbench.errors import CapabilityError, ConfigError

if importlib.util.find_spec("lancedb") is None:
    # lancedb itself is imported later (see `_engine`); without it the family is refused now, when a scenario
    # is validated, as one line naming the extra (annbench.adapters.MissingExtra), and `annbench list` shows
    # it as unavailable
    raise ModuleNotFoundError("No module named 'lancedb'", name="lancedb")

_TABLE = "items"
_ID_CHUNK = 20_000  # ids per `id IN (...)` predicate: keeps the SQL text bounded for huge deletes
_REFINE_CHUNK = 64  # queries per multi-vector call when re-ranking (measured: ≈ the cheapest per query)
_used_engine = False  # the engine's compute pool exists once any database call ran in this process


def _engine() -> ModuleType:
    """Import lancedb on first use, never at module import.

    The sweep's parent process loads this module only for the class's declarations; importing lancedb
    there registers a fork hook that warns on stderr ("lancedb fork support is experimental") at every
    run's subprocess start. The log level must be in the environment before the Rust logger loads.
    """
    os.environ.setdefault("LANCEDB_LOG", "error")
    import lancedb

    return lancedb


class LanceDB(Adapter):
    """LanceDB table with an IVF_PQ or IVF_HNSW_SQ index; deletes and upserts are the database's soft deletes."""

    distributions = ("lancedb", "pyarrow")

    name = "lancedb"
    capabilities = Capabilities(add=Support.NATIVE, delete=Support.TOMBSTONE, update=Support.TOMBSTONE)
    maintenance = ("optimize", "reindex")
    # Not documented. Checked here (lancedb 0.40): 2 threads each sending the same 2,000 single queries to
    # a 20k × 64 IVF_PQ and an IVF_HNSW_SQ table (refine_factor 5) got every answer identical to one
    # thread, 1.8× and 1.4× the one-thread QPS (tests/test_lancedb.py repeats the check, smaller).
    concurrency = Safety(True, False, "not documented; concurrent searches checked here (2 threads × 2,000 single "
                         "queries, answers identical to one thread); writes beside a search not verified, so "
                         "treated as unsafe.")
    build_params = (
        Param("index_type", str, "IVF_PQ", "vector index", choices=("IVF_PQ", "IVF_HNSW_SQ")),
        Param("num_partitions", int, 0, "IVF partitions; 0 = √n for IVF_PQ, 1 for IVF_HNSW_SQ (one graph)",
              min=0, max=65_536),
        Param("num_sub_vectors", int, 0, "IVF_PQ sub-vectors (must divide dim); 0 = dim/8", min=0, max=4096),
        Param("num_bits", int, 8, "IVF_PQ bits per code", choices=(4, 8)),
        Param("m", int, 20, "IVF_HNSW_SQ graph neighbours per node", min=2, max=512),
        Param("ef_construction", int, 300, "IVF_HNSW_SQ candidate list size while inserting", min=1),
        Param("max_iterations", int, 50, "k-means iterations when training partitions and codebooks", min=1),
        Param("sample_rate", int, 256, "k-means training sample: this many rows per partition", min=2),
    )
    search_params = (
        Param("nprobes", int, 20, "IVF partitions searched", min=1),
        Param("refine_factor", int, 0, "re-rank k·refine_factor candidates by exact distance; 0 = off", min=0),
        Param("ef", int, 0, "IVF_HNSW_SQ candidate list size, raised to k·refine_factor (ignored by IVF_PQ); "
              "0 = the engine's default", min=0),
    )

    def __init__(self, metric: Metric | str, dim: int, threads: int = 1, **build_params: Any) -> None:
        self._folder: Path | None = None
        self._db: Any = None
        self._table: Any = None
        self._finalizer: weakref.finalize | None = None
        self._built_params: dict[str, Any] | None = None  # build parameters as the build's index used them
        super().__init__(metric, dim, threads, **build_params)
        nsv = self.params["num_sub_vectors"]
        if nsv and self.dim % nsv:
            raise ConfigError(f"{self.name}: parameter 'num_sub_vectors' is {nsv}; must divide dim {self.dim}")
        # "cosine", not "dot", on normalised vectors: same ranking, far better PQ recall (module docstring)
        self._distance = "cosine" if self.metric is Metric.COSINE else "l2"

    @classmethod
    def load_library(cls) -> None:
        _engine()

    # -- threads -------------------------------------------------------------------------------------
    def _apply_threads(self) -> None:
        # Only effective before the engine's first call in this process (module docstring).
        if not _used_engine:
            os.environ["LANCE_CPU_THREADS"] = str(self.threads)

    # -- the database folder ----------------------------------------------------------------------
    def _require_built(self) -> Any:
        if self._table is None:
            raise ConfigError(f"{self.name}: build() must be called first")
        return self._table

    def _arrow(self, x: np.ndarray, ids: np.ndarray) -> pa.Table:
        # Arrow copies out of the caller's arrays here: the database never holds a reference to them.
        flat = pa.array(np.ascontiguousarray(x, dtype=np.float32).reshape(-1), type=pa.float32())
        return pa.table({"id": pa.array(ids, type=pa.int64()),
                         "vector": pa.FixedSizeListArray.from_arrays(flat, self.dim)})

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        global _used_engine
        x = as_vectors(vectors, self.dim, self.name)
        ids = as_ids(ids, self.name, len(x))
        self.close()  # a rebuild starts from a fresh database folder
        folder = Path(tempfile.mkdtemp(prefix="annbench-lancedb-"))
        self._folder = folder
        # If the adapter is dropped without close() (a test, a crash in the caller), the folder still goes.
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(folder), True)
        _used_engine = True
        self._db = _engine().connect(str(folder / "db"))
        schema = pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float32(), self.dim))])
        self._table = self._db.create_table(_TABLE, self._arrow(x, ids), schema=schema)
        self._create_index(len(x))
        # With no rows no index is made (a flat scan serves): nothing was resolved, the rules stay as given.
        self._built_params = self._sized(len(x)) if len(x) else dict(self.params)

    def _sized(self, n: int) -> dict[str, Any]:
        """`params` with the size rules (num_partitions, num_sub_vectors: 0) resolved for `n` rows."""
        p = dict(self.params)
        if p["index_type"] == "IVF_HNSW_SQ":
            p["num_partitions"] = p["num_partitions"] or 1
        else:
            # Never more partitions than rows: k-means needs at least one row a centroid.
            p["num_partitions"] = min(p["num_partitions"] or max(1, round(n ** 0.5)), max(1, n))
            p["num_sub_vectors"] = p["num_sub_vectors"] or max(1, self.dim // 8)
        return p

    def _index_config(self, n: int) -> Any:
        from lancedb.index import IvfHnswSq, IvfPq  # lazily, like every lancedb import (_engine)

        p = self._sized(n)
        common = {"distance_type": self._distance, "max_iterations": p["max_iterations"],
                  "sample_rate": p["sample_rate"]}
        if p["index_type"] == "IVF_HNSW_SQ":
            return IvfHnswSq(num_partitions=p["num_partitions"], m=p["m"],
                             ef_construction=p["ef_construction"], **common)
        return IvfPq(num_partitions=p["num_partitions"], num_sub_vectors=p["num_sub_vectors"],
                     num_bits=p["num_bits"], **common)

    def resolved_params(self) -> dict[str, Any]:
        # What the build's index used; a later `reindex` chooses again from the live rows, not reported here.
        return dict(self._built_params) if self._built_params is not None else dict(self.params)

    def _create_index(self, n: int) -> None:
        if n == 0:
            return  # nothing to train on; the table is searched by a flat scan
        self._require_built().create_index("vector", config=self._index_config(n), replace=True)

    def index_stats(self) -> dict[str, int]:
        """Rows the vector index covers and rows only the flat scan finds (added since the last indexing)."""
        table = self._require_built()
        names = [ix.name for ix in table.list_indices()]
        if not names:
            return {"indexed_rows": 0, "unindexed_rows": table.count_rows()}
        stats = table.index_stats(names[0])
        return {"indexed_rows": int(stats.num_indexed_rows), "unindexed_rows": int(stats.num_unindexed_rows)}

    # -- writes ------------------------------------------------------------------------------------
    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        ids = as_ids(ids, self.name, len(x))
        if len(x):
            self._require_built().add(self._arrow(x, ids))  # unindexed until optimize / reindex

    def delete(self, ids: np.ndarray) -> None:
        table = self._require_built()
        ids = np.unique(as_ids(ids, self.name))
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = ids[start:start + _ID_CHUNK]
            table.delete(f"id IN ({','.join(map(str, chunk.tolist()))})")  # unknown ids: nothing to do

    def update(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        ids = as_ids(ids, self.name, len(x))
        if len(x) == 0:
            return
        # The last vector wins when an id repeats in one call, as with the libraries' in-place updates.
        _, last = np.unique(ids[::-1], return_index=True)
        keep = np.sort(len(ids) - 1 - last)
        (self._require_built().merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
         .execute(self._arrow(x[keep], ids[keep])))

    def maintain(self, op: str) -> None:
        table = self._require_built()
        if op == "optimize":
            # Compaction + new rows into the existing index + old versions pruned (a nightly job would
            # prune too; otherwise the footprint keeps every version). No other process uses the folder.
            with warnings.catch_warnings():
                # It warns that readers of older versions would fail; this adapter is the folder's only user.
                warnings.filterwarnings("ignore", message=r"optimize\(cleanup_older_than=0\)", category=UserWarning)
                table.optimize(cleanup_older_than=timedelta(0))
        elif op == "reindex":
            self._create_index(table.count_rows())  # retrains partitions and codebooks on the live rows
        else:
            raise CapabilityError(f"{self.name} has no maintenance call {op!r}; it has {', '.join(self.maintenance)}")

    # -- search ------------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        table = self._require_built()
        k = check_k(k, self.name)
        q = as_vectors(queries, self.dim, self.name)
        if len(q) == 0:
            return np.full((0, k), -1, dtype=np.int64)
        # Re-ranking costs grow faster than the batch (module docstring): batches of _REFINE_CHUNK then.
        step = _REFINE_CHUNK if self.search_settings["refine_factor"] else len(q)
        rows: list[np.ndarray] = []
        for start in range(0, len(q), step):
            rows.extend(self._search_batch(table, q[start:start + step], k))
        return pad_ids(rows, k)

    def _search_batch(self, table: Any, q: np.ndarray, k: int) -> list[np.ndarray]:
        s = self.search_settings
        # One call for the batch: a 2-D array is a multi-vector query (result column query_index).
        query = table.search(q if len(q) > 1 else q[0]).distance_type(self._distance).limit(k).nprobes(s["nprobes"])
        if s["refine_factor"]:
            query = query.refine_factor(s["refine_factor"])
        if s["ef"]:
            # The engine refuses ef below the candidates it must return (k, or k·refine_factor when re-ranking).
            query = query.ef(max(s["ef"], k * max(1, s["refine_factor"])))
        # Selecting _distance silences the per-query deprecation warning, and orders ties inside a query.
        result = query.select(["id", "_distance"]).to_arrow()
        found = result["id"].to_numpy()
        if len(q) == 1:
            return [found]
        owner = result["query_index"].to_numpy()
        order = np.lexsort((result["_distance"].to_numpy(), owner))
        found, owner = found[order], owner[order]
        bounds = np.searchsorted(owner, np.arange(len(q) + 1))
        return [found[bounds[i]:bounds[i + 1]] for i in range(len(q))]

    # -- bytes -------------------------------------------------------------------------------------
    def save(self, path: Path) -> int:
        self._require_built()
        assert self._folder is not None
        target = Path(path)
        # The database is its folder: saving is a copy of every file it holds (all versions kept so far).
        shutil.copytree(self._folder / "db", target, dirs_exist_ok=True)
        return folder_bytes(target)

    def footprint(self) -> dict[str, int]:
        if self._folder is None:
            return {}
        return {"disk_bytes": folder_bytes(self._folder)}

    def close(self) -> None:
        self._table = None
        self._db = None
        if self._finalizer is not None:
            self._finalizer()  # removes the folder once; later calls do nothing
            self._finalizer = None
        self._folder = None
