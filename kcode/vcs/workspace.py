"""Where a run edits files, and its checkpoints.

``worktree`` mode (default): a separate git worktree under the user data dir, on branch
``kcode/<session>``, started from a snapshot of the user's current state *including*
uncommitted and untracked files. The user's branch, index and working tree are never
touched. The work tree lives while the run does: :meth:`Workspace.remove_worktree` removes it
when the run ends (the branch keeps every checkpoint), :meth:`Workspace.reopen` checks the
branch out there again for a resume (:mod:`kcode.vcs.worktree`). ``in-place`` mode edits the
checkout itself; checkpoints then go to the hidden ref ``refs/kcode/<session>``, built with a
private index, so the user's branch and index are never touched either.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kcode.errors import VcsError
from kcode.vcs.git import git, git_ok
from kcode.vcs.worktree import WORKTREE_LOCK, add_worktree, move_branch, remove_worktree

__all__ = ["Workspace", "CheckpointInfo", "snapshot_commit", "parse_name_status", "environment_dirs"]

log = logging.getLogger(__name__)

_KINDS = {"A": "add", "M": "update", "D": "delete", "T": "update"}

# Caches that tools and tests leave behind in repositories that do not ignore them; they
# never belong in a checkpoint.
ADD_PATHSPEC = [
    "--",
    ".",
    ":(exclude,glob)**/__pycache__/**",
    ":(exclude,glob)**/*.py[co]",
    ":(exclude,glob)**/.pytest_cache/**",
    ":(exclude,glob)**/.mypy_cache/**",
    ":(exclude,glob)**/.ruff_cache/**",
]


@dataclass
class CheckpointInfo:
    commit: str
    changes: list[dict[str, str]]  # [{"path", "kind"}]


def parse_name_status(text: str) -> list[dict[str, str]]:
    changes = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("\t")
        status = parts[0][:1]
        if status == "R" and len(parts) == 3:  # rename: old path deleted, new path added
            changes.append({"path": parts[1], "kind": "delete"})
            changes.append({"path": parts[2], "kind": "add"})
        else:
            changes.append({"path": parts[-1], "kind": _KINDS.get(status, "update")})
    return changes


def _head(root: Path) -> str | None:
    out = str(git(["rev-parse", "--verify", "-q", "HEAD"], root, check=False)).strip()
    return out or None


def environment_dirs(root: Path) -> list[str]:
    """Top-level virtualenvs in ``root`` (a directory with ``pyvenv.cfg``): environments, not
    source. ``python -m venv .venv`` before 3.13 writes no ``.gitignore``, so git shows them as
    untracked; a snapshot must not copy them (the sandbox shows them read-only instead)."""
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False) and os.path.isfile(os.path.join(e.path, "pyvenv.cfg")))


def _environment_excludes(root: Path) -> list[str]:
    """Exclude pathspecs for the virtualenvs git does not already ignore (an exclude that
    names an ignored path makes ``git add`` fail)."""
    names = environment_dirs(root)
    if not names:
        return []
    ignored = set(str(git(["check-ignore", "--", *names], root, check=False)).split())
    return [f":(exclude,literal){name}" for name in names if name not in ignored]


def snapshot_commit(root: Path, message: str, parent: str | None) -> tuple[str, str]:
    """Commit the working tree of ``root`` (tracked + untracked, minus ignored and minus
    virtualenvs) through a private index. Returns (commit, tree); nothing the user sees changes."""
    fd, index_path = tempfile.mkstemp(prefix="kcode-index-")
    os.close(fd)
    os.unlink(index_path)  # git creates it; an empty file is not a valid index
    env = {"GIT_INDEX_FILE": index_path}
    try:
        if parent:
            git(["read-tree", parent], root, env=env)
        git(["add", "-A", *ADD_PATHSPEC, *_environment_excludes(root)], root, env=env)
        tree = str(git(["write-tree"], root, env=env)).strip()
    finally:
        if os.path.exists(index_path):
            os.unlink(index_path)
    args = ["commit-tree", tree, "-m", message] + (["-p", parent] if parent else [])
    return str(git(args, root)).strip(), tree


@dataclass
class Workspace:
    repo: Path  # the user's checkout
    path: Path  # where the agent edits
    branch: str  # branch (worktree mode) or hidden ref (in-place mode)
    base_commit: str  # the snapshot the run started from
    mode: str  # "worktree" | "in-place"
    head: str = ""  # last checkpoint (or base)

    @classmethod
    def create(cls, repo: Path, session_id: str, worktrees_dir: Path, *, in_place: bool = False) -> Workspace:
        workspace = cls.planned(repo, session_id, worktrees_dir, in_place=in_place)
        workspace.open()
        return workspace

    @classmethod
    def planned(cls, repo: Path, session_id: str, worktrees_dir: Path, *, in_place: bool = False, start: str | None = None) -> Workspace:
        """Where a new run will edit, with nothing made yet (no work tree, branch or ref; a
        snapshot of uncommitted changes is only a commit object): a caller records it first,
        then :meth:`open` makes it, so a process killed in between leaves nothing that no
        record names. ``start``: a work tree's first commit when the caller knows it (a
        sub-agent's: its parent's checkpoint) instead of the checkout's state."""
        if start is not None and not in_place:
            return cls(repo, worktrees_dir / session_id, f"kcode/{session_id}", start, "worktree", start)
        head = _head(repo)
        if in_place:
            base, _ = snapshot_commit(repo, f"kcode {session_id}: start", head)
            return cls(repo, repo, f"refs/kcode/{session_id}", base, "in-place", base)
        base = head
        dirty = str(git(["status", "--porcelain", "--untracked-files=normal", "--", ".", *_environment_excludes(repo)], repo)).strip()
        if dirty or head is None:
            base, _ = snapshot_commit(repo, f"kcode {session_id}: start (your uncommitted changes)", head)
        return cls(repo, worktrees_dir / session_id, f"kcode/{session_id}", base, "worktree", base)

    def open(self) -> None:
        """Make the branch (an in-place run's ref) at the base commit and the work tree of a
        planned workspace; one whose branch exists already is checked out again (:meth:`reopen`)."""
        ref = self.branch if self.mode == "in-place" else f"refs/heads/{self.branch}"
        if git_ok(["rev-parse", "--verify", "--quiet", ref], self.repo):
            self.reopen()
        elif self.mode == "in-place":
            git(["update-ref", ref, self.base_commit], self.repo)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with WORKTREE_LOCK:
                git(["worktree", "add", "--quiet", "-b", self.branch, str(self.path), self.base_commit], self.repo)

    def checkpoint(self, message: str) -> CheckpointInfo | None:
        """Commit whatever changed since the last checkpoint; None when nothing did."""
        if self.mode == "in-place":
            commit, tree = snapshot_commit(self.path, message, self.head)
            parent_tree = str(git(["rev-parse", f"{self.head}^{{tree}}"], self.path)).strip()
            if tree == parent_tree:
                return None
            changes = parse_name_status(str(git(["diff-tree", "-r", "--name-status", "-M", self.head, commit], self.path)))
            git(["update-ref", self.branch, commit], self.path)
        else:
            git(["add", "-A", *ADD_PATHSPEC], self.path)
            changes = parse_name_status(str(git(["diff", "--cached", "--name-status", "-M"], self.path)))
            if not changes:
                return None
            git(["commit", "--quiet", "--no-verify", "-m", message], self.path)
            commit = str(git(["rev-parse", "HEAD"], self.path)).strip()
        self.head = commit
        return CheckpointInfo(commit, changes)

    # Read from the commits, in the user's repository: they are there with or without a work tree.
    def diff_stat(self) -> str:
        return str(git(["diff", "--stat", self.base_commit, self.head], self.repo)).rstrip()

    def changed_files(self) -> list[dict[str, str]]:
        return parse_name_status(str(git(["diff", "--name-status", "-M", self.base_commit, self.head], self.repo)))

    def reopen(self) -> None:
        """Make sure the work tree is there to edit: check the branch out at ``path`` again if
        it was removed (a run that ended, ``kcode sessions --prune``) or deleted by hand."""
        if self.mode == "worktree" and not (self.path / ".git").exists():
            add_worktree(self.repo, self.path, self.branch)

    def has_worktree(self) -> bool:
        return self.mode == "worktree" and (self.path / ".git").exists()

    def move_to(self, commit: str) -> None:
        """Put the work branch (and the work tree, when there is one) at ``commit``: what a
        step cut short had done, or later steps, are undone."""
        self.head = commit
        if self.mode != "worktree":
            return
        if self.has_worktree():
            git(["reset", "--quiet", "--hard", commit], self.path)
            git(["clean", "-fdq"], self.path)
        else:
            move_branch(self.repo, self.branch, commit)

    def remove_worktree(self) -> bool:
        """Remove the work tree (the branch stays); True when there was one. A failure is
        logged, not raised: the run's result is on the branch either way, and
        ``kcode sessions --prune`` can remove the work tree later."""
        if self.mode != "worktree":
            return False
        try:
            return remove_worktree(self.repo, self.path)
        except VcsError as error:
            log.warning("could not remove the work tree %s: %s", self.path, error)
            return False
