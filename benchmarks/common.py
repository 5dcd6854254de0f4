"""Shared pieces of the performance suite: one result line per target, profiles, machine facts.

Every benchmark module returns `Line`s; `run.py` prints them as a table and writes their raw figures to
JSON. A line's verdict is computed from its measured figure and its target's comparison, never set by
hand, so a figure cannot pass by being rounded or by a target being restated.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Case:
    """One index configuration a benchmark measures: its family, a label for the line, build and search params."""

    family: str
    label: str
    build: dict[str, Any]
    search: dict[str, Any]


@dataclass
class Line:
    """One measured figure against one target."""

    id: str  # "P1" … "P6"
    what: str
    figure: float
    unit: str  # shown after the figure: "×", " GFLOP/s", " s", …
    op: str  # "<=" or ">="
    limit: float
    raw: dict[str, Any] = field(default_factory=dict)  # everything measured, for the JSON file
    target_text: str = ""  # how the target reads when it is not just "op limit"
    profile: str = ""  # printed under the table when the line misses (or with --profile)
    sound: bool = True  # False when a cross-check failed (e.g. different answers): the figure is void

    @property
    def ok(self) -> bool:
        if not self.sound or self.figure != self.figure:  # NaN: nothing was measured, never a pass
            return False
        return self.figure <= self.limit if self.op == "<=" else self.figure >= self.limit

    def target(self) -> str:
        return self.target_text or f"{'≤' if self.op == '<=' else '≥'} {self.limit:g}{self.unit}"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "what": self.what, "figure": self.figure, "unit": self.unit.strip(),
                "target": self.target(), "op": self.op, "limit": self.limit,
                "verdict": "pass" if self.ok else "miss", "sound": self.sound, "raw": self.raw,
                **({"profile": self.profile} if self.profile else {})}


def fmt_figure(x: float, unit: str) -> str:
    if x != x:
        return "n/a"
    digits = 3 if abs(x) < 10 else 1
    return f"{x:.{digits}f}{unit}"


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def profile_text(fn: Callable[[], Any], top: int = 12, sort: str = "tottime") -> str:
    """Run `fn` under cProfile and return the `top` functions by `sort` (cProfile inflates tiny calls:
    read it for where the time goes, not for absolute figures)."""
    prof = cProfile.Profile()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).strip_dirs().sort_stats(sort).print_stats(top)
    lines = out.getvalue().splitlines()
    # keep the column header and the rows, drop pstats' preamble about the file and ordering
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
    return "\n".join(ln for ln in lines[start:] if ln.strip())


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """The memory lines of /proc/<pid>/status (VmRSS, VmHWM, RssAnon, RssFile, RssShmem) in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def machine() -> dict[str, Any]:
    from annbench import results

    info = results.machine_info()
    info["load_avg_1_5_15"] = os.getloadavg()
    return info


def blas_info() -> list[dict[str, Any]]:
    import threadpoolctl

    keys = ("user_api", "internal_api", "prefix", "version", "num_threads", "threading_layer", "architecture")
    return [{k: info.get(k) for k in keys} for info in threadpoolctl.threadpool_info()]


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """`with stopwatch() as elapsed: …; elapsed()` — seconds since entering, frozen at exit."""
    t0 = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - t0
    end.append(time.perf_counter())


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def annbench_command() -> list[str]:
    """The `annbench` console script of this interpreter (not a pyenv shim, which adds its own start-up)."""
    script = Path(sys.executable).parent / "annbench"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from annbench.cli import main; main()"]
