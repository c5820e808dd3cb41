"""An instance's repository at its base commit, and nothing newer.

The repository comes from a local mirror directory (``--repos DIR``: one clone per repository,
named ``owner__name``, ``owner+name``, ``owner/name`` or ``name``), or is cloned once from its
URL into kcode's cache. The checkout is a new repository that holds only the base commit and
its ancestors: no later commit, no tag, no remote, so an agent cannot read the fix from the
future (``git log --all``, ``git tag --contains``, ``git show <fix>`` all find nothing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from kcode.errors import KcodeError
from kcode.evals.dataset import Instance
from kcode.paths import cache_dir

__all__ = ["RepoError", "checkout", "clone_url", "find_mirror", "mirror_for"]

_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "kcode-eval", "GIT_AUTHOR_EMAIL": "eval@kcode.invalid",
    "GIT_COMMITTER_NAME": "kcode-eval", "GIT_COMMITTER_EMAIL": "eval@kcode.invalid",
}


class RepoError(KcodeError):
    """An instance's repository or commit that cannot be had."""


def _git(*args: str, cwd: Path | None = None, timeout: float = 600) -> str:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, **_GIT_ENV},
        )
    except subprocess.TimeoutExpired as exc:
        raise RepoError(f"git {args[0]} timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise RepoError(f"git {' '.join(args[:2])} failed: {proc.stderr.strip()[-400:]}")
    return proc.stdout


def _is_repo(path: Path) -> bool:
    return path.is_dir() and ((path / ".git").exists() or (path / "HEAD").is_file() and (path / "objects").is_dir())


def find_mirror(repos_dir: Path, repo: str) -> Path | None:
    """The clone of ``repo`` ("owner/name") in ``repos_dir``, bare or not, or None."""
    owner, _, name = repo.partition("/")
    candidates = [f"{owner}__{name}", f"{owner}+{name}", f"{owner}/{name}", name, f"{name}.git", f"{owner}__{name}.git"]
    for cand in candidates:
        path = Path(repos_dir) / cand
        if _is_repo(path):
            return path
        if _is_repo(path / "repo"):  # the layout of kcode's `fetch` mirrors: DIR/owner+name/repo
            return path / "repo"
    return None


def clone_url(repo: str) -> str:
    """Where ``repo`` is cloned from when no mirror has it (``KCODE_EVAL_GIT_BASE`` changes
    the host, e.g. to an internal mirror)."""
    base = os.environ.get("KCODE_EVAL_GIT_BASE", "https://github.com").rstrip("/")
    return f"{base}/{repo}.git"


def mirror_for(repo: str, repos_dir: Path | None = None) -> Path:
    """The local clone to check ``repo`` out from: the one in ``repos_dir``, else kcode's own
    cached mirror, cloned (bare) on first use."""
    if repos_dir is not None:
        found = find_mirror(Path(repos_dir), repo)
        if found:
            return found
    cached = cache_dir() / "evals" / "mirrors" / repo.replace("/", "__")
    if _is_repo(cached):
        return cached
    if repos_dir is not None and os.environ.get("KCODE_EVAL_OFFLINE"):
        raise RepoError(f"{repo}: no mirror in {repos_dir} (and KCODE_EVAL_OFFLINE is set)")
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(cached.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    where = f" in {repos_dir}" if repos_dir is not None else ""
    try:
        _git("clone", "--bare", "--quiet", clone_url(repo), str(tmp), timeout=3600)
    except RepoError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RepoError(f"{repo}: no mirror{where}, and cloning {clone_url(repo)} failed: {exc}") from exc
    tmp.rename(cached)
    return cached


def checkout(inst: Instance, dest: Path, repos_dir: Path | None = None, commit: str | None = None) -> Path:
    """A new repository at ``dest`` with ``commit`` (default: the instance's base commit)
    checked out on branch ``main``; it holds that commit and its ancestors only."""
    commit = commit or inst.base_commit
    mirror = mirror_for(inst.repo, repos_dir)
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    try:
        _git("init", "--quiet", "--initial-branch=main", str(dest))
        _git("config", "core.autocrlf", "false", cwd=dest)
        # fetch by id: only the commit and its ancestors come over, no other ref, no tag
        _git("fetch", "--quiet", "--no-tags", str(mirror), commit, cwd=dest, timeout=1800)
        fetched = _git("rev-parse", "FETCH_HEAD", cwd=dest).strip()
        _git("update-ref", "refs/heads/main", fetched, cwd=dest)
        _git("update-ref", "-d", "FETCH_HEAD", cwd=dest)
        _git("checkout", "--quiet", "--force", "main", cwd=dest)
    except RepoError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise RepoError(f"{inst.instance_id}: cannot check out {commit[:12]} of {inst.repo} from {mirror}: {exc}") from exc
    return dest
