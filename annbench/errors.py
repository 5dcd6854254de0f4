"""The one error family of annbench.

Every mistake a user can make (a bad file, a bad scenario, a bad parameter) raises an `AnnbenchError`
subclass whose message is one line saying what is wrong, where, and what is allowed. The CLI turns
these into that line on stderr and exit status 2; anything else is a bug and keeps its traceback.
"""


class AnnbenchError(Exception):
    """Base of all user-facing errors: the message is one actionable line."""


class DataError(AnnbenchError):
    """A dataset file is missing, unreadable, malformed or holds invalid vectors."""


class ConfigError(AnnbenchError):
    """A scenario, parameter or command-line value is invalid."""


class CapabilityError(AnnbenchError):
    """An operation was asked of an adapter that declares it unsupported."""
