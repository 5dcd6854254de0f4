"""The adapter contract: metric, capabilities, declared parameters, the base class and the registry.

An adapter wraps one index library behind a small typed surface (build / add / delete / update /
search / save). Adapters are pure: they never time, print, normalise in place, or keep references
that let the caller's arrays be mutated. The harness owns timing, threads policy and memory.

Vectors handed to an adapter are C-contiguous float32; for the cosine metric they are already
L2-normalised by annbench (`prepare_vectors`), so every adapter implements cosine as inner product.
Ids are int64 chosen by the user's data, never array positions; an adapter maps them if its library
needs positions.
"""

from __future__ import annotations

import enum
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from annbench.errors import CapabilityError, ConfigError, DataError


class Metric(str, enum.Enum):
    """Distance the benchmark is scored with. Cosine = inner product on vectors annbench normalised."""

    L2 = "l2"
    COSINE = "cosine"

    @classmethod
    def parse(cls, value: str | Metric) -> Metric:
        if isinstance(value, Metric):
            return value
        aliases = {"euclidean": "l2", "angular": "cosine", "ip_normalized": "cosine"}
        key = aliases.get(str(value).lower(), str(value).lower())
        try:
            return cls(key)
        except ValueError:
            raise ConfigError(f"unknown metric {value!r}: allowed are l2, cosine") from None


class Support(str, enum.Enum):
    """How an adapter supports an operation after build."""

    NATIVE = "native"  # the library really changes the index
    TOMBSTONE = "tombstone"  # the adapter hides deleted/replaced entries at search; space is reclaimed by rebuild
    UNSUPPORTED = "unsupported"  # refused with CapabilityError; the harness must use a policy (rebuild)


@dataclass(frozen=True)
class Capabilities:
    add: Support
    delete: Support
    update: Support

    def as_dict(self) -> dict[str, str]:
        return {"add": self.add.value, "delete": self.delete.value, "update": self.update.value}


STATIC = Capabilities(Support.UNSUPPORTED, Support.UNSUPPORTED, Support.UNSUPPORTED)


@dataclass(frozen=True)
class Safety:
    """Which calls of one adapter's index may overlap in time, and on what authority.

    Every adapter class declares one as `concurrency`, beside `capabilities`; `annbench.concurrency`
    locks accordingly. Annbench never uses a library in a way it does not support, so a claim here
    rests on the library's documentation or on a check run here, and `source` says which.
    """

    concurrent_search: bool  # searches may run at the same time as each other
    concurrent_write: bool  # a write (add, delete, update) may run while searches run
    source: str  # what the library documents, or what was measured here (version, sizes, result)


def declared_safety(cls: type) -> Safety | None:
    """The `concurrency` an adapter class declares in itself or a base below `Adapter`; None when none does.

    `Adapter` itself gives no default on purpose: a guess would silently decide how a library is locked.
    """
    for klass in cls.__mro__:
        if klass is Adapter or klass is object:
            break
        value = vars(klass).get("concurrency")
        if isinstance(value, Safety):
            return value
    return None

_TYPES: dict[type, str] = {int: "int", float: "float", str: "str", bool: "bool"}


@dataclass(frozen=True)
class Param:
    """One declared build or search parameter, with its type, default and allowed range."""

    name: str
    type: type
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None

    def coerce(self, value: Any, owner: str) -> Any:
        """Return `value` checked against this declaration, or raise ConfigError naming owner and param."""
        where = f"{owner}: parameter {self.name!r}"
        if self.type is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false, got {value!r}")
        elif self.type is int:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"{where} must be an integer, got {value!r}")
            value = int(value)
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ConfigError(f"{where} must be a number, got {value!r}")
            value = float(value)
        elif self.type is str:
            if not isinstance(value, str):
                raise ConfigError(f"{where} must be a string, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{where} is {value!r}; allowed: {', '.join(map(str, self.choices))}")
        if self.min is not None and value < self.min:
            raise ConfigError(f"{where} is {value!r}; must be ≥ {self.min}")
        if self.max is not None and value > self.max:
            raise ConfigError(f"{where} is {value!r}; must be ≤ {self.max}")
        return value

    def describe(self) -> str:
        rng = ""
        if self.choices is not None:
            rng = " {" + ",".join(map(str, self.choices)) + "}"
        elif self.min is not None or self.max is not None:
            rng = f" [{'' if self.min is None else self.min}..{'' if self.max is None else self.max}]"
        return f"{self.name}: {_TYPES.get(self.type, self.type.__name__)}={self.default!r}{rng}"


def validate_params(
    declared: tuple[Param, ...], given: Mapping[str, Any], owner: str, kind: str
) -> dict[str, Any]:
    """Fill defaults and check every given value; an unknown name is an error listing the valid ones."""
    by_name = {p.name: p for p in declared}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        valid = ", ".join(by_name) or "(none)"
        raise ConfigError(f"{owner}: unknown {kind} parameter {unknown[0]!r}; valid: {valid}")
    return {p.name: p.coerce(given[p.name], owner) if p.name in given else p.default for p in declared}


def prepare_vectors(x: np.ndarray, metric: Metric) -> np.ndarray:
    """Return C-contiguous float32 vectors ready for an adapter: a normalised copy for cosine.

    The caller's array is never modified. Zero vectors are left at zero (their cosine is undefined;
    dataset validation reports them).
    """
    out = np.ascontiguousarray(x, dtype=np.float32)
    if metric is Metric.COSINE:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        out = (out / norms).astype(np.float32, copy=False)
    return out


def as_vectors(x: np.ndarray, dim: int, owner: str) -> np.ndarray:
    """`x` as C-contiguous float32 (a copy only if needed); DataError naming `owner` unless its shape is (n, dim)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != dim:
        raise DataError(f"{owner}: expected vectors of shape (n, {dim}), got {x.shape}")
    return x


def as_ids(ids: np.ndarray, owner: str, n: int | None = None) -> np.ndarray:
    """`ids` flattened to C-contiguous int64 (a copy only if needed).

    DataError naming `owner` when there are not exactly `n` of them (if `n` is given) or one is
    negative (-1 is the empty-slot marker of search results).
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    if n is not None and len(ids) != n:
        raise DataError(f"{owner}: {n} vectors but {len(ids)} ids")
    if len(ids) and ids.min() < 0:
        raise DataError(f"{owner}: ids must be non-negative (-1 marks an empty result slot)")
    return ids


def check_k(k: int, owner: str) -> int:
    """`k` as an int; ConfigError naming `owner` unless it is a positive integer (a bool is not)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"{owner}: k must be a positive integer, got {k!r}")
    return int(k)


@dataclass
class AdapterInfo:
    """What `annbench list` prints about one registered adapter."""

    name: str
    capabilities: Capabilities
    build_params: tuple[Param, ...]
    search_params: tuple[Param, ...]
    description: str = ""
    notes: list[str] = field(default_factory=list)
    maintenance: tuple[str, ...] = ()


class Adapter(ABC):
    """Base class of every adapter. Subclasses declare name, capabilities and parameters as class data."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    # Which calls may overlap (see `Safety`). Declared by every subclass, never defaulted here: the
    # conformance suite fails an adapter without one, and at run time it is locked as if nothing may.
    concurrency: ClassVar[Safety]
    build_params: ClassVar[tuple[Param, ...]] = ()
    search_params: ClassVar[tuple[Param, ...]] = ()
    # The library's own upkeep calls, by name (a database's "optimize", "reindex", "vacuum"). Each is also
    # a policy a scenario can choose: native writes, then this call at the end of every `maintain_every`
    # days, timed as its own step, so its cost and its effect on recall are both visible.
    maintenance: ClassVar[tuple[str, ...]] = ()

    def __init__(self, metric: Metric | str, dim: int, threads: int = 1, **build_params: Any) -> None:
        self.metric = Metric.parse(metric)
        if int(dim) <= 0:
            raise ConfigError(f"{self.name}: dim must be positive, got {dim}")
        self.dim = int(dim)
        self.params = validate_params(self.build_params, build_params, self.name, "build")
        self.search_settings = validate_params(self.search_params, {}, self.name, "search")
        self.threads = 1
        self.set_threads(threads)

    # -- declared surface ---------------------------------------------------------------------------
    @abstractmethod
    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Build the index from scratch on `vectors` (n×d float32) labelled by `ids` (n int64)."""

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add new ids after build."""
        raise CapabilityError(f"{self.name} does not support add after build")

    def delete(self, ids: np.ndarray) -> None:
        """Remove ids so that no later search returns them."""
        raise CapabilityError(f"{self.name} does not support delete")

    def update(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Give existing ids new vectors (a listing's new photo)."""
        raise CapabilityError(f"{self.name} does not support update")

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Return q×k int64 ids, nearest first, padded with -1."""

    @abstractmethod
    def save(self, path: Path) -> int:
        """Serialise the index under `path` (a file or folder the adapter owns); return bytes written."""

    @classmethod
    def load_library(cls) -> None:
        """Import the library now, if the adapter defers it; a run's process calls this before timing anything.

        Most adapters import their library with the module. One whose import has side effects in the
        sweep's parent process (LanceDB registers a fork hook that warns at every run's start) defers
        it to this call, so the import still stays out of the timed build.
        """
        return None

    def maintain(self, op: str) -> None:
        """Run the library's upkeep call `op` (one of `maintenance`)."""
        raise CapabilityError(f"{self.name} has no maintenance call {op!r}")

    def resolved_params(self) -> dict[str, Any]:
        """The build parameters as the library used them in the last `build` (a size rule such as
        `nlist: 0` replaced by the number it gave). Same keys as `params`; recorded at build, so later
        adds do not change it. Adapters whose parameters hold such rules override this."""
        return dict(self.params)

    def library_bytes(self) -> dict[str, Any] | None:
        """The library's own count of the index's bytes, as `{"bytes": int, "what": how it is counted}`.

        None when the library offers nothing cheap and exact. Shown beside the measured memory as "the
        library's own figure": it never replaces the measurement (allocator overhead, caches and the
        adapter's own tables are outside it, and `what` says what is inside).
        """
        return None

    def footprint(self) -> dict[str, int]:
        """Bytes the index holds outside this process's RSS, by kind (a database's files, its server's RSS).

        Libraries that live in the process return {}; databases report what their memory figures must add.
        """
        return {}

    def close(self) -> None:
        """Release what the index holds outside this process (a server, a database folder). Idempotent."""
        return None

    def set_search_params(self, **params: Any) -> None:
        """Set search-time parameters; unknown names raise ConfigError listing the valid ones."""
        self.search_settings = validate_params(self.search_params, params, self.name, "search")
        self._apply_search_params()

    def _apply_search_params(self) -> None:
        """Push `self.search_settings` into the library; adapters override when needed."""
        return None

    def set_threads(self, n: int) -> None:
        """Fix the number of threads the library may use (its own setter, not just env variables)."""
        if int(n) < 1:
            raise ConfigError(f"{self.name}: threads must be ≥ 1, got {n}")
        self.threads = int(n)
        self._apply_threads()

    def _apply_threads(self) -> None:
        """Push `self.threads` into the library; adapters override when the library has a setter."""
        return None

    @classmethod
    def info(cls) -> AdapterInfo:
        return AdapterInfo(cls.name, cls.capabilities, cls.build_params, cls.search_params,
                           (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
                           maintenance=cls.maintenance)


def folder_bytes(path: Path) -> int:
    """Bytes of every file below `path` (an index's saved folder, a database's directory)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


SHARED_TMP_ENV = "ANNBENCH_SHARED_TMP"


def shared_tmp() -> Path:
    """The machine's temp folder, shared by every run, for caches that outlive one run.

    A run's own TMPDIR is private and deleted with the run, even a killed one (the harness sets it, and
    names the shared folder in ANNBENCH_SHARED_TMP); outside the harness both are the same folder.
    """
    return Path(os.environ.get(SHARED_TMP_ENV) or tempfile.gettempdir())


def pad_ids(rows: list[np.ndarray], k: int) -> np.ndarray:
    """Stack per-query id arrays (each ≤ k long) into a q×k int64 array padded with -1."""
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        n = min(len(r), k)
        out[i, :n] = r[:n]
    return out
