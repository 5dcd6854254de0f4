"""The package's import graph: no circles, no annbench import inside a function, no private name imported.

Every module under annbench/ is parsed with `ast` (nothing is imported), and each `import` / `from … import`
of an annbench module becomes an edge of the graph: at module level, in a function or method, and under
`if TYPE_CHECKING:` alike (a circle the type checker sees is a circle too). `from annbench import x` is an
edge to annbench.x when x is a submodule, else to the package; relative imports are resolved against the
module's package. A package's own `__init__` running before its submodules is not an edge: only what the
source says is.

- A circle is named by its modules, in import order (a → b → a), one line per circle.
- An annbench import inside a function or method is named by file:line. Deferring a heavy third-party
  library there (`import faiss`) is fine and not looked at; deferring an annbench module hides a circle.
- A private name (`_x`) imported from another annbench module is named by file:line: it is that
  module's to change.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REPO

PACKAGE = "annbench"


@dataclass
class Graph:
    """Edges between annbench modules and what the walk found on the way, each as 'file:line: …'."""

    edges: dict[str, set[str]] = field(default_factory=dict)
    in_functions: list[str] = field(default_factory=list)
    private_names: list[str] = field(default_factory=list)


def module_name(path: Path, root: Path) -> str:
    """annbench/x/y.py → annbench.x.y; annbench/x/__init__.py → annbench.x."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _in_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return True
    return False


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
             modules: set[str]) -> list[tuple[str, list[str]]]:
    """The annbench modules one import statement loads, each with the names taken from it."""
    if isinstance(node, ast.Import):
        return [(a.name, []) for a in node.names if a.name == PACKAGE or a.name.startswith(PACKAGE + ".")]
    if node.level:  # relative: from the module's own package, up level - 1 packages
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = package[: len(package) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    if source != PACKAGE and not source.startswith(PACKAGE + "."):
        return []
    out: list[tuple[str, list[str]]] = []
    names: list[str] = []
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        if sub in modules:  # `from annbench import harness`: the submodule itself
            out.append((sub, []))
        else:
            names.append(alias.name)
    if names:
        out.append((source, names))
    return out


def walk(files: dict[str, tuple[str, bool, str]]) -> Graph:
    """The graph of `files`: module name → (file name to report, is a package `__init__`, source)."""
    modules = set(files)
    graph = Graph({m: set() for m in modules})
    for module, (filename, is_package, source) in sorted(files.items()):
        tree = ast.parse(source, filename)
        parents = _parents(tree)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets = _targets(node, module, is_package, modules)
            for target, names in targets:
                if target != module:
                    graph.edges[module].add(target)
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                if private and target != module:
                    graph.private_names.append(f"{filename}:{node.lineno}: {', '.join(private)} from {target}")
            if targets and _in_function(node, parents):
                graph.in_functions.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
    return graph


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module, as a closed path a → … → a."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan; the package has a few dozen modules, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return [_cycle_in(comp, edges) for comp in sorted(components)]


def _cycle_in(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest closed path through the component's first module (breadth-first inside the component)."""
    inside = set(component)
    start = component[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges.get(v, set()) & inside):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, v, start]
                if w not in came_from:
                    came_from[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no circle through {start} in {component}")  # a component always has one


def package_graph() -> Graph:
    root = REPO / PACKAGE
    files = {module_name(p, REPO): (str(p.relative_to(REPO)), p.name == "__init__.py", p.read_text(encoding="utf-8"))
             for p in sorted(root.rglob("*.py"))}
    return walk(files)


# --- the package -------------------------------------------------------------------------------------------
def test_the_walk_sees_the_whole_package() -> None:
    graph = package_graph()
    assert len(graph.edges) > 20 and "annbench.adapters.base" in graph.edges
    # a known edge in each direction of resolution: `from annbench import x` and `from annbench.x import y`
    assert "annbench.adapters" in graph.edges["annbench.scenarios"]
    assert "annbench.errors" in graph.edges["annbench.scenarios"]


def test_no_import_circles() -> None:
    found = circles(package_graph().edges)
    assert not found, "import circles:\n" + "\n".join(" → ".join(c) for c in found)


def test_no_annbench_import_inside_a_function() -> None:
    found = package_graph().in_functions
    assert not found, ("annbench imports inside a function or method (move them to the top of the module; "
                       "only a heavy third-party library may be deferred):\n" + "\n".join(found))


def test_no_private_name_is_imported_from_another_module() -> None:
    found = package_graph().private_names
    assert not found, "private names imported from another annbench module:\n" + "\n".join(found)


# --- the walk itself, on small made-up packages, so that a clean package means something -------------------
def _walk(**sources: str) -> Graph:
    """Sources by module name, `__` for a dot and `__init` for a package's own module."""
    files = {}
    for name, text in sources.items():
        package = name.endswith("__init")
        module = name.removesuffix("__init").replace("__", ".")
        files[module] = (module.replace(".", "/") + ("/__init__.py" if package else ".py"), package, text)
    return walk(files)


def test_the_walk_resolves_every_form_of_import() -> None:
    g = _walk(annbench__a="from annbench import b, errors\nimport annbench.c\n",
              annbench__b="from annbench.c import thing\nfrom . import d\nfrom .d import x\n",
              annbench__c="import numpy\nimport annbench\n",
              annbench__d="",
              annbench__errors="",
              annbench__sub__init="from .e import y\nfrom .. import d\n",
              annbench__sub__e="from annbench.sub import z\n")
    assert g.edges["annbench.a"] == {"annbench.b", "annbench.errors", "annbench.c"}
    assert g.edges["annbench.b"] == {"annbench.c", "annbench.d"}
    assert g.edges["annbench.c"] == {"annbench"}  # the package itself: a name of its __init__
    assert g.edges["annbench.sub"] == {"annbench.sub.e", "annbench.d"}
    assert g.edges["annbench.sub.e"] == {"annbench.sub"}
    assert not g.in_functions and not g.private_names


def test_the_walk_finds_circles_function_level_imports_and_private_names() -> None:
    g = _walk(annbench__a="from annbench import b\n",
              annbench__b="def f():\n    from annbench.c import _hidden\n",
              annbench__c="from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from annbench import a\n",
              annbench__d="class K:\n    def m(self):\n        import annbench.a\n        import faiss\n",
              annbench__e="from annbench.d import K\n")
    assert circles(g.edges) == [["annbench.a", "annbench.b", "annbench.c", "annbench.a"]]
    assert g.in_functions == ["annbench/b.py:2: from annbench.c import _hidden",
                              "annbench/d.py:3: import annbench.a"]
    assert g.private_names == ["annbench/b.py:2: _hidden from annbench.c"]
    assert circles({"x": {"y"}, "y": {"x"}, "z": {"x"}}) == [["x", "y", "x"]]
