"""big-ann-benchmarks runbooks: the NeurIPS'23 streaming track's YAML, read and checked.

Owns the runbook format (parsing and validation, the choice of the dataset key) and the scenario file
`annbench run --runbook` writes, so that a runbook is run as any scenario is (and the same command run
again resumes, its workload hash unchanged). A scenario uses a runbook with
`timeline: {kind: runbook, path: FILE.yaml, dataset: KEY}`: annbench.scenarios reads it here when the
scenario is loaded, and annbench.oplog turns its steps into annbench's op log (what each operation means
is written down there). Everything after the op log (ground truth over the live set, policies, results,
reports) is the same as for a native update scenario.

The format, as in big-ann-benchmarks' `neurips23/streaming/*.yaml`::

    msturing-10M-clustered:        # the dataset key; one file may hold several datasets
      max_pts: 6000000             # big-ann sizes its index with it; read, not enforced here
      1: {operation: insert, start: 0, end: 255771}
      2: {operation: search}
      3: {operation: delete, start: 100000, end: 200000}
      4: {operation: replace, tags_start: 0, tags_end: 100, ids_start: 300000, ids_end: 300100}
      gt_url: https://...          # where big-ann downloads its ground truth; not needed here

A tag is a point's identity (the row of the dataset's base array it was inserted from); ranges are
half-open, `[start, end)`; steps are numbered 1..N without gaps. `max_pts` is read (a positive integer)
but not enforced (see annbench.oplog).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from annbench import adapters
from annbench.adapters.base import check_policy
from annbench.atomic import atomic_path
from annbench.errors import ConfigError
from annbench.params import is_integer
from annbench.yamlfiles import absolute_paths, read_scenario_file, read_yaml

OPERATIONS = ("insert", "delete", "search", "replace")
_FIELDS = {"insert": ("start", "end"), "delete": ("start", "end"), "search": (),
           "replace": ("tags_start", "tags_end", "ids_start", "ids_end")}
_IGNORED_KEYS = ("gt_url",)  # big-ann metadata with no meaning for a replay
DEFAULT_FAMILIES = ("hnswlib", "usearch", "voyager")


@dataclass(frozen=True)
class Step:
    """One runbook entry; ranges are half-open and only the fields of its operation are set."""

    number: int
    operation: str
    start: int = 0
    end: int = 0
    tags_start: int = 0
    tags_end: int = 0
    ids_start: int = 0
    ids_end: int = 0


@dataclass(frozen=True)
class Runbook:
    """A validated runbook for one dataset key. `sha256` is of the whole file (part of the workload hash)."""

    path: str
    key: str
    sha256: str
    max_pts: int | None
    steps: tuple[Step, ...]


def read_runbook(path: Path | str, key: str | None = None) -> Runbook:
    """Parse and check a runbook file; `key` picks the dataset (optional when the file holds one)."""
    path = Path(path)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise ConfigError(f"runbook {path}: cannot read ({e.strerror or e})") from None
    top = read_yaml(path)
    if not isinstance(top, dict) or not top:
        raise ConfigError(f"runbook {path}: the top level must map dataset names to their steps")
    keys = [str(k) for k in top]
    if key is None:
        if len(top) != 1:
            raise ConfigError(f"runbook {path} holds several datasets ({', '.join(keys)}); choose one with "
                              "timeline.dataset or --runbook-dataset")
        key = keys[0]
    if key not in top:
        raise ConfigError(f"runbook {path} has no dataset {key!r}; it holds: {', '.join(keys)}")
    body = top[key]
    where = f"runbook {path} [{key}]"
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: must map step numbers to operations, got {type(body).__name__}")
    max_pts = body.get("max_pts")
    if max_pts is not None and (not is_integer(max_pts) or max_pts < 1):
        raise ConfigError(f"{where}: max_pts must be a positive integer, got {max_pts!r}")
    numbers = []
    for k in body:
        if k == "max_pts" or k in _IGNORED_KEYS:
            continue
        if not is_integer(k):
            raise ConfigError(f"{where}: {k!r} is neither a step number nor max_pts or gt_url")
        numbers.append(k)
    if not numbers:
        raise ConfigError(f"{where}: no steps")
    numbers.sort()
    if numbers != list(range(1, len(numbers) + 1)):
        # big-ann's own loader silently stops at the first missing number; a gap is a typo
        missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
        first = missing[0] if missing else numbers[0]
        raise ConfigError(f"{where}: steps must be numbered 1..N without gaps; step {first} is missing")
    steps = tuple(_step(n, body[n], where) for n in numbers)
    return Runbook(str(path.resolve()), key, digest, max_pts, steps)


def _step(number: int, entry: Any, where: str) -> Step:
    at = f"{where} step {number}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{at}: must be a mapping with an 'operation', got {entry!r}")
    op = entry.get("operation")
    if op not in OPERATIONS:
        raise ConfigError(f"{at}: operation is {op!r}; allowed: {', '.join(OPERATIONS)}")
    fields = _FIELDS[op]
    extra = sorted(set(entry) - {"operation", *fields}, key=str)
    if extra:
        raise ConfigError(f"{at}: {op} has no key {extra[0]!r}; its keys: {', '.join(('operation', *fields))}")
    values: dict[str, int] = {}
    for f in fields:
        v = entry.get(f)
        if v is None:
            raise ConfigError(f"{at}: {op} needs {f}")
        if not is_integer(v) or v < 0:
            raise ConfigError(f"{at}: {f} must be a non-negative integer, got {v!r}")
        values[f] = v
    for lo, hi in (("start", "end"), ("tags_start", "tags_end"), ("ids_start", "ids_end")):
        if lo in values and values[hi] < values[lo]:
            raise ConfigError(f"{at}: {hi} {values[hi]} is before {lo} {values[lo]} (ranges are [start, end))")
    if op == "replace" and values["tags_end"] - values["tags_start"] != values["ids_end"] - values["ids_start"]:
        raise ConfigError(f"{at}: replace re-points {values['tags_end'] - values['tags_start']} tags to "
                          f"{values['ids_end'] - values['ids_start']} rows; the ranges must have the same length")
    return Step(number, op, **values)


_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _name(text: str) -> str:
    """A scenario name (letters, digits, _ . -, ≤ 81 characters, starting with a letter or digit)."""
    name = _SAFE.sub("-", text).strip("-._")[:81]
    return name or "runbook"


def write_scenario(runbook_path: Path, out_dir: Path, *, dataset: str | None = None, key: str | None = None,
                   scenario: Path | None = None, families: list[str] | None = None) -> Path:
    """Write the scenario `annbench run --runbook` replays, into `out_dir`; return its path.

    With `scenario`, that file's settings and indexes are kept and its timeline becomes the runbook (and
    its dataset `dataset`, when given). Without, a minimal scenario runs `families` (default: hnswlib,
    usearch, voyager) at their default parameters, under the native policy when the index supports
    updates and under rebuild otherwise, with k=10, on `dataset`.
    """
    runbook_path = Path(runbook_path)
    if not runbook_path.is_file():
        raise ConfigError(f"--runbook {runbook_path}: no such file")
    rb = read_runbook(runbook_path, key)  # every format error before anything is written
    timeline: dict[str, Any] = {"kind": "runbook", "path": rb.path, "dataset": rb.key}
    stem = f"{runbook_path.stem}-{rb.key}"
    if scenario is not None:
        # `extends` resolved, relative paths made absolute: the written scenario lives elsewhere, alone
        raw = absolute_paths(read_scenario_file(Path(scenario)), Path(scenario).parent)
        ds = dict(raw.get("dataset") or {}) if isinstance(raw.get("dataset"), dict) else {}
        if dataset is not None:
            ds = {"path": str(Path(dataset).resolve()), **({"dim": ds["dim"]} if "dim" in ds else {})}
        if ds:
            raw["dataset"] = ds
        raw["timeline"] = timeline
        raw["name"] = _name(f"{raw.get('name', Path(scenario).stem)}.{stem}")
        raw["description"] = f"{raw.get('description', '')} — replaying runbook {rb.path} [{rb.key}]".strip(" —")
    else:
        if dataset is None:
            raise ConfigError("--runbook needs --dataset PATH (the embeddings its row ranges index), "
                              "or a --scenario that names a dataset")
        indexes = []
        for family in families or DEFAULT_FAMILIES:
            cls = adapters.get(family)
            try:
                check_policy(cls.capabilities, "native", family)
                policy = "native"
            except ConfigError:  # a static index replays the runbook with a fresh buffer and rebuilds
                policy = "rebuild"
            indexes.append({"family": family, "policies": [policy]})
        raw = {"name": _name(f"runbook.{stem}"),
               "description": f"big-ann-benchmarks runbook {rb.path} [{rb.key}] on {dataset}",
               "dataset": {"path": str(Path(dataset).resolve())}, "k": 10, "timeline": timeline,
               "indexes": indexes}
    out = Path(out_dir) / f"{raw['name']}.yaml"
    with atomic_path(out) as tmp:
        tmp.write_text("# Written by `annbench run --runbook`; rewritten on every such run.\n"
                       + yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return out
