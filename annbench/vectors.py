"""The metric a benchmark is scored with, and the vectors every index is handed.

This module owns `Metric` (l2 or cosine, with the aliases ann-benchmarks files use) and `prepare_vectors`
(C-contiguous float32, L2-normalised for cosine, so that every adapter implements cosine as inner
product). It sits below both the data layer (datasets, catalog, ground truth, hardness) and the
adapters, which all speak of metrics and vectors, so that neither has to import the other for them.
"""

from __future__ import annotations

import enum

import numpy as np

from annbench.errors import ConfigError


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
