"""The workload of one run: what the sweep's parent validated, handed to the run's process as data.

Owns the `Workload` record (the settings a run replays under, the index's resolved build parameters and
search grid, its policy, and the paths of the prepared dataset, ground truth and op log), its JSON form,
and the op log's file format (`save_ops` / `load_ops`: one uncompressed .npz of int64 arrays per catalog
size, next to the ground truth in the prepared cache). The parent (annbench.harness) validates the
scenario once and writes both; a run's process (annbench.replay) reads them and never the scenario: it
needs neither the YAML reader nor any adapter module but its own family's. So this module imports nothing
of annbench's above the adapters' base and the op log's record (annbench.oplog.Op).

The op log is stored, not recomputed, so a run replays exactly the steps its ground truth was computed
over; as arrays (each op's rows, ids and queries concatenated, with offsets) it holds a catalog of
millions of vectors in a few int64 arrays, never as JSON lists.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from annbench.atomic import atomic_path
from annbench.errors import ConfigError
from annbench.oplog import Op
from annbench.vectors import Metric

OPS_FORMAT = 1  # version of the op-log file; a file of another version is recomputed by the parent
KINDS = ("build", "insert", "delete", "update", "search")


@dataclass(frozen=True)
class Concurrency:
    """`search.concurrency*`: search steps also measured with T client threads issuing single queries."""

    levels: tuple[int, ...]  # client thread counts, e.g. (1, 2, 4)
    seconds: float  # how long each level runs, per search setting
    days: tuple[int, ...] | None = None  # the search steps (days) measured; None: every one

    def applies(self, day: int) -> bool:
        return self.days is None or day in self.days


@dataclass(frozen=True)
class ConcurrentUpdates:
    """`timeline.concurrent_updates`: a day's deletes, inserts and updates applied by one writer thread at a
    target rate while `threads` clients search (see annbench.concurrency)."""

    rate: float  # target vectors per second (deleted, inserted and updated items all count)
    threads: int  # client threads searching while the writer writes
    batch: int  # items per write call
    snapshots: int  # recall snapshots per day, taken with the writer paused between batches
    at_rest_seconds: float  # the same search load measured after the day's writes, for comparison
    days: tuple[int, ...] | None = None  # days applied this way; None: every day

    def applies(self, day: int) -> bool:
        return self.days is None or day in self.days


@dataclass(frozen=True)
class Workload:
    """Everything one run replays and how, as validated by the parent: plain values and paths, JSON-able."""

    family: str
    adapter_module: str | None  # imported first by the run: the module of a `register`ed class (tests)
    build_params: dict[str, Any]  # resolved: every declared parameter, defaults filled in
    search_grid: list[dict[str, Any]]  # one dict per search setting, each validated
    policy: str
    metric: Metric
    k: int
    seed: int  # the scenario's; the run's own sampling (freshness) draws from seed + 1
    threads: int
    timeline: str  # "daily" (a runbook's too) or "static"
    rebuild_every: int
    maintain_every: int
    rounds: int  # repeats of every timed search measurement (annbench.timing)
    warmup: bool
    keep_answers: bool
    concurrency: Concurrency | None
    concurrent_updates: ConcurrentUpdates | None
    data_dir: str  # the prepared dataset: base.npy, queries.npy, ids.npy, labels (annbench.harness)
    gt_path: str  # exact distances of every search step (annbench.groundtruth)
    ops_path: str  # the op log (`save_ops`)

    def paths(self) -> list[str]:
        """The prepared files a machine must be able to read to execute this run."""
        return [self.data_dir, self.gt_path, self.ops_path]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["metric"] = self.metric.value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Workload:
        names = {f.name for f in fields(cls)}
        if set(d) != names:  # the sweep checks annbench versions first: a mismatch here is a bug
            raise ConfigError(f"a workload with fields {sorted(set(d) ^ names)} unexpected or missing")
        cc, cu = d["concurrency"], d["concurrent_updates"]
        return cls(**{
            **d,
            "metric": Metric(d["metric"]),
            "concurrency": None if cc is None else Concurrency(
                tuple(cc["levels"]), cc["seconds"], None if cc["days"] is None else tuple(cc["days"])),
            "concurrent_updates": None if cu is None else ConcurrentUpdates(
                **{**cu, "days": None if cu["days"] is None else tuple(cu["days"])}),
        })

    def dump(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Workload:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


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
