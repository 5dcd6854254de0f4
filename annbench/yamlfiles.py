"""The YAML files annbench is given (scenarios and big-ann runbooks), read into plain Python values.

This module owns reading: a strict YAML loader (a SafeLoader that refuses duplicate keys and turns every
problem into one ConfigError line naming the file), a scenario file's `extends` chain, and the scenario
keys that name files (made absolute when a scenario moves or is extended). What the values mean is
checked above it: a scenario's by annbench.scenarios, a runbook's by annbench.runbook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from annbench.errors import ConfigError
from annbench.params import cut, shown

#: the dataset keys that name files, not content (`timeline.path` names a runbook file too)
FILE_KEYS = ("path", "queries", "labels", "query_labels")


# what PyYAML's safe constructors raise on a bad tagged scalar (`!!int abc`, `!!int `, `!!bool x`,
# `!!timestamp 2001-13-45`, `!!map [1]`) instead of a YAMLError
_CONSTRUCTOR_ERRORS = (ValueError, TypeError, IndexError, KeyError, OverflowError)


#: the most nodes a YAML document may hold once its aliases are expanded. Aliases let a few hundred
#: bytes stand for a billion nodes (the "billion laughs": ten aliases of ten aliases, nine deep); PyYAML
#: builds that as a shared graph, but everything that later walks the value (a repr in an error, the
#: workload's hash, a grid's expansion) walks it whole. Shipped scenarios hold under 500 nodes and a
#: big-ann runbook a few thousand; a document needing more than this is refused before it is constructed.
MAX_EXPANDED_NODES = 1_000_000
def expanded_size(root: yaml.Node, limit: int = MAX_EXPANDED_NODES) -> int:
    """How many nodes `root` stands for with every alias expanded; stops counting once past `limit`.

    An alias is the same node object reached twice, so each distinct node is sized once (memoised by
    id): the cost is that of the document as written, not of its expansion.
    """
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # a node reached again while it is being sized (a recursive alias) counts once
        total = 1
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                break  # big enough to refuse: no need to size the rest
        sizes[id(node)] = total
        return total

    return size(root)


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader (no Python tags), refusing duplicate keys and alias bombs; every bad value is a
    YAMLError or a one-line ConfigError."""

    def construct_document(self, node: yaml.Node) -> Any:
        # checked on the composed graph, before a single Python object is made from it
        if expanded_size(node) > MAX_EXPANDED_NODES:
            raise ConfigError(f"the document expands to more than {MAX_EXPANDED_NODES:,} nodes through its "
                              "aliases (&anchor / *alias); write the values out, or alias less")
        return super().construct_document(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except _CONSTRUCTOR_ERRORS as e:
            what = repr(node.value)[:40] if isinstance(node, yaml.ScalarNode) else f"a {node.id}"
            tag = cut(node.tag.replace("tag:yaml.org,2002:", "!!"), 60)
            raise yaml.constructor.ConstructorError(
                None, None, f"{tag} cannot be made from {what} ({cut(f'{e.__class__.__name__}: {e}', 120)})",
                node.start_mark
            ) from None


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:  # `? [a, b]: c` is valid YAML, but no scenario key is a list or a mapping
            raise ConfigError(f"a mapping key at line {key_node.start_mark.line + 1} is a {type(key).__name__}; "
                              "keys must be plain names") from None
        if key in seen:
            raise ConfigError(f"duplicate key {shown(key)} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file safely; any problem is one ConfigError line naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read scenario file ({e.__class__.__name__}: {e})") from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {cut(problem, 200)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: malformed YAML: nested too deeply") from None
    except _CONSTRUCTOR_ERRORS as e:  # raised outside construct_object, e.g. by a collection's constructor
        raise ConfigError(f"{path}: malformed YAML: {cut(f'{e.__class__.__name__}: {e}')}") from None


def read_scenario_file(path: Path) -> dict[str, Any]:
    """A scenario file's top-level mapping, with `extends: PARENT` resolved.

    A scenario that extends another takes every top-level key of its parent (and the parent's parent)
    that it does not set itself; a key it sets replaces the parent's whole value (`indexes` too), so
    what runs is read off two short files, never merged deeply. PARENT is a path relative to the file, or
    a scenario name in the same folder. The parent's relative file paths (dataset files, a runbook) are
    made absolute against the parent's folder, so they mean what they meant there.
    """
    chain: list[Path] = []
    merged: dict[str, Any] = {}
    at = Path(path)
    while True:
        raw = read_yaml(at)
        if not isinstance(raw, dict):
            raise ConfigError(f"{at}: top level must be a mapping, got {type(raw).__name__}")
        chain.append(at.resolve())
        if chain[0] != chain[-1]:
            raw = absolute_paths(raw, at.parent)
        parent = raw.pop("extends", None)
        merged = {**raw, **merged}
        if parent is None:
            return merged
        if not isinstance(parent, str) or not parent:
            raise ConfigError(f"{at}: extends must name a scenario file or a scenario in the same folder, "
                              f"got {shown(parent)}")
        nxt = at.parent / (parent if parent.endswith((".yaml", ".yml")) else f"{parent}.yaml")
        if not nxt.is_file():
            raise ConfigError(f"{at}: extends {shown(parent)}, but {shown(str(nxt), 200)} is not a scenario file")
        if nxt.resolve() in chain:
            raise ConfigError(f"{at}: extends {shown(parent)}, which extends it back (a loop)")
        at = nxt


def absolute_paths(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """A copy of a scenario's top-level mapping whose relative file paths are resolved against base_dir."""
    out = dict(raw)
    for key, fields in (("dataset", FILE_KEYS), ("timeline", ("path",))):
        sec = out.get(key)
        if isinstance(sec, dict):
            out[key] = {k: str(path_under(v, base_dir).resolve()) if k in fields and isinstance(v, str) else v
                        for k, v in sec.items()}
    return out


def path_under(raw: str, base_dir: Path) -> Path:
    """`raw` as a path: itself when absolute, else relative to `base_dir` (the folder of the file naming it)."""
    path = Path(raw)
    return path if path.is_absolute() else base_dir / path
