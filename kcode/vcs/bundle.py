"""Commits shipped as git bundles: a sub-agent on another machine gets its start commit in one
(with the history it needs), and sends its branch back in another."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kcode.errors import VcsError
from kcode.vcs.git import git

__all__ = ["bundle_commits", "fetch_bundle", "repo_from_bundle"]


def bundle_commits(repo: Path, commit: str, ref: str, exclude: str | None = None, also: dict[str, str] | None = None) -> bytes:
    """A bundle holding ``commit`` as ``ref`` (a full ref name), and its history back to, not
    including, ``exclude``; ``also``: more refs (name: commit) in it, with their history."""
    refs = {ref: commit, **(also or {})}
    for name in refs:
        if not name.startswith("refs/"):
            raise VcsError(f"a bundle's ref must be a full ref name, not {name!r}")
    for name, target in refs.items():
        git(["update-ref", name, target], repo)  # a bundle names refs, not bare commits
    try:
        with tempfile.TemporaryDirectory(prefix="kcode-bundle-") as tmp:
            path = Path(tmp) / "out.bundle"
            git(["bundle", "create", "--quiet", str(path), *refs, *([f"^{exclude}"] if exclude else [])], repo)
            return path.read_bytes()
    finally:
        for name in refs:
            git(["update-ref", "-d", name], repo, check=False)


def fetch_bundle(repo: Path, data: bytes, ref: str, into: str) -> str:
    """Fetch ``ref`` of the bundle ``data`` into ``repo`` as ``into``; returns its commit."""
    fd, name = tempfile.mkstemp(prefix="kcode-", suffix=".bundle")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        git(["fetch", "--quiet", "--no-tags", name, f"+{ref}:{into}"], repo)
    finally:
        os.unlink(name)
    return str(git(["rev-parse", into], repo)).strip()


def repo_from_bundle(path: Path, data: bytes, ref: str, into: str) -> str:
    """A new repository at ``path`` with the bundle's ``ref`` as ``into`` (no checkout: work
    trees are made from it); returns the commit."""
    path.mkdir(parents=True, exist_ok=True)
    git(["init", "--quiet", str(path)], path)
    return fetch_bundle(path, data, ref, into)
