"""What production does to embeddings before an index sees them, and re-ranking with the originals.

Owns an index configuration's optional `transform` (issue 19): PCA to d′ dimensions, L2 normalisation, the
stored precision, and re-ranking of k′ > k candidates by the exact distance of the original vectors kept
beside the index. `TransformedAdapter` wraps the family's adapter so every policy, the harness and the
results see one adapter; the ground truth, recall, hit@k and P@k stay those of the original space, because
the wrapper returns ids and the harness scores ids against the untransformed live set.

- **PCA** is fitted when the index is built, on a seeded sample (`pca_sample` rows) of the build vectors,
  and applied to every later insert, update and query, as production does. A native or tombstone policy
  builds once, so it keeps the day-0 fit whatever the catalog becomes; the rebuild policy refits at every
  rebuild. For the cosine metric the projection is not centred: a rotation about the origin keeps inner
  products, so PCA to the full dimension changes no cosine (centring would); the projected vectors are
  then L2-normalised, since cosine search assumes unit vectors. For L2 it is centred (a translation keeps
  distances).
- **Precision** (float16, int8) is the library's own storage codec where it has one (the adapter declares
  the build parameters each precision means, `Adapter.precisions`): simulating it outside the library would
  give its recall without its memory. A family without one refuses the precision in one line.
- **Re-ranking** (`rerank: k′`) asks the index for k′ candidates in the transformed space and orders them
  by the exact distance of the original vectors, which the wrapper keeps (their bytes are counted apart).

The bytes of the transform (components and mean) and of the kept vectors are reported apart from the
index's own (`parts_bytes`), so a user sees what the smaller index costs in total.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from annbench.adapters.base import Adapter, as_ids, as_vectors, check_k
from annbench.errors import ConfigError
from annbench.idtable import IdTable
from annbench.params import Param, validate_params
from annbench.vectors import Metric

PRECISIONS = ("float32", "float16", "int8")
PARAMS: tuple[Param, ...] = (
    Param("pca", int, 0, "PCA to this many dimensions, fitted on the build vectors; 0 = off", min=0, max=65_536),
    Param("pca_sample", int, 50_000, "build vectors sampled (seeded) to fit the PCA", min=2),
    Param("normalize", bool, False, "L2-normalise the (projected) vectors; always on after a PCA under cosine"),
    Param("precision", str, "float32", "stored precision, by the library's own codec", choices=PRECISIONS),
    Param("rerank", int, 0, "fetch this many candidates and re-rank them with the original vectors; 0 = off",
          min=0, max=100_000),
    Param("seed", int, 0, "seed of the PCA's sample", min=0),
)
KEY = "transform"  # the build-parameter key a configuration's transform travels under


def check(given: Mapping[str, Any], family_cls: type[Adapter], build: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """The transform's full parameters (defaults filled), or ConfigError in one line: an unknown or bad value,
    a precision the family's library cannot store, or one that contradicts a build parameter given."""
    spec = validate_params(PARAMS, given, owner, "transform")
    precision = spec["precision"]
    if precision == "float32":
        return spec
    offered = precisions(family_cls)
    if precision not in offered:
        raise ConfigError(f"{owner}: transform precision {precision!r}: {family_cls.name} has no such storage codec "
                          f"(it offers {', '.join(['float32', *offered])}); annbench does not simulate one, since "
                          "the memory would not be the library's")
    defaults = {p.name: p.default for p in family_cls.build_params}
    for key, value in offered[precision].items():
        if key in build and build[key] not in (value, defaults.get(key)):
            raise ConfigError(f"{owner}: transform precision {precision!r} means {key}={value!r} for "
                              f"{family_cls.name}, but build gives {key}={build[key]!r}: set one of the two")
    return spec


def precisions(family_cls: type[Adapter]) -> dict[str, dict[str, Any]]:
    """The build parameters each stored precision means for the family's library ({} when it has none)."""
    return dict(family_cls.precisions)


def wraps(spec: Mapping[str, Any]) -> bool:
    """True when the transform needs the wrapper (a projection, a normalisation or re-ranking); a precision
    alone is the library's own build parameter."""
    return bool(spec.get("pca") or spec.get("normalize") or spec.get("rerank"))


def check_dim(spec: Mapping[str, Any], dim: int, owner: str) -> None:
    """PCA cannot add dimensions: ConfigError unless pca ≤ the dataset's dimension."""
    if spec.get("pca", 0) > dim:
        raise ConfigError(f"{owner}: transform pca={spec['pca']} is more than the dataset's {dim} dimensions")


class Projection:
    """A fitted PCA (or none): x ↦ (x − mean) · W, then L2-normalised when asked; float32 in, float32 out."""

    def __init__(self, dim: int, metric: Metric, spec: Mapping[str, Any]) -> None:
        self.dim_in = dim
        self.dim_out = spec["pca"] or dim
        self.metric = metric
        # cosine vectors arrive unit-length (annbench.vectors); a projection shortens them, so it renormalises
        self.normalize = bool(spec["normalize"]) or (metric is Metric.COSINE and bool(spec["pca"]))
        self.spec = dict(spec)
        self.components: np.ndarray | None = None  # d × d′ float32, columns by falling variance
        self.mean: np.ndarray | None = None  # d float32 (zeros for cosine: see the module docstring)
        self.fitted_on = 0  # rows the fit used

    def fit(self, x: np.ndarray) -> None:
        """Fit on a seeded sample of `x` (the vectors the index is built from)."""
        if not self.spec["pca"]:
            return
        n = len(x)
        take = min(n, self.spec["pca_sample"])
        rows = np.sort(np.random.default_rng(self.spec["seed"]).choice(n, take, replace=False)) if take < n \
            else np.arange(n)
        s = np.asarray(x[rows], dtype=np.float64)
        mean = s.mean(axis=0) if self.metric is Metric.L2 else np.zeros(self.dim_in)
        s -= mean
        # eigenvectors of the (centred or not) second moment: float64, so the order of close eigenvalues
        # does not depend on summation order noise
        vals, vecs = np.linalg.eigh(s.T @ s)
        order = np.argsort(vals)[::-1][: self.dim_out]
        w = vecs[:, order]
        w *= np.where(w[np.abs(w).argmax(axis=0), np.arange(w.shape[1])] < 0, -1.0, 1.0)  # a fixed sign
        self.components = np.ascontiguousarray(w, dtype=np.float32)
        self.mean = mean.astype(np.float32)
        self.fitted_on = take

    def apply(self, x: np.ndarray) -> np.ndarray:
        """`x` (m × d float32) in the index's space (m × d′ float32, C-contiguous)."""
        if self.components is not None:
            assert self.mean is not None
            y = (x - self.mean) @ self.components if self.metric is Metric.L2 else x @ self.components
        elif self.normalize:
            y = np.array(x, dtype=np.float32, copy=True)
        else:
            return x  # re-ranking alone: the index gets the vectors as they are (no copy on the timed path)
        if self.normalize:
            norms = np.linalg.norm(y, axis=1, keepdims=True)
            np.divide(y, norms, out=y, where=norms > 0)
        return np.ascontiguousarray(y, dtype=np.float32)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.components, self.mean) if a is not None)


class TransformedAdapter(Adapter):
    """The family's adapter behind a transform: what goes in is projected, what comes out may be re-ranked.

    Not registered: `wrap` builds one for a configuration whose build parameters carry a transform. It
    answers every call of the adapter contract by passing the transformed vectors on; capabilities,
    concurrency and parameters are the inner adapter's."""

    name = "transformed"

    def __init__(self, inner_cls: type[Adapter], metric: Metric | str, dim: int, threads: int,
                 build_params: Mapping[str, Any], spec: Mapping[str, Any]) -> None:
        self.name = inner_cls.name  # type: ignore[misc]  # an instance attribute: reports name the family
        self.capabilities = inner_cls.capabilities  # type: ignore[misc]
        self.concurrency = inner_cls.concurrency  # type: ignore[misc]
        self.distributions = inner_cls.distributions  # type: ignore[misc]
        self.build_params = inner_cls.build_params  # type: ignore[misc]
        self.search_params = inner_cls.search_params  # type: ignore[misc]
        self.maintenance = inner_cls.maintenance  # type: ignore[misc]
        self.metric = Metric.parse(metric)
        self.dim = int(dim)
        self.spec = dict(spec)
        check_dim(self.spec, self.dim, inner_cls.name)
        self.proj = Projection(self.dim, self.metric, self.spec)
        self.inner = inner_cls(self.metric, self.proj.dim_out, threads=threads, **build_params)
        self.params = dict(build_params)
        self.search_settings = self.inner.search_settings
        self.threads = self.inner.threads
        # the original vectors, for re-ranking: a slot per id written (a deleted id's slot is freed for reuse
        # only at the next build, as an index frees its own), id → slot through an IdTable
        self._orig = np.empty((0, self.dim), np.float32)
        self._slots = IdTable(np.int64, missing=-1, pad=-1)
        self._used = 0

    # -- the original vectors ---------------------------------------------------------------------------
    def _keep(self, x: np.ndarray, ids: np.ndarray) -> None:
        if not self.spec["rerank"]:
            return
        old = self._slots.lookup(ids)
        new = old < 0
        slots = old.copy()
        slots[new] = np.arange(self._used, self._used + int(new.sum()))
        need = self._used + int(new.sum())
        if need > len(self._orig):  # grow by half, as a vector does: amortised appends
            grown = np.empty((max(need, len(self._orig) * 3 // 2), self.dim), np.float32)
            grown[: self._used] = self._orig[: self._used]
            self._orig = grown
        self._orig[slots] = x
        self._used = need
        self._slots.put(ids, slots)

    def parts_bytes(self) -> dict[str, int]:
        """Bytes the transform holds apart from the index: its fitted matrix and the kept original vectors
        (with their id → slot table's arrays)."""
        kept = self._orig.nbytes + self._slots.nbytes() if self.spec["rerank"] else 0
        return {"transform_bytes": self.proj.nbytes(), "kept_vectors_bytes": int(kept)}

    # -- the adapter contract ---------------------------------------------------------------------------
    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        ids = as_ids(ids, self.name, len(x))
        self.proj = Projection(self.dim, self.metric, self.spec)  # a rebuild refits on what it is built from
        self.proj.fit(x)
        self._orig = np.empty((0, self.dim), np.float32)
        self._slots = IdTable(np.int64, missing=-1, pad=-1)
        self._used = 0
        self._keep(x, ids)
        self.inner.build(self.proj.apply(x), ids)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        self.inner.add(self.proj.apply(x), ids)
        self._keep(x, as_ids(ids, self.name, len(x)))

    def delete(self, ids: np.ndarray) -> None:
        self.inner.delete(ids)

    def update(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        x = as_vectors(vectors, self.dim, self.name)
        self.inner.update(self.proj.apply(x), ids)
        self._keep(x, as_ids(ids, self.name, len(x)))

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.prepare_search(k)(as_vectors(queries, self.dim, self.name))

    def prepare_search(self, k: int) -> Callable[[np.ndarray], np.ndarray]:
        """The inner index's prepared search at depth max(k′, k), behind the projection and the re-ranking: the
        projection is part of what a query costs, so it is inside the timed call, as in production."""
        k = check_k(k, self.name)
        inner = self.inner.prepare_search(max(self.spec["rerank"], k))
        apply, rerank = self.proj.apply, self._rerank
        if not self.spec["rerank"]:
            return lambda q: inner(apply(q))
        return lambda q: rerank(q, inner(apply(q)), k)

    def _rerank(self, q: np.ndarray, got: np.ndarray, k: int) -> np.ndarray:
        """The candidates ordered by the exact distance of their original vectors (stable: the index's order
        breaks ties), the first k of them, −1-padded."""
        slots = self._slots.get(got)
        valid = slots >= 0
        vecs = self._orig[np.where(valid, slots, 0)]  # m × k′ × d
        dots = np.einsum("md,mkd->mk", q, vecs)
        if self.metric is Metric.COSINE:
            dist = 1.0 - dots
        else:
            dist = (q * q).sum(1)[:, None] + (vecs * vecs).sum(2) - 2.0 * dots
        dist = np.where(valid, dist, np.inf)
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        out = np.take_along_axis(got, order, axis=1)
        out[np.take_along_axis(~valid, order, axis=1)] = -1
        return out

    def save(self, path: Path) -> int:
        """The index's own file, plus the fitted transform and the kept vectors a server would load with it."""
        written = self.inner.save(path)
        side = Path(str(path) + ".transform.npz")
        arrays = {k: v for k, v in (("components", self.proj.components), ("mean", self.proj.mean)) if v is not None}
        if self.spec["rerank"]:
            arrays["original_vectors"] = self._orig[: self._used]
        np.savez(side, **arrays)
        return int(written) + side.stat().st_size

    def maintain(self, op: str) -> None:
        self.inner.maintain(op)

    def resolved_params(self) -> dict[str, Any]:
        return {**self.inner.resolved_params(), KEY: dict(self.spec)}

    def library_bytes(self) -> dict[str, Any] | None:
        return self.inner.library_bytes()

    def footprint(self) -> dict[str, int]:
        return self.inner.footprint()

    def close(self) -> None:
        self.inner.close()

    def set_search_params(self, **params: Any) -> None:
        self.inner.set_search_params(**params)
        self.search_settings = self.inner.search_settings

    def set_threads(self, n: int) -> None:
        self.inner.set_threads(n)
        self.threads = self.inner.threads


def adapter_factory(adapter_cls: type[Adapter], metric: Metric, dim: int, threads: int,
                    build_params: Mapping[str, Any]) -> Callable[[], Adapter]:
    """A maker of the configuration's adapter: the family's own (with the build parameters its stored precision
    means), behind a `TransformedAdapter` when the transform (under KEY) projects, normalises or re-ranks."""
    params = dict(build_params)
    spec = params.pop(KEY, None)
    if spec is None:
        return lambda: adapter_cls(metric, dim, threads=threads, **params)
    params.update(precisions(adapter_cls).get(spec.get("precision", "float32"), {}))
    if not wraps(spec):
        return lambda: adapter_cls(metric, dim, threads=threads, **params)
    return lambda: TransformedAdapter(adapter_cls, metric, dim, threads, params, spec)
