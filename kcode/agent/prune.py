"""``kcode sessions --prune``: remove what old sessions left on disk.

It composes two services, the session store and git (so it sits in the agent layer, like the
runner). A session's work tree is only a place to edit (its branch has every checkpoint, and a
resume makes the work tree again), so pruning removes work trees by default and deletes
branches only when asked. Session records (meta and log) stay: replay, diff and resume keep
working as long as the branch does. A session whose log another process holds is running
and is left alone, however old.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from kcode.errors import VcsError
from kcode.session.log import log_in_use
from kcode.session.store import SessionMeta, SessionStore
from kcode.vcs.worktree import delete_branch, remove_worktree

__all__ = ["Pruned", "prune_sessions"]


@dataclass
class Pruned:
    """What pruning did to one session."""

    session_id: str
    removed_worktree: str = ""  # the work tree's path, when one was removed
    deleted_branch: str = ""  # the branch (or in-place ref), when it was deleted
    note: str = ""  # why something was left alone


def prune_sessions(store: SessionStore, repo: Path | None, *, older_than: float, delete_branches: bool = False, now: float | None = None) -> list[Pruned]:
    """Prune the sessions of ``repo`` (every repository's for None) with no activity for
    ``older_than`` seconds; one :class:`Pruned` per session that had something to prune or
    was left alone for a reason."""
    cutoff = (time.time() if now is None else now) - older_than
    results = []
    for meta in store.list(repo):
        if store.last_activity(meta) > cutoff:
            continue
        if log_in_use(store.log_path(meta.session_id)):
            results.append(Pruned(meta.session_id, note="running"))
            continue
        pruned = _prune(meta, delete_branches)
        if pruned.removed_worktree or pruned.deleted_branch or pruned.note:
            results.append(pruned)
    return results


def _prune(meta: SessionMeta, delete_branches: bool) -> Pruned:
    pruned = Pruned(meta.session_id)
    repo = Path(meta.repo)
    try:
        if meta.mode == "worktree" and meta.workdir and remove_worktree(repo, Path(meta.workdir)):
            pruned.removed_worktree = meta.workdir
        if delete_branches and repo.is_dir() and delete_branch(repo, meta.branch, meta.session_id):
            pruned.deleted_branch = meta.branch
    except VcsError as error:
        pruned.note = str(error)
    return pruned
