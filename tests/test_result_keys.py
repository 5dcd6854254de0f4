"""No module outside `annbench.results` reads a result document by string key (issue 15).

Readers get a `results.RunRecord` and use its typed attributes; a key read (`run["steps"]`,
`s.get("latency_ms")`) would bypass the record's checks and break silently when a field is renamed. The
test walks the syntax tree of every module that imports `annbench.results` (a module that does not cannot
be handed a result document: scenario and adapter code use some of the same words for their own
documents) and fails on a subscript or `.get()` whose string key is the name of a run-record field, in a
load (read) context.

Modules that BUILD a result document (the run's process: replay, the concurrency and timing figures)
assemble plain dicts that `results.parse` checks before anything is written; reading back a figure they
just put in an intermediate dict is not reading a result document, so they are listed apart with why.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from annbench import results
from tests.conftest import REPO

# Builders of the document, in the run's own process: their dicts become a record through results.parse.
BUILDERS = {
    "annbench/replay.py": "assembles a run's steps and settings",
    "annbench/concurrency.py": "assembles concurrency levels and ingest steps",
    "annbench/timing.py": "assembles a setting's rounds, intervals and noise verdict",
    "annbench/memory.py": "assembles the memory figures",
}
# Field names that are also ordinary words of other documents (scenario YAML, adapter params, task specs):
# too generic to tell a result read from another read.
GENERIC = {"name", "path", "hash", "params", "k", "seed", "threads", "size", "n", "dim", "metric", "label",
           "family", "policy", "build", "search", "kind", "format", "day", "count", "op", "key", "what", "source",
           "bytes", "from", "round", "batch", "ops", "timeline", "scale", "rounds", "runbook", "labels", "version",
           "queries"}


def _record_keys() -> set[str]:
    keys: set[str] = set()
    todo = [results.RunRecord]
    seen: set[type] = set()
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for f in dataclasses.fields(cls):
            keys.add(f.name.rstrip("_"))
        for value in vars(results).values():
            if dataclasses.is_dataclass(value) and isinstance(value, type) and value.__module__ == results.__name__:
                todo.append(value)
    return keys - GENERIC


def _key_reads(tree: ast.AST, keys: set[str]) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            sl = node.slice
            if isinstance(sl, ast.Constant) and isinstance(sl.value, str) and sl.value in keys:
                found.append((node.lineno, f'[{sl.value!r}]'))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value in keys):
            found.append((node.lineno, f'.get({node.args[0].value!r})'))
    return found


def _module_of(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imported(tree: ast.AST, modules: set[str]) -> set[str]:
    """The annbench modules a module imports (anywhere in it)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out & modules


def _readers(trees: dict[str, ast.AST]) -> set[str]:
    """Modules that import annbench.results, directly or through another module: the only ones a result
    document (or a record) can reach."""
    graph = {m: _imported(t, set(trees)) for m, t in trees.items()}
    reach = {"annbench.results"}
    while True:
        more = {m for m, deps in graph.items() if deps & reach} - reach
        if not more:
            return reach - {"annbench.results"}
        reach |= more


def test_no_module_outside_results_reads_a_result_document_by_key() -> None:
    keys = _record_keys()
    assert {"steps", "settings", "latency_ms", "recall", "memory", "index_bytes"} <= keys
    trees = {_module_of(p): ast.parse(p.read_text(encoding="utf-8")) for p in (REPO / "annbench").rglob("*.py")}
    paths = {_module_of(p): p.relative_to(REPO).as_posix() for p in (REPO / "annbench").rglob("*.py")}
    readers = sorted(m for m in _readers(trees) if paths[m] not in BUILDERS)
    offenders = [f"{paths[m]}:{line}: {what}" for m in readers for line, what in _key_reads(trees[m], keys)]
    assert {"annbench.recommend", "annbench.check", "annbench.export", "annbench.cli"} <= set(readers)
    assert not offenders, "result documents read by string key:\n" + "\n".join(offenders)


def test_the_check_can_fail() -> None:
    keys = _record_keys()
    assert _key_reads(ast.parse('run["steps"]; s.get("latency_ms"); x["steps"] = 1'), keys) == [
        (1, "['steps']"), (1, ".get('latency_ms')")]


def test_builders_listed_exist() -> None:
    for rel in BUILDERS:
        assert Path(REPO / rel).is_file(), rel
