"""Atomic file writing: a reader of the target path sees all of the new file or none of it.

Owns the one recipe the writers of result JSON, saved datasets, the ground-truth cache and check
baselines share: write to a temp file in the target's own folder (so the rename never crosses a
filesystem), fsync it, then `os.replace` it over the target. On any exception, KeyboardInterrupt
included, the temp file is removed and the target is left as it was. The finished file gets the
permissions a plain `open()` would give it (0666 less the umask), not mkstemp's owner-only 0600, so
results and reports in a shared folder stay readable by the team.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp path next to `path`; when the block ends without error, fsync it and rename it to `path`.

    The caller writes the temp file by name (`open(tmp, "wb")`, `Path.write_text`, `h5py.File(tmp, "w")`)
    and must close it inside the block. The parent folder is created if missing. Leftover temp files
    (only after a hard kill) are hidden and named `.<name>.<random>.tmp`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it, then put it back
    os.umask(mask)
    return mask
