"""A small real library for grading tests: ``pypi/tiny`` (a git mirror with a clean commit
and a bug commit), its instance, and a prepared environment.

The environment is a real venv of the machine's Python 3.11 built by ``envs.ensure_env``;
so that no test needs PyPI, a ``.pth`` file shows it the running interpreter's pytest. The
patches are real diffs made by git."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kcode.evals import envs
from kcode.evals.dataset import Instance

LIB = '''def add(a, b):
    return a + b


def mean(values):
    return sum(values) / len(values)
'''
BUG = LIB.replace("return a + b", "return a - b")
TESTS = '''from tiny import add, mean


def test_add():
    assert add(2, 3) == 5


def test_add_zero():
    assert add(0, 0) == 0


def test_mean():
    assert mean([1, 2, 3]) == 2
'''
TEST_CMD = "python -m pytest -rA -p no:cacheprovider"


def git(repo: Path, *args: str, stdin: str | None = None) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(repo)}
    return subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True, text=True, check=True, env=env).stdout


def diff(repo: Path, base: str, edit: dict[str, str | None]) -> str:
    """A git diff of ``edit`` ({path: new text, or None to delete}) against ``base``."""
    git(repo, "checkout", "-q", "-f", base)
    for path, text in edit.items():
        target = repo / path
        if text is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    git(repo, "add", "-A")
    out = git(repo, "diff", "--cached", "--no-color", base)
    git(repo, "reset", "-q", "--hard", base)
    git(repo, "clean", "-fdq")
    return out


class Tiny:
    def __init__(self, root: Path) -> None:
        self.repos = root / "repos"
        self.cache = root / "cache"
        self.repo = self.repos / "pypi__tiny"
        (self.repo / "tests").mkdir(parents=True)
        (self.repo / "tiny.py").write_text(LIB)
        (self.repo / "tests" / "test_tiny.py").write_text(TESTS)
        (self.repo / "pyproject.toml").write_text("[tool.pytest.ini_options]\npythonpath = ['.']\n")
        git(self.repo, "init", "-q", "-b", "main")
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-qm", "clean")
        self.clean = git(self.repo, "rev-parse", "HEAD").strip()
        (self.repo / "tiny.py").write_text(BUG)
        git(self.repo, "commit", "-qam", "bug")
        self.base = git(self.repo, "rev-parse", "HEAD").strip()
        git(self.repo, "branch", "-q", "bug")
        self.gold = diff(self.repo, self.base, {"tiny.py": LIB})

    def instance(self, instance_id: str = "pypi__tiny-001", **changes) -> Instance:
        fields = dict(
            instance_id=instance_id, repo="pypi/tiny", base_commit=self.base, problem_statement="add subtracts",
            patch=self.gold, version="1.0",
            fail_to_pass=["tests/test_tiny.py::test_add"], pass_to_pass=["tests/test_tiny.py::test_add_zero", "tests/test_tiny.py::test_mean"],
            overrides={"python": "3.11", "packages": [], "install": "", "test_cmd": TEST_CMD, "test_files": ["tests/test_tiny.py"]},
        )
        fields.update(changes)
        return Instance(**fields)

    def patch(self, edit: dict[str, str | None]) -> str:
        return diff(self.repo, self.base, edit)

    def prepare_env(self, inst: Instance) -> envs.Env:
        """Build the instance's env now and show it the running interpreter's pytest."""
        from kcode.evals import swebench_compat

        spec = swebench_compat.repo_spec(inst)
        with envs.env_lock(envs.envs_dir(self.cache) / spec.env_key):
            env = envs.ensure_env(spec.env_key, spec.python, spec.packages, source=self.repo, install=spec.install, cache_dir=self.cache)
        site = next(env.venv.glob("lib/python*/site-packages"))
        (site / "_host_pytest.pth").write_text(str(Path(pytest.__file__).resolve().parent.parent) + "\n")
        return env


def skip_unless_ready(host_pytest: bool = True) -> None:
    """Skip (with the reason) where grading cannot run here; ``host_pytest``: the tiny
    library's env borrows the running interpreter's pytest, so that must be a 3.11."""
    if host_pytest and sys.version_info[:2] != (3, 11):
        pytest.skip("the tiny library's env shares the running interpreter's pytest: needs Python 3.11")
    try:
        envs.find_python("3.11")
    except envs.PythonNotFound as exc:
        pytest.skip(str(exc))
    from kcode.sandbox import probe_bubblewrap

    status = probe_bubblewrap()
    if not status.usable:
        pytest.skip(f"grading runs tests in the sandbox: {status.message()}")
    import importlib.util

    if importlib.util.find_spec("swebench") is None:
        pytest.skip("swebench==4.1.0 is not installed (pip install -e '.[eval]')")
