"""Every module and package of kcode states its public API in ``__all__`` (httpx's habit):
a list of unique names, each of which the module really has."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import kcode

PACKAGE = Path(kcode.__file__).parent
MODULES = sorted(
    ".".join(("kcode", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
    for path in PACKAGE.rglob("*.py")
    if path.name != "__main__.py"
)


def test_the_walk_finds_every_package_and_module() -> None:
    packages = {name for name in MODULES if (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()}
    assert {"kcode", "kcode.agent", "kcode.llm", "kcode.context", "kcode.sandbox", "kcode.tools"} <= packages
    assert "kcode.agent.loop" in MODULES and len(MODULES) > 80


def problems(name: str) -> list[str]:
    """What is wrong with module ``name``'s ``__all__`` (nothing: [])."""
    module = importlib.import_module(name)
    source = Path(module.__file__).read_text(encoding="utf-8")
    declared = [
        node for node in ast.parse(source).body
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))
    ]  # fmt: skip
    if not declared:
        return [f"{name} has no module-level __all__"]
    names = module.__all__
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        return [f"{name}.__all__ is not a list of names"]
    found = []
    if len(set(names)) != len(names):
        found.append(f"{name}.__all__ repeats {sorted({n for n in names if names.count(n) > 1})}")
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        found.append(f"{name}.__all__ names what it does not have: {missing}")
    return found


@pytest.mark.parametrize("name", MODULES)
def test_all_is_declared_and_true(name: str) -> None:
    assert problems(name) == []


def test_the_check_catches_a_missing_a_repeated_and_a_false_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "liar.py").write_text("__all__ = ['present', 'absent', 'present']\npresent = 1\n")
    (tmp_path / "silent.py").write_text("present = 1\n")
    (tmp_path / "honest.py").write_text("__all__ = ['present']\npresent = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert problems("liar") == ["liar.__all__ repeats ['present']", "liar.__all__ names what it does not have: ['absent']"]
    assert problems("silent") == ["silent has no module-level __all__"]
    assert problems("honest") == []
