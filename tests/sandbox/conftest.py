"""Fixtures for the sandbox tests: a git repository with tight limits, a planted home with
secrets, credentials in the environment, and two ways in (the ``kcode sandbox exec``
executable and the ``bash`` tool), so every attack is tried through both."""

from __future__ import annotations

import ast
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from kcode.sandbox import create_sandbox, probe_bubblewrap
from kcode.tools.base import SessionState, ToolContext
from kcode.tools.shell import BashParams, BashTool

SECRET_KEY = "sk-kcode-test-4f1d2b9e8c7a"  # planted in the environment
SSH_SECRET = "kcode-planted-ssh-private-key-91e7"  # planted in $HOME/.ssh

# Small limits so bombs end in seconds. A project profile named like the built-in one
# extends it, which is also how a user tightens the default for a repository. The CPU limit
# still lets a real pytest run finish: with this machine's plugins, pytest on two tiny tests
# takes about 2 s of CPU time, more on a loaded machine (a 2 s limit killed it there).
TIGHT_PROFILE = """\
extends = "workspace-write"
[limits]
address_space = "768MiB"
processes = 64
file_size = "10MiB"
cpu_time = "6s"
tmp_size = "16MiB"
"""

NETWORK_PROFILE = """\
extends = "workspace-write-network"
[limits]
processes = 256
cpu_time = "60s"
"""

requires_bwrap = pytest.mark.skipif(not probe_bubblewrap().usable, reason=probe_bubblewrap().message())


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@example.com",
           "GIT_COMMITTER_NAME": "u", "GIT_COMMITTER_EMAIL": "u@example.com"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A host directory next to the repository that commands must not touch."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "keep.txt").write_text("host data\n")
    return path


@pytest.fixture
def repo(tmp_path: Path, outside: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "README.md").write_text("hello\n")
    (root / "escape").symlink_to(outside)  # a symlink pointing out of the repository
    (root / ".kcode" / "sandbox").mkdir(parents=True)
    (root / ".kcode" / "sandbox" / "workspace-write.toml").write_text(TIGHT_PROFILE)
    (root / ".kcode" / "sandbox" / "workspace-write-network.toml").write_text(NETWORK_PROFILE)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


@pytest.fixture
def planted_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$HOME with an SSH key, and API keys in the environment, as a developer has them."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{SSH_SECRET}\n")
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text(f"aws_secret_access_key = {SSH_SECRET}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET_KEY)
    monkeypatch.setenv("GITHUB_TOKEN", SECRET_KEY)
    monkeypatch.setenv("MY_SERVICE_PASSWORD", SECRET_KEY)
    monkeypatch.setenv("HTTPS_PROXY_WITH_CREDS", f"http://user:{SECRET_KEY}@proxy.invalid:3128")
    return home


@pytest.fixture(scope="session")
def pip_index_option() -> str:
    """``--index-url URL`` for the index this machine's pip is configured with
    (``PIP_INDEX_URL``, else pip.conf's ``install`` or ``global`` section), or "" for pip's own
    default. Read once per session, before a test points ``$HOME`` elsewhere. Sandboxed pip
    commands run ``--isolated`` (local ``find-links`` and extra indexes must not stand in for
    the network), so the configured index is passed explicitly; a local one (``file://``)
    cannot show anything about the network and skips the test."""
    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True).stdout
    settings = dict(line.split("=", 1) for line in listing.splitlines() if "=" in line)
    for key in (":env:.index-url", "install.index-url", "global.index-url"):
        if key in settings:
            url = ast.literal_eval(settings[key]).split()[0]
            if not url.startswith(("http://", "https://")):
                pytest.skip(f"pip's configured index {url} is not reached over the network")
            return f" --index-url {shlex.quote(url)}"
    return ""


@dataclass
class Outcome:
    exit_code: int
    output: str
    timed_out: bool


def _kcode() -> list[str]:
    found = shutil.which("kcode")
    return [found] if found else [sys.executable, "-m", "kcode"]


def run_cli(repo: Path, command: str, *, timeout: float = 20, profile: str = "workspace-write") -> Outcome:
    """Through the real executable: ``kcode sandbox exec -- bash -c COMMAND``."""
    argv = [*_kcode(), "sandbox", "exec", "--sandbox", profile, "--repo", str(repo), "--timeout", str(timeout),
            "--", "bash", "-c", command]  # fmt: skip
    done = subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=timeout + 60)
    return Outcome(done.returncode, done.stdout + done.stderr, done.returncode == 124)


def run_tool(repo: Path, command: str, *, timeout: float = 20, profile: str = "workspace-write") -> Outcome:
    """Through the agent's ``bash`` tool with a sandbox from ``create_sandbox``."""
    ctx = ToolContext(root=repo, sandbox=create_sandbox(profile, repo), state=SessionState())
    result = BashTool().run(BashParams(command=command, timeout=timeout), ctx)
    return Outcome(result.data["exit_code"], result.output, result.data["timed_out"])


@pytest.fixture(params=["cli", "tool"])
def run(request: pytest.FixtureRequest, repo: Path, planted_home: Path):
    """``run(command, timeout=..., profile=...)`` through one of the two ways in."""
    runner = run_cli if request.param == "cli" else run_tool

    def call(command: str, *, timeout: float = 20, profile: str = "workspace-write") -> Outcome:
        return runner(repo, command, timeout=timeout, profile=profile)

    return call


def tree_digest(path: Path) -> dict[str, str]:
    """Every file (and symlink) under ``path`` with a hash of its content."""
    digest = {}
    for item in sorted(path.rglob("*")):
        rel = str(item.relative_to(path))
        if item.is_symlink():
            digest[rel] = "link:" + os.readlink(item)
        elif item.is_file():
            digest[rel] = hashlib.sha256(item.read_bytes()).hexdigest()
        elif item.is_dir():
            digest[rel] = "dir"
    return digest
