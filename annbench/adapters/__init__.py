"""The adapter registry: every family's name, and where its class is, imported only when asked for.

Built-in families are a table of (module, class, optional extra) by name: `get` imports that one module
and no other, so `import annbench` and the CLI stay fast and a run's subprocess loads only the library it
measures. A built-in family whose libraries come with an optional extra of annbench (the databases:
`pip install 'annbench[databases]'`) raises `MissingExtra` when they are not installed: one line naming
the extra, an input error (ConfigError) to a scenario and "unavailable" (ImportError) to `annbench list`.
Third parties and tests add entries with `register`; `module_of` says which module a run's process must
import to find a registered class again.

Plugins: an installed distribution that declares an entry point in the group `annbench.adapters`
(`my-index = my_pkg.my_module:MyAdapter`) is registered under the entry point's name the first time
the registry is listed or asked for. Only the entry point's metadata is read then; its module is
imported when that adapter is asked for. A plugin that fails to import, does not name an `Adapter`
subclass, declares a different `name`, or reuses a built-in name raises `PluginError` (an
ImportError) when asked for, so `annbench list` shows it as unavailable instead of crashing.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass

from annbench.adapters.base import Adapter
from annbench.errors import ConfigError


@dataclass(frozen=True)
class Builtin:
    """Where a built-in family's class is, and the extra of annbench that installs its libraries (if any)."""

    module: str  # under annbench.adapters
    cls: str
    extra: str | None = None  # `pip install 'annbench[EXTRA]'`; None: installed with annbench itself


BUILTINS: dict[str, Builtin] = {
    "faiss-flat": Builtin("faiss_", "FaissFlat"),
    "faiss-ivf": Builtin("faiss_", "FaissIVF"),
    "faiss-hnsw": Builtin("faiss_", "FaissHNSW"),
    "hnswlib": Builtin("hnswlib_", "Hnswlib"),
    "annoy": Builtin("annoy_", "Annoy"),
    "scann": Builtin("scann_", "Scann"),
    "usearch": Builtin("usearch_", "Usearch"),
    "voyager": Builtin("voyager_", "Voyager"),
    "pgvector": Builtin("pgvector_", "PgVector", extra="databases"),
    "lancedb": Builtin("lancedb_", "LanceDB", extra="databases"),
}


class MissingExtra(ConfigError, ImportError):
    """A built-in family's libraries are not installed: a scenario's input error, and `annbench list`'s
    "unavailable" (an ImportError), both as the one line that says which extra to install."""


def _builtin(name: str, spec: Builtin) -> Callable[[], type[Adapter]]:
    def load() -> type[Adapter]:
        try:
            module = importlib.import_module(f"annbench.adapters.{spec.module}")
        except ModuleNotFoundError as e:
            missing = (e.name or "").split(".")[0]  # the package, not the submodule that failed
            if spec.extra is None or missing in ("", "annbench"):
                raise
            raise MissingExtra(f"the {name} family needs {missing}, which annbench's optional {spec.extra!r} "
                               f"extra installs: pip install 'annbench[{spec.extra}]'") from None
        return getattr(module, spec.cls)

    return load


_REGISTRY: dict[str, Callable[[], type[Adapter]]] = {name: _builtin(name, spec) for name, spec in BUILTINS.items()}
_BUILTINS = frozenset(_REGISTRY)

ENTRY_POINT_GROUP = "annbench.adapters"
_plugins: dict[str, Callable[[], type[Adapter]]] | None = None  # None: entry points not read yet


class PluginError(ImportError):
    """A plugin adapter cannot be loaded; an ImportError, so it is reported as unavailable."""


def _plugin(ep: importlib.metadata.EntryPoint, dist: str) -> Callable[[], type[Adapter]]:
    def load() -> type[Adapter]:
        where = f"plugin {ep.name!r} ({ep.value} from {dist})"
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001 - any failure of third-party code means: unavailable
            raise PluginError(f"{where} failed to import: {e.__class__.__name__}: {e}") from e
        if not (isinstance(obj, type) and issubclass(obj, Adapter)):
            raise PluginError(f"{where} is not an annbench Adapter subclass")
        if getattr(obj, "name", None) != ep.name:
            raise PluginError(f"{where}: the class declares name {getattr(obj, 'name', None)!r}; "
                              "the entry point must use the same name")
        return obj

    return load


def _taken(name: str, dist: str) -> Callable[[], type[Adapter]]:
    def load() -> type[Adapter]:
        raise PluginError(f"plugin {name!r} from {dist} reuses the name of a built-in adapter; rename its entry point")

    return load


def discover_plugins(refresh: bool = False) -> dict[str, Callable[[], type[Adapter]]]:
    """Read the `annbench.adapters` entry points (once, or again with `refresh`); nothing is imported."""
    global _plugins
    if _plugins is not None and not refresh:
        return _plugins
    found: dict[str, Callable[[], type[Adapter]]] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
        if ep.name in _BUILTINS:
            # kept visible under a distinct key: a silently ignored plugin would be a mystery
            found[f"{dist}:{ep.name}"] = _taken(ep.name, dist)
        elif ep.name not in found:  # the first distribution on sys.path wins, as for imports
            found[ep.name] = _plugin(ep, dist)
    _plugins = found
    return found


def _all() -> dict[str, Callable[[], type[Adapter]]]:
    out = dict(_REGISTRY)  # built-ins and explicit `register` calls win over entry points of the same name
    for name, load in discover_plugins().items():
        out.setdefault(name, load)
    return out


def register(cls: type[Adapter]) -> type[Adapter]:
    """Register an adapter class under `cls.name` (usable as a decorator)."""
    _REGISTRY[cls.name] = lambda: cls
    _registered[cls.name] = cls.__module__
    return cls


_registered: dict[str, str] = {}  # name -> module of each `register`ed class


def module_of(name: str) -> str | None:
    """The module a fresh process must import before `get(name)` finds the class `register` put there.

    None when `get` finds the family by itself: a built-in (its table) or an entry-point plugin.
    """
    return _registered.get(name)


def names() -> list[str]:
    """Built-in adapters first, then registered and plugin ones."""
    return list(_all())


def get(name: str) -> type[Adapter]:
    """Return the adapter class registered as `name`, or raise ConfigError listing the known names.

    Imports that family's module alone; a built-in or registered family is found without reading the
    installed distributions' entry points.
    """
    load = _REGISTRY.get(name) or discover_plugins().get(name)
    if load is None:
        raise ConfigError(f"unknown index family {name!r}; known: {', '.join(_all())}") from None
    return load()
