"""Configured values: the one set of rules they are checked by, and declared parameters.

This module owns `check_value`, the rules a value from a user (a scenario key, an index's build or search
parameter, a catalog generator knob) must pass: its type (a bool is not an integer, an integer is a
number, a number is finite), then the allowed choices, then the range. `Param` declares a parameter with
those rules and `validate_params` checks a mapping of them; adapters declare their build and search
parameters with it, the catalog generator its knobs, and `scenarios` checks every other key of a
scenario file with `check_value`, so each rule is written here once and its error reads the same.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from annbench.errors import ConfigError


def is_integer(value: Any) -> bool:
    """An integer, Python's or numpy's, and not a bool (YAML's `true` is not a count)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


#: the longest repr of a user's value an error message quotes (`shown`)
SHOWN_CHARS = 60


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """`value`'s repr, cut short: a 400-digit integer or a long list must not become a 400-character line.

    Every error message that quotes a value, key or name a user wrote goes through here: a YAML alias
    bomb's list, echoed whole, was one 34.7 MB line. A container is printed only as far as the limit
    (reprlib), so quoting a huge nested list costs no more than quoting a short one.
    """
    text = _short_repr.repr(value) if isinstance(value, (list, tuple, dict, set, frozenset)) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cut(text: str, limit: int = 200) -> str:
    """`text` on one line (runs of whitespace, newlines included, become one space), cut at `limit` characters.

    For text that quotes a user's input without being a value: a library's problem description, a
    list of known names that a grid made long.
    """
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# reprlib stops after a few items per level and a few levels deep, so it never walks a shared DAG whole
_short_repr = reprlib.Repr()
_short_repr.maxlist = _short_repr.maxtuple = _short_repr.maxdict = _short_repr.maxset = 6
_short_repr.maxlevel = 3
_short_repr.maxstring = _short_repr.maxother = SHOWN_CHARS


def check_value(value: Any, typ: type | tuple[type, ...], where: str, *, lo: float | None = None,
                hi: float | None = None, choices: tuple[Any, ...] | None = None,
                expected: str | None = None) -> Any:
    """`value` checked and converted (an int given for a float becomes a float), or ConfigError '{where} …'.

    `typ` is one type or several; `expected` names them in the message (default: their Python names, as
    the scenario reference documents its keys: "int", "list/str").
    """
    types = typ if isinstance(typ, tuple) else (typ,)
    numeric = int in types or float in types
    if numeric and isinstance(value, (float, np.floating)) and not math.isfinite(value):
        # nan passes every range check (each comparison is False), and inf is no count either
        raise ConfigError(f"{where} must be a finite number, got {shown(value)}")
    if isinstance(value, bool):
        ok = bool in types
    elif int in types and is_integer(value):
        value, ok = int(value), True
    elif float in types and (is_integer(value) or isinstance(value, (float, np.floating))):
        try:
            value, ok = float(value), True
        except OverflowError:  # an integer beyond any float, e.g. 10**400
            raise ConfigError(f"{where} must be a finite number, got {shown(value)}") from None
    else:
        ok = isinstance(value, types)
    if not ok:
        names = expected or "/".join(t.__name__ for t in types)
        raise ConfigError(f"{where} must be {names}, got {shown(value)}")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where} is {shown(value)}; allowed: {', '.join(map(str, choices))}")
    if lo is not None and value < lo:
        raise ConfigError(f"{where} is {shown(value)}; must be ≥ {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{where} is {shown(value)}; must be ≤ {hi}")
    return value


_TYPES: dict[type, str] = {int: "int", float: "float", str: "str", bool: "bool"}
# how a declared parameter's type is named in its error (`annbench list` prints the short names above)
_WORDS: dict[type, str] = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


@dataclass(frozen=True)
class Param:
    """One declared build, search or generator parameter, with its type, default and allowed range."""

    name: str
    type: type
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None

    def coerce(self, value: Any, owner: str) -> Any:
        """Return `value` checked against this declaration, or raise ConfigError naming owner and param."""
        return check_value(value, self.type, f"{owner}: parameter {self.name!r}", lo=self.min, hi=self.max,
                           choices=self.choices, expected=_WORDS.get(self.type))

    def describe(self) -> str:
        rng = ""
        if self.choices is not None:
            rng = " {" + ",".join(map(str, self.choices)) + "}"
        elif self.min is not None or self.max is not None:
            rng = f" [{'' if self.min is None else self.min}..{'' if self.max is None else self.max}]"
        return f"{self.name}: {_TYPES.get(self.type, self.type.__name__)}={self.default!r}{rng}"


def validate_params(
    declared: tuple[Param, ...], given: Mapping[str, Any], owner: str, kind: str = ""
) -> dict[str, Any]:
    """Fill defaults and check every given value; an unknown name is an error listing the valid ones.

    `kind` ("build", "search") says which parameters in that error.
    """
    by_name = {p.name: p for p in declared}
    unknown = sorted(set(given) - set(by_name), key=str)
    if unknown:
        valid = ", ".join(by_name) or "(none)"
        what = f"{kind} parameter" if kind else "parameter"
        raise ConfigError(f"{owner}: unknown {what} {shown(unknown[0])}; valid: {valid}")
    return {p.name: p.coerce(given[p.name], owner) if p.name in given else p.default for p in declared}
