"""The one JSON encoding of annbench's own files: numpy scalars and arrays and paths as plain JSON values.

Used by the result record's dump (annbench.results), the run's measurements (annbench.replay) and the
ground-truth cache key (annbench.groundtruth): one rule, so a number means the same in each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def json_default(obj: Any) -> Any:
    """`json.dumps(default=...)` for numpy scalars and arrays and paths; anything else is a TypeError."""
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
