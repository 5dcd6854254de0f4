"""The op log: the build / insert / delete / update / search steps every run of a scenario replays.

This module owns the one function that makes them, `op_log`, for daily timelines, static catalog sizes
and big-ann runbooks alike, and the `Op` record. An op log is a pure function of the validated scenario
(annbench.scenarios), the dataset's ids, labels and query count, and the seed. Making it checks the
timeline against the dataset (reserve of vectors, k against the live set, queries left), which the
sweep does for every catalog size before anything is built.

Ids and their meaning: every vector lives at a row of the dataset's base array (the pool). An id is
the dataset's id of the row it was first inserted with; an update re-points an existing id to a fresh
reserve row (the listing's new photo), and with labels the id takes that row's product.

A big-ann runbook's steps (annbench.runbook reads and checks the file) mean, as written down for users
in configs/scenarios/README.md:

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

It also owns the op log's file format (`save_ops` / `load_ops`: one uncompressed .npz of int64 arrays per
catalog size, next to the ground truth in the prepared cache). The log is stored, not recomputed, so a run
replays exactly the steps its ground truth was computed over; as arrays (each op's rows, ids and queries
concatenated, with offsets) it holds a catalog of millions of vectors, never as JSON lists.

The scenario is read only through its attributes, so this module imports neither the YAML reader nor the
adapters (a run's process can use `Op` without them); the scenario's type is named for the type checker.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from annbench.atomic import atomic_path
from annbench.errors import ConfigError

if TYPE_CHECKING:  # for annotations only: scenarios is above this module at run time
    from annbench.scenarios import Scenario


@dataclass(frozen=True)
class Op:
    """One step of the timeline. rows index the dataset's base array; ids are the ids they carry."""

    kind: str  # build | insert | delete | update | search
    day: int
    rows: np.ndarray | None = None
    ids: np.ndarray | None = None
    queries: np.ndarray | None = None  # search: indices of the active queries

    @property
    def count(self) -> int:
        if self.ids is not None:
            return int(len(self.ids))
        return 0 if self.queries is None else int(len(self.queries))


def ground_truth_steps(ops: list[Op]) -> list[tuple[str, np.ndarray | None, np.ndarray | None]]:
    """The log as the (kind, rows, ids) steps annbench.groundtruth replays (`step_ground_truth`,
    `LiveGroundTruth.replay`): a build is an insert into an empty set."""
    return [("insert" if op.kind == "build" else op.kind, op.rows, op.ids) for op in ops
            if op.kind in ("build", "insert", "delete", "update", "search")]


def op_log(sc: Scenario, base_ids: np.ndarray, base_labels: np.ndarray | None,
           query_labels: np.ndarray | None, nq: int, size: int | None = None) -> list[Op]:
    """The deterministic op log of one run of `sc` over a dataset (its ids, labels and query count).

    Raises ConfigError when the timeline cannot be carried out on this dataset: too few reserve
    vectors, k larger than the live set at some search step, a delete of more than is live, no query
    left.
    """
    if sc.timeline.runbook is not None:
        return _runbook_log(sc, base_ids, base_labels, query_labels, nq, size)
    n = len(base_ids)
    rng = np.random.default_rng(sc.seed)
    q_all = _queries(sc, nq)
    tl = sc.timeline
    ops: list[Op] = []
    if tl.kind == "static":
        m = n if size is None else size
        if m > n:
            raise ConfigError(f"{sc.path}: timeline.sizes asks for {m} vectors but the dataset has {n}")
        rows = np.arange(m, dtype=np.int64)
        ops.append(Op("build", 0, rows, base_ids[rows]))
        ops.append(Op("search", 0, queries=_active(q_all, rows, base_labels, query_labels, sc)))
        _check_k(sc, m, 0)
        return ops

    # Rows are consumed in a seeded random order so that the reserve is spread over products.
    order = rng.permutation(n).astype(np.int64)
    n0 = int(round(tl.initial_fraction * n))
    if n0 < 1:
        raise ConfigError(f"{sc.path}: timeline.initial_fraction builds no vector from {n}")
    live_rows = {int(base_ids[r]): int(r) for r in order[:n0]}
    born = {i: 0 for i in live_rows}  # id -> day inserted, for the 'oldest' delete rule
    cursor = n0
    ops.append(Op("build", 0, order[:n0].copy(), base_ids[order[:n0]]))
    _check_k(sc, len(live_rows), 0)
    ops.append(Op("search", 0, queries=_active(q_all, np.fromiter(live_rows.values(), np.int64),
                                               base_labels, query_labels, sc)))
    for day in range(1, tl.days + 1):
        live = len(live_rows)
        n_ins, n_del, n_upd = (int(round(f * live)) for f in
                               (tl.insert_fraction, tl.delete_fraction, tl.update_fraction))
        if cursor + n_ins + n_upd > n:
            raise ConfigError(
                f"{sc.path}: day {day} needs {n_ins + n_upd} reserve vectors but only {n - cursor} of the "
                f"dataset's {n} are left; lower timeline.days or the fractions, or use a bigger dataset"
            )
        if n_del > live:
            raise ConfigError(f"{sc.path}: day {day} deletes {n_del} but only {live} are live")
        # deletes first (sold-out products leave), then new products, then new photos
        del_ids = _pick_deletes(tl.delete_rule, n_del, live_rows, born, base_labels, rng)
        if len(del_ids):
            for i in del_ids:
                del live_rows[int(i)], born[int(i)]
            ops.append(Op("delete", day, None, del_ids))
        if n_ins:
            rows = order[cursor:cursor + n_ins].copy()
            cursor += n_ins
            ids = base_ids[rows]
            for i, r in zip(ids.tolist(), rows.tolist(), strict=True):
                live_rows[i], born[i] = r, day
            ops.append(Op("insert", day, rows, ids))
        if n_upd:
            keys = np.fromiter(live_rows.keys(), np.int64, len(live_rows))
            upd_ids = np.sort(rng.choice(keys, size=min(n_upd, len(keys)), replace=False))
            rows = order[cursor:cursor + len(upd_ids)].copy()
            cursor += len(upd_ids)
            for i, r in zip(upd_ids.tolist(), rows.tolist(), strict=True):
                live_rows[i] = r
            ops.append(Op("update", day, rows, upd_ids))
        _check_k(sc, len(live_rows), day)
        active = _active(q_all, np.fromiter(live_rows.values(), np.int64), base_labels, query_labels, sc)
        ops.append(Op("search", day, queries=active))
    return ops


def _queries(sc: Scenario, nq: int) -> np.ndarray:
    """The queries a run may search: the dataset's first `queries.count` (all of them by default)."""
    q_all = np.arange(min(nq, sc.n_queries) if sc.n_queries else nq)
    if len(q_all) == 0:
        raise ConfigError(f"{sc.path}: the dataset has no queries; a scenario needs at least one")
    return q_all


def _check_k(sc: Scenario, live: int, day: int) -> None:
    if sc.k > live:
        raise ConfigError(f"{sc.path}: k={sc.k} is larger than the {live} vectors live on day {day}")


def _active(q_all: np.ndarray, live_rows: np.ndarray, base_labels: np.ndarray | None,
            query_labels: np.ndarray | None, sc: Scenario) -> np.ndarray:
    """Queries searched at a step: under 'drop', those whose product still has a live image."""
    if sc.query_rule == "keep" or base_labels is None or query_labels is None:
        return q_all
    live_products = np.unique(base_labels[np.sort(live_rows)])
    active = q_all[np.isin(query_labels[q_all], live_products)]
    if len(active) == 0:
        raise ConfigError(f"{sc.path}: no query's product is live at some step; use queries.deleted_products: keep")
    return active


def _pick_deletes(rule: str, count: int, live_rows: dict[int, int], born: dict[int, int],
                  labels: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    if count == 0:
        return np.empty(0, np.int64)
    ids = np.fromiter(live_rows.keys(), np.int64, len(live_rows))
    if rule == "oldest":
        days = np.fromiter((born[i] for i in ids.tolist()), np.int64, len(ids))
        return np.sort(ids[np.lexsort((ids, days))[:count]])
    if rule == "random" or labels is None:
        return np.sort(rng.choice(ids, size=count, replace=False))
    # 'product': whole products sell out; every live image of each chosen product leaves.
    rows = np.fromiter(live_rows.values(), np.int64, len(live_rows))
    prods = labels[rows]
    order = np.argsort(prods, kind="stable")
    uniq, starts, sizes = np.unique(prods[order], return_index=True, return_counts=True)
    pick = rng.permutation(len(uniq))
    # take whole products, in random order, until at least `count` images are gone
    n_products = int(np.searchsorted(np.cumsum(sizes[pick]), count) + 1)
    segments = [order[starts[j]:starts[j] + sizes[j]] for j in pick[:n_products]]
    return np.sort(ids[np.concatenate(segments)])


def _runbook_log(sc: Scenario, base_ids: np.ndarray, base_labels: np.ndarray | None,
                 query_labels: np.ndarray | None, nq: int, size: int | None) -> list[Op]:
    """The op log of a scenario whose timeline is a big-ann runbook, per the semantics above."""
    rb = sc.timeline.runbook
    where = f"{sc.path}: runbook {rb.path} [{rb.key}]"
    if size is not None:
        raise ConfigError(f"{where}: a runbook timeline has no catalog sizes")
    n = len(base_ids)
    base_ids = np.asarray(base_ids, dtype=np.int64)
    q_all = _queries(sc, nq)
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


OPS_FORMAT = 1  # version of the op-log file; a file of another version is recomputed by the parent
KINDS = ("build", "insert", "delete", "update", "search")


# --- the op log on disk -----------------------------------------------------------------------------
def _pack(ops: list[Any], attr: str) -> dict[str, np.ndarray]:
    """One op attribute (rows, ids or queries) of every op: concatenated values, offsets, and which are None."""
    parts = [getattr(op, attr) for op in ops]
    lengths = np.array([0 if p is None else len(p) for p in parts], np.int64)
    offsets = np.zeros(len(parts) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    present = [np.asarray(p, np.int64) for p in parts if p is not None]
    values = np.concatenate(present) if present else np.empty(0, np.int64)
    return {attr: values, f"{attr}_offsets": offsets, f"{attr}_present": np.array([p is not None for p in parts])}


def save_ops(path: Path, ops: list[Any], key: str) -> None:
    """Write an op log (any objects with Op's fields) atomically, tagged with the key it was computed for."""
    arrays: dict[str, np.ndarray] = {
        "format": np.array(OPS_FORMAT), "key": np.array(key),
        "kinds": np.array([KINDS.index(op.kind) for op in ops], np.int8),
        "days": np.array([op.day for op in ops], np.int64),
    }
    for attr in ("rows", "ids", "queries"):
        arrays.update(_pack(ops, attr))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def ops_key(path: Path) -> str | None:
    """The key an op-log file was written for, or None when it is missing, unreadable or of another format."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return str(z["key"]) if int(z["format"]) == OPS_FORMAT else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def load_ops(path: Path) -> list[Op]:
    """The op log `save_ops` wrote: int64 arrays, each op's a view into one array per field."""
    with np.load(path, allow_pickle=False) as z:
        if int(z["format"]) != OPS_FORMAT:
            raise ConfigError(f"{path}: op log of format {int(z['format'])}, expected {OPS_FORMAT}")
        kinds, days = z["kinds"], z["days"]
        packed = {attr: (z[attr], z[f"{attr}_offsets"], z[f"{attr}_present"]) for attr in ("rows", "ids", "queries")}
    ops = []
    for i, (kind, day) in enumerate(zip(kinds.tolist(), days.tolist(), strict=True)):
        got = {attr: values[off[i]:off[i + 1]] if present[i] else None
               for attr, (values, off, present) in packed.items()}
        ops.append(Op(KINDS[kind], int(day), **got))
    return ops
