"""The adapter registry: a plain dict from name to a function that imports and returns the class.

Library modules are imported only when their adapter is asked for, so `import annbench` and the CLI
stay fast and a run's subprocess loads only the library it measures. Third parties and tests add
entries with `register`.
"""

from __future__ import annotations

import importlib
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
}


def register(cls: type[Adapter]) -> type[Adapter]:
    """Register an adapter class under `cls.name` (usable as a decorator)."""
    _REGISTRY[cls.name] = lambda: cls
    return cls


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str) -> type[Adapter]:
    """Return the adapter class registered as `name`, or raise ConfigError listing the known names."""
    try:
        load = _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown index family {name!r}; known: {', '.join(_REGISTRY)}") from None
    return load()
