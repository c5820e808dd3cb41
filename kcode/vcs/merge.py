"""Bringing a sub-agent's commits into its parent's work tree: a 3-way merge computed with
``git merge-tree`` (no work tree touched while it is computed), committed with both heads as
parents. A conflict changes nothing: both sides stay where they are, on their branches."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from kcode.errors import VcsError
from kcode.vcs.git import _SAFE_CONFIG, KCODE_IDENTITY, git, git_ok

__all__ = ["MergeResult", "merge_into"]


@dataclass
class MergeResult:
    merged: bool  # the child's change is in the parent now
    commit: str  # the parent's new head (the merge commit), or its unchanged head
    conflicts: list[str] = field(default_factory=list)  # paths, when the merge conflicted
    nothing: bool = False  # the child changed nothing


def merge_into(path: Path, parent_head: str, child_head: str, child_base: str, message: str, *, in_place: bool = False) -> MergeResult:
    """Merge ``child_head`` (which started from ``child_base``) into the work tree at ``path``,
    whose last checkpoint is ``parent_head`` and which has nothing uncommitted. A linked work
    tree's branch moves to the merge commit; an in-place work tree (``in_place``: the user's
    checkout) gets the merged files written, and the caller checkpoints them."""
    if child_head == child_base:
        return MergeResult(False, parent_head, nothing=True)
    if git_ok(["merge-base", "--is-ancestor", child_head, parent_head], path):
        return MergeResult(True, parent_head)  # already in
    # exit 1 is a conflict (the first line is the tree, then the conflicted paths), not a failure
    proc = subprocess.run(
        # the merge base is found from the history (the child branched from the parent's line;
        # git 2.39, Debian 12's, has no --merge-base)
        ["git", *_SAFE_CONFIG, "merge-tree", "--write-tree", "--name-only", "--no-messages", parent_head, child_head],
        cwd=path, capture_output=True, text=True, env={**os.environ, **KCODE_IDENTITY},
    )
    lines = proc.stdout.splitlines()
    if proc.returncode == 1:
        return MergeResult(False, parent_head, conflicts=[line for line in lines[1:] if line.strip()])
    if proc.returncode != 0 or not lines:
        raise VcsError(f"git merge-tree failed: {proc.stderr.strip()}")
    tree = lines[0].strip()
    commit = str(git(["commit-tree", tree, "-p", parent_head, "-p", child_head, "-m", message], path)).strip()
    if in_place:
        diff = git(["diff", "--binary", parent_head, commit], path, text=False)
        git(["apply", "--whitespace=nowarn", "-"], path, input=diff)
    else:
        git(["merge", "--quiet", "--ff-only", commit], path)
    return MergeResult(True, commit)
