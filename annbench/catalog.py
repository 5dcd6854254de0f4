"""The built-in synthetic reseller catalog (dataset name ``"catalog"``), deterministic from a seed.

This module owns the embedded default dataset: a product-photo catalog and the photos resellers
upload of the same products. It exists so that annbench runs out of the box and so that the usual
parameters of each index family land in the interesting recall range, where they can be told apart.

The generator's parameters, with the rules each value must pass, are declared once in `PARAMS`, and
`check_params` is the one check of them: `generate` runs it on its own arguments, `generate_from` (the
loaders' 'catalog') on the names a user passed, and annbench.scenarios on a scenario's `dataset.params`
when the scenario is loaded, before anything is generated.

Model (all knobs are keywords of `generate`, documented there and in datasets/README.md):

* a 128-d space whose per-coordinate variance falls off like a power law, var_j ∝ (j+1)^-decay, the
  shape of PCA-reduced CNN features;
* categories (popularity Zipf-distributed, as in real shops) → products → 1–4 images per product;
  image vector = category centre + product offset + image offset, each drawn in that space with its
  own scale, then L2-normalised (float32 rows);
* a query is a catalog image after a reseller "upload": every query gets compression-like dense small
  noise; on top, by a deterministic per-query draw, either nothing more, a crop-like change (a
  contiguous block of coordinates blended towards fresh values) or scribble-like changes (a few
  coordinates moved a lot); then re-normalised;
* ``base_labels`` = product of each image, ``query_labels`` = product of the source image,
  ``query_sources`` = base position of the source image, ``ids`` = ``id_offset + position`` (int64;
  ids are not positions), metric = cosine.

Calibration (why the defaults are what they are). Uniform noise makes every index look bad (hnswlib
ef32 ≈ .33) and tight blobs make every index look perfect; the defaults sit between, so that cheap
settings miss neighbours and expensive ones recover them. Recall@10 against exact inner-product kNN
over the base, default settings (n=50,000, dim=128, 1,000 queries, seed 0), hnswlib M=16
ef_construction=200 and faiss IndexIVFFlat nlist=4·√n=894 (inner product), measured on a 2-core
x86_64 box (faiss-cpu 1.15.1, hnswlib 0.8.0):

    seed   hnswlib ef16   ef32   ef64   ef128   IVF nprobe1   nprobe2   nprobe4   nprobe8   nprobe32
    0           .899      .954   .980   .993          .661      .795      .886      .948      .997
    1           .875      .937   .972   .987          .644      .780      .882      .942      .994
    2           .902      .956   .981   .994          .643      .774      .880      .946      .995

    by upload kind (seed 0): hnswlib ef16 compression .96, crop .94, scribble .78;
                             IVF nprobe2 compression .82, crop .84, scribble .72
    exact top-1 is the query's own product (hit@1): .89 · LID (MLE, k=20, at the queries): 18.2 ·
    relative contrast (median): 3.6 · generation: 0.1 s · hardness.describe: 1.2 s
    other sizes (seed 0): n=10,000: hnswlib ef16 .953, IVF nprobe2 .808 (nlist 400);
                          n=200,000: hnswlib ef16 .816 ef128 .974, IVF nprobe2 .706 nprobe32 .986

(hnswlib builds with 2 threads, so its figures move by ±0.005 from run to run.)

Scribbled queries are the hard ones for graph search at low ef (they leave the data manifold); the
overlapping categories are what IVF at low nprobe misses. Generation takes well under a second at the
default size; memory is O(n·d) (the vectors plus one product-offset array).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from annbench.dataset import Dataset, format_bytes, memory_shortfall
from annbench.errors import ConfigError
from annbench.params import Param, is_integer, shown, validate_params
from annbench.vectors import Metric

KINDS = ("compression", "crop", "scribble")


def spectrum(dim: int, decay: float) -> np.ndarray:
    """Per-coordinate standard deviations with variance ∝ (j+1)^-decay, scaled to total variance 1."""
    var = np.arange(1, dim + 1, dtype=np.float64) ** (-float(decay))
    return np.sqrt(var / var.sum()).astype(np.float32)


def generate(
    n: int = 50_000,
    dim: int = 128,
    n_queries: int = 1000,
    seed: int = 0,
    *,
    n_categories: int = 500,
    category_zipf: float = 0.9,
    max_images: int = 4,
    spectrum_decay: float = 1.0,
    category_scale: float = 1.5,
    product_scale: float = 0.4,
    image_scale: float = 0.7,
    compression_noise: float = 0.3,
    crop_fraction: float = 0.15,
    crop_strength: float = 1.0,
    scribble_count: int = 4,
    scribble_strength: float = 0.8,
    perturbation_mix: tuple[float, float, float] = (0.4, 0.3, 0.3),
    id_offset: int = 1_000_000,
) -> Dataset:
    """Generate the synthetic reseller catalog.

    n, dim, n_queries: catalog images, dimensions, reseller queries.
    seed: everything is a pure function of the arguments; base vectors do not depend on n_queries.
    n_categories: product categories; category_zipf: popularity exponent (category c gets a share of
        products ∝ (c+1)^-zipf; 0 = equal sizes). Big categories are dense regions, hard for every index.
    max_images: images per product are uniform in 1..max_images (the last product may get fewer).
    spectrum_decay: variance of coordinate j ∝ (j+1)^-decay; larger = fewer effective dimensions = easier.
    category_scale, product_scale, image_scale: spread of category centres, of products around their
        centre, of images around their product (relative; the sum is normalised away).
    compression_noise: norm of the dense isotropic noise every query gets (vectors have norm 1).
    crop_fraction, crop_strength: a crop blends a contiguous block of crop_fraction·dim coordinates
        towards fresh values by crop_strength (0 = unchanged, 1 = replaced).
    scribble_count, scribble_strength: a scribble adds N(0, strength²) to scribble_count random coordinates
        (at most dim of them).
    perturbation_mix: probabilities of (compression only, + crop, + scribble) per query.
    id_offset: ids are id_offset + position, so ids are never mistaken for positions.
    """
    args = dict(locals())  # the arguments, by name: checked before anything is drawn
    check_params({name: args[name] for name in PARAM_NAMES})
    try:
        mix = np.asarray(perturbation_mix, dtype=np.float64)
    except (TypeError, ValueError):
        mix = np.full(1, np.nan)
    if not (mix.shape == (3,) and bool(np.all(mix >= 0)) and mix.sum() > 0):
        raise ConfigError(f"catalog: parameter 'perturbation_mix' is {shown(perturbation_mix)}; must be 3 non-negative "
                          "weights (compression, crop, scribble)")
    n, dim, n_queries = int(n), int(dim), int(n_queries)
    short = memory_shortfall(memory_needed(n, dim, n_queries, max_images))
    if short:
        raise ConfigError(f"catalog: generating n={n:,} × dim={dim} (float32 vectors of "
                          f"{format_bytes(4 * n * dim)}) {short}; lower n or dim")

    # independent streams, so that e.g. more queries do not change the catalog itself
    s_struct, s_centres, s_products, s_images, s_queries = np.random.SeedSequence(seed).spawn(5)
    sd = spectrum(dim, spectrum_decay)

    # structure: products with 1..max_images images each, filled up to exactly n images
    rng = np.random.default_rng(s_struct)
    per_product = rng.integers(1, max_images + 1, size=n)  # n products always hold ≥ n images
    ends = np.cumsum(per_product)
    n_products = int(np.searchsorted(ends, n)) + 1
    per_product = per_product[:n_products]
    per_product[-1] -= int(ends[n_products - 1]) - n  # the last product keeps ≥ 1 image
    product_of_image = np.repeat(np.arange(n_products, dtype=np.int64), per_product)
    popularity = np.arange(1, n_categories + 1, dtype=np.float64) ** (-float(category_zipf))
    category_of_product = rng.choice(n_categories, size=n_products, p=popularity / popularity.sum())

    centres = np.random.default_rng(s_centres).standard_normal((n_categories, dim), dtype=np.float32)
    centres *= sd * np.float32(category_scale)
    products = np.random.default_rng(s_products).standard_normal((n_products, dim), dtype=np.float32)
    products *= sd * np.float32(product_scale)
    products += centres[category_of_product]
    base = np.random.default_rng(s_images).standard_normal((n, dim), dtype=np.float32)
    base *= sd * np.float32(image_scale)
    base += products[product_of_image]
    del products
    _normalise(base)

    queries, sources, _kinds = _reseller_queries(
        base, n_queries, s_queries, sd, compression_noise, crop_fraction, crop_strength,
        min(scribble_count, dim), scribble_strength, mix / mix.sum())

    query_labels = product_of_image[sources]
    ids = np.int64(id_offset) + np.arange(n, dtype=np.int64)
    for arr in (base, queries, product_of_image, query_labels, ids, sources):
        arr.setflags(write=False)
    given = {"n": n, "dim": dim, "n_queries": n_queries}
    knobs = dict(n_categories=n_categories, category_zipf=category_zipf, max_images=max_images,
                 spectrum_decay=spectrum_decay, category_scale=category_scale, product_scale=product_scale,
                 image_scale=image_scale, compression_noise=compression_noise, crop_fraction=crop_fraction,
                 crop_strength=crop_strength, scribble_count=scribble_count,
                 scribble_strength=scribble_strength, perturbation_mix=tuple(perturbation_mix),
                 id_offset=id_offset)
    changed = {k: v for k, v in knobs.items() if v != DEFAULTS[k]}
    desc = ", ".join(f"{k}={v}" for k, v in {"seed": seed, **given, **changed}.items())
    return Dataset(name="catalog", base=base, queries=queries, base_labels=product_of_image,
                   query_labels=query_labels, ids=ids, metric=Metric.COSINE, source=f"catalog({desc})",
                   query_sources=sources)


#: the knobs of `generate` (keyword-only arguments) and their defaults
DEFAULTS: dict[str, object] = {
    name: p.default for name, p in inspect.signature(generate).parameters.items() if p.kind is p.KEYWORD_ONLY
}


def _param(name: str, typ: type, help: str, **limits: float) -> Param:
    # the default is read off `generate`'s signature, so that it is written once
    return Param(name, typ, inspect.signature(generate).parameters[name].default, help, **limits)


#: the scalar parameters of `generate` (every one but perturbation_mix), with the rules each value must pass
PARAMS: tuple[Param, ...] = (
    _param("n", int, "catalog images", min=1),
    _param("dim", int, "dimensions", min=1),
    # a catalog without queries cannot be benchmarked (run and datasets info refuse its file): refused here
    _param("n_queries", int, "reseller queries", min=1),
    _param("seed", int, "seed of every draw", min=0),
    _param("n_categories", int, "product categories", min=1),
    _param("category_zipf", float, "popularity exponent of categories", min=0),
    _param("max_images", int, "images per product, at most", min=1),
    _param("spectrum_decay", float, "variance of coordinate j ∝ (j+1)^-decay", min=0),
    _param("category_scale", float, "spread of category centres", min=0),
    _param("product_scale", float, "spread of products around their centre", min=0),
    _param("image_scale", float, "spread of images around their product", min=0),
    _param("compression_noise", float, "norm of every query's dense noise", min=0),
    _param("crop_fraction", float, "share of coordinates a crop changes", min=0, max=1),
    _param("crop_strength", float, "how far a crop moves them", min=0, max=1),
    _param("scribble_count", int, "coordinates a scribble moves", min=0),
    _param("scribble_strength", float, "how far a scribble moves them", min=0),
    _param("id_offset", int, "ids are id_offset + position"),
)
PARAM_NAMES = tuple(p.name for p in PARAMS)


def check_params(given: Mapping[str, Any], owner: str = "catalog") -> dict[str, Any]:
    """Every scalar parameter of `generate` (defaults filled in), after checking the `given` ones.

    One ConfigError line naming `owner` and the parameter for an unknown name, a wrong type, a value out
    of range, or values that contradict each other. `generate` checks its arguments with it, and a
    scenario its `dataset.params` before anything is generated.
    """
    if is_integer(given.get("n_queries")) and given["n_queries"] == 0:
        # the generic "must be ≥ 1" does not say why: a file of 0 queries was written, then refused by every reader
        raise ConfigError(f"{owner}: parameter 'n_queries' is 0; must be ≥ 1 (a dataset without queries has "
                          "nothing to search with: run and datasets info would refuse it)")
    values = validate_params(PARAMS, given, owner)
    if not values["crop_fraction"] > 0:
        raise ConfigError(f"{owner}: parameter 'crop_fraction' is {values['crop_fraction']!r}; must be in (0, 1]")
    if values["category_scale"] + values["product_scale"] + values["image_scale"] <= 0:
        raise ConfigError(f"{owner}: parameter 'image_scale' is {values['image_scale']!r}; "
                          "category/product/image scales must not all be 0")
    return values


def generate_from(params: Mapping[str, Any]) -> Dataset:
    """`generate` with parameters by name, as a user wrote them: an unknown name is one ConfigError line."""
    check_params({k: v for k, v in params.items() if k != "perturbation_mix"})
    return generate(**params)


def memory_needed(n: int, dim: int, n_queries: int, max_images: int = 4) -> int:
    """Peak bytes `generate` allocates, asked before it allocates any (a typo such as n=10^11 is one line).

    The base (n·dim float32), the product offsets gathered per image while they are added (another
    n·dim), the product offsets themselves (about 2n/(max_images+1) products × dim), three int64 arrays
    of n, and per query its vector, its scribble draw (float64) and that draw's argsort (int64).
    """
    products = 2 * n // (max_images + 1) + 1
    return 4 * dim * (2 * n + products) + 24 * n + 20 * n_queries * dim


def _normalise(x: np.ndarray) -> None:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0  # a zero row stays zero rather than becoming NaN
    x /= norms


def query_kinds(n_queries: int, seed: int = 0,
                perturbation_mix: tuple[float, float, float] = (0.4, 0.3, 0.3)) -> list[str]:
    """The perturbation kind ("compression", "crop", "scribble") of each query `generate` makes.

    The kind is the first draw of the query stream and depends only on seed, n_queries and the mix,
    so reports can split recall by kind without the generator carrying it around.
    """
    mix = np.asarray(perturbation_mix, dtype=np.float64)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(5)[4])  # the query stream of generate
    return [KINDS[k] for k in rng.choice(3, size=n_queries, p=mix / mix.sum())]


def _reseller_queries(
    base: np.ndarray,
    n_queries: int,
    seed_seq: np.random.SeedSequence,
    sd: np.ndarray,
    compression_noise: float,
    crop_fraction: float,
    crop_strength: float,
    scribble_count: int,
    scribble_strength: float,
    mix: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Perturbed copies of random catalog images; returns (queries, source positions, kind per query)."""
    n, dim = base.shape
    rng = np.random.default_rng(seed_seq)
    # kinds first: query_kinds() replays this draw, and its bit consumption does not depend on n
    kinds = rng.choice(3, size=n_queries, p=mix)
    sources = rng.integers(0, n, size=n_queries).astype(np.int64)
    q = base[sources].copy()

    # compression: small dense isotropic noise on every upload, total norm ≈ compression_noise
    q += rng.standard_normal(q.shape, dtype=np.float32) * np.float32(compression_noise / math.sqrt(dim))

    # crop: a contiguous block of coordinates drifts towards fresh values drawn from the data's spectrum
    width = max(1, round(crop_fraction * dim))
    start = rng.integers(0, dim - width + 1, size=n_queries)
    fresh = rng.standard_normal((n_queries, width), dtype=np.float32)
    rows = np.nonzero(kinds == 1)[0]
    if rows.size:
        cols = start[rows, None] + np.arange(width)
        q[rows[:, None], cols] = ((1 - crop_strength) * q[rows[:, None], cols]
                                  + crop_strength * fresh[rows] * sd[cols])

    # scribble: a few coordinates, anywhere, moved a lot
    rows = np.nonzero(kinds == 2)[0]
    picks = np.argsort(rng.random((n_queries, dim)), axis=1)[:, :scribble_count]
    bumps = rng.standard_normal((n_queries, scribble_count), dtype=np.float32) * np.float32(scribble_strength)
    if rows.size and scribble_count:
        np.add.at(q, (rows[:, None], picks[rows]), bumps[rows])

    _normalise(q)
    return q, sources, kinds
