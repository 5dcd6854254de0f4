"""The adapter contract: capabilities and the policies they allow, concurrency safety, the base class.

An adapter wraps one index library behind a small typed surface (build / add / delete / update /
search / save). Adapters are pure: they never time, print, normalise in place, or keep references
that let the caller's arrays be mutated. The harness owns timing, threads policy and memory.

Vectors handed to an adapter are C-contiguous float32; for the cosine metric they are already
L2-normalised by annbench (`prepare_vectors`), so every adapter implements cosine as inner product.
Ids are int64 chosen by the user's data, never array positions; an adapter maps them if its library
needs positions.

`prepare_search(k)` is `search` split in two for the harness's timed loop: the checks that do not depend
on the queries run once, and the call it returns does only the library's search and the id mapping.

`Metric` and `prepare_vectors` live in `annbench.vectors`, `Param` and `validate_params` in
`annbench.params` (the data layer and the scenario checks use them too, without the adapters); they are
imported here under their old names, which adapters and plugins use.
"""

from __future__ import annotations

import enum
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from annbench.errors import CapabilityError, ConfigError, DataError
from annbench.params import Param, is_integer, validate_params
from annbench.vectors import Metric
from annbench.vectors import prepare_vectors as prepare_vectors  # re-exported: adapters and plugins import it here


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

#: the update policies every index may be run under; an adapter's `maintenance` calls add more
POLICIES = ("native", "tombstone", "rebuild")


def check_policy(caps: Capabilities, policy: str, family: str, static: bool = False,
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
    if not is_integer(k) or k < 1:
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
    # The Python distributions (PyPI names) of the library the adapter drives: their versions are
    # recorded with every run of it (results.library_versions). A plugin's own distribution is added too.
    distributions: ClassVar[tuple[str, ...]] = ()
    build_params: ClassVar[tuple[Param, ...]] = ()
    search_params: ClassVar[tuple[Param, ...]] = ()
    # The library's own upkeep calls, by name (a database's "optimize", "reindex", "vacuum"). Each is also
    # a policy a scenario can choose: native writes, then this call at the end of every `maintain_every`
    # days, timed as its own step, so its cost and its effect on recall are both visible.
    maintenance: ClassVar[tuple[str, ...]] = ()
    # The library's own storage codecs by precision ("float16", "int8"): the build parameters each means.
    # An embedding transform's `precision` (annbench.transforms) sets them; a family without one refuses it.
    precisions: ClassVar[dict[str, dict[str, Any]]] = {}

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

    def prepare_search(self, k: int) -> Callable[[np.ndarray], np.ndarray]:
        """`search` at depth `k`, checked now, as a call that takes only the queries: what the harness times.

        Everything that does not depend on the queries is done here once (the index is built, `k` is valid,
        the live count, the search depth); the returned call does the library's search and the id mapping
        its answer needs, and nothing else. Its answers are `search(queries, k)`'s: same ids, order and −1
        padding, a fresh array the caller owns. Its queries must already be what `as_vectors` returns for
        this index (C-contiguous float32 of shape (m, dim)): it does not check them.

        The call is valid until the next write (build, add, delete, update, maintain) or
        `set_search_params`; prepare again after either. This default checks `k` and calls `search`, so every
        adapter is correct without overriding it; an adapter overrides it to keep its checks out of the call.
        """
        k = check_k(k, self.name)
        search = self.search

        def call(queries: np.ndarray) -> np.ndarray:
            return search(queries, k)

        return call

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

    def parts_bytes(self) -> dict[str, int]:
        """Bytes inside the index's measured memory that are not the library's index, by kind, reported
        apart (an embedding transform's PCA and kept original vectors, annbench.transforms); {} for a plain
        adapter."""
        return {}

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


def widen(labels: np.ndarray, k: int) -> np.ndarray:
    """A library's q × k′ answer (k′ ≤ k: all the live items there are) as q × k int64, −1 in the slots
    beyond k′; a full answer is only converted."""
    if labels.shape[1] == k:
        return labels.astype(np.int64)
    out = np.full((len(labels), k), -1, dtype=np.int64)
    out[:, : labels.shape[1]] = labels
    return out


def pad_ids(rows: list[np.ndarray], k: int) -> np.ndarray:
    """Stack per-query id arrays (each ≤ k long) into a q×k int64 array padded with -1."""
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        n = min(len(r), k)
        out[i, :n] = r[:n]
    return out
