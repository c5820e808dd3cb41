"""A thin, fast wrapper over the git command line (every call is one subprocess)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from kcode.errors import UsageError, VcsError

__all__ = ["git", "git_ok", "repo_root", "KCODE_IDENTITY"]

# Commits kcode makes carry its own identity, so they work without user git config.
KCODE_IDENTITY = {
    "GIT_AUTHOR_NAME": "kcode",
    "GIT_AUTHOR_EMAIL": "kcode@localhost",
    "GIT_COMMITTER_NAME": "kcode",
    "GIT_COMMITTER_EMAIL": "kcode@localhost",
}
# Never run the repository's hooks: they are code from the repo, and kcode runs outside the sandbox.
_SAFE_CONFIG = ["-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false", "-c", "core.quotepath=off"]


def git(
    args: Sequence[str],
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    check: bool = True,
    text: bool = True,
) -> str | bytes:
    full_env = {**os.environ, **KCODE_IDENTITY, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    try:
        proc = subprocess.run(
            ["git", *_SAFE_CONFIG, *args],
            cwd=str(cwd),
            env=full_env,
            input=input,
            capture_output=True,
        )
    except FileNotFoundError as error:
        raise VcsError("git is not installed") from error
    if check and proc.returncode != 0:
        message = proc.stderr.decode("utf-8", errors="replace").strip()
        raise VcsError(f"git {' '.join(args[:3])} failed: {message}")
    return proc.stdout.decode("utf-8", errors="replace") if text else proc.stdout


def git_ok(args: Sequence[str], cwd: Path) -> bool:
    try:
        git(args, cwd)
    except VcsError:
        return False
    return True


def repo_root(path: Path) -> Path:
    """The top of the git work tree containing ``path``."""
    try:
        out = git(["rev-parse", "--show-toplevel"], path)
    except VcsError as error:
        raise UsageError(f"{path} is not inside a git repository (run kcode in a git checkout, or pass --repo)") from error
    return Path(str(out).strip())
