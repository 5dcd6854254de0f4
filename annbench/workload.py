"""The workload of one run: what the sweep's parent validated, handed to the run's process as data.

Owns the `Workload` record (the settings a run replays under, the index's resolved build parameters and
search grid, its policy, and the paths of the prepared dataset, ground truth and op log), its JSON form,
and the two settings records a scenario and a run share (`Concurrency`, `ConcurrentUpdates`). The parent
(annbench.harness) validates the scenario once and writes the workload; a run's process (annbench.replay)
reads it and never the scenario: it needs neither the YAML reader nor any adapter module but its own
family's. So this module sits below annbench.scenarios and imports only errors and vectors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from annbench.errors import ConfigError
from annbench.vectors import Metric


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
