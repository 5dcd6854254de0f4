"""The run record: the typed shape of a result file, its one load and its one dump.

One JSON file per run under `<out>/<scenario>/<run_id>.json`, written once through `atomic.py` and never
modified afterwards. Derived figures (Pareto fronts, averages, recommendations) are computed by the
readers, never written back. Every reader and writer goes through this module: `parse` turns a JSON
document into a `RunRecord` (checking every field's type, that every number is finite and that ratios lie
in [0, 1]), `dump` turns it back, and `load` / `load_dir` / `write` do so for files. A file that fails is
one line naming the file and the field (`steps[3].settings[0].latency_ms.p99: expected a finite number,
got NaN`); readers skip it and say so, never a traceback.

Why dataclasses and not pydantic: the record needs three things a stdlib codec of ~100 lines gives
exactly — a one-line error naming the field's whole path, finite numbers everywhere (including inside
free-form parts such as adapter parameters), and a round trip that writes back what it read (a key
absent from an old file stays absent, a key this version does not know is kept) — while pydantic would
add a compiled dependency for the plain-data validation used here and would need the same custom
pieces for the other two.

Schema history (bump SCHEMA and add a migration in `_MIGRATIONS` when a field changes meaning):
  1 — first version: run metadata, build figures, steps with per-search-setting metrics and raw latencies.
      Later fields (rounds and intervals, noise, index_bytes, library_bytes, build_params_used, ingest
      steps) are optional: files written before them load unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import stat
import tempfile
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar, Union

from annbench.atomic import atomic_path
from annbench.errors import AnnbenchError, ConfigError, EnvironmentFault, is_environment_fault, reason
from annbench.jsoncodec import json_default

SCHEMA = 1
STATUSES = ("ok", "failed", "timeout")
OPS = ("build", "insert", "delete", "update", "search", "rebuild", "maintain", "ingest")
_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class ResultError(AnnbenchError):
    """A result file is corrupt, of an unknown schema, or does not have the run record's shape."""


# -- the record ------------------------------------------------------------------------------------------
# Field order follows the files; a field with a default is optional in a file (absent stays absent on dump).
# `Any` marks a free-form part (adapter parameters, machine facts): any JSON, numbers still finite.

@dataclass
class Latency:
    """Single-query latency in milliseconds over every query (of every round: medians over rounds)."""

    n: int
    p50: float
    p95: float
    p99: float
    mean: float | None = None
    min: float | None = None
    max: float | None = None


@dataclass
class Interval95:
    """95 % bootstrap intervals, [lo, hi], of the latency figures."""

    p50: list[float]
    p95: list[float]
    p99: list[float]
    mean: list[float] | None = None


@dataclass
class NoiseThresholds:
    round_spread: float
    min_cpu_share: float


@dataclass
class Noise:
    """The noisy verdict of one timed step (annbench.timing.noise_verdict) and the figures it rests on."""

    noisy: bool
    reasons: list[str] = field(default_factory=list)
    p50_round_spread: float | None = None
    qps_round_spread: float | None = None
    min_cpu_share: float | None = None
    thresholds: NoiseThresholds | None = None


@dataclass
class Round:
    """One timing round of a search setting: its single-query loop and its batch call."""

    round: int
    p50_ms: float
    p99_ms: float
    qps: float
    mean_ms: float | None = None
    single_seconds: float | None = None
    single_cpu_share: float | None = None
    batch_calls: int | None = None
    batch_cpu_share: float | None = None
    load1: float | None = None


@dataclass
class LevelRound:
    """One round of a concurrency level."""

    qps: float
    p50_ms: float
    p99_ms: float
    cpu_utilisation: float | None = None
    free_cores: float | None = None
    load1: float | None = None


@dataclass
class LevelBatch:
    """The batch figure beside a concurrency level: one call with `library_threads` threads."""

    library_threads: int
    qps: float
    seconds_all: list[float] | None = None
    from_: str | None = None  # "from" in the file: where the figure was taken


@dataclass
class ClientLoad:
    """Client threads sending single queries for a while (a concurrency level, or searches under ingest)."""

    threads: int
    seconds: float
    queries: int
    qps: float
    latency_ms: Latency
    latency_ns: list[int] = field(default_factory=list)
    per_thread_queries: list[int] = field(default_factory=list)
    cpu_seconds: float | None = None
    cpu_utilisation: float | None = None
    free_cores: float | None = None
    load1: float | None = None
    qps_ci95: list[float] | None = None
    rounds: int | None = None
    per_round: list[LevelRound] = field(default_factory=list)
    batch: LevelBatch | None = None


@dataclass
class SnapshotSetting:
    params: dict[str, Any]
    recall: float
    recall_min: float | None = None
    leaks: int | None = None


@dataclass
class Snapshot:
    """Recall measured mid-ingestion against the live set of that moment."""

    applied: int
    live: int
    settings: list[SnapshotSetting]
    gt_seconds: float | None = None


@dataclass
class Guard:
    """How searches and writes were serialised during an ingest (the adapter's declared concurrency safety)."""

    family: str
    policy: str
    searches: str
    writes: str
    source: str | None = None


@dataclass
class SearchSetting:
    """One search setting at one search step: quality from the answers, cost from the timed rounds."""

    params: dict[str, Any]
    recall: float
    latency_ms: Latency
    qps: float
    recall_min: float | None = None
    recall_per_query_quantiles: dict[str, float] | None = None
    leaks: int | None = None
    queries_with_leaks: int | None = None
    hit_at_k: float | None = None
    p_at_k: float | None = None
    freshness: float | None = None
    freshness_sample: int | None = None
    batch_seconds: float | None = None
    batch_seconds_all: list[float] | None = None
    latency_ms_ci95: Interval95 | None = None
    qps_ci95: list[float] | None = None
    rounds: int | None = None
    per_round: list[Round] = field(default_factory=list)
    noise: Noise | None = None
    latency_ns: list[int] = field(default_factory=list)
    concurrency: list[ClientLoad] | None = None
    answers: list[list[int]] | None = None
    query_indices: list[int] | None = None

    @property
    def noisy(self) -> bool:
        return self.noise is not None and self.noise.noisy

    @property
    def p99_ci(self) -> list[float] | None:
        return self.latency_ms_ci95.p99 if self.latency_ms_ci95 is not None else None

    def _check(self, where: str) -> None:
        for name in ("recall", "recall_min", "hit_at_k", "p_at_k", "freshness"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ResultError(f"{where}.{name}: {value!r} is not in [0, 1]")


@dataclass
class Step:
    """One step of the op log as measured: a write, a build, a rebuild or upkeep call, a search, an ingest."""

    op: str
    day: int
    count: int
    live: int
    seconds: float
    vectors_per_s: float | None = None
    action: str | None = None  # a maintenance policy's upkeep call
    settings: list[SearchSetting] = field(default_factory=list)
    external_bytes: dict[str, int] | None = None  # a database's footprint outside the process, per step
    # an ingest: the day's writes applied at a set rate while clients search
    ops: dict[str, int] | None = None
    wall_seconds: float | None = None
    paused_seconds: float | None = None
    target_rate: float | None = None
    achieved_rate: float | None = None
    batch: int | None = None
    batches: int | None = None
    lock_wait_seconds: float | None = None
    guard: Guard | None = None
    params: dict[str, Any] | None = None
    search_threads: int | None = None
    under_ingest: ClientLoad | None = None
    at_rest: ClientLoad | None = None
    snapshots: list[Snapshot] | None = None

    def _check(self, where: str) -> None:
        if self.op not in OPS:
            raise ResultError(f"{where}.op: {self.op!r} is not one of {', '.join(OPS)}")
        if self.op == "search" and not self.settings:
            raise ResultError(f"{where}.settings: a search step without search settings")


@dataclass
class LibraryBytes:
    bytes: int
    what: str


@dataclass
class Memory:
    """The index's memory as measured in the run's process (annbench.memory), and its saved size."""

    index_bytes: int | None = None
    index_bytes_how: str | None = None
    index_bytes_note: str | None = None
    library_bytes: LibraryBytes | None = None
    rss_baseline_bytes: float | None = None
    rss_peak_bytes: float | None = None
    rss_steady_bytes: float | None = None
    index_rss_bytes: float | None = None
    saved_bytes: float | None = None
    saved_bytes_on_disk: int | None = None
    peak_is_build_only: bool | None = None
    index_bytes_last_day: int | None = None
    external_bytes: dict[str, int] | None = None
    note: str | None = None
    # an embedding transform's parts (annbench.transforms), inside index_bytes, reported apart: the fitted
    # PCA and the original vectors kept for re-ranking
    transform_bytes: int | None = None
    kept_vectors_bytes: int | None = None

    @property
    def own_bytes(self) -> float | None:
        """The index's own memory (annbench.memory), or the RSS delta a file written before it recorded."""
        return self.index_bytes if self.index_bytes is not None else self.index_rss_bytes


@dataclass
class ScenarioInfo:
    name: str
    hash: str
    k: int
    timeline: str
    path: str | None = None
    scale: float | None = None
    runbook: bool | None = None


@dataclass
class DatasetInfo:
    name: str
    hash: str
    n: int
    dim: int
    nq: int
    metric: str
    labels: bool
    source: str | None = None


@dataclass
class IndexInfo:
    family: str
    label: str
    build_params: dict[str, Any]
    search_grid: list[dict[str, Any]]
    policy: str
    rebuild_every: int | None = None
    size: int | None = None
    build_params_used: dict[str, Any] | None = None


@dataclass
class Threadpool:
    user_api: str | None = None
    internal_api: str | None = None
    num_threads: int | None = None
    version: str | None = None


@dataclass
class Measurements:
    """What a run's own process measured and sends back (annbench.replay's output): the part of a record
    only it knows. Decoded, so checked, when it arrives: a run that wrote a malformed one failed."""

    steps: list[Step] = field(default_factory=list)
    memory: Memory = field(default_factory=Memory)
    threadpools: list[Threadpool] = field(default_factory=list)
    build_params_used: dict[str, Any] | None = None


@dataclass
class Machine:
    """The machine that executed the run (empty for a run that never reported back)."""

    hostname: str | None = None
    cpu: str | None = None
    cores: int | None = None
    ram_bytes: int | None = None
    python: str | None = None
    platform: str | None = None


@dataclass
class RunRecord:
    """One run of one index configuration under one policy on one scenario: the whole result file."""

    schema: int
    annbench_version: str
    run_id: str
    started_at: str
    scenario: ScenarioInfo
    dataset: DatasetInfo
    index: IndexInfo
    threads: int
    status: str
    steps: list[Step]
    wall_seconds: float | None = None
    machine: Machine = field(default_factory=Machine)
    libraries: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    memory: Memory = field(default_factory=Memory)
    threadpools: list[Threadpool] = field(default_factory=list)
    # where the record was loaded from: never written
    path: Path | None = field(default=None, compare=False, metadata={"transient": True})

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def search_steps(self) -> list[Step]:
        return [s for s in self.steps if s.op == "search"]

    def _check(self, where: str) -> None:
        if self.status not in STATUSES:
            raise ResultError(f"{where}status: {self.status!r} is not one of {', '.join(STATUSES)}")


# -- the codec -------------------------------------------------------------------------------------------
R = TypeVar("R")
_ABSENT = "_absent"  # instance attribute: optional fields the file did not have (a dump leaves them out)
_EXTRA = "_extra"  # instance attribute: keys this version does not know (kept, written back)


def _json_name(f: dataclasses.Field) -> str:
    return f.name[:-1] if f.name.endswith("_") else f.name  # `from_` ↔ "from"


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


_HINTS: dict[type, dict[str, Any]] = {}


def _describe(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value).replace("nan", "NaN").replace("inf", "Infinity")
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    return f"{type(value).__name__} {value!r}"[:60]


def _free(value: Any, where: str) -> Any:
    """A free-form part: any JSON value, but every number in it finite."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ResultError(f"{where}: expected a finite number, got {_describe(value)}")
    if isinstance(value, dict):
        for key, item in value.items():
            _free(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _free(item, f"{where}[{i}]")
    return value


def _value(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return _free(value, where)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ResultError(f"{where}: expected a value, got null")
        (inner,) = [a for a in args if a is not type(None)]
        return _value(inner, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ResultError(f"{where}: expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ResultError(f"{where}: expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ResultError(f"{where}: expected a finite number, got {_describe(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ResultError(f"{where}: expected a string, got {_describe(value)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ResultError(f"{where}: expected a list, got {_describe(value)}")
        (item,) = typing.get_args(tp)
        # a list of plain integers (per-query latencies: a main job's 18 files hold 2 million) is checked in
        # one pass, not one call each (1.1 s of loading those files); anything else is checked item by item
        if item is int and set(map(type, value)) <= {int}:
            return list(value)
        return [_value(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ResultError(f"{where}: expected an object, got {_describe(value)}")
        _, item = typing.get_args(tp)
        return {k: _value(item, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _record(tp, value, where)
    raise TypeError(f"no codec for {tp!r}")  # a programming error in the record's declaration


def _record(cls: type[R], doc: Any, where: str) -> R:
    if not isinstance(doc, dict):
        raise ResultError(f"{where or 'the file'}: expected an object, got {_describe(doc)}")
    hints = _hints(cls)
    prefix = f"{where}." if where else ""
    kwargs, absent, known = {}, set(), set()
    for f in dataclasses.fields(cls):
        if f.metadata.get("transient"):
            continue
        key = _json_name(f)
        known.add(key)
        if key in doc:
            kwargs[f.name] = _value(hints[f.name], doc[key], prefix + key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ResultError(f"{prefix}{key}: missing field")
        else:
            absent.add(f.name)
    obj = cls(**kwargs)
    extra = {k: _free(v, prefix + k) for k, v in doc.items() if k not in known}
    object.__setattr__(obj, _ABSENT, frozenset(absent))
    object.__setattr__(obj, _EXTRA, extra)
    check = getattr(obj, "_check", None)
    if check is not None:
        check(where or "")
    return obj


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # a decoded object writes back the keys it was read with; one made by a writer leaves out its
        # optional fields that hold nothing (None), as a file written before they existed would
        absent = getattr(value, _ABSENT, None)
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.metadata.get("transient") or (f.name in absent if absent is not None else
                                                item is None and f.default is None):
                continue
            out[_json_name(f)] = _plain(item)
        out.update(getattr(value, _EXTRA, {}))
        return out
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def decode(cls: type[R], doc: Any, where: str) -> R:
    """Any of annbench's typed JSON documents (a dataclass declared like the run record's parts) from JSON,
    with the run record's checks; ResultError naming `where` and the field."""
    try:
        return _record(cls, doc, "")
    except ResultError as e:
        raise ResultError(f"{where}: {e}") from None


def encode(obj: Any) -> Any:
    """The JSON form of a typed document (what `decode` reads back)."""
    return _plain(obj)


def parse(doc: Any, where: str = "") -> RunRecord:
    """A JSON document as a `RunRecord` (migrating old schema versions); ResultError naming the field if not."""
    if not isinstance(doc, dict):
        raise ResultError(f"{where}: not a result object")
    version = doc.get("schema")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ResultError(f"{where}: schema: missing or not an integer")
    while version in _MIGRATIONS:
        doc = _MIGRATIONS[version](doc)
        version = doc["schema"]
    if version != SCHEMA:
        raise ResultError(f"{where}: unknown schema version {version} (this annbench reads {SCHEMA})")
    try:
        return _record(RunRecord, doc, "")
    except ResultError as e:
        raise ResultError(f"{where}: {e}" if where else str(e)) from None


def dump(record: RunRecord) -> dict[str, Any]:
    """The record as the JSON document it is written as (what `parse` reads back to an equal record)."""
    return encode(record)


def format_params(params: dict[str, Any], empty: str = "—", sep: str = ", ") -> str:
    """Parameters as a reader reads them (`nlist=1024, nprobe=8`); `empty` for none."""
    return sep.join(f"{k}={v}" for k, v in params.items()) if params else empty


def to_json(doc: Any) -> str:
    """The one JSON encoding of annbench's files: numpy scalars and arrays and paths as plain JSON, no NaN."""
    return json.dumps(doc, indent=1, allow_nan=False, default=json_default)


# -- files -----------------------------------------------------------------------------------------------
def result_path(out_dir: Path, scenario: str, run_id: str) -> Path:
    return Path(out_dir) / scenario / f"{run_id}.json"


def ensure_writable(out_dir: Path) -> None:
    """Fail early, before any run, when the results folder cannot be created or written: the machine's
    refusal (read-only, no permission, full) is an EnvironmentFault (exit 3), a path that cannot be a
    folder (under a file) a ConfigError (exit 2)."""
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".probe-", delete=True):
            pass
    except OSError as e:
        if is_environment_fault(e):  # the folder is named, not the probe file the machine refused
            raise EnvironmentFault(f"cannot write results: the folder is not writable ({out_dir}): {reason(e)}") \
                from None
        raise ConfigError(f"results folder {out_dir} is not writable ({e.strerror or e})") from None


def write(path: Path, record: RunRecord) -> None:
    """Write a record so that a reader sees either no file or the whole file, never a partial one."""
    data = to_json(dump(record))
    with atomic_path(path) as tmp:
        tmp.write_text(data, encoding="utf-8")


MAX_FILE_BYTES = 1 << 30  # a main-job result is ~1 MB; a reader refuses more than this instead of exhausting RAM


def load(path: Path) -> RunRecord:
    """Load and check one result file (a regular file of at most MAX_FILE_BYTES: a FIFO would block)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ResultError(f"{path}: not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise ResultError(f"{path}: {st.st_size:,} bytes, more than a result file's {MAX_FILE_BYTES:,}")
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ResultError(f"{path}: cannot read ({e})") from None
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        what = f"{e.msg} at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
        raise ResultError(f"{path}: corrupt JSON ({what})") from None
    record = parse(doc, str(path))
    record.path = Path(path)
    return record


def iter_files(results_dir: Path) -> Iterator[Path]:
    """Every `*.json` below `results_dir`, skipping temp files and dot-folders (caches); symlinked folders
    are not followed (a link loop or a link out of the folder would be read as results)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ConfigError(f"results folder {results_dir} does not exist")
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(folder) / f for f in files if f.endswith(".json") and not f.startswith(".")]
    yield from sorted(found)


@dataclass
class LoadReport:
    runs: list[RunRecord]
    bad: list[tuple[Path, str]]

    @property
    def bad_lines(self) -> list[str]:
        """One line per file that does not load (it names the file and the field), for a reader to print."""
        return [msg for _path, msg in self.bad]


def _outside(path: Path, root: Path) -> bool:
    """A symlink whose target lies outside the results folder: not one of this folder's results."""
    return path.is_symlink() and not path.resolve().is_relative_to(root.resolve())


def load_dir(results_dir: Path) -> LoadReport:
    """Load every valid result below `results_dir`; invalid ones are listed, not fatal.

    A second file of the same run (the same run id of the same workload: a copy under another name) is
    listed as a copy, so no reader ranks, draws or exports one run twice."""
    runs: list[RunRecord] = []
    bad: list[tuple[Path, str]] = []
    seen: dict[tuple[str, str, str], Path] = {}
    for path in iter_files(results_dir):
        if _outside(path, Path(results_dir)):
            bad.append((path, f"{path}: a symlink to a file outside {results_dir}; not read"))
            continue
        try:
            run = load(path)
        except ResultError as e:
            bad.append((path, str(e)))
            continue
        key = (run.scenario.hash, run.dataset.hash, run.run_id)
        if key in seen:
            bad.append((path, f"{path}: a copy of run {run.run_id} (also in {seen[key]}); read once"))
            continue
        seen[key] = path
        runs.append(run)
    return LoadReport(runs, bad)


# -- what only the executing machine knows ---------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    import psutil  # deferred: only the machine that executes a run needs it

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "hostname": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def library_versions(distributions: Iterable[str] = ()) -> dict[str, str]:
    """Installed versions of annbench, numpy, threadpoolctl and the given distributions (a family's
    `Adapter.distributions`), plus every installed adapter plugin's; one not installed is left out."""
    out = {}
    for dist in ("annbench", "numpy", "threadpoolctl", *distributions):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    for ep in metadata.entry_points(group="annbench.adapters"):  # third-party adapters (plugins)
        if ep.dist is not None:
            out.setdefault(ep.dist.name, ep.dist.version)
    return out
