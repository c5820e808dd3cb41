"""Where sessions live: ``<data dir>/sessions/<id>/`` with ``events.jsonl`` (the log),
``meta.json`` (a small summary for listing, rewritten atomically) and, for a run started with
a prompt of its caller's, ``opening.json`` (those opening messages, for a resume)."""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kcode.errors import SessionError
from kcode.paths import data_dir

__all__ = ["SessionMeta", "SessionStore", "new_session_id"]


def new_session_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


@dataclass
class SessionMeta:
    session_id: str
    task: str
    repo: str
    workdir: str
    branch: str
    base_commit: str
    model: str
    mode: str
    status: str = "running"  # running | finished | budget_exhausted | interrupted | error
    steps: int = 0
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    summary: str = ""
    options: dict = field(default_factory=dict)  # the run's settings that differ from the defaults
    parent_id: str | None = None  # the session of the agent that started this one (a sub-agent's)


class SessionStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or data_dir() / "sessions"

    def dir(self, session_id: str) -> Path:
        return self.root / session_id

    def log_path(self, session_id: str) -> Path:
        return self.dir(session_id) / "events.jsonl"

    def scratch_dir(self, session_id: str) -> Path:
        return self.dir(session_id) / "scratch"

    def last_activity(self, meta: SessionMeta) -> float:
        """When the session last did anything: its log grows at every event, its meta is
        rewritten when it starts and stops."""
        try:
            logged = self.log_path(meta.session_id).stat().st_mtime
        except OSError:
            logged = 0.0
        return max(meta.updated, logged)

    def write_meta(self, meta: SessionMeta) -> None:
        meta.updated = time.time()
        self._write(meta.session_id, "meta.json", json.dumps(asdict(meta), indent=2))

    def write_opening(self, session_id: str, messages: list[dict]) -> None:
        """The messages a run's conversation opens with, when its caller chose them (a
        resume then opens with them too, whenever the run stopped)."""
        self._write(session_id, "opening.json", json.dumps(messages, ensure_ascii=False))

    def read_opening(self, session_id: str) -> list[dict] | None:
        """The opening :meth:`write_opening` recorded; None for a run with kcode's own."""
        path = self.dir(session_id) / "opening.json"
        try:
            messages = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as error:
            raise SessionError(f"{path} is corrupt: {error}") from error
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise SessionError(f"{path} is not a list of messages")
        return messages

    def _write(self, session_id: str, name: str, text: str) -> None:
        """Write a file of the session atomically, durably: a kill leaves the old or the new."""
        directory = self.dir(session_id)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f"{name}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, directory / name)

    def read_meta(self, session_id: str) -> SessionMeta:
        path = self.dir(session_id) / "meta.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise SessionError(f"no session {session_id!r} (looked in {self.root})") from error
        except json.JSONDecodeError as error:
            raise SessionError(f"{path} is corrupt: {error}") from error
        known = SessionMeta.__dataclass_fields__
        return SessionMeta(**{k: v for k, v in data.items() if k in known})

    def list(self, repo: Path | None = None) -> list[SessionMeta]:
        metas = []
        if self.root.is_dir():
            for entry in self.root.iterdir():
                if (entry / "meta.json").exists():
                    try:
                        meta = self.read_meta(entry.name)
                    except SessionError:
                        continue
                    if repo is None or Path(meta.repo) == repo:
                        metas.append(meta)
        return sorted(metas, key=lambda m: (m.created, m.session_id))

    def resolve(self, session_id: str | None, repo: Path | None = None) -> SessionMeta:
        """A session by id (or unique prefix), or the latest one of ``repo``."""
        if session_id:
            if (self.dir(session_id) / "meta.json").exists():
                return self.read_meta(session_id)
            matches = [m for m in self.list() if m.session_id.startswith(session_id)]
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise SessionError(f"{session_id!r} matches {len(matches)} sessions; give more of the id")
            raise SessionError(f"no session {session_id!r}")
        sessions = self.list(repo)
        if not sessions:
            raise SessionError("no sessions yet" + (f" for {repo}" if repo else ""))
        return sessions[-1]
