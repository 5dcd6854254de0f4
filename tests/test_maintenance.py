"""Maintenance policies: an adapter's own upkeep call (a database's optimize / reindex / vacuum) as a policy.

The databases' adapters test their real calls end to end (tests/test_lancedb.py, tests/test_pgvector.py);
here the seam itself: which names a scenario may use, how often the call runs, and how a run records it.
The index under test is real faiss; only the upkeep call is the test's own (it counts and compacts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from click.testing import CliRunner

from annbench.adapters import register
from annbench.adapters.base import Metric
from annbench.adapters.faiss_ import FaissFlat
from annbench.cli import main
from annbench.errors import ConfigError
from annbench.policies import MaintainPolicy, make_policy
from annbench.scenarios import load_scenario
from tests.conftest import small_scenario


# Registered at import: each run's subprocess imports this module to find the class (annbench.harness).
@register
class CompactingFlat(FaissFlat):
    """faiss Flat with a declared upkeep call; `footprint` reports a made-up external size per live vector."""

    name = "test-compacting-flat"
    maintenance: ClassVar[tuple[str, ...]] = ("compact",)
    calls: ClassVar[list[str]] = []

    def maintain(self, op: str) -> None:
        type(self).calls.append(op)

    def footprint(self) -> dict[str, int]:
        return {"disk_bytes": 4 * self.dim * int(self.index.ntotal)}


@pytest.fixture
def registered():
    CompactingFlat.calls.clear()
    return CompactingFlat


def test_maintenance_policy_runs_its_call_every_n_days(registered) -> None:
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((300, 8)).astype(np.float32)
    policy = make_policy("compact", registered, Metric.L2, 8, 1, {}, pool, rebuild_every=5, maintain_every=2)
    assert isinstance(policy, MaintainPolicy) and policy.name == "compact"
    policy.build(np.arange(200), np.arange(200, dtype=np.int64) + 1000)
    done = [policy.maintain(day) for day in range(1, 6)]
    assert done == [None, "compact", None, "compact", None]
    assert registered.calls == ["compact", "compact"]
    # writes are the adapter's own (native): the deleted id is gone, the inserted one is found
    policy.delete(np.array([1000]))
    policy.insert(np.array([250]), np.array([5000]))
    assert policy.search(pool[[250]], 1)[0, 0] == 5000
    assert 1000 not in policy.search(pool[[0]], 5)


def test_maintenance_policy_names_are_checked_per_family(registered, tmp_path: Path) -> None:
    ok = small_scenario(tmp_path, [{"family": registered.name, "policies": ["native", "compact"]}])
    assert load_scenario(ok).indexes[0].policies == ("native", "compact")
    # a maintenance name another family does not declare is refused, naming what that family allows
    bad = small_scenario(tmp_path, [{"family": "hnswlib", "policies": ["compact"]}])
    with pytest.raises(ConfigError, match=r"hnswlib has no policy 'compact'; allowed: native, tombstone, rebuild$"):
        load_scenario(bad)
    with pytest.raises(ConfigError, match="allowed: native, tombstone, rebuild, compact"):
        make_policy("optimize", registered, Metric.L2, 8, 1, {}, np.zeros((1, 8), np.float32), rebuild_every=1)


def test_a_run_records_maintain_steps_and_external_bytes(registered, tmp_path: Path) -> None:
    path = small_scenario(tmp_path, [{"family": registered.name, "policies": ["compact"]}], maintain_every=2)
    out = tmp_path / "results"
    cli = CliRunner().invoke(main, ["run", "--scenario", str(path), "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    (result,) = [json.loads(p.read_text()) for p in (out / "small").glob("*.json")]
    assert result["status"] == "ok", result.get("error")
    steps = result["steps"]
    assert [(s["day"], s["action"]) for s in steps if s["op"] == "maintain"] == [(2, "compact")]
    searches = [s for s in steps if s["op"] == "search"]
    # the made-up size follows the live set day by day, so it is measured per step, not copied from the build
    assert [s["external_bytes"]["disk_bytes"] for s in searches] == [4 * 16 * s["live"] for s in searches]
    assert result["memory"]["external_bytes"]["disk_bytes"] == 4 * 16 * searches[0]["live"]
