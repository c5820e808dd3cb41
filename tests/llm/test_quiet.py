"""Nothing under ``kcode/llm/`` prints: progress and notices go to callbacks, and the command
line renders them (``kcode.cli._progress``)."""

from __future__ import annotations

import ast
from pathlib import Path

import kcode.llm

LLM = Path(kcode.llm.__file__).parent
# Modules whose only purpose here would be output to the terminal (logging's last-resort
# handler writes warnings to stderr when an application configures none).
_TERMINAL_MODULES = {"rich", "logging", "typer", "click"}


def terminal_output(source: str, name: str = "<source>") -> list[str]:
    """Where ``source`` prints, touches ``sys.stdout``/``sys.stderr`` or imports a terminal module."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            found.append(f"{where} print()")
        elif (isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr")
              and isinstance(node.value, ast.Name) and node.value.id == "sys"):
            found.append(f"{where} sys.{node.attr}")
        elif isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names if a.name.split(".")[0] in _TERMINAL_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in _TERMINAL_MODULES:
            found.append(f"{where} from {node.module} import")
    return found


def test_no_module_under_kcode_llm_writes_to_the_terminal():
    modules = sorted(LLM.rglob("*.py"))
    assert len(modules) > 20 and any(p.parent.name == "llamacpp" for p in modules)
    found = [hit for path in modules for hit in terminal_output(path.read_text(encoding="utf-8"), str(path.relative_to(LLM)))]
    assert found == []


def test_the_check_finds_each_kind_of_output():
    source = (
        "import sys, logging\nfrom rich.console import Console\n"
        "def f():\n    print('x')\n    sys.stderr.write('y')\n    sys.stdout.flush()\n"
        "subprocess.run(['x'], stderr=subprocess.STDOUT)\n"  # a child's stderr is not ours
    )
    assert terminal_output(source, "m.py") == [
        "m.py:1 import logging", "m.py:2 from rich.console import", "m.py:4 print()",
        "m.py:5 sys.stderr", "m.py:6 sys.stdout",
    ]
