"""The append-only session log: one JSON event per line, fsync'd at every step boundary.

Each line is an event's ``to_dict`` form plus ``"v"``, the log format's version
(:mod:`kcode.session.versions`); readers turn older lines into the current form. A crash can
leave a half-written last line; readers skip it (and say so) instead of failing, so the log
up to the last complete event is always usable. A process writing the log holds an exclusive
``flock`` on it (released by the kernel however the process ends): :func:`log_in_use` tells a
running session from a stopped one, and a second writer is refused.

Every line also carries ``"seq"``: its 1-based line number in the file (a resume goes on
counting), which a reader tailing the log (:mod:`kcode.session.tail`) uses to catch up and
follow without gaps or repeats. The log is never rotated or rewritten, only appended to.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from kcode.errors import SessionError
from kcode.events import Checkpoint, Event, SessionFinished, TurnCompleted, event_from_dict
from kcode.session.versions import LOG_VERSION, LineUpgrader

__all__ = ["SessionLog", "read_events", "read_event_dicts", "log_in_use", "lock_held", "count_lines"]

log = logging.getLogger(__name__)

# Events after which the log is forced to disk: the end of every step and every checkpoint.
_SYNC_AFTER = (TurnCompleted, Checkpoint, SessionFinished)


class SessionLog:
    """An event-bus subscriber that appends every event to ``path``. With ``agent_id``, only
    that agent's own step ends are forced to disk: a sub-agent's events, forwarded into its
    parent's log, are forced to disk in the sub-agent's own log (which its resume reads)."""

    def __init__(self, path: Path, agent_id: str | None = None) -> None:
        self.path = path
        self.agent_id = agent_id
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise SessionError(f"session {path.parent.name} is running in another kcode process") from None
        _drop_partial_last_line(path)
        self._handle: IO[str] | None = handle
        self._unsynced = False  # lines written since the last fsync
        self.seq = count_lines(path)  # the last line's seq

    def __call__(self, event: Event) -> None:
        if self._handle is None:
            return
        self.seq += 1
        line = {"v": LOG_VERSION, "seq": self.seq, **event.to_dict()}
        self._handle.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._handle.flush()
        self._unsynced = True
        if isinstance(event, _SYNC_AFTER) and (self.agent_id is None or event.agent_id in ("", self.agent_id)):
            os.fsync(self._handle.fileno())
            self._unsynced = False

    def close(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            if self._unsynced:
                os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None


def _drop_partial_last_line(path: Path) -> None:
    """A crash mid-write leaves a last line without its newline; appending after it would
    corrupt the next event too, so cut it off first."""
    try:
        with path.open("rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            block = 65536
            end = size
            while end > 0:
                start = max(0, end - block)
                handle.seek(start)
                chunk = handle.read(end - start)
                newline = chunk.rfind(b"\n")
                if newline != -1:
                    handle.truncate(start + newline + 1)
                    return
                end = start
            handle.truncate(0)
        log.warning("%s: dropped a partly written last line", path)
    except FileNotFoundError:
        return


def count_lines(path: Path) -> int:
    """How many complete lines the file at ``path`` holds (0 when it does not exist)."""
    count = 0
    try:
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                count += block.count(b"\n")
    except FileNotFoundError:
        return 0
    return count


def log_in_use(path: Path) -> bool:
    """Whether a live process is writing the log at ``path`` (holds its lock)."""
    return lock_held(path)


def lock_held(path: Path, *, exclusive: bool = False) -> bool:
    """Whether some process holds a ``flock`` on ``path`` that a non-blocking shared (or
    ``exclusive``) lock cannot pass; False when there is no such file."""
    try:
        handle = Path(path).open("rb")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle.fileno(), (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


def read_event_dicts(path: Path) -> Iterator[dict]:
    """The log's events as current-version ``to_dict`` forms, in order."""
    try:
        handle = path.open("r", encoding="utf-8")
    except FileNotFoundError as error:
        raise SessionError(f"no session log at {path}") from error
    upgrade = LineUpgrader(str(path))
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.endswith("\n"):
                log.warning("%s:%d: skipping a partly written last line", path, number)
                return
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: skipping an unreadable line", path, number)
                continue
            if isinstance(data, dict):
                yield upgrade(data)
            else:
                log.warning("%s:%d: skipping a line that is not an event", path, number)


def read_events(path: Path) -> Iterator[Event]:
    for data in read_event_dicts(path):
        try:
            yield event_from_dict(data)
        except (ValueError, TypeError) as error:
            log.warning("%s: skipping event: %s", path, error)
