"""Every import in ``kcode/`` follows the layer map of ``docs/architecture.md``: a module
imports only its own layer or the layers below, a service or frontend imports another of
its layer only along an edge the map's table lists, and no two foundation modules or
packages import each other in a circle.

The map is read from the document itself, so the document and this test cannot disagree.
Imports inside functions count, and so do ``__import__("kcode...")`` and
``importlib.import_module("kcode...")`` with a literal name. The checker is run on copies of
the package with a planted bad import, so it cannot pass by seeing nothing.
"""

from __future__ import annotations

import ast
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = REPO / "docs" / "architecture.md"
LAYERS = ("foundation", "services", "agent", "frontends")  # lowest first
LAYERS_HEADER = "| Layer | Units |"
EDGES_HEADER = "| Unit | May import from its own layer |"


@dataclass(frozen=True)
class LayerMap:
    layer_of: dict[str, str]  # unit -> layer
    allowed: frozenset[tuple[str, str]]  # (unit, unit) edges within the services or the frontends


@dataclass(frozen=True)
class Edge:
    source: str  # unit
    target: str  # unit
    where: str  # kcode/x.py:LINE
    imported: str  # the module named by the import

    def __str__(self) -> str:
        return f"{self.where} imports {self.imported}: {self.source} -> {self.target}"


def _table_rows(text: str, header: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == header), None)
    assert start is not None, f"{ARCHITECTURE.name} has no table headed {header!r}"
    rows = []
    for line in lines[start + 2 :]:  # after the header and the |---| line
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def read_layer_map(text: str) -> LayerMap:
    """The two tables of the document: each layer's units, and the edges allowed within the
    services and within the frontends."""
    layer_of: dict[str, str] = {}
    for layer, units in _table_rows(text, LAYERS_HEADER):
        assert layer in LAYERS, f"unknown layer {layer!r} in {ARCHITECTURE.name}"
        for unit in _names(units):
            assert unit not in layer_of, f"{unit} is in two layers"
            layer_of[unit] = layer
    allowed = set()
    for source_cell, targets in _table_rows(text, EDGES_HEADER):
        (source,) = _names(source_cell)
        for target in _names(targets):
            allowed.add((source, target))
    return LayerMap(layer_of, frozenset(allowed))


def unit_of(module: str) -> str:
    """``kcode.sandbox.policy`` -> ``sandbox``; ``kcode.config`` -> ``config``; ``kcode`` ->
    ``__init__`` (the package's own ``__init__.py``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_module(package: Path, module: str) -> bool:
    path = package.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _module_of(package: Path, path: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_modules(package: Path, path: Path, tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) for every import of a kcode module anywhere in the file."""
    this = _module_of(package, path)
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's own package, up level - 1
                anchor = this.split(".") if is_package else this.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                # ``from kcode import trust`` imports the module kcode.trust; ``from kcode
                # import __version__`` a name of the package kcode
                submodule = f"{base}.{alias.name}"
                found.append((node.lineno, submodule if _is_module(package, submodule) else base))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if function in ("__import__", "import_module") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return [(line, module) for line, module in found if module == "kcode" or module.startswith("kcode.")]


def import_edges(package: Path) -> list[Edge]:
    """Every import from one unit of ``package`` (a ``kcode/`` folder) to another."""
    edges = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        source = unit_of(_module_of(package, path))
        where = path.relative_to(package.parent).as_posix()
        for line, module in _imported_modules(package, path, tree):
            target = unit_of(module)
            if target != source:
                edges.append(Edge(source, target, f"{where}:{line}", module))
    return edges


def units_on_disk(package: Path) -> set[str]:
    units = {path.stem for path in package.glob("*.py")} | {path.parent.name for path in package.glob("*/__init__.py")}
    return units - {"_bundled"}


def _cycles(edges: list[Edge]) -> list[list[Edge]]:
    """One circle of imports per strongly connected group of units (Tarjan)."""
    graph: dict[str, dict[str, Edge]] = {}
    for edge in edges:
        graph.setdefault(edge.source, {}).setdefault(edge.target, edge)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(unit: str) -> None:
        index[unit] = low[unit] = len(index)
        stack.append(unit)
        for target in graph.get(unit, {}):
            if target not in index:
                visit(target)
                low[unit] = min(low[unit], low[target])
            elif target in stack:
                low[unit] = min(low[unit], index[target])
        if low[unit] == index[unit]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == unit:
                    break
            if len(group) > 1:
                groups.append(group)

    for unit in sorted(graph):
        if unit not in index:
            visit(unit)
    circles = []
    for group in groups:  # the shortest way round from the group's first unit back to it
        start = min(group)
        came_from: dict[str, Edge] = {}
        frontier, closing = [start], None
        while closing is None:
            following = []
            for unit in frontier:
                for target, edge in sorted(graph[unit].items()):
                    if target == start:
                        closing = closing or edge
                    elif target in group and target not in came_from:
                        came_from[target] = edge
                        following.append(target)
            frontier = following
        circle = [closing]
        while circle[0].source != start:
            circle.insert(0, came_from[circle[0].source])
        circles.append(circle)
    return circles


def check_layers(package: Path, layer_map: LayerMap) -> list[str]:
    """What is wrong with the imports of ``package``, one message per edge or circle."""
    problems = []
    allowed_edges = []
    for unit in sorted(units_on_disk(package) - layer_map.layer_of.keys()):
        problems.append(f"kcode/{unit} is in no layer of {ARCHITECTURE.name}")
    for edge in import_edges(package):
        source, target = layer_map.layer_of.get(edge.source), layer_map.layer_of.get(edge.target)
        if source is None or target is None:
            continue  # reported above (or a module that does not exist: Python reports that)
        if LAYERS.index(target) > LAYERS.index(source):
            problems.append(f"upward import: {edge} ({source} -> {target})")
        elif target == source and source in ("services", "frontends") and (edge.source, edge.target) not in layer_map.allowed:
            problems.append(f"import within the {source} that the table of {ARCHITECTURE.name} does not allow: {edge}")
        else:
            allowed_edges.append(edge)
    for circle in _cycles(allowed_edges):
        units = " -> ".join([circle[0].source, *(edge.target for edge in circle)])
        problems.append(f"import circle {units}: " + "; ".join(str(edge) for edge in circle))
    return problems


@pytest.fixture(scope="module")
def layer_map() -> LayerMap:
    return read_layer_map(ARCHITECTURE.read_text(encoding="utf-8"))


def test_kcode_follows_the_layer_map(layer_map: LayerMap) -> None:
    assert check_layers(REPO / "kcode", layer_map) == []


def test_the_map_is_true_for_the_code(layer_map: LayerMap) -> None:
    """Every unit of the map exists, the allowed edges form no circle, and each one is used
    (the document says which service imports which; an edge nothing uses is out of date)."""
    package = REPO / "kcode"
    assert set(layer_map.layer_of) == units_on_disk(package)
    used = {(edge.source, edge.target) for edge in import_edges(package)}
    assert layer_map.allowed - used == set(), "edges in the table that no import uses"
    assert _cycles([Edge(source, target, "table", "") for source, target in layer_map.allowed]) == []
    assert {("tools", "sandbox"), ("agent", "llm"), ("cli", "agent")} <= used  # the checker sees the imports


def test_the_readme_points_inside_the_repository() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/architecture.md" in readme
    assert "../" not in re.sub(r"https?://\S+", "", readme), "README.md links outside the repository"


# -- the checker catches planted imports ------------------------------------------------


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "kcode"
    shutil.copytree(REPO / "kcode", copy, ignore=shutil.ignore_patterns("__pycache__", "_bundled"))
    return copy


def plant(path: Path, body: str) -> int:
    """Append a function holding ``body`` to ``path``; the line of ``body``."""
    text = path.read_text(encoding="utf-8")
    line = text.count("\n") + 4  # after two blank lines and the def
    path.write_text(text + f"\n\ndef _planted():\n    {body}\n", encoding="utf-8")
    return line


def test_an_upward_import_inside_a_function_is_named(package_copy: Path, layer_map: LayerMap) -> None:
    assert check_layers(package_copy, layer_map) == []  # the copy is as clean as the original
    line = plant(package_copy / "paths.py", "from kcode.agent.runner import run_task")
    assert check_layers(package_copy, layer_map) == [
        f"upward import: kcode/paths.py:{line} imports kcode.agent.runner: paths -> agent (foundation -> agent)"
    ]


def test_a_dynamic_import_is_an_import(package_copy: Path, layer_map: LayerMap) -> None:
    line = plant(package_copy / "events.py", 'import importlib; importlib.import_module("kcode.headless.text")')
    assert check_layers(package_copy, layer_map) == [
        f"upward import: kcode/events.py:{line} imports kcode.headless.text: events -> headless (foundation -> frontends)"
    ]


def test_a_circle_between_foundation_modules_is_named(package_copy: Path, layer_map: LayerMap) -> None:
    line = plant(package_copy / "config.py", "from kcode import trust")  # kcode.trust imports kcode.config
    [problem] = check_layers(package_copy, layer_map)
    assert problem.startswith("import circle config -> trust -> config: ")
    assert f"kcode/config.py:{line} imports kcode.trust: config -> trust" in problem
    assert "kcode/trust.py:" in problem and "imports kcode.config: trust -> config" in problem


def test_a_service_import_the_table_does_not_allow_is_named(package_copy: Path, layer_map: LayerMap) -> None:
    line = plant(package_copy / "llm" / "registry.py", "from kcode.session import SessionStore")
    assert check_layers(package_copy, layer_map) == [
        "import within the services that the table of architecture.md does not allow: "
        f"kcode/llm/registry.py:{line} imports kcode.session: llm -> session"
    ]


def test_a_circle_between_packages_is_named(package_copy: Path) -> None:
    """With the edge allowed by the table, a circle of packages is still refused."""
    layer_map = read_layer_map(ARCHITECTURE.read_text(encoding="utf-8"))
    loose = LayerMap(layer_map.layer_of, layer_map.allowed | {("vcs", "tools")})
    line = plant(package_copy / "vcs" / "git.py", "from kcode.tools import default_tools")  # tools -> sandbox -> vcs
    [problem] = check_layers(package_copy, loose)
    assert problem.startswith("import circle sandbox -> vcs -> tools -> sandbox: ")
    assert f"kcode/vcs/git.py:{line} imports kcode.tools: vcs -> tools" in problem


def test_a_new_module_must_be_placed_on_the_map(package_copy: Path, layer_map: LayerMap) -> None:
    (package_copy / "newthing.py").write_text("X = 1\n")
    assert check_layers(package_copy, layer_map) == [f"kcode/newthing is in no layer of {ARCHITECTURE.name}"]
