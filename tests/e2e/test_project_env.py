"""The user's environment inside kcode's work tree, through the real ``kcode run``.

Each case is a real package in a real git repository with a real virtualenv, laid out as
users lay them out: installed editable (setuptools, hatchling) into a venv outside the
repository, a flat layout, a ``.venv/`` inside the repository, and ``PATH`` reordered by a
shim-like launcher. A scripted model runs the tests (they fail on the bug), fixes it, runs
them again: the tests kcode runs must see the agent's edit and pass, and the user's checkout
must be byte-identical afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kcode.sandbox import probe_bubblewrap
from kcode.session import SessionStore
from tests.conftest import git, snapshot, write_script

pytestmark = pytest.mark.skipif(not probe_bubblewrap().usable, reason="bubblewrap is not usable here")

BUGGY = "def add(a, b):\n    return a - b\n"
TESTS = "from mylib import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n"
GITIGNORE = "__pycache__/\n.pytest_cache/\n*.egg-info/\nbuild/\n.venv/\n"

_PROJECT = '\n[project]\nname = "mylib"\nversion = "0.1"\n\n'
_SETUPTOOLS = '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n' + _PROJECT
SETUPTOOLS_SRC = _SETUPTOOLS + '[tool.setuptools.packages.find]\nwhere = ["src"]\n'
SETUPTOOLS_FLAT = _SETUPTOOLS + '[tool.setuptools]\npackages = ["mylib"]\n'
HATCHLING_SRC = ('[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n' + _PROJECT
                 + '[tool.hatch.build.targets.wheel]\npackages = ["src/mylib"]\n')  # fmt: skip


def _package(repo: Path, pyproject: str, package_dir: str, *, generated: bool = False) -> Path:
    """A repository with ``mylib`` at ``package_dir``; returns the buggy module's path.
    ``generated``: the module imports an ignored, generated ``_version.py`` (setuptools_scm's
    habit), which a work tree lacks."""
    module = repo / package_dir / "mylib" / "__init__.py"
    module.parent.mkdir(parents=True)
    module.write_text(("from mylib._version import version\n\n\n" if generated else "") + BUGGY)
    if generated:
        (module.parent / "_version.py").write_text("version = '0.1'\n")

    (repo / "tests").mkdir()
    (repo / "tests" / "test_mylib.py").write_text(TESTS)
    (repo / "pyproject.toml").write_text(pyproject)
    (repo / ".gitignore").write_text(GITIGNORE + (f"{package_dir}/mylib/_version.py\n" if generated else ""))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial")
    return module


def _venv(path: Path, repo: Path) -> Path:
    """A venv at ``path`` (system site packages: pytest and the build backends, offline) with
    ``repo`` installed editable; returns its ``bin/``."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(path)], check=True, capture_output=True)
    bin_dir = path / "bin"
    install = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", "--no-index", "-e", str(repo)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    # The editable install points at the user's checkout: the trap this file is about.
    where = subprocess.run([str(bin_dir / "python"), "-c", "import mylib; print(mylib.__file__)"],
                           cwd="/", capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert Path(where).resolve().is_relative_to(repo.resolve()), where
    return bin_dir


def _script(tmp_path: Path, module: str) -> Path:
    return write_script(tmp_path / "fix.json", [
        {"tool_calls": [{"name": "run_tests", "arguments": {}}]},
        {"tool_calls": [{"name": "edit_file", "arguments": {"path": module, "old": "return a - b", "new": "return a + b"}}]},
        {"tool_calls": [{"name": "run_tests", "arguments": {}}]},
        {"tool_calls": [{"name": "bash", "arguments": {"command": "python -c 'import mylib, sys; print(\"IMPORTED\", mylib.__file__, sys.prefix)'; pwd; git status --short; git log --oneline -1"}}]},
        {"tool_calls": [{"name": "finish", "arguments": {"summary": "Fixed add()."}}]},
    ])  # fmt: skip


def _events(session_id: str) -> list[dict]:
    path = SessionStore().log_path(session_id)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _run(kcode, repo: Path, script: Path, *, env: dict[str, str], extra: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, list[dict]]:
    proc = kcode("run", "Fix add", "--model", f"scripted:{script}", "--output-format", "stream-json", *extra, cwd=repo, env=env, timeout=300)
    first = json.loads(proc.stdout.splitlines()[0])
    return proc, _events(first["thread_id"])


def _assert_fixed_in_the_work_tree(proc: subprocess.CompletedProcess, events: list[dict], repo: Path) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = [e for e in events if e["type"] == "tests.run"]
    assert len(runs) >= 2, runs
    # before the fix: the package imported and the assertion failed (not a collection error)
    assert (runs[0]["failed"], runs[0]["errors"], runs[0]["passed"]) == (1, 0, 1), runs[0]
    # after the fix, in the work tree: the tests see the agent's edit
    assert (runs[1]["failed"], runs[1]["errors"], runs[1]["passed"]) == (0, 0, 2), runs[1]
    assert runs[-1]["ok"], runs[-1]
    outputs = [e for e in events if e["type"] == "tool.finished" and e.get("name") == "bash"]
    text = outputs[-1]["output"]
    imported = next(line for line in text.splitlines() if line.startswith("IMPORTED"))
    # the module came from the checkout's path, which inside the sandbox is the work tree
    assert str(repo.resolve()) in imported, text
    assert f"\n{repo.resolve()}\n" in f"\n{text}", text  # pwd: commands work at the checkout's path
    assert "kcode: step" in text, text  # git inside sees the work tree's branch and checkpoints
    assert " M " in text or "M " in text or "nothing" not in text


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """kcode's environment with no venv active."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH")}
    return env


@pytest.mark.parametrize("backend", ["setuptools", "hatchling"])
def test_src_layout_editable_into_a_venv_outside_the_repository(kcode, tmp_path: Path, clean_env, backend: str) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _package(repo, SETUPTOOLS_SRC if backend == "setuptools" else HATCHLING_SRC, "src")
    bin_dir = _venv(tmp_path / "venvs" / "mylib", repo)
    before = snapshot(repo)
    env = {**clean_env, "VIRTUAL_ENV": str(bin_dir.parent), "PATH": f"{bin_dir}:{clean_env['PATH']}"}
    proc, events = _run(kcode, repo, _script(tmp_path, "src/mylib/__init__.py"), env=env)
    _assert_fixed_in_the_work_tree(proc, events, repo)
    resolved = next(e for e in events if e["type"] == "environment.resolved")
    assert resolved["environment"] == str(bin_dir.parent) and resolved["environment_source"] == "VIRTUAL_ENV"
    assert resolved["python"] == str(bin_dir / "python")
    after = snapshot(repo)
    assert after["files"] == before["files"] and after["index"] == before["index"] and after["head"] == before["head"]
    assert (repo / "src" / "mylib" / "__init__.py").read_text() == BUGGY


def test_flat_layout_editable(kcode, tmp_path: Path, clean_env) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _package(repo, SETUPTOOLS_FLAT, ".")
    bin_dir = _venv(tmp_path / "venv", repo)
    before = snapshot(repo)
    env = {**clean_env, "VIRTUAL_ENV": str(bin_dir.parent), "PATH": f"{bin_dir}:{clean_env['PATH']}"}
    proc, events = _run(kcode, repo, _script(tmp_path, "mylib/__init__.py"), env=env)
    _assert_fixed_in_the_work_tree(proc, events, repo)
    assert snapshot(repo)["files"] == before["files"]


def test_venv_inside_the_repository_is_found_and_used(kcode, tmp_path: Path, clean_env) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _package(repo, SETUPTOOLS_SRC, "src", generated=True)
    bin_dir = _venv(repo / ".venv", repo)  # ignored by git, so absent from the work tree
    before = snapshot(repo)
    proc, events = _run(kcode, repo, _script(tmp_path, "src/mylib/__init__.py"), env=clean_env)  # nothing activated
    _assert_fixed_in_the_work_tree(proc, events, repo)
    resolved = next(e for e in events if e["type"] == "environment.resolved")
    assert resolved["environment"] == str((repo / ".venv").resolve()) and ".venv/" in resolved["environment_source"]
    assert resolved["python"] == str(bin_dir.resolve() / "python")
    assert ".venv/" in resolved["shown"] and "src/mylib/_version.py" in resolved["shown"]
    assert not any("__pycache__" in p or ".pytest_cache" in p for p in resolved["shown"])
    text = [e for e in events if e["type"] == "tool.finished" and e.get("name") == "bash"][-1]["output"]
    assert f"{repo.resolve()}/.venv" in text  # sys.prefix: the repository's venv
    assert snapshot(repo)["files"] == before["files"]


def test_path_reordered_by_a_shim_like_launcher(kcode, tmp_path: Path, clean_env) -> None:
    """A pyenv shim runs kcode with its own interpreter first on PATH, venv still active."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _package(repo, SETUPTOOLS_SRC, "src")
    bin_dir = _venv(tmp_path / "venv", repo)
    shim_bin = tmp_path / "shim-bin"
    shim_bin.mkdir()
    # what `pyenv exec` does: the base interpreter (no mylib installed) goes first on PATH
    (shim_bin / "python").symlink_to(sys.executable)
    (shim_bin / "python3").symlink_to(sys.executable)
    kcode_exe = shutil.which("kcode")
    launcher = shim_bin / "kcode-shim"
    launcher.write_text(f'#!/bin/bash\nexport PATH="{shim_bin}:$PATH"\nexec {kcode_exe} "$@"\n')
    launcher.chmod(0o755)
    env = {**clean_env, "VIRTUAL_ENV": str(bin_dir.parent), "PATH": f"{bin_dir}:{clean_env['PATH']}", "KCODE_HOME": os.environ["KCODE_HOME"], "NO_COLOR": "1"}
    script = _script(tmp_path, "src/mylib/__init__.py")
    proc = subprocess.run([str(launcher), "run", "Fix add", "--model", f"scripted:{script}", "--output-format", "stream-json"],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
    events = _events(json.loads(proc.stdout.splitlines()[0])["thread_id"])
    _assert_fixed_in_the_work_tree(proc, events, repo)
    text = [e for e in events if e["type"] == "tool.finished" and e.get("name") == "bash"][-1]["output"]
    assert str(bin_dir.parent) in text  # sys.prefix: the venv's, not the shim's interpreter


def test_in_place_mode_uses_the_venv_too(kcode, tmp_path: Path, clean_env) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _package(repo, SETUPTOOLS_SRC, "src")
    _venv(repo / ".venv", repo)
    script = _script(tmp_path, "src/mylib/__init__.py")
    proc = kcode("run", "Fix add", "--model", f"scripted:{script}", "--in-place", cwd=repo, env=clean_env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the run header says what commands use
    assert f"commands see the files at {repo.resolve()} · python {(repo / '.venv').resolve()}/bin/python (" in proc.stderr, proc.stderr
    assert "environment " + str((repo / ".venv").resolve()) + " (.venv/ in the repository)" in proc.stderr
    (session,) = SessionStore().list(repo)
    runs = [e for e in _events(session.session_id) if e["type"] == "tests.run"]
    assert (runs[0]["failed"], runs[1]["failed"], runs[1]["passed"]) == (1, 0, 2)
    assert (repo / "src" / "mylib" / "__init__.py").read_text() == "def add(a, b):\n    return a + b\n"
    text = [e for e in _events(session.session_id) if e["type"] == "tool.finished" and e.get("name") == "bash"][-1]["output"]
    assert f"IMPORTED {repo.resolve()}/src/mylib/__init__.py {repo.resolve()}/.venv" in text, text


def test_doctor_shows_the_environment(kcode, tmp_path: Path, clean_env) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _package(repo, SETUPTOOLS_SRC, "src")
    _venv(repo / ".venv", repo)
    proc = kcode("doctor", cwd=repo, env=clean_env)
    assert f"python {(repo / '.venv').resolve()}/bin/python" in proc.stdout, proc.stdout
    assert ".venv/ in the repository" in proc.stdout


def test_an_untracked_venv_is_not_copied_into_the_work_tree(kcode, tmp_path: Path, clean_env) -> None:
    """`python -m venv .venv` before 3.13 writes no .gitignore: git sees an untracked venv."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _package(repo, SETUPTOOLS_SRC, "src")
    (repo / ".gitignore").write_text(GITIGNORE.replace(".venv/\n", ""))
    git(repo, "commit", "-qam", "venv not ignored")
    _venv(repo / ".venv", repo)
    assert "?? .venv/" in git(repo, "status", "--porcelain")
    proc, events = _run(kcode, repo, _script(tmp_path, "src/mylib/__init__.py"), env=clean_env)
    _assert_fixed_in_the_work_tree(proc, events, repo)
    started = next(e for e in events if e["type"] == "session.started")
    assert started["base_commit"] == git(repo, "rev-parse", "HEAD").strip()  # nothing else to snapshot
    branch_files = git(repo, "ls-tree", "-r", "--name-only", started["branch"]).split()
    assert not any(name.startswith(".venv") for name in branch_files)
    assert ".venv/" in next(e for e in events if e["type"] == "environment.resolved")["shown"]
