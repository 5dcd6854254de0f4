"""Scenarios: a scenario file validated into a `Scenario` and its runs, before anything is built.

A scenario names its dataset, metric, k, queries, what happens over time (a timeline) and the index
configurations to compare, each a grid of build parameters × search parameters under one or more
update policies. `load_scenario` checks every key, value and adapter parameter (with the rules of
annbench.params), the catalog generator's parameters (annbench.catalog) and a timeline's runbook file
(annbench.runbook), so that a mistake is one line before the first index is built. The file itself is
read by annbench.yamlfiles; the steps a run replays are made from the validated scenario by
annbench.oplog, which also checks the timeline against the dataset (sizes, reserve of vectors, k against
the live set).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from annbench import adapters, catalog, transforms
from annbench.adapters.base import POLICIES, check_policy
from annbench.datasets import Holdout, has_queries
from annbench.errors import ConfigError, DataError
from annbench.params import check_value, cut, is_integer, shown, validate_params
from annbench.runbook import Runbook, read_runbook
from annbench.vectors import Metric
from annbench.workload import Concurrency, ConcurrentUpdates
from annbench.yamlfiles import FILE_KEYS, path_under, read_scenario_file

DELETE_RULES = ("oldest", "random", "product")
QUERY_RULES = ("drop", "keep")
#: the most combinations one index entry's `build` grid, or its `search` grid, may expand to. Each build
#: combination is a run of its own (a process that builds an index: seconds to minutes), each search one
#: a measurement at every search step; 10,000 of either is days of machine time, so a larger grid is a
#: typo (a range where a short list was meant), and is refused before it is expanded.
MAX_GRID = 10_000
#: the most runs (index configurations × policies × catalog sizes) one scenario may ask for, for the same reason
MAX_RUNS = 10_000
#: the longest error message load_scenario passes on (see load_scenario: the last guard of one readable line)
MAX_MESSAGE_CHARS = 500
DEFAULT_ROUNDS = 3  # `search.rounds`: three repeats give a median that one disturbed round cannot move
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")


# --- the validated model ---------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexConfig:
    """One index family with one set of build parameters, its search grid and policies."""

    family: str
    build: dict[str, Any]
    search: list[dict[str, Any]]
    policies: tuple[str, ...]
    label: str  # the name a user passes to --indexes
    timeout_s: float | None = None  # this index's time limit per run; None: the scenario's

    def key(self) -> str:
        """A short stable name for files: family + a hash of the build params."""
        digest = hashlib.sha256(json.dumps(self.build, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.family}-{digest}"


@dataclass(frozen=True)
class Timeline:
    kind: str  # "daily" or "static"
    initial_fraction: float = 1.0
    days: int = 0
    insert_fraction: float = 0.0
    delete_fraction: float = 0.0
    update_fraction: float = 0.0
    delete_rule: str = "oldest"
    sizes: tuple[int, ...] = ()  # static: catalog sizes, one run each
    concurrent_updates: ConcurrentUpdates | None = None  # daily only
    runbook: Runbook | None = None  # a big-ann runbook replayed as this daily timeline


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    path: str
    dataset: dict[str, Any]  # {"name": "catalog", "params": {...}} or {"path": ..., "queries": ..., ...}
    metric: Metric | None
    k: int
    n_queries: int | None
    query_rule: str
    timeline: Timeline
    rebuild_every: int
    threads: int
    timeout_s: float
    seed: int
    warmup: bool
    keep_answers: bool
    indexes: tuple[IndexConfig, ...]
    scale: float = 1.0
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    concurrency: Concurrency | None = None  # `search.concurrency`: None when not asked for
    rounds: int = DEFAULT_ROUNDS  # `search.rounds`: repeats of every timed search measurement (annbench.timing)
    maintain_every: int = 1  # days between a maintenance policy's upkeep calls

    def content_hash(self) -> str:
        """Hash of the validated workload: dataset, metric, k, queries, timeline, seed, threads, scale.

        The index grid is left out on purpose: each run records its own index configuration, so adding
        an index or selecting some with --indexes does not invalidate the others, and the CI gate can
        compare a configuration across scenario edits that leave the workload alone.
        """
        payload = {key: val for key, val in self.raw.items() if key not in ("indexes", "description", "policies")}
        payload["_scale"] = self.scale
        # Where the files are is not part of the workload (the dataset's content hash is recorded apart),
        # and a path resolved against the scenario's folder changed with how the scenario was named
        # (tiny.yaml vs /abs/tiny.yaml), so a resumed sweep redid and overwrote finished runs.
        if isinstance(payload.get("dataset"), Mapping):
            payload["dataset"] = {k: v for k, v in payload["dataset"].items() if k not in FILE_KEYS}
        payload["_dataset"] = {k: v for k, v in self.dataset.items() if k not in FILE_KEYS}
        if self.timeline.runbook is not None:  # the runbook's content is the workload, not where it lies
            payload["timeline"] = {k: v for k, v in payload["timeline"].items() if k != "path"}
            payload["_runbook"] = self.timeline.runbook.sha256
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def sizes(self) -> list[int | None]:
        """The catalog sizes this scenario builds at (None: the whole dataset; one run each)."""
        return list(self.timeline.sizes) or [None]

    def runs(self) -> Iterator[RunSpec]:
        for cfg in self.indexes:
            for policy in cfg.policies:
                for size in self.sizes():
                    yield RunSpec(self.name, cfg, policy, size)


@dataclass(frozen=True)
class RunSpec:
    """One run: scenario × index configuration (family + build params) × policy × catalog size."""

    scenario: str
    index: IndexConfig
    policy: str
    size: int | None

    @property
    def run_id(self) -> str:
        tail = f"-n{self.size}" if self.size is not None else ""
        return f"{self.index.key()}-{self.policy}{tail}"


# --- validation helpers -----------------------------------------------------------------------------
class _Section:
    """Typed access to one mapping of the YAML, with errors that name the file and the key path."""

    def __init__(self, data: Any, where: str, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: {where or 'top level'} must be a mapping, got {type(data).__name__}")
        self.data, self.where, self.path = dict(data), where, path
        self.used: set[str] = set()

    def _key(self, key: str) -> str:
        key = cut(str(key), 60)  # an unknown key is the user's text, of any length
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self._key(key)} {msg}")

    def get(self, key: str, typ: type | tuple[type, ...], default: Any = ..., *, lo: float | None = None,
            hi: float | None = None, choices: tuple[Any, ...] | None = None) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "is required")
            return default
        return check_value(self.data[key], typ, f"{self.path}: {self._key(key)}", lo=lo, hi=hi, choices=choices)

    def section(self, key: str, default: Any = ...) -> _Section:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "is required")
            return _Section(default, self._key(key), self.path)
        return _Section(self.data[key], self._key(key), self.path)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used, key=str)
        if unknown:
            raise self.fail(str(unknown[0]), f"is not a known key; known here: {', '.join(sorted(self.used))}")


def _grid(value: Any, where: str, path: str) -> list[dict[str, Any]]:
    """Expand `{a: [1, 2], b: 3}` or a list of such mappings into the list of every combination.

    The number of combinations is counted before any is made, and more than MAX_GRID is refused: a grid
    of four 100-value lists is 10^8 combinations, which took minutes and gigabytes to expand before the
    first parameter was even checked.
    """
    items = value if isinstance(value, list) else [value]
    total = 0
    for item in items:
        if item is None:
            continue
        if not isinstance(item, Mapping):
            raise ConfigError(f"{path}: {where} must be a mapping or a list of mappings, got {shown(item)}")
        names = [k for k in item if not isinstance(k, str)]
        if names:
            raise ConfigError(f"{path}: {where} has the parameter name {shown(names[0])}; parameter names are strings")
        total += math.prod(len(v) if isinstance(v, list) else 1 for v in item.values())
    if total > MAX_GRID:
        raise ConfigError(f"{path}: {where} expands to {total:,} combinations (the product of its value lists); "
                          f"at most {MAX_GRID:,} are allowed: list fewer values")
    out: list[dict[str, Any]] = []
    for item in items:
        item = item or {}
        keys = list(item)
        values = [v if isinstance(v, list) else [v] for v in item.values()]
        for combo in itertools.product(*values):
            out.append(dict(zip(keys, combo, strict=True)))
    return out or [{}]


def resolve_scenario_path(spec: str, configs_dir: Path) -> Path:
    """A scenario is a name in `configs_dir` (no path separators, no '..') or a path to a YAML file."""
    if spec.endswith((".yaml", ".yml")) or "/" in spec or "\\" in spec:
        path = Path(spec)
        if path.is_dir():
            raise ConfigError(f"scenario file {shown(spec, 200)} is a directory; give a YAML file")
        if not path.is_file():
            raise ConfigError(f"scenario file {shown(spec, 200)} does not exist")
        return path
    if not _NAME_RE.match(spec) or ".." in spec:
        raise ConfigError(f"scenario name {shown(spec)} is not a plain name (letters, digits, _ . -); "
                          "give a path instead")
    path = configs_dir / f"{spec}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in configs_dir.glob("*.yaml")) if configs_dir.is_dir() else []
        raise ConfigError(f"no scenario named {shown(spec)} in {configs_dir}; known: {', '.join(known) or '(none)'}")
    return path


def load_scenario(path: Path, *, scale: float = 1.0, dataset_path: str | None = None,
                  indexes: list[str] | None = None, queries_path: str | None = None,
                  holdout_queries: int | None = None) -> Scenario:
    """Validate a scenario file into a `Scenario`; every mistake is one ConfigError line.

    `dataset_path` replaces the scenario's dataset file (run --dataset); `queries_path` (run --queries)
    gives that file's queries, or `holdout_queries` (run --holdout-queries) takes that many base vectors
    out of it as the queries (annbench.datasets.Holdout). Both win over the scenario's dataset.queries
    and dataset.holdout_queries.
    """
    try:
        return _load_scenario(path, scale, dataset_path, indexes, queries_path, holdout_queries)
    except (ConfigError, DataError) as e:
        text = str(e)
        if len(text) <= MAX_MESSAGE_CHARS:
            raise
        # the last guard of one readable line: messages from below (an adapter's, a runbook's) that quote
        # what the user wrote are cut here, whatever they quote
        cut = text[: MAX_MESSAGE_CHARS - 1] + "…"
        raise (ConfigError(cut) if isinstance(e, ConfigError) else DataError(cut)) from None


def _load_scenario(path: Path, scale: float, dataset_path: str | None, indexes: list[str] | None,
                   queries_path: str | None, holdout_queries: int | None) -> Scenario:
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ConfigError(f"--scale must be a positive number, got {shown(scale)}")
    p = str(path)
    raw = read_scenario_file(Path(path))
    top = _Section(raw, "", p)
    name = top.get("name", str, Path(path).stem)
    if not _NAME_RE.match(name):
        raise top.fail("name", f"{shown(name)} must be letters, digits, _ . - (it becomes a folder name)")
    description = top.get("description", str, "")
    metric_name = top.get("metric", str, None)
    try:
        metric = None if metric_name is None else Metric.parse(metric_name)  # None: what the dataset declares
    except ConfigError as e:
        raise ConfigError(f"{p}: metric: {e}") from None
    k = top.get("k", int, 10, lo=1, hi=10_000)
    seed = top.get("seed", int, 0, lo=0)
    threads = top.get("threads", int, 1, lo=1, hi=256)
    timeout_s = top.get("timeout_s", float, 600.0, lo=1.0)
    warmup = top.get("warmup", bool, True)
    keep_answers = top.get("keep_answers", bool, False)

    ds_sec = top.section("dataset", {"name": "catalog"})
    dataset = _dataset_section(ds_sec, scale, dataset_path, Path(path).parent, queries_path, holdout_queries)

    q_sec = top.section("queries", {})
    n_queries = q_sec.get("count", int, None, lo=1) if "count" in q_sec.data else None
    query_rule = q_sec.get("deleted_products", str, "drop", choices=QUERY_RULES)
    q_sec.finish()

    timeline = _timeline_section(top.section("timeline", {"kind": "static"}), scale)
    concurrency, rounds = _search_section(top.section("search", {}), timeline)
    rebuild_every = top.get("rebuild_every", int, 3, lo=1)
    maintain_every = top.get("maintain_every", int, 1, lo=1)
    default_policies = _policies(top.get("policies", list, ["native"]), "policies", p)
    static = timeline.kind == "static"  # nothing changes after build: every policy is the same run

    idx_list = top.get("indexes", list)
    if not idx_list:
        raise top.fail("indexes", "must list at least one index configuration")
    configs = _index_configs(idx_list, default_policies, p, static)
    n_runs = sum(len(c.policies) for c in configs) * max(1, len(timeline.sizes))
    if n_runs > MAX_RUNS:
        raise top.fail("indexes", f"ask for {n_runs:,} runs (build configurations × policies × catalog sizes); "
                                  f"at most {MAX_RUNS:,} are allowed: list fewer values")
    if indexes:
        wanted = set(indexes)
        known = {c.label for c in configs} | {c.family for c in configs} | {c.label.split("[")[0] for c in configs}
        missing = sorted(wanted - known)
        if missing:
            raise ConfigError(f"--indexes: {shown(missing[0])} is not in {p}; known: "
                              f"{cut(', '.join(sorted(known)), 300)}")
        configs = [c for c in configs if {c.label, c.family, c.label.split("[")[0]} & wanted]
    top.finish()

    return Scenario(name, description, p, dataset, metric, k, n_queries, query_rule, timeline, rebuild_every,
                    threads, timeout_s, seed, warmup, keep_answers, tuple(configs), float(scale), raw,
                    concurrency=concurrency, maintain_every=maintain_every, rounds=rounds)


def _dataset_section(sec: _Section, scale: float, override: str | None, base_dir: Path,
                     queries_path: str | None = None, holdout: int | None = None) -> dict[str, Any]:
    # the expected dimension belongs to the scenario (index parameters such as PQ sizes depend on it),
    # so it still applies when --dataset swaps the file; so does how queries are made when the file has
    # none (holdout_queries), unless the command line says otherwise
    dim = sec.get("dim", int, None, lo=1) if "dim" in sec.data else None
    own_holdout = sec.get("holdout_queries", int, None, lo=1) if "holdout_queries" in sec.data else None
    if queries_path is not None and holdout is not None:
        raise ConfigError("give --queries FILE or --holdout-queries N, not both: the queries come from one place")
    if holdout is not None:
        holdout = check_value(holdout, int, "--holdout-queries", lo=1)
    if override is not None:
        sec = _Section({"path": override, **({"holdout_queries": own_holdout} if own_holdout else {})},
                       sec.where, sec.path)
        base_dir = Path(".")
    if "path" in sec.data:
        raw_path = sec.get("path", str)
        out: dict[str, Any] = {"path": str(path_under(raw_path, base_dir))}
        for key in ("queries", "labels", "query_labels"):
            if key in sec.data:
                out[key] = str(path_under(sec.get(key, str), base_dir))
        sec.used.add("holdout_queries")
        if own_holdout is not None and "queries" in out:
            raise sec.fail("holdout_queries", "and dataset.queries are both set; the queries come either from "
                                              "a file or from held-out base vectors: remove one")
        if queries_path is not None or holdout is not None:  # the command line wins over the scenario's keys
            out.pop("queries", None)
            own_holdout = None
        if queries_path is not None:
            out["queries"] = str(path_under(queries_path, Path(".")))
        held = holdout if holdout is not None else own_holdout
        if held is not None:
            # harness hands `queries` to open_dataset as is; `holdout_queries` puts the count in the
            # workload's hash (a scenario that does not hold out keeps its hash)
            out["queries"] = Holdout(held)
            out["holdout_queries"] = held
        elif "queries" not in out and has_queries(Path(out["path"])) is False:
            raise ConfigError(f"{sec.path}: dataset {shown(out['path'], 200)} has no queries; give a queries file "
                              "(annbench run --queries FILE, or dataset.queries) or hold out base vectors as "
                              "queries (annbench run --holdout-queries N, or dataset.holdout_queries: N)")
        out["scale"] = scale
        if dim is not None:
            out["dim"] = dim
        sec.finish()
        return out
    if queries_path is not None or holdout is not None:
        which = "--queries" if queries_path is not None else "--holdout-queries"
        raise ConfigError(f"{which} needs a dataset file (the scenario's dataset.path, or --dataset PATH); "
                          "the catalog generator makes its own queries (dataset.params.n_queries)")
    if "holdout_queries" in sec.data:
        raise sec.fail("holdout_queries", "needs dataset.path (a file of your embeddings); the catalog generator "
                                          "makes its own queries (dataset.params.n_queries)")
    name = sec.get("name", str, "catalog", choices=("catalog",))
    params = dict(sec.section("params", {}).data)
    sec.used.add("params")
    sec.finish()
    # every rule of the generator's parameters, checked now rather than when the data are generated;
    # `params` keeps the values as written (the workload hash covers them)
    values = catalog.check_params(params, f"{sec.path}: dataset.params")
    made = values["dim"]
    if dim is not None and made != dim:
        # the generator's dimension is known without generating anything: check it here
        raise sec.fail("dim", f"is {dim} but the catalog generator makes {made}-dim vectors "
                              f"(dataset.params.dim); make them equal")
    n = values["n"] * scale
    if n * made * 4 > _ram_bytes():
        # a typo (n: 1e12) would otherwise end in a MemoryError deep inside the generator
        raise ConfigError(f"{sec.path}: dataset.params n={n:.0f} × dim={made} needs {n * made * 4 / 2**30:.0f} GiB "
                          f"of float32, more than this machine's {_ram_bytes() / 2**30:.0f} GiB of RAM")
    if "n" in params:
        params["n"] = max(1, int(round(params["n"] * scale)))
    elif scale != 1.0:
        params["scale"] = scale
    out = {"name": name, "params": params}
    if dim is not None:
        out["dim"] = dim
    return out


def check_dataset_dim(sc: Scenario, dim: int, source: str) -> None:
    """Refuse a dataset whose dimension is not the scenario's `dataset.dim` (when it declares one).

    Call it right after opening the dataset, before anything is materialised or built.
    """
    expected = sc.dataset.get("dim")
    if expected is not None and int(dim) != int(expected):
        raise ConfigError(f"{sc.path}: dataset.dim is {expected} but {source} holds {dim}-dim vectors; "
                          "use embeddings of that dimension or change dataset.dim")
    for ix in sc.indexes:
        if transforms.KEY in ix.build:
            transforms.check_dim(ix.build[transforms.KEY], int(dim), f"{sc.path}: index {ix.label} ({source})")


def _ram_bytes() -> int:
    return int(psutil.virtual_memory().total)


def _timeline_section(sec: _Section, scale: float) -> Timeline:
    kind = sec.get("kind", str, "static", choices=("static", "daily", "runbook"))
    if kind == "runbook":  # a big-ann-benchmarks streaming runbook (annbench.runbook)
        return _runbook_section(sec)
    if kind == "static":
        if "concurrent_updates" in sec.data:
            raise sec.fail("concurrent_updates", "needs timeline.kind: daily (a static timeline has no updates)")
        sizes = sec.get("sizes", list, [])
        out = []
        for s in sizes:
            if not is_integer(s) or s < 1:
                raise sec.fail("sizes", f"must list positive integers, got {shown(s)}")
            out.append(max(1, int(round(s * scale))))
        sec.finish()
        return Timeline("static", sizes=tuple(out))
    tl = Timeline(
        "daily",
        initial_fraction=sec.get("initial_fraction", float, 0.8, lo=1e-6, hi=1.0),
        days=sec.get("days", int, 7, lo=1, hi=10_000),
        insert_fraction=sec.get("insert_fraction", float, 0.02, lo=0.0, hi=10.0),
        delete_fraction=sec.get("delete_fraction", float, 0.02, lo=0.0, hi=1.0),
        update_fraction=sec.get("update_fraction", float, 0.01, lo=0.0, hi=1.0),
        delete_rule=sec.get("delete_rule", str, "oldest", choices=DELETE_RULES),
    )
    if "concurrent_updates" in sec.data:
        cu = _concurrent_updates_section(sec.section("concurrent_updates"), tl.days)
        tl = dataclasses.replace(tl, concurrent_updates=cu)
    sec.finish()
    return tl


def _runbook_section(sec: _Section) -> Timeline:
    """`timeline: {kind: runbook, path, dataset}` → its Timeline, the runbook read and checked now.

    The checks that need the dataset (row ranges, k against the live set) run when the op log is made.
    """
    raw = sec.get("path", str)
    path = path_under(raw, Path(sec.path).parent)
    key = sec.get("dataset", str, None)
    sec.finish()
    if not path.is_file():
        raise sec.fail("path", f"{shown(raw, 200)}: no such runbook file")
    rb = read_runbook(path, key)
    # kind stays "daily" for everything downstream: a runbook is an update timeline whose days are steps
    return Timeline("daily", days=len(rb.steps), runbook=rb)


def _int_list(sec: _Section, key: str, lo: int, hi: int, default: Any = ...) -> tuple[int, ...] | None:
    """A non-empty list of distinct integers in [lo, hi], in the order given (`default` when absent)."""
    if key not in sec.data and default is not ...:
        sec.used.add(key)
        return default
    items = sec.get(key, list)
    if not items:
        raise sec.fail(key, "must list at least one value")
    for v in items:
        if not is_integer(v) or not lo <= v <= hi:
            raise sec.fail(key, f"must list integers from {lo} to {hi}, got {shown(v)}")
    if len(set(items)) != len(items):
        raise sec.fail(key, f"lists a value twice: {shown(items)}")
    return tuple(items)


def _search_section(sec: _Section, tl: Timeline) -> tuple[Concurrency | None, int]:
    """`search:` — how search steps are measured: rounds of every timing, and concurrency levels."""
    last_day = tl.days if tl.kind == "daily" else 0
    rounds = sec.get("rounds", int, DEFAULT_ROUNDS, lo=1, hi=100)
    levels = _int_list(sec, "concurrency", 1, 256, None)
    seconds = sec.get("concurrency_seconds", float, 1.0, lo=0.01, hi=3600.0)
    days = _int_list(sec, "concurrency_days", 0, last_day, None)
    sec.finish()
    if levels is None:
        if "concurrency_seconds" in sec.data or "concurrency_days" in sec.data:
            raise sec.fail("concurrency", "is required when concurrency_seconds or concurrency_days is set")
        return None, rounds
    return Concurrency(levels, float(seconds), days), rounds


def _concurrent_updates_section(sec: _Section, days: int) -> ConcurrentUpdates:
    rate = sec.get("rate", float, lo=1e-3, hi=1e9)
    cu = ConcurrentUpdates(
        rate=rate,
        threads=sec.get("threads", int, 2, lo=1, hi=256),
        # ~50 write calls a second: small enough that the rate is smooth, large enough not to be all overhead
        batch=sec.get("batch", int, max(1, int(round(rate / 50))), lo=1, hi=10_000_000),
        snapshots=sec.get("snapshots", int, 2, lo=0, hi=100),
        at_rest_seconds=sec.get("at_rest_seconds", float, 0.5, lo=0.01, hi=3600.0),
        days=_int_list(sec, "days", 1, days, None),
    )
    sec.finish()
    return cu


def _policies(value: Any, where: str, path: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    for v in items:
        # a generic policy, or a maintenance call some adapter declares (checked per family later)
        if not isinstance(v, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", v):
            raise ConfigError(f"{path}: {where} has {shown(v)}; allowed: {', '.join(POLICIES)}, or a maintenance "
                              "policy of the index (annbench list)")
    if not items:
        raise ConfigError(f"{path}: {where} must name at least one policy")
    return tuple(dict.fromkeys(items))


def _index_configs(items: list[Any], default_policies: tuple[str, ...], path: str,
                   static: bool) -> list[IndexConfig]:
    configs: list[IndexConfig] = []
    for i, item in enumerate(items):
        sec = _Section(item, f"indexes[{i}]", path)
        family = sec.get("family", str)
        try:
            cls = adapters.get(family)
        except ConfigError as e:
            raise ConfigError(f"{path}: indexes[{i}].family: {e}") from None
        except ImportError as e:  # a known family whose library is not installed here
            raise ConfigError(f"{path}: indexes[{i}].family: {shown(family)} needs a library that is not installed "
                              f"({e.__class__.__name__}: {e}); install it or remove this index") from None
        label = sec.get("name", str, family)
        policies = _policies(sec.get("policies", (list, str), list(default_policies)),
                             f"indexes[{i}].policies", path)
        builds = _grid(sec.get("build", (dict, list), {}), f"indexes[{i}].build", path)
        searches = _grid(sec.get("search", (dict, list), {}), f"indexes[{i}].search", path)
        # PCA, normalisation, stored precision and re-ranking: swept like build parameters (annbench.transforms)
        given_transform = sec.get("transform", (dict, list), None)
        shaping = _grid(given_transform, f"indexes[{i}].transform", path) if given_transform is not None else [None]
        # a database answers in milliseconds where a library takes microseconds: its runs need longer
        timeout_s = sec.get("timeout_s", float, None, lo=1.0)
        sec.finish()
        searches = [validate_params(cls.search_params, s, f"{path}: indexes[{i}] ({family})", "search")
                    for s in searches]
        if static:
            policies = ("native",)
        for policy in policies:
            try:
                check_policy(cls.capabilities, policy, family, static, cls.maintenance)
            except ConfigError as e:
                raise ConfigError(f"{path}: indexes[{i}].policies: {e}") from None
        owner = f"{path}: indexes[{i}] ({family})"
        for b in builds:
            full = validate_params(cls.build_params, b, owner, "build")
            for t in shaping:
                with_t = full if t is None else {**full, transforms.KEY: transforms.check(t, cls, b, owner)}
                # a build or transform grid gives each build its own name, so reports and --indexes can tell
                # them apart
                given = {**(b if len(builds) > 1 else {}), **(t if t is not None and len(shaping) > 1 else {})}
                name = label + ("[" + ",".join(f"{k}={v}" for k, v in given.items()) + "]" if given else "")
                configs.append(IndexConfig(family, with_t, searches, policies, name, timeout_s))
        if len(configs) > MAX_RUNS:  # every configuration is at least one run: stop before making more
            raise ConfigError(f"{path}: indexes expand to more than {MAX_RUNS:,} build configurations (each one "
                              "a run); at most that many are allowed: list fewer values")
    return configs
