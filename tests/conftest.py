"""Shared fixtures: an isolated kcode home, a small git repository with a failing test,
and scripted-model files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

CALC_BUGGY = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
CALC_TESTS = (
    "from calc import add, mul\n\n\n"
    "def test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_mul():\n    assert mul(2, 3) == 6\n"
)


@pytest.fixture(autouse=True)
def kcode_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own KCODE_HOME: no test touches the real user directories."""
    home = tmp_path_factory.mktemp("kcode-home")
    monkeypatch.setenv("KCODE_HOME", str(home))
    for name in [n for n in os.environ if n.startswith("KCODE_") and n != "KCODE_HOME" and not n.startswith("KCODE_TEST")]:
        monkeypatch.delenv(name)
    # models run in process unless a test asks for a kept-alive server (and then it is stopped below)
    monkeypatch.setenv("KCODE_KEEP_ALIVE", "0")
    yield home
    if (home / "cache" / "servers").is_dir():
        from kcode.llm.serve import stop_servers

        stop_servers()


@pytest.fixture(autouse=True, scope="session")
def no_model_server_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the suite, no kept-alive model server of a test runs (CI must not wait on one)."""
    yield
    import psutil

    base = str(tmp_path_factory.getbasetemp())
    left = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "kcode.llm.serve" in " ".join(process.info["cmdline"] or []) and process.environ().get("KCODE_HOME", "").startswith(base):
                left.append(process.pid)
                process.kill()
        except psutil.Error:
            continue
    assert not left, f"model servers left running after the tests (killed now): {left}"


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@example.com", "GIT_COMMITTER_NAME": "u", "GIT_COMMITTER_EMAIL": "u@example.com"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def snapshot(repo: Path) -> dict:
    """Everything of the user's checkout that a run must not touch."""
    files = {}
    for path in sorted(repo.rglob("*")):
        if path.is_file() and ".git" not in path.relative_to(repo).parts:
            files[path.relative_to(repo).as_posix()] = path.read_bytes()
    return {
        "branch": git(repo, "rev-parse", "--abbrev-ref", "HEAD"),
        "head": git(repo, "rev-parse", "HEAD"),
        "index": (repo / ".git" / "index").read_bytes(),
        "status": git(repo, "status", "--porcelain"),
        "files": files,
    }


@pytest.fixture
def calc_repo(tmp_path: Path) -> Path:
    """A git repository holding a small Python package whose test fails (add subtracts)."""
    repo = tmp_path / "repo"
    (repo / "calc").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "calc" / "__init__.py").write_text(CALC_BUGGY)
    (repo / "tests" / "test_calc.py").write_text(CALC_TESTS)
    (repo / "pyproject.toml").write_text("[tool.pytest.ini_options]\npythonpath = ['.']\n")
    (repo / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial")
    return repo


def write_script(path: Path, turns: list[dict]) -> Path:
    path.write_text(json.dumps({"turns": turns}))
    return path


FIX_TURNS = [
    {"content": "Reading the code first.", "reasoning": "Look at calc.", "tool_calls": [{"name": "read_file", "arguments": {"path": "calc/__init__.py"}}]},
    {"tool_calls": [{"name": "run_tests", "arguments": {}}]},
    {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a - b", "new": "return a + b"}}]},
    {"tool_calls": [{"name": "run_tests", "arguments": {}}]},
    {"content": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "Fixed add(); tests pass."}}]},
]


@pytest.fixture
def fix_script(tmp_path: Path) -> Path:
    """A scripted model that reads, runs the tests, fixes add(), re-runs and finishes."""
    return write_script(tmp_path / "fix.json", FIX_TURNS)


@pytest.fixture
def kcode(kcode_home: Path):
    """Run the real ``kcode`` executable as a subprocess."""
    executable = shutil.which("kcode")
    assert executable, "kcode is not installed (pip install -e '.[dev]')"

    def run(*args: str, cwd: Path, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "KCODE_HOME": str(kcode_home), "NO_COLOR": "1", **(env or {})}
        return subprocess.run([executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    return run
