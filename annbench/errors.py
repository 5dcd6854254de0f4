"""The one error family of annbench, and how a fault of the machine is told from a mistake of the user.

Every mistake a user can make (a bad file, a bad scenario, a bad parameter) raises an `AnnbenchError`
subclass whose message is one line saying what is wrong, where, and what is allowed. The CLI turns
these into that line on stderr and the class's `exit_status`: 2 for the user's input, 3 for an
`EnvironmentFault` (a full disk, a read-only or forbidden folder). Anything else is a bug and keeps
its traceback.

Exit 3 exists so a CI job can tell "the machine failed" from "recall regressed" (1) and "the command
line is wrong" (2): a full disk while writing results must never read as a regression.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

EXIT_VERDICT, EXIT_USAGE, EXIT_ENVIRONMENT = 1, 2, 3

# The errnos that say the machine, not the input, refused: no space, no quota, a read-only mount, no permission.
# ENOENT, ENOTDIR, EISDIR and ENAMETOOLONG are not here: they follow from a path the user gave (exit 2).
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


class AnnbenchError(Exception):
    """Base of all user-facing errors: the message is one actionable line."""

    exit_status: ClassVar[int] = EXIT_USAGE


class DataError(AnnbenchError):
    """A dataset file is missing, unreadable, malformed or holds invalid vectors."""


class ConfigError(AnnbenchError):
    """A scenario, parameter or command-line value is invalid."""


class CapabilityError(AnnbenchError):
    """An operation was asked of an adapter that declares it unsupported."""


class EnvironmentFault(AnnbenchError):
    """The machine refused to store what annbench writes (results, report, CSV, baseline, cache): exit 3.

    A subclass of AnnbenchError, not a separate base, because its contract is the same — one line naming
    what and where, never a traceback — and the CLI reads the exit status from the class. Code that
    means "the input is wrong" catches ConfigError or DataError, never AnnbenchError itself, so a full
    disk is not mistaken for bad input. `fault_from` words the line: `<what> (<path>): <reason>`.
    """

    exit_status: ClassVar[int] = EXIT_ENVIRONMENT


def is_environment_fault(exc: BaseException | None) -> bool:
    """True for an OSError whose errno says the machine, not the input, refused."""
    return isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS


def reason(exc: OSError) -> str:
    """'no space left on device': the system's own words, in the lower case of the rest of the line."""
    text = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc))
    return text[:1].lower() + text[1:]


# atomic_path's temp files are `.<name>.<random>.tmp` beside their target: the user knows the target
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[^./]+\.tmp$")


def shown_path(exc: OSError, default: Path | str | None = None) -> Path | str | None:
    """The path to name for a failed write: the file the OSError names (a temp file as its target), else `default`.

    A failed write() or fsync() carries no file name, so the caller's `default` (the file or folder it
    was writing) names it then.
    """
    name = exc.filename
    if name is None or isinstance(name, int):
        return default
    path = Path(os.fsdecode(name))
    m = _TEMP_NAME.match(path.name)
    return path.with_name(m["name"]) if m else path


def fault_from(exc: OSError, what: str, path: Path | str | None = None) -> EnvironmentFault:
    """The EnvironmentFault an environment OSError stands for: `<what> (<file or folder>): <reason>`.

    An OSError whose text annbench composed itself (harness.UnsavedResult: where the finished run was
    kept and how to move it back) already says what and where: its text is the line, unprefixed.
    """
    standard = os.strerror(exc.errno) if exc.errno else ""
    if exc.strerror and standard and not exc.strerror.startswith(standard):
        return EnvironmentFault(exc.strerror)
    culprit, where, at = shown_path(exc), path, ""
    if culprit is not None:
        if path is None:
            where = culprit
        elif Path(culprit).resolve() == Path(path).resolve():
            pass  # the very file or folder: named as the user wrote it
        elif Path(culprit).resolve().is_relative_to(Path(path).resolve()):
            where = culprit  # a file inside the folder being written
        else:
            at = f" at {culprit}"  # e.g. a parent folder of the file, which could not be made
    shown = f" ({where})" if where is not None else ""
    return EnvironmentFault(f"{what}{shown}: {reason(exc)}{at}")


@contextmanager
def writing(what: str, path: Path | str | None) -> Iterator[None]:
    """Inside the block, an OSError of the machine (ENVIRONMENT_ERRNOS) becomes `EnvironmentFault(what, path)`.

    `what` says what was being done ("cannot write the CSV"), `path` the file or folder it was writing,
    named when the OSError itself names no file (a failed write() or fsync()). Other OSErrors pass unchanged.
    """
    try:
        yield
    except OSError as e:
        if is_environment_fault(e):
            raise fault_from(e, what, path) from e
        raise
