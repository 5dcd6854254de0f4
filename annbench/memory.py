"""The memory an index holds, measured in the run's own process.

Owns how annbench reads this process's memory and what it attributes to the index:

- `anon_bytes`: the process's *anonymous* resident bytes (heap, private mappings) from
  `/proc/self/smaps_rollup`. RSS is the wrong figure for an index: it also counts the file pages of the
  memory-mapped dataset that the build read (*measured*, 100k × 128 faiss Flat: 49 MB of a 98 MB RSS delta
  were file-backed) — pages the kernel drops under pressure and that production does not have.
- `settle`: a garbage collection and glibc's `malloc_trim(0)` before each reading, so memory freed by the
  build (k-means training buffers, the gathered input copy) is given back rather than counted.
- `IndexMemory`: the reading just before the build — library imported, dataset, queries and ground truth
  loaded, the policy's own bookkeeping (the live set) in place — and the readings after build and after the
  last day's writes. The difference is the index's; for IVF-PQ under L2 it includes the table of
  precomputed distances faiss keeps (nlist·m·256·4 bytes), which is real serving memory.
- the RSS high-water mark (`reset_peak_rss`, `peak_rss`) for the build's peak.

Where a library keeps its index outside anonymous memory (a memory-mapped file, a database server), the
adapter says so (`Adapter.footprint`, `Adapter.library_bytes`) and the result records it instead.
"""

from __future__ import annotations

import ctypes
import gc
import resource
from dataclasses import dataclass, field
from typing import Any

import psutil

_ROLLUP = "/proc/self/smaps_rollup"
HOW = ("anonymous resident memory (/proc/self/smaps_rollup) after build − just before build, each read after "
       "gc and malloc_trim(0); the mmapped dataset's file pages are not counted")


def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc: freed heap may stay counted, a small overstatement


_TRIM = _malloc_trim()  # looked up at import, never inside a run's measured region


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def anon_bytes() -> int | None:
    """Anonymous resident bytes of this process (Linux ≥ 4.14), or None where the kernel does not tell."""
    try:
        with open(_ROLLUP) as f:
            for line in f:
                if line.startswith("Anonymous:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def settle() -> None:
    """Collect garbage and give freed heap back to the kernel, so a reading counts only what is held."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)


def settled_anon() -> int | None:
    settle()
    return anon_bytes()


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark, so the next peak is the build's own (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # lifetime peak; Linux reports KiB


@dataclass
class IndexMemory:
    """Readings around one build: `before` is taken by the policy right before the index is built."""

    anon_before: int | None = None
    rss_before: int = 0
    readings: dict[str, int | None] = field(default_factory=dict)

    def mark_before(self) -> None:
        self.anon_before = settled_anon()
        self.rss_before = rss()

    def held(self) -> int | None:
        """Anonymous bytes held now beyond the reading before the build (None where unmeasurable)."""
        now = settled_anon()
        if now is None or self.anon_before is None:
            return None
        return now - self.anon_before
