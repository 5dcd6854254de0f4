"""big-ann-benchmarks runbooks: the NeurIPS'23 streaming track's YAML, replayed as annbench's op log.

Owns the runbook format (parsing and validation, the choice of the dataset key), what each operation
means as an annbench op, and the scenario file `annbench run --runbook` writes so that every run's
process, which re-reads its scenario, replays the same runbook. A scenario uses a runbook with
`timeline: {kind: runbook, path: FILE.yaml, dataset: KEY}`; `scenarios.op_log` then hands over to
`op_log` here. Everything after the op log (ground truth over the live set, policies, results,
reports) is the same as for a native update scenario.

The format, as in big-ann-benchmarks' `neurips23/streaming/*.yaml`::

    msturing-10M-clustered:        # the dataset key; one file may hold several datasets
      max_pts: 6000000             # big-ann sizes its index with it; read, not enforced here
      1: {operation: insert, start: 0, end: 255771}
      2: {operation: search}
      3: {operation: delete, start: 100000, end: 200000}
      4: {operation: replace, tags_start: 0, tags_end: 100, ids_start: 300000, ids_end: 300100}
      gt_url: https://...          # where big-ann downloads its ground truth; not needed here

Semantics (written down for users in configs/scenarios/README.md):

- A *tag* is a point's identity: the row number of the dataset's base array it was inserted from.
  annbench's id of tag t is the dataset's id of row t (the row number itself when the dataset has no
  ids), so results, leaks and labels mean what they mean for any other scenario.
- Ranges are half-open, `[start, end)`. Steps are numbered 1..N without gaps; step s is the op log's
  day s, so reports plot per-step curves and `rebuild_every` counts runbook steps.
- `insert`: rows start..end-1 become live under their own tags. The first insert is the build.
- `delete`: the live tags in [start, end) leave. Tags that are not live are skipped: published
  runbooks delete overlapping ranges.
- `replace`: tag tags_start+i is re-pointed to row ids_start+i (an annbench update: same ids, new
  vectors). Every tag must be live and both ranges the same length.
- `search`: every query (or the scenario's `queries.count`), ground truth over the live tags.
- Refused with one line naming the step: a row outside the dataset, inserting a tag that is live or
  was deleted (annbench never reuses an id, so that a deleted id returned is a leak), replacing a tag
  that is not live, a search with fewer live points than k or before any insert.
- `max_pts` is read (a positive integer) but not enforced: annbench's indexes grow, and published
  runbooks exceed it (big-ann's delete_runbook.yaml, random-xs-clustered: 6,051 live at step 72,
  max_pts 6,000).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from annbench.errors import ConfigError

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
    from annbench.scenarios import read_yaml  # refuses duplicate keys, names the file on any YAML error

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
    if max_pts is not None and (isinstance(max_pts, bool) or not isinstance(max_pts, int) or max_pts < 1):
        raise ConfigError(f"{where}: max_pts must be a positive integer, got {max_pts!r}")
    numbers = []
    for k in body:
        if k == "max_pts" or k in _IGNORED_KEYS:
            continue
        if isinstance(k, bool) or not isinstance(k, int):
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
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"{at}: {f} must be a non-negative integer, got {v!r}")
        values[f] = v
    for lo, hi in (("start", "end"), ("tags_start", "tags_end"), ("ids_start", "ids_end")):
        if lo in values and values[hi] < values[lo]:
            raise ConfigError(f"{at}: {hi} {values[hi]} is before {lo} {values[lo]} (ranges are [start, end))")
    if op == "replace" and values["tags_end"] - values["tags_start"] != values["ids_end"] - values["ids_start"]:
        raise ConfigError(f"{at}: replace re-points {values['tags_end'] - values['tags_start']} tags to "
                          f"{values['ids_end'] - values['ids_start']} rows; the ranges must have the same length")
    return Step(number, op, **values)


def timeline_section(sec: Any) -> Any:
    """`timeline: {kind: runbook, path, dataset}` of a scenario (a `scenarios._Section`) → its Timeline.

    The runbook is parsed and checked here, at scenario load, before anything is built; the checks that
    need the dataset (row ranges, k against the live set) run when the op log is made.
    """
    from annbench.scenarios import Timeline

    raw = sec.get("path", str)
    path = Path(raw)
    if not path.is_absolute():
        path = Path(sec.path).parent / path
    key = sec.get("dataset", str, None)
    sec.finish()
    if not path.is_file():
        raise sec.fail("path", f"{raw!r}: no such runbook file")
    rb = read_runbook(path, key)
    # kind stays "daily" for everything downstream: a runbook is an update timeline whose days are steps
    return Timeline("daily", days=len(rb.steps), runbook=rb)


def op_log(sc: Any, base_ids: np.ndarray, base_labels: np.ndarray | None, query_labels: np.ndarray | None,
           nq: int, size: int | None = None) -> list[Any]:
    """The op log of scenario `sc` (whose timeline holds a Runbook) over a dataset, per the module's semantics."""
    from annbench.scenarios import Op, _active

    rb: Runbook = sc.timeline.runbook
    where = f"{sc.path}: runbook {rb.path} [{rb.key}]"
    if size is not None:
        raise ConfigError(f"{where}: a runbook timeline has no catalog sizes")
    n = len(base_ids)
    base_ids = np.asarray(base_ids, dtype=np.int64)
    q_all = np.arange(min(nq, sc.n_queries) if sc.n_queries else nq)
    if len(q_all) == 0:
        raise ConfigError(f"{sc.path}: the dataset has no queries; a scenario needs at least one")
    row_of = np.full(n, -1, dtype=np.int64)  # tag -> row holding its current vector; -1: not live
    deleted_at = np.zeros(n, dtype=np.int64)  # tag -> step that deleted it; 0: never
    live = 0
    ops: list[Op] = []
    for st in rb.steps:
        at = f"{where} step {st.number}"
        if st.operation == "insert":
            _rows_exist(st.start, st.end, n, at)
            tags = np.arange(st.start, st.end, dtype=np.int64)
            if len(tags) == 0:
                continue
            again = tags[row_of[tags] >= 0]
            if len(again):
                raise ConfigError(f"{at}: inserts tag {again[0]}, which is already live")
            back = tags[deleted_at[tags] > 0]
            if len(back):
                raise ConfigError(f"{at}: inserts tag {back[0]} again after step {deleted_at[back[0]]} deleted it; "
                                  "annbench never reuses an id (a deleted id returned is a leak)")
            row_of[tags] = tags
            live += len(tags)
            ops.append(Op("insert" if ops else "build", st.number, tags.copy(), base_ids[tags]))
        elif st.operation == "delete":
            lo, hi = min(st.start, n), min(st.end, n)  # a tag past the dataset's rows was never live
            tags = np.arange(lo, hi, dtype=np.int64)
            tags = tags[row_of[tags] >= 0]
            if len(tags) == 0:
                continue
            row_of[tags] = -1
            deleted_at[tags] = st.number
            live -= len(tags)
            ops.append(Op("delete", st.number, None, base_ids[tags]))
        elif st.operation == "replace":
            _rows_exist(st.ids_start, st.ids_end, n, at)
            if st.tags_end > n:
                raise ConfigError(f"{at}: tags_end {st.tags_end} is past the dataset's {n} rows; no such tag is live")
            tags = np.arange(st.tags_start, st.tags_end, dtype=np.int64)
            if len(tags) == 0:
                continue
            dead = tags[row_of[tags] < 0]
            if len(dead):
                raise ConfigError(f"{at}: replaces tag {dead[0]}, which is not live")
            rows = np.arange(st.ids_start, st.ids_end, dtype=np.int64)
            row_of[tags] = rows
            ops.append(Op("update", st.number, rows, base_ids[tags]))
        else:  # search
            if live == 0:
                raise ConfigError(f"{at}: searches before any point is live")
            if sc.k > live:
                raise ConfigError(f"{at}: k={sc.k} is larger than the {live} points live")
            labelled = base_labels is not None and query_labels is not None and sc.query_rule != "keep"
            live_rows = row_of[row_of >= 0] if labelled else np.empty(0, np.int64)
            ops.append(Op("search", st.number, queries=_active(q_all, live_rows, base_labels, query_labels, sc)))
    if not any(op.kind == "search" for op in ops):
        raise ConfigError(f"{where}: no search step; nothing would be measured")
    return ops


def _rows_exist(start: int, end: int, n: int, at: str) -> None:
    if end > n:
        raise ConfigError(f"{at}: rows [{start}, {end}) go past the dataset's {n} rows")


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
    from annbench import adapters
    from annbench.atomic import atomic_path
    from annbench.scenarios import absolute_paths, check_policy, read_scenario_file

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
