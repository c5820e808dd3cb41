"""House-style gate: ruff, with the project's small rule set (pyproject.toml [tool.ruff]),
finds nothing in the package, the tests or the benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    found = shutil.which("ruff")
    command = [found] if found else [sys.executable, "-m", "ruff"]
    return subprocess.run([*command, "check", "--no-cache", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing() -> None:
    if shutil.which("ruff") is None and subprocess.run([sys.executable, "-m", "ruff", "--version"], capture_output=True).returncode:
        pytest.fail("ruff is not installed: pip install -e '.[dev]'")
    done = _ruff("kcode", "tests", "evals")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_gate_uses_the_projects_rules_and_catches_a_bug(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "bad.py").write_text("import os\n\n\ndef f(items=[]):\n    return items\n")
    done = _ruff("bad.py", cwd=tmp_path)
    assert done.returncode == 1
    assert "F401" in done.stdout and "B006" in done.stdout  # unused import, mutable default
