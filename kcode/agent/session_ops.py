"""Operations on a session that has stopped: rewind it to a step, bring its result over."""

from __future__ import annotations

from pathlib import Path

from kcode.agent.recovery import recover
from kcode.errors import UsageError
from kcode.events import EventBus, Rewound
from kcode.session import SessionLog, SessionMeta, SessionStore
from kcode.vcs import ApplyReport, Workspace, apply_result, git, repo_root

__all__ = ["apply_session", "rewind_session"]


def rewind_session(session_id: str | None, to_step: int, repo: Path | None = None) -> tuple[SessionMeta, Rewound]:
    """Restore files and conversation to the end of ``to_step``; later steps stay in the log
    (and their files under ``refs/kcode/abandoned/...``)."""
    store = SessionStore()
    meta = store.resolve(session_id, repo_root(repo) if repo else None)
    if meta.mode != "worktree":
        raise UsageError(f"session {meta.session_id} ran in place; rewind only restores sessions that ran in their own work tree")
    from kcode.agent.runner import _refuse_running

    _refuse_running(store, meta)
    recovered = recover(store.log_path(meta.session_id))
    target = recovered.snapshots.get(to_step)
    if target is None:
        last = recovered.step
        raise UsageError(f"session {meta.session_id} has no completed step {to_step} (steps 0..{last})")
    repo_path = Path(meta.repo)  # the branch, not the work tree: a run that ended has none
    current_head = str(git(["rev-parse", meta.branch], repo_path)).strip()
    abandoned = f"refs/kcode/abandoned/{meta.session_id}/step-{recovered.step}"
    git(["update-ref", abandoned, current_head], repo_path)
    workspace = Workspace(repo_path, Path(meta.workdir), meta.branch, meta.base_commit, meta.mode)
    workspace.move_to(target.head or meta.base_commit)  # the branch, and the work tree if there is one
    log = SessionLog(store.log_path(meta.session_id))
    try:
        event = Rewound(to_step=to_step, from_step=recovered.step, commit=workspace.head, abandoned_ref=abandoned)
        EventBus(agent_id=meta.session_id, parent_id=meta.parent_id).emit(event)
        log(event)
    finally:
        log.close()
    meta.status, meta.steps = "rewound", to_step
    store.write_meta(meta)
    return meta, event


def apply_session(session_id: str | None, repo: Path | None = None) -> tuple[SessionMeta, ApplyReport]:
    store = SessionStore()
    meta = store.resolve(session_id, repo_root(repo) if repo else None)
    if meta.mode != "worktree":
        raise UsageError(f"session {meta.session_id} ran in place; its changes are already in your checkout")
    repo_path = Path(meta.repo)
    head = str(git(["rev-parse", meta.branch], repo_path)).strip()
    return meta, apply_result(repo_path, meta.base_commit, head)



