"""The run handles the TUI opens for itself: a session's past (its log, for a handle that will
resume it), and another session (/resume, /sessions)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["past_events", "session_opener", "is_attached"]


def is_attached(handle: Any) -> bool:
    from kcode.session.control import AttachedRunHandle

    return isinstance(handle, AttachedRunHandle)


def _store(handle: Any) -> Any:
    from kcode.session import SessionStore

    return getattr(handle, "store", None) or SessionStore()


def past_events(handle: Any) -> list[Any]:
    """What a handle on an existing session will not send: the events of its runs so far
    (an attached handle replays the log itself; a new session has none)."""
    session_id = getattr(handle, "session_id", None)
    if not session_id or is_attached(handle) or getattr(handle, "running", False):
        return []
    from kcode.session import read_events

    path = _store(handle).log_path(session_id)
    return list(read_events(path)) if path.exists() else []


def session_opener(handle: Any) -> Callable[[str | None], Any]:
    """``open(session_id or None)``: a handle on that session (default: the repository's
    latest): attached while another process runs it, else one that resumes it here when the
    user sends a message."""

    def open_session(session_id: str | None) -> Any:
        from kcode.agent.live import LocalRunHandle
        from kcode.config import load_config
        from kcode.session import log_in_use
        from kcode.session.control import AttachedRunHandle

        store = _store(handle)
        repo = getattr(handle, "repo", None)
        meta = store.resolve(session_id, None if session_id else repo)
        if log_in_use(store.log_path(meta.session_id)):
            return AttachedRunHandle(store.dir(meta.session_id))
        if isinstance(handle, LocalRunHandle):
            return LocalRunHandle(handle.config, repo=Path(meta.repo), cwd=handle.cwd, session_id=meta.session_id, model=handle.model, store=store)
        return LocalRunHandle(load_config(Path(meta.repo)), repo=Path(meta.repo), session_id=meta.session_id, store=store)

    return open_session
