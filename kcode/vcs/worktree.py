"""A run's linked work tree: re-added from its branch, removed when the run ends.

The branch ``kcode/<session>`` holds every checkpoint, so the work tree is only a place to
edit: removing it loses nothing a resume would use (a resume goes back to the last
checkpoint anyway), and it frees the branch, which git lets only one work tree check out,
for the user's own ``git switch``.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from kcode.errors import VcsError
from kcode.vcs.git import git, git_ok

__all__ = ["checked_out_at", "add_worktree", "remove_worktree", "delete_branch", "move_branch", "WORKTREE_LOCK"]

# One work tree added or removed at a time in this process: `git worktree prune` (run on
# removal) forgets a work tree that another thread is still adding, and `worktree remove`
# trips over one half made (sub-agents add and remove theirs concurrently).
WORKTREE_LOCK = threading.RLock()


def _registered(repo: Path) -> dict[Path, str]:
    """The repository's work trees (the main one included) → the branch each has checked out
    ("" for a detached HEAD)."""
    entries: dict[Path, str] = {}
    path: Path | None = None
    for line in str(git(["worktree", "list", "--porcelain"], repo)).splitlines():
        if line.startswith("worktree "):
            path = Path(line[len("worktree ") :])
            entries[path] = ""
        elif line.startswith("branch ") and path is not None:
            entries[path] = line[len("branch ") :]
    return entries


def checked_out_at(repo: Path, branch: str) -> Path | None:
    """The work tree that has ``branch`` checked out, if one has."""
    ref = branch if branch.startswith("refs/") else f"refs/heads/{branch}"
    for path, checked_out in _registered(repo).items():
        if checked_out == ref:
            return path
    return None


def _is_linked_worktree(path: Path) -> bool:
    """Whether ``path`` is a linked work tree's directory: its ``.git`` is a file pointing into
    a repository's ``worktrees/``. Only such a directory is ever deleted outright."""
    try:
        text = (path / ".git").read_text(encoding="utf-8", errors="replace")
    except (OSError, IsADirectoryError):
        return False
    return text.startswith("gitdir:") and "/worktrees/" in text


def add_worktree(repo: Path, path: Path, branch: str) -> None:
    """Check ``branch`` out at ``path`` again (its work tree was removed, or deleted by hand)."""
    with WORKTREE_LOCK:
        _add_worktree(repo, path, branch)


def _add_worktree(repo: Path, path: Path, branch: str) -> None:
    git(["worktree", "prune"], repo)  # forget work trees whose directory is gone
    if not git_ok(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], repo):
        raise VcsError(f"branch {branch} no longer exists in {repo}, so its work tree cannot be made again")
    elsewhere = checked_out_at(repo, branch)
    if elsewhere is not None and elsewhere.resolve() != path.resolve():
        raise VcsError(f"branch {branch} is checked out in {elsewhere}; switch that checkout to another branch first (git switch -)")
    if elsewhere is None:
        if _is_linked_worktree(path):
            shutil.rmtree(path)  # a leftover directory git no longer knows as a work tree
        path.parent.mkdir(parents=True, exist_ok=True)
        git(["worktree", "add", "--quiet", str(path), branch], repo)


def remove_worktree(repo: Path, path: Path) -> bool:
    """Remove the linked work tree at ``path``, uncommitted changes and all; its branch stays.
    Returns whether there was one to remove."""
    with WORKTREE_LOCK:
        return _remove_worktree(repo, path)


def _remove_worktree(repo: Path, path: Path) -> bool:
    # the usual case, one git call: a linked work tree of this repository, still there
    if _is_linked_worktree(path) and repo.is_dir() and git_ok(["worktree", "remove", "--force", "--force", str(path)], repo):
        return True
    known = path.resolve() in {p.resolve() for p in _registered(repo)} if repo.is_dir() else False
    if known:
        git(["worktree", "remove", "--force", "--force", str(path)], repo)  # twice: also when locked
    leftover = _is_linked_worktree(path)  # not one git knows (its repository moved or was deleted)
    if leftover:
        shutil.rmtree(path)
    existed = known or leftover
    if repo.is_dir():
        git(["worktree", "prune"], repo)
    return existed


def delete_branch(repo: Path, branch: str, session_id: str) -> bool:
    """Delete a run's branch (or an in-place run's hidden ref) with the refs of its abandoned
    steps. Returns whether the branch was there."""
    ref = branch if branch.startswith("refs/") else f"refs/heads/{branch}"
    elsewhere = checked_out_at(repo, branch)
    if elsewhere is not None:
        raise VcsError(f"branch {branch} is checked out in {elsewhere}; switch that checkout to another branch first")
    existed = git_ok(["rev-parse", "--verify", "--quiet", ref], repo)
    if existed:
        git(["update-ref", "-d", ref], repo)
    abandoned = str(git(["for-each-ref", "--format=%(refname)", f"refs/kcode/abandoned/{session_id}/"], repo)).split()
    for name in abandoned:
        git(["update-ref", "-d", name], repo)
    return existed


def move_branch(repo: Path, branch: str, commit: str) -> None:
    """Point ``branch``, checked out nowhere, at ``commit``."""
    elsewhere = checked_out_at(repo, branch)
    if elsewhere is not None:
        raise VcsError(f"branch {branch} is checked out in {elsewhere}; switch that checkout to another branch first")
    git(["update-ref", f"refs/heads/{branch}", commit], repo)
