"""The adapter registry: a plain dict from name to a function that imports and returns the class.

Library modules are imported only when their adapter is asked for, so `import annbench` and the CLI
stay fast and a run's subprocess loads only the library it measures. Third parties and tests add
entries with `register`.

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

from annbench.adapters.base import Adapter
from annbench.errors import ConfigError


def _builtin(module: str, cls: str) -> Callable[[], type[Adapter]]:
    def load() -> type[Adapter]:
        return getattr(importlib.import_module(f"annbench.adapters.{module}"), cls)

    return load


_REGISTRY: dict[str, Callable[[], type[Adapter]]] = {
    "faiss-flat": _builtin("faiss_", "FaissFlat"),
    "faiss-ivf": _builtin("faiss_", "FaissIVF"),
    "faiss-hnsw": _builtin("faiss_", "FaissHNSW"),
    "hnswlib": _builtin("hnswlib_", "Hnswlib"),
    "annoy": _builtin("annoy_", "Annoy"),
    "scann": _builtin("scann_", "Scann"),
    "usearch": _builtin("usearch_", "Usearch"),
    "voyager": _builtin("voyager_", "Voyager"),
    "pgvector": _builtin("pgvector_", "PgVector"),
    "lancedb": _builtin("lancedb_", "LanceDB"),
}
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
    return cls


def names() -> list[str]:
    """Built-in adapters first, then registered and plugin ones."""
    return list(_all())


def get(name: str) -> type[Adapter]:
    """Return the adapter class registered as `name`, or raise ConfigError listing the known names."""
    known = _all()
    try:
        load = known[name]
    except KeyError:
        raise ConfigError(f"unknown index family {name!r}; known: {', '.join(known)}") from None
    return load()
