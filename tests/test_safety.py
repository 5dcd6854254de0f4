"""Safety: nothing a user's file reaches can run code, and names from files cannot escape the results folder.

- The package source (annbench/**/*.py) is scanned for the ways a data or config file can execute code:
  `pickle`/`marshal` loads, `eval(`/`exec(`, `allow_pickle=True`, and YAML loaded with anything but a
  SafeLoader (`yaml.safe_load`, or `yaml.load(…, Loader=X)` where X subclasses `yaml.SafeLoader`, which
  is checked by importing the module). Each finding is listed as file:line.
- File and folder names derived from scenario, index and dataset names are sanitised: a scenario name
  like `../../evil` is refused, and every run id (the result file's name) is made of [A-Za-z0-9_.-].
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
import yaml

from annbench import adapters, results, yamlfiles
from annbench.errors import ConfigError
from annbench.scenarios import load_scenario, resolve_scenario_path
from tests.conftest import REPO, small_scenario

PACKAGE = REPO / "annbench"
SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
UNSAFE_CALLS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("marshal", "load"),
                ("marshal", "loads"), ("shelve", "open"), ("yaml", "unsafe_load"), ("yaml", "full_load"),
                ("yaml", "unsafe_load_all"), ("yaml", "full_load_all")}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _loader_is_safe(loader: ast.AST, module: str) -> bool:
    """`Loader=` names a SafeLoader subclass: yaml.SafeLoader/CSafeLoader, or a class of `module`."""
    name = _dotted(loader)
    if name.startswith("yaml."):
        obj = getattr(yaml, name.split(".", 1)[1], None)
    else:
        obj = getattr(importlib.import_module(module), name, None)
    return isinstance(obj, type) and issubclass(obj, yaml.SafeLoader)


def unsafe_uses(source: str, filename: str, module: str) -> list[str]:
    """Every place in `source` where a file's content could run code, as 'file:line: what'."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        func = _dotted(node.func)
        parts = tuple(func.rsplit(".", 1)) if "." in func else ("", func)
        where = f"{filename}:{node.lineno}"
        if parts in UNSAFE_CALLS:
            found.append(f"{where}: {func}(")
        elif isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec"):
            found.append(f"{where}: {node.func.id}(")
        elif parts in (("yaml", "load"), ("yaml", "load_all")):
            loader = next((k.value for k in node.keywords if k.arg == "Loader"),
                          node.args[1] if len(node.args) > 1 else None)
            if loader is None or not _loader_is_safe(loader, module):
                found.append(f"{where}: {func}( without a SafeLoader")
        for kw in node.keywords:
            if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                found.append(f"{where}: allow_pickle={ast.unparse(kw.value)}")
    # a plain text pass as well, for uses the call walk cannot see (an alias, a getattr, a string)
    for i, line in enumerate(source.splitlines(), 1):
        code = line.split("#", 1)[0]
        if re.search(r"\bpickle\.loads?\b|\ballow_pickle\s*=\s*True\b|\bimport\s+pickle\b|\bfrom\s+pickle\b", code):
            found.append(f"{filename}:{i}: {code.strip()}")
    return sorted(set(found))


def _module(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def test_no_code_execution_from_files_in_the_package() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10
    found = [hit for f in files for hit in unsafe_uses(f.read_text(encoding="utf-8"), str(f.relative_to(REPO)),
                                                       _module(f))]
    assert not found, "unsafe loading of user files:\n" + "\n".join(found)


def test_the_scenario_loader_is_a_safe_loader() -> None:
    # the one yaml.load in the package: its loader must refuse Python tags
    assert issubclass(yamlfiles.UniqueKeyLoader, yaml.SafeLoader)
    with pytest.raises(yaml.YAMLError):
        yaml.load("!!python/object/apply:os.system ['true']", Loader=yamlfiles.UniqueKeyLoader)  # noqa: S506


@pytest.mark.parametrize("snippet, flagged", [
    ("import pickle\npickle.load(f)\n", True),
    ("data = pickle.loads(blob)\n", True),
    ("x = eval(text)\n", True),
    ("exec(code)\n", True),
    ("np.load(p, allow_pickle=True)\n", True),
    ("yaml.load(text)\n", True),
    ("yaml.load(text, Loader=yaml.Loader)\n", True),
    ("yaml.unsafe_load(text)\n", True),
    ("yaml.load(text, Loader=yaml.SafeLoader)\n", False),
    ("yaml.load(text, Loader=UniqueKeyLoader)\n", False),
    ("yaml.safe_load(text)\n", False),
    ("np.load(p, allow_pickle=False)\nmodel.eval()\n", False),
])
def test_the_scan_catches_what_it_should(snippet: str, flagged: bool) -> None:
    # the scanner is itself tested, so a clean package means something
    assert bool(unsafe_uses(snippet, "x.py", "annbench.yamlfiles")) is flagged, snippet


# --- names that become files and folders ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../evil", "..", ".hidden", "a/b", "a\\b", "/abs", "", "x" * 200, "-x",
                                  "nul\x00", "sp ace", "ü"])
def test_unsafe_scenario_names_are_refused(tmp_path: Path, name: str) -> None:
    # the scenario's name becomes the results folder; the file itself is called s.yaml
    doc = yaml.safe_load(small_scenario(tmp_path, [{"family": "faiss-flat"}]).read_text())
    doc["name"] = name
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="name"):
        load_scenario(tmp_path / "s.yaml")


@pytest.mark.parametrize("spec", ["..", "../x", "..\\x", ".", "~root", "x y"])
def test_scenario_names_cannot_escape_the_configs_folder(tmp_path: Path, spec: str) -> None:
    (tmp_path / "configs").mkdir()
    with pytest.raises(ConfigError):
        resolve_scenario_path(spec, tmp_path / "configs")


def test_dataset_names_cannot_escape(tmp_path: Path) -> None:
    path = small_scenario(tmp_path, [{"family": "faiss-flat"}], dataset={"name": "../etc"})
    with pytest.raises(ConfigError, match="dataset.name is '../etc'; allowed: catalog"):
        load_scenario(path)


def test_run_ids_are_safe_file_names(tmp_path: Path) -> None:
    # labels, build values and families of any spelling never reach the file name: only family + hash
    nasty = [{"family": "faiss-ivf", "name": "../../etc/passwd", "build": {"nlist": [4, 8], "encoding": "../x"},
              "search": {"nprobe": [1, 2]}},
             {"family": "hnswlib", "name": "a b/c", "build": {"M": 8}, "policies": ["native", "tombstone"]},
             {"family": "annoy", "name": "..", "policies": ["rebuild"]}]
    scenarios = [load_scenario(small_scenario(tmp_path, nasty))]
    scenarios += [load_scenario(REPO / "configs" / "scenarios" / f"{n}.yaml")
                  for n in ("reseller_daily_updates", "catalog_size", "ci_smoke")]
    out = (tmp_path / "out").resolve()
    runs = [(sc, spec) for sc in scenarios for spec in sc.runs()]
    assert len(runs) > 10
    for sc, spec in runs:
        assert SAFE_ID.match(spec.run_id), spec.run_id
        assert SAFE_ID.match(sc.name), sc.name
        path = results.result_path(out, sc.name, spec.run_id).resolve()
        assert path.parent.parent == out, path


def test_registered_family_names_are_safe() -> None:
    # a family name is the first part of every run id
    for name in adapters.names():
        assert SAFE_ID.match(name), name
