"""Scenarios: a YAML file validated into runs and a deterministic op log, before anything is built.

A scenario names its dataset, metric, k, queries, what happens over time (a timeline) and the index
configurations to compare, each a grid of build parameters × search parameters under one or more
update policies. `load_scenario` checks every key, value and adapter parameter and simulates the
whole timeline (sizes, reserve of vectors, k against the live set) so that a mistake is one line
before the first index is built. `op_log` turns a validated scenario plus its dataset into the list
of build / insert / delete / update / search steps every run replays; it is a pure function of the
scenario, the dataset and the seed, so a run's subprocess recomputes it instead of receiving it.

Ids and their meaning: every vector lives at a row of the dataset's base array (the pool). An id is
the dataset's id of the row it was first inserted with; an update re-points an existing id to a fresh
reserve row (the listing's new photo), and with labels the id takes that row's product.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from annbench import adapters
from annbench.adapters.base import Metric, Support, validate_params
from annbench.errors import ConfigError

POLICIES = ("native", "tombstone", "rebuild")
DELETE_RULES = ("oldest", "random", "product")
QUERY_RULES = ("drop", "keep")
DEFAULT_ROUNDS = 3  # `search.rounds`: three repeats give a median that one disturbed round cannot move
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")
_FILE_KEYS = ("path", "queries", "labels", "query_labels")  # dataset keys naming files, not content


# --- YAML loading that refuses duplicate keys ------------------------------------------------------
# what PyYAML's safe constructors raise on a bad tagged scalar (`!!int abc`, `!!int `, `!!bool x`,
# `!!timestamp 2001-13-45`, `!!map [1]`) instead of a YAMLError
_CONSTRUCTOR_ERRORS = (ValueError, TypeError, IndexError, KeyError, OverflowError)


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except _CONSTRUCTOR_ERRORS as e:
            what = repr(node.value)[:40] if isinstance(node, yaml.ScalarNode) else f"a {node.id}"
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise yaml.constructor.ConstructorError(
                None, None, f"{tag} cannot be made from {what} ({e.__class__.__name__}: {e})", node.start_mark
            ) from None


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:  # `? [a, b]: c` is valid YAML, but no scenario key is a list or a mapping
            raise ConfigError(f"a mapping key at line {key_node.start_mark.line + 1} is a {type(key).__name__}; "
                              "keys must be plain names") from None
        if key in seen:
            raise ConfigError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file safely; any problem is one ConfigError line naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read scenario file ({e.__class__.__name__}: {e})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {' '.join(str(problem).split())}") from None
    except RecursionError:
        raise ConfigError(f"{path}: malformed YAML: nested too deeply") from None
    except _CONSTRUCTOR_ERRORS as e:  # raised outside construct_object, e.g. by a collection's constructor
        raise ConfigError(f"{path}: malformed YAML: {e.__class__.__name__}: {' '.join(str(e).split())}") from None


def read_scenario_file(path: Path) -> dict[str, Any]:
    """A scenario file's top-level mapping, with `extends: PARENT` resolved.

    A scenario that extends another takes every top-level key of its parent (and the parent's parent)
    that it does not set itself; a key it sets replaces the parent's whole value (`indexes` too), so
    what runs is read off two short files, never merged deeply. PARENT is a path relative to the file, or
    a scenario name in the same folder. The parent's relative file paths (dataset files, a runbook) are
    made absolute against the parent's folder, so they mean what they meant there.
    """
    chain: list[Path] = []
    merged: dict[str, Any] = {}
    at = Path(path)
    while True:
        raw = read_yaml(at)
        if not isinstance(raw, dict):
            raise ConfigError(f"{at}: top level must be a mapping, got {type(raw).__name__}")
        chain.append(at.resolve())
        if chain[0] != chain[-1]:
            raw = absolute_paths(raw, at.parent)
        parent = raw.pop("extends", None)
        merged = {**raw, **merged}
        if parent is None:
            return merged
        if not isinstance(parent, str) or not parent:
            raise ConfigError(f"{at}: extends must name a scenario file or a scenario in the same folder, "
                              f"got {parent!r}")
        nxt = at.parent / (parent if parent.endswith((".yaml", ".yml")) else f"{parent}.yaml")
        if not nxt.is_file():
            raise ConfigError(f"{at}: extends {parent!r}, but {nxt} is not a scenario file")
        if nxt.resolve() in chain:
            raise ConfigError(f"{at}: extends {parent!r}, which extends it back (a loop)")
        at = nxt


def absolute_paths(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """A copy of a scenario's top-level mapping whose relative file paths are resolved against base_dir."""
    out = dict(raw)
    for key, fields in (("dataset", _FILE_KEYS), ("timeline", ("path",))):
        sec = out.get(key)
        if isinstance(sec, dict):
            out[key] = {k: str(_rel(v, base_dir).resolve()) if k in fields and isinstance(v, str) else v
                        for k, v in sec.items()}
    return out


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
class Concurrency:
    """`search.concurrency*`: search steps also measured with T client threads issuing single queries."""

    levels: tuple[int, ...]  # client thread counts, e.g. (1, 2, 4)
    seconds: float  # how long each level runs, per search setting
    days: tuple[int, ...] | None = None  # the search steps (days) measured; None: every one

    def applies(self, day: int) -> bool:
        return self.days is None or day in self.days


@dataclass(frozen=True)
class ConcurrentUpdates:
    """`timeline.concurrent_updates`: a day's deletes, inserts and updates applied by one writer thread at a
    target rate while `threads` clients search (see annbench.concurrency)."""

    rate: float  # target vectors per second (deleted, inserted and updated items all count)
    threads: int  # client threads searching while the writer writes
    batch: int  # items per write call
    snapshots: int  # recall snapshots per day, taken with the writer paused between batches
    at_rest_seconds: float  # the same search load measured after the day's writes, for comparison
    days: tuple[int, ...] | None = None  # days applied this way; None: every day

    def applies(self, day: int) -> bool:
        return self.days is None or day in self.days


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
    runbook: Any = None  # a big-ann runbook (annbench.runbook.Runbook) replayed as this daily timeline


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
            payload["dataset"] = {k: v for k, v in payload["dataset"].items() if k not in _FILE_KEYS}
        payload["_dataset"] = {k: v for k, v in self.dataset.items() if k not in _FILE_KEYS}
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
        value = self.data[key]
        ok = isinstance(value, typ) and not (isinstance(value, bool) and bool not in _as_tuple(typ))
        if float in _as_tuple(typ) and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            names = "/".join(t.__name__ for t in _as_tuple(typ))
            raise self.fail(key, f"must be {names}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(key, f"must be a finite number, got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(key, f"is {value!r}; allowed: {', '.join(map(str, choices))}")
        if lo is not None and value < lo:
            raise self.fail(key, f"is {value!r}; must be ≥ {lo}")
        if hi is not None and value > hi:
            raise self.fail(key, f"is {value!r}; must be ≤ {hi}")
        return value

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


def _as_tuple(t: type | tuple[type, ...]) -> tuple[type, ...]:
    return t if isinstance(t, tuple) else (t,)


def _grid(value: Any, where: str, path: str) -> list[dict[str, Any]]:
    """Expand `{a: [1, 2], b: 3}` or a list of such mappings into the list of every combination."""
    items = value if isinstance(value, list) else [value]
    out: list[dict[str, Any]] = []
    for item in items:
        if item is None:
            item = {}
        if not isinstance(item, Mapping):
            raise ConfigError(f"{path}: {where} must be a mapping or a list of mappings, got {item!r}")
        names = [k for k in item if not isinstance(k, str)]
        if names:
            raise ConfigError(f"{path}: {where} has the parameter name {names[0]!r}; parameter names are strings")
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
            raise ConfigError(f"scenario file {spec!r} is a directory; give a YAML file")
        if not path.is_file():
            raise ConfigError(f"scenario file {spec!r} does not exist")
        return path
    if not _NAME_RE.match(spec) or ".." in spec:
        raise ConfigError(f"scenario name {spec!r} is not a plain name (letters, digits, _ . -); give a path instead")
    path = configs_dir / f"{spec}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in configs_dir.glob("*.yaml")) if configs_dir.is_dir() else []
        raise ConfigError(f"no scenario named {spec!r} in {configs_dir}; known: {', '.join(known) or '(none)'}")
    return path


def load_scenario(path: Path, *, scale: float = 1.0, dataset_path: str | None = None,
                  indexes: list[str] | None = None) -> Scenario:
    """Validate a scenario file into a `Scenario`; every mistake is one ConfigError line."""
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ConfigError(f"--scale must be a positive number, got {scale!r}")
    p = str(path)
    raw = read_scenario_file(Path(path))
    top = _Section(raw, "", p)
    name = top.get("name", str, Path(path).stem)
    if not _NAME_RE.match(name):
        raise top.fail("name", f"{name!r} must be letters, digits, _ . - (it becomes a folder name)")
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
    dataset = _dataset_section(ds_sec, scale, dataset_path, Path(path).parent)

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
    if indexes:
        wanted = set(indexes)
        known = {c.label for c in configs} | {c.family for c in configs} | {c.label.split("[")[0] for c in configs}
        missing = sorted(wanted - known)
        if missing:
            raise ConfigError(f"--indexes: {missing[0]!r} is not in {p}; known: {', '.join(sorted(known))}")
        configs = [c for c in configs if {c.label, c.family, c.label.split("[")[0]} & wanted]
    top.finish()

    return Scenario(name, description, p, dataset, metric, k, n_queries, query_rule, timeline, rebuild_every,
                    threads, timeout_s, seed, warmup, keep_answers, tuple(configs), float(scale), raw,
                    concurrency=concurrency, maintain_every=maintain_every, rounds=rounds)


def _dataset_section(sec: _Section, scale: float, override: str | None, base_dir: Path) -> dict[str, Any]:
    # the expected dimension belongs to the scenario (index parameters such as PQ sizes depend on it),
    # so it still applies when --dataset swaps the file
    dim = sec.get("dim", int, None, lo=1) if "dim" in sec.data else None
    if override is not None:
        sec = _Section({"path": override}, sec.where, sec.path)
        base_dir = Path(".")
    if "path" in sec.data:
        raw_path = sec.get("path", str)
        out: dict[str, Any] = {"path": str(_rel(raw_path, base_dir))}
        for key in ("queries", "labels", "query_labels"):
            if key in sec.data:
                out[key] = str(_rel(sec.get(key, str), base_dir))
        out["scale"] = scale
        if dim is not None:
            out["dim"] = dim
        sec.finish()
        return out
    name = sec.get("name", str, "catalog", choices=("catalog",))
    params = dict(sec.section("params", {}).data)
    sec.used.add("params")
    sec.finish()
    from annbench import catalog

    defaults = {k: v.default for k, v in inspect.signature(catalog.generate).parameters.items()}
    for key, val in params.items():
        if key not in defaults or key == "perturbation_mix":
            known = ", ".join(k for k in defaults if k != "perturbation_mix")
            raise ConfigError(f"{sec.path}: dataset.params.{key} is not a catalog parameter; known: {known}")
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
            raise ConfigError(f"{sec.path}: dataset.params.{key} must be a finite number, got {val!r}")
    made = params.get("dim", defaults["dim"])
    if dim is not None and made != dim:
        # the generator's dimension is known without generating anything: check it here
        raise sec.fail("dim", f"is {dim} but the catalog generator makes {made}-dim vectors "
                              f"(dataset.params.dim); make them equal")
    n = params.get("n", defaults["n"]) * scale
    if n * max(made, 1) * 4 > _ram_bytes():
        # a typo (n: 1e12) would otherwise end in a MemoryError deep inside the generator
        raise ConfigError(f"{sec.path}: dataset.params n={n:.0f} × dim={made} needs {n * made * 4 / 2**30:.0f} GiB "
                          f"of float32, more than this machine's {_ram_bytes() / 2**30:.0f} GiB of RAM")
    if "n" in params:
        # a non-positive n is left as is for the generator to refuse, not rounded up to 1
        params["n"] = max(1, int(round(params["n"] * scale))) if params["n"] > 0 else params["n"]
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


def _ram_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def _rel(raw: str, base_dir: Path) -> Path:
    path = Path(raw)
    return path if path.is_absolute() else base_dir / path


def _timeline_section(sec: _Section, scale: float) -> Timeline:
    kind = sec.get("kind", str, "static", choices=("static", "daily", "runbook"))
    if kind == "runbook":  # a big-ann-benchmarks streaming runbook (annbench.runbook)
        from annbench import runbook

        return runbook.timeline_section(sec)
    if kind == "static":
        if "concurrent_updates" in sec.data:
            raise sec.fail("concurrent_updates", "needs timeline.kind: daily (a static timeline has no updates)")
        sizes = sec.get("sizes", list, [])
        out = []
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, int) or s < 1:
                raise sec.fail("sizes", f"must list positive integers, got {s!r}")
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
        import dataclasses

        cu = _concurrent_updates_section(sec.section("concurrent_updates"), tl.days)
        tl = dataclasses.replace(tl, concurrent_updates=cu)
    sec.finish()
    return tl


def _int_list(sec: _Section, key: str, lo: int, hi: int, default: Any = ...) -> tuple[int, ...] | None:
    """A non-empty list of distinct integers in [lo, hi], in the order given (`default` when absent)."""
    if key not in sec.data and default is not ...:
        sec.used.add(key)
        return default
    items = sec.get(key, list)
    if not items:
        raise sec.fail(key, "must list at least one value")
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise sec.fail(key, f"must list integers from {lo} to {hi}, got {v!r}")
    if len(set(items)) != len(items):
        raise sec.fail(key, f"lists a value twice: {items!r}")
    return tuple(items)


def _finite(sec: _Section, key: str, default: Any, lo: float, hi: float) -> float:
    value = sec.get(key, float, default, lo=lo, hi=hi)
    if not math.isfinite(value):  # .nan passes both range checks
        raise sec.fail(key, f"must be a finite number, got {value!r}")
    return float(value)


def _search_section(sec: _Section, tl: Timeline) -> tuple[Concurrency | None, int]:
    """`search:` — how search steps are measured: rounds of every timing, and concurrency levels."""
    last_day = tl.days if tl.kind == "daily" else 0
    rounds = sec.get("rounds", int, DEFAULT_ROUNDS, lo=1, hi=100)
    levels = _int_list(sec, "concurrency", 1, 256, None)
    seconds = _finite(sec, "concurrency_seconds", 1.0, 0.01, 3600.0)
    days = _int_list(sec, "concurrency_days", 0, last_day, None)
    sec.finish()
    if levels is None:
        if "concurrency_seconds" in sec.data or "concurrency_days" in sec.data:
            raise sec.fail("concurrency", "is required when concurrency_seconds or concurrency_days is set")
        return None, rounds
    return Concurrency(levels, float(seconds), days), rounds


def _concurrent_updates_section(sec: _Section, days: int) -> ConcurrentUpdates:
    rate = _finite(sec, "rate", ..., 1e-3, 1e9)
    cu = ConcurrentUpdates(
        rate=rate,
        threads=sec.get("threads", int, 2, lo=1, hi=256),
        # ~50 write calls a second: small enough that the rate is smooth, large enough not to be all overhead
        batch=sec.get("batch", int, max(1, int(round(rate / 50))), lo=1, hi=10_000_000),
        snapshots=sec.get("snapshots", int, 2, lo=0, hi=100),
        at_rest_seconds=_finite(sec, "at_rest_seconds", 0.5, 0.01, 3600.0),
        days=_int_list(sec, "days", 1, days, None),
    )
    sec.finish()
    return cu


def _policies(value: Any, where: str, path: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    for v in items:
        # a generic policy, or a maintenance call some adapter declares (checked per family later)
        if not isinstance(v, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", v):
            raise ConfigError(f"{path}: {where} has {v!r}; allowed: {', '.join(POLICIES)}, or a maintenance "
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
            raise ConfigError(f"{path}: indexes[{i}].family: {family!r} needs a library that is not installed "
                              f"({e.__class__.__name__}: {e}); install it or remove this index") from None
        label = sec.get("name", str, family)
        policies = _policies(sec.get("policies", (list, str), list(default_policies)),
                             f"indexes[{i}].policies", path)
        builds = _grid(sec.get("build", (dict, list), {}), f"indexes[{i}].build", path)
        searches = _grid(sec.get("search", (dict, list), {}), f"indexes[{i}].search", path)
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
        for b in builds:
            full = validate_params(cls.build_params, b, f"{path}: indexes[{i}] ({family})", "build")
            # a build grid gives each build its own name, so reports and --indexes can tell them apart
            name = label if len(builds) == 1 else label + "[" + ",".join(f"{k}={v}" for k, v in b.items()) + "]"
            configs.append(IndexConfig(family, full, searches, policies, name, timeout_s))
    return configs


def check_policy(caps: Any, policy: str, family: str, static: bool = False,
                 maintenance: tuple[str, ...] = ()) -> None:
    """Refuse, before anything runs, a policy the index cannot honestly support.

    A maintenance policy (one of the family's declared `maintenance` calls) writes like `native`.
    """
    if policy not in POLICIES and policy not in maintenance:
        raise ConfigError(f"{family} has no policy {policy!r}; allowed: {', '.join(POLICIES + tuple(maintenance))}")
    if static:
        return
    need = {"native": ("add", "delete", "update"), "tombstone": ("add", "update"),
            "rebuild": ()}.get(policy, ("add", "delete", "update"))
    for op in need:
        if getattr(caps, op) is Support.UNSUPPORTED:
            raise ConfigError(
                f"{family} cannot run policy {policy!r}: it does not support {op} after build "
                f"(declared {caps.as_dict()}); use policy 'rebuild'"
            )


# --- the op log -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Op:
    """One step of the timeline. rows index the dataset's base array; ids are the ids they carry."""

    kind: str  # build | insert | delete | update | search
    day: int
    rows: np.ndarray | None = None
    ids: np.ndarray | None = None
    queries: np.ndarray | None = None  # search: indices of the active queries

    @property
    def count(self) -> int:
        if self.ids is not None:
            return int(len(self.ids))
        return 0 if self.queries is None else int(len(self.queries))


def op_log(sc: Scenario, base_ids: np.ndarray, base_labels: np.ndarray | None,
           query_labels: np.ndarray | None, nq: int, size: int | None = None) -> list[Op]:
    """The deterministic op log of one run of `sc` over a dataset (its ids, labels and query count).

    Raises ConfigError when the timeline cannot be carried out on this dataset: too few reserve
    vectors, k larger than the live set at some search step, a delete of more than is live, no query
    left.
    """
    if sc.timeline.runbook is not None:
        from annbench import runbook

        return runbook.op_log(sc, base_ids, base_labels, query_labels, nq, size)
    n = len(base_ids)
    rng = np.random.default_rng(sc.seed)
    q_all = np.arange(min(nq, sc.n_queries) if sc.n_queries else nq)
    if len(q_all) == 0:
        raise ConfigError(f"{sc.path}: the dataset has no queries; a scenario needs at least one")
    tl = sc.timeline
    ops: list[Op] = []
    if tl.kind == "static":
        m = n if size is None else size
        if m > n:
            raise ConfigError(f"{sc.path}: timeline.sizes asks for {m} vectors but the dataset has {n}")
        rows = np.arange(m, dtype=np.int64)
        ops.append(Op("build", 0, rows, base_ids[rows]))
        ops.append(Op("search", 0, queries=_active(q_all, rows, base_labels, query_labels, sc)))
        _check_k(sc, m, 0)
        return ops

    # Rows are consumed in a seeded random order so that the reserve is spread over products.
    order = rng.permutation(n).astype(np.int64)
    n0 = int(round(tl.initial_fraction * n))
    if n0 < 1:
        raise ConfigError(f"{sc.path}: timeline.initial_fraction builds no vector from {n}")
    live_rows = {int(base_ids[r]): int(r) for r in order[:n0]}
    born = {i: 0 for i in live_rows}  # id -> day inserted, for the 'oldest' delete rule
    cursor = n0
    ops.append(Op("build", 0, order[:n0].copy(), base_ids[order[:n0]]))
    _check_k(sc, len(live_rows), 0)
    ops.append(Op("search", 0, queries=_active(q_all, np.fromiter(live_rows.values(), np.int64),
                                               base_labels, query_labels, sc)))
    for day in range(1, tl.days + 1):
        live = len(live_rows)
        n_ins, n_del, n_upd = (int(round(f * live)) for f in
                               (tl.insert_fraction, tl.delete_fraction, tl.update_fraction))
        if cursor + n_ins + n_upd > n:
            raise ConfigError(
                f"{sc.path}: day {day} needs {n_ins + n_upd} reserve vectors but only {n - cursor} of the "
                f"dataset's {n} are left; lower timeline.days or the fractions, or use a bigger dataset"
            )
        if n_del > live:
            raise ConfigError(f"{sc.path}: day {day} deletes {n_del} but only {live} are live")
        # deletes first (sold-out products leave), then new products, then new photos
        del_ids = _pick_deletes(tl.delete_rule, n_del, live_rows, born, base_labels, rng)
        if len(del_ids):
            for i in del_ids:
                del live_rows[int(i)], born[int(i)]
            ops.append(Op("delete", day, None, del_ids))
        if n_ins:
            rows = order[cursor:cursor + n_ins].copy()
            cursor += n_ins
            ids = base_ids[rows]
            for i, r in zip(ids.tolist(), rows.tolist(), strict=True):
                live_rows[i], born[i] = r, day
            ops.append(Op("insert", day, rows, ids))
        if n_upd:
            keys = np.fromiter(live_rows.keys(), np.int64, len(live_rows))
            upd_ids = np.sort(rng.choice(keys, size=min(n_upd, len(keys)), replace=False))
            rows = order[cursor:cursor + len(upd_ids)].copy()
            cursor += len(upd_ids)
            for i, r in zip(upd_ids.tolist(), rows.tolist(), strict=True):
                live_rows[i] = r
            ops.append(Op("update", day, rows, upd_ids))
        _check_k(sc, len(live_rows), day)
        active = _active(q_all, np.fromiter(live_rows.values(), np.int64), base_labels, query_labels, sc)
        ops.append(Op("search", day, queries=active))
    return ops


def _check_k(sc: Scenario, live: int, day: int) -> None:
    if sc.k > live:
        raise ConfigError(f"{sc.path}: k={sc.k} is larger than the {live} vectors live on day {day}")


def _active(q_all: np.ndarray, live_rows: np.ndarray, base_labels: np.ndarray | None,
            query_labels: np.ndarray | None, sc: Scenario) -> np.ndarray:
    """Queries searched at a step: under 'drop', those whose product still has a live image."""
    if sc.query_rule == "keep" or base_labels is None or query_labels is None:
        return q_all
    live_products = np.unique(base_labels[np.sort(live_rows)])
    active = q_all[np.isin(query_labels[q_all], live_products)]
    if len(active) == 0:
        raise ConfigError(f"{sc.path}: no query's product is live at some step; use queries.deleted_products: keep")
    return active


def _pick_deletes(rule: str, count: int, live_rows: dict[int, int], born: dict[int, int],
                  labels: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    if count == 0:
        return np.empty(0, np.int64)
    ids = np.fromiter(live_rows.keys(), np.int64, len(live_rows))
    if rule == "oldest":
        days = np.fromiter((born[i] for i in ids.tolist()), np.int64, len(ids))
        return np.sort(ids[np.lexsort((ids, days))[:count]])
    if rule == "random" or labels is None:
        return np.sort(rng.choice(ids, size=count, replace=False))
    # 'product': whole products sell out; every live image of each chosen product leaves.
    rows = np.fromiter(live_rows.values(), np.int64, len(live_rows))
    prods = labels[rows]
    order = np.argsort(prods, kind="stable")
    uniq, starts, sizes = np.unique(prods[order], return_index=True, return_counts=True)
    pick = rng.permutation(len(uniq))
    # take whole products, in random order, until at least `count` images are gone
    n_products = int(np.searchsorted(np.cumsum(sizes[pick]), count) + 1)
    segments = [order[starts[j]:starts[j] + sizes[j]] for j in pick[:n_products]]
    return np.sort(ids[np.concatenate(segments)])
